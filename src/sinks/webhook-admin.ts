/**
 * Operating the webhook outbox from outside a server: reading the `webhooks` section of a config file, counting what
 * waits per endpoint, and sending dead letters again (`callmood webhooks status | retry`).
 */
import { existsSync, readdirSync } from 'node:fs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import type { LoggerInput } from '../util/log.js';
import { DEFAULT_WEBHOOK_OPTIONS, rejectWebhookSecrets, type WebhookOptionsInput } from '../config/webhook-options.js';
import { countOutbox, type OutboxCounts } from './outbox.js';
import { WebhookSink } from './webhooks.js';

/**
 * The `webhooks` section of a JSON config file (the one `callmood serve --config` reads), or {} when it has none.
 * Throws INVALID_OPTION when an endpoint holds a `secret`: a config file names the environment variable instead.
 */
export function loadWebhookConfig(file: string): WebhookOptionsInput {
  const all = loadConfigFile(file) as Record<string, unknown>;
  const w = all.webhooks;
  if (w === undefined || w === null) return {};
  if (typeof w !== 'object' || Array.isArray(w)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `config file ${file}: webhooks must be an object {outboxDir, endpoints: [...]}`);
  }
  rejectWebhookSecrets(w, `config file ${file}`);
  return w as WebhookOptionsInput;
}

/** Counts per endpoint: the configured ones, else every endpoint folder found in `outboxDir`. */
export async function webhookStatus(outboxDir: string = DEFAULT_WEBHOOK_OPTIONS.outboxDir, endpoints?: readonly string[]): Promise<OutboxCounts[]> {
  const names = new Set(endpoints ?? []);
  if (existsSync(outboxDir)) {
    for (const d of readdirSync(outboxDir, { withFileTypes: true })) if (d.isDirectory()) names.add(d.name);
  }
  const out: OutboxCounts[] = [];
  for (const name of [...names].sort()) out.push(await countOutbox(outboxDir, name));
  return out;
}

/** What a retry did. */
export interface RetrySummary {
  /** Dead letters moved back into the outbox. */
  requeued: number;
  /** Of those, delivered now. */
  delivered: number;
  /** Of those, dead again (a permanent answer or every attempt failed). */
  deadAgain: number;
  /** Of those, still pending when the time ran out (they stay in the outbox, sent on the next start). */
  pending: number;
  /** Other pending events of the outbox delivered on the way. */
  otherDelivered: number;
  /** The moved ones, by endpoint and id, with what became of each. */
  items: Array<{ endpoint: string; id: string; outcome: 'delivered' | 'dead' | 'pending' }>;
}

/** Options of retryDeadLetters. */
export interface RetryOptions {
  /** Only the dead letter with this event id. */
  id?: string;
  /** Only this endpoint's dead letters. */
  endpoint?: string;
  /** Longest wait for them to be delivered or dead again, ms (default 60 000). */
  timeoutMs?: number;
  /** Where log records go: a pino (or pino-compatible) logger, or a `(level, code, message, fields)` function. */
  logger?: LoggerInput;
  env?: NodeJS.ProcessEnv;
}

/**
 * Opens the outbox with the given webhook options (it must not be in use by a running server: the outbox is locked),
 * moves the chosen dead letters back into it, delivers them (with the endpoints' usual retries) until each is
 * delivered or dead again or the time runs out, and closes. Throws INVALID_OPTION when `id` or `endpoint` matches
 * nothing.
 */
export async function retryDeadLetters(webhooks: WebhookOptionsInput, options: RetryOptions = {}): Promise<RetrySummary> {
  const sink = await WebhookSink.open(webhooks, { logger: options.logger, env: options.env });
  try {
    if (options.endpoint !== undefined && !sink.options.endpoints.some((e) => e.name === options.endpoint)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--endpoint ${options.endpoint}: no such endpoint; configured: ${sink.options.endpoints.map((e) => e.name).join(', ') || 'none'}`);
    }
    // Outcomes are recorded from the start: a moved letter can be delivered before requeueDeadLetters returns.
    const seen = new Map<string, 'delivered' | 'dead'>();
    const key = (endpoint: string, id: string) => `${endpoint}\u0000${id}`;
    sink.on('delivered', (d) => seen.set(key(d.endpoint, d.id), 'delivered'));
    sink.on('dead-letter', (d) => seen.set(key(d.endpoint, d.id), 'dead'));
    const moved = await sink.requeueDeadLetters({ id: options.id, endpoint: options.endpoint });
    if (options.id !== undefined && moved.length === 0) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--id ${options.id}: no dead letter has this id in ${sink.options.outboxDir}`);
    }
    const movedKeys = new Set(moved.map((m) => key(m.endpoint, m.id)));
    const until = Date.now() + (options.timeoutMs ?? 60_000);
    while (moved.some((m) => !seen.has(key(m.endpoint, m.id))) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    const outcome = (k: string): 'delivered' | 'dead' | 'pending' => seen.get(k) ?? 'pending';
    let otherDelivered = 0;
    for (const [k, v] of seen) if (v === 'delivered' && !movedKeys.has(k)) otherDelivered++;
    const items = moved.map((m) => ({ ...m, outcome: outcome(key(m.endpoint, m.id)) }));
    return {
      requeued: moved.length,
      delivered: items.filter((i) => i.outcome === 'delivered').length,
      deadAgain: items.filter((i) => i.outcome === 'dead').length,
      pending: items.filter((i) => i.outcome === 'pending').length,
      otherDelivered,
      items,
    };
  } finally {
    // --timeout bounds the whole command: no further drain on close; what is pending stays in the outbox.
    await sink.close(undefined, 0);
  }
}
