/**
 * CRM webhook delivery: what the public API and the server need from src/sinks (see src/sinks/README.md).
 */

/** The sink: durable outbox, signed at-least-once delivery in order per call, dead letters, metrics hooks. */
export {
  WebhookSink,
  parseRetryAfter,
  type WebhookBody,
  type WebhookSinkEvents,
  type WebhookSinkRuntime,
  type EndpointStats,
  type DeliveredInfo,
  type AttemptFailedInfo,
} from './webhooks.js';
/** The sink the server makes: the file outbox, or the Redis outbox shared by many nodes when `redis.url` is set. */
export { createWebhookSink, type WebhookDelivery } from './webhook-sink.js';
export {
  RedisWebhookSink,
  partitionOf,
  webhookKeys,
  WEBHOOK_GROUP,
  type RedisWebhookSinkRuntime,
  type RedisEndpointStats,
  type RedisLinkState,
} from './redis-webhooks.js';
/** Its options (the `webhooks` key), defaults and validation. */
export {
  resolveWebhookOptions,
  rejectWebhookSecrets,
  routeMatcher,
  DEFAULT_WEBHOOK_OPTIONS,
  DEFAULT_WEBHOOK_ENDPOINT,
  WEBHOOK_ROUTES,
  ACTION_KINDS,
  type WebhookOptions,
  type WebhookOptionsInput,
  type WebhookEndpointOptions,
  type WebhookEndpointInput,
  type BackoffOptions,
} from '../config/webhook-options.js';
/** Signing, and verifying on the receiver's side. */
export { signWebhook, verifyWebhookSignature, SIGNATURE_HEADER, EVENT_ID_HEADER, type WebhookVerification, type VerifyOptions } from './webhook-signature.js';
/** Outbox inspection and dead-letter retry (what `callmood webhooks status | retry` run). */
export {
  loadWebhookConfig,
  loadRedisConfig,
  webhookStatus,
  retryDeadLetters,
  redisWebhookStatus,
  retryRedisDeadLetters,
  type RetrySummary,
  type RetryOptions,
  type RedisEndpointStatus,
} from './webhook-admin.js';
export { readDeadLetters, countOutbox, type DeadLetter, type OutboxCounts } from './outbox.js';
