/**
 * The one way to make the server's webhook sink: the outbox in a folder on this node (WebhookSink) when there is no
 * Redis, the outbox in Redis shared by every node (RedisWebhookSink) when `redis.url` is set.
 */
import type { EventEmitter } from 'eventemitter3';
import type { RedisSettings } from '../config/options.js';
import type { CallmoodEvent } from '../stream/events.js';
import type { WebhookOptions, WebhookOptionsInput } from '../config/webhook-options.js';
import type { EndpointStats, WebhookSinkEvents } from './webhook-delivery.js';
import { WebhookSink } from './webhooks.js';
import { RedisWebhookSink, type RedisWebhookSinkRuntime } from './redis-webhooks.js';

/** What the server uses of a webhook sink, whichever keeps the outbox. */
export type WebhookDelivery = EventEmitter<WebhookSinkEvents> & {
  readonly options: Readonly<WebhookOptions>;
  /** Resolves once delivery has started (the outbox replayed, or Redis reached and leases taken). */
  readonly ready: Promise<void>;
  /** Routes and queues an event; never waits on the network. */
  enqueue(event: CallmoodEvent): Promise<void>;
  /** Counters per endpoint (the Redis sink adds `redis`, `buffered`, `dropped`, `partitions`). */
  stats(): Record<string, EndpointStats>;
  /** True once nothing is pending, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Dead letters back to delivery; the ids moved. */
  requeueDeadLetters(filter?: { id?: string; endpoint?: string }): Promise<Array<{ endpoint: string; id: string }>>;
  /** Delivers for up to `drainMs`, then stops. */
  close(timeoutMs?: number, drainMs?: number): Promise<void>;
};

/**
 * The file sink when `redis?.url` is null, the Redis sink otherwise (`redis` being the resolved `redis` options).
 * Throws INVALID_OPTION on bad webhook options. `runtime.nodeId` names this node in Redis (default host-pid-random).
 */
export function createWebhookSink(
  webhooks: WebhookOptionsInput | Readonly<WebhookOptions>,
  redis: Readonly<RedisSettings> | null,
  runtime: RedisWebhookSinkRuntime = {},
): WebhookDelivery {
  if (!redis?.url) return new WebhookSink(webhooks, { logger: runtime.logger, env: runtime.env });
  return new RedisWebhookSink(webhooks, redis, runtime);
}
