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
import { DEFAULT_OPTIONS, type RedisSettings } from '../config/options.js';
import { WEBHOOK_GROUP, connectOutboxRedis, readPartitions, redisReady, requeueRedisDeadLetters, webhookKeys, type OutboxRedis } from './redis-webhooks.js';
import { redactUrl } from '../util/redis-url.js';

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

/** The summary of the moved letters' outcomes. */
function summarize(items: RetrySummary['items'], otherDelivered: number): RetrySummary {
  const count = (outcome: RetrySummary['items'][number]['outcome']) => items.filter((i) => i.outcome === outcome).length;
  return { requeued: items.length, delivered: count('delivered'), deadAgain: count('dead'), pending: count('pending'), otherDelivered, items };
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
    return summarize(
      moved.map((m) => ({ ...m, outcome: outcome(key(m.endpoint, m.id)) })),
      otherDelivered,
    );
  } finally {
    // --timeout bounds the whole command: no further drain on close; what is pending stays in the outbox.
    await sink.close(undefined, 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The Redis outbox (RedisWebhookSink): safe while servers run, retry included (each move is atomic and the servers
// holding the partitions deliver).
// ---------------------------------------------------------------------------------------------------------------

/**
 * The `redis` settings for the webhook commands: the defaults, then the config file's `redis` section (when `file` is
 * given), then `over` (e.g. `--redis`, `--prefix`); a null url falls back to CALLMOOD_REDIS_URL like the server's.
 */
export function loadRedisConfig(file: string | undefined, over: { url?: string; prefix?: string } = {}, env: NodeJS.ProcessEnv = process.env): RedisSettings {
  const fromFile = file ? ((loadConfigFile(file) as { redis?: Partial<RedisSettings> }).redis ?? {}) : {};
  const r: RedisSettings = { ...DEFAULT_OPTIONS.redis, ...fromFile };
  if (over.url !== undefined) r.url = over.url;
  if (over.prefix !== undefined) r.prefix = over.prefix;
  r.url ??= env.CALLMOOD_REDIS_URL || null;
  return r;
}

/** What `webhooks status --redis` reports of one endpoint. */
export interface RedisEndpointStatus {
  endpoint: string;
  /** Events not yet delivered (nor dead), in all partitions: the streams' length (delivered entries are deleted). */
  pending: number;
  /** Of those, read by a node and not yet acknowledged (being delivered, or waiting for a retry). */
  inDelivery: number;
  dead: number;
  /** Per partition: its backlog and the node holding its lease (null = none: taken at the next lease tick of a live node). */
  partitions: Array<{ partition: number; pending: number; owner: string | null; leaseMsLeft: number | null }>;
}

async function withOutboxRedis<T>(settings: RedisSettings, fn: (redis: OutboxRedis) => Promise<T>): Promise<T> {
  if (!settings.url) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'no Redis: give --redis URL, a config file with redis.url, or CALLMOOD_REDIS_URL');
  const redis = connectOutboxRedis(settings.url, 'callmood-webhooks-cli');
  redis.on('error', () => undefined);
  try {
    await redisReady(redis, settings.url, 5000);
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** The endpoints with keys under the prefix, and the named ones. */
async function outboxEndpoints(redis: OutboxRedis, prefix: string, named: readonly string[]): Promise<string[]> {
  const names = new Set(named);
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:wh:([A-Za-z0-9_-]{1,64}):(?:p\\d+|dead)$`);
  let cursor = '0';
  for (let i = 0; i < 100_000; i++) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:wh:*`, 'COUNT', 1000);
    for (const k of keys) {
      const m = re.exec(k);
      if (m) names.add(m[1]);
    }
    cursor = next;
    if (cursor === '0') break;
  }
  return [...names].sort();
}

/** Pending, in delivery and dead per endpoint of the Redis outbox, and who holds each partition. */
export async function redisWebhookStatus(settings: RedisSettings, endpoints: readonly string[] = []): Promise<RedisEndpointStatus[]> {
  return withOutboxRedis(settings, async (redis) => {
    const { prefix } = settings;
    const P = (await readPartitions(redis, prefix)) || settings.outboxPartitions;
    const out: RedisEndpointStatus[] = [];
    for (const name of await outboxEndpoints(redis, prefix, endpoints)) {
      const pipe = redis.pipeline();
      for (let i = 0; i < P; i++) {
        pipe.xlen(webhookKeys.stream(prefix, name, i));
        pipe.xpending(webhookKeys.stream(prefix, name, i), WEBHOOK_GROUP);
        pipe.get(webhookKeys.lease(prefix, name, i));
        pipe.pttl(webhookKeys.lease(prefix, name, i));
      }
      pipe.hlen(webhookKeys.dead(prefix, name));
      const res = (await pipe.exec()) ?? [];
      const at = (j: number): unknown => (res[j] && !res[j][0] ? res[j][1] : null);
      const row: RedisEndpointStatus = { endpoint: name, pending: 0, inDelivery: 0, dead: Number(at(4 * P) ?? 0), partitions: [] };
      for (let i = 0; i < P; i++) {
        const pending = Number(at(4 * i) ?? 0);
        // No group yet (NOGROUP): nothing read.
        const summary = at(4 * i + 1) as [number] | null;
        const owner = (at(4 * i + 2) as string | null) ?? null;
        const ttl = Number(at(4 * i + 3) ?? -2);
        row.pending += pending;
        row.inDelivery += Number(summary?.[0] ?? 0);
        row.partitions.push({ partition: i, pending, owner, leaseMsLeft: owner !== null && ttl >= 0 ? ttl : null });
      }
      out.push(row);
    }
    return out;
  });
}

/**
 * Moves dead letters of the Redis outbox back to their partitions (all, `id` only, `endpoint` only) and waits up to
 * `timeoutMs` for the running servers to deliver them (or dead-letter them again). Safe while servers run. Without a
 * running server nothing delivers them: they are reported pending and stay in Redis for the next server.
 */
export async function retryRedisDeadLetters(settings: RedisSettings, endpoints: readonly string[], options: RetryOptions = {}): Promise<RetrySummary> {
  return withOutboxRedis(settings, async (redis) => {
    const names = await outboxEndpoints(redis, settings.prefix, endpoints);
    if (options.endpoint !== undefined && !names.includes(options.endpoint)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--endpoint ${options.endpoint}: no such endpoint in Redis under ${settings.prefix}; known: ${names.join(', ') || 'none'}`);
    }
    const moved = await requeueRedisDeadLetters(redis, settings.prefix, names, { id: options.id, endpoint: options.endpoint });
    if (options.id !== undefined && moved.length === 0) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--id ${options.id}: no dead letter has this id in Redis ${redactUrl(settings.url ?? '')} under ${settings.prefix}`);
    }
    const outcome = new Map<string, 'delivered' | 'dead' | 'pending'>(moved.map((m) => [m.entry, 'pending']));
    const until = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      const open = moved.filter((m) => outcome.get(m.entry) === 'pending');
      if (open.length === 0) break;
      const pipe = redis.pipeline();
      for (const m of open) {
        pipe.xrange(m.stream, m.entry, m.entry);
        pipe.hexists(webhookKeys.dead(settings.prefix, m.endpoint), m.id);
      }
      const res = (await pipe.exec()) ?? [];
      for (const [i, m] of open.entries()) {
        const still = (res[2 * i]?.[1] as unknown[] | undefined)?.length ?? 1;
        if (still === 0) outcome.set(m.entry, Number(res[2 * i + 1]?.[1] ?? 0) === 1 ? 'dead' : 'delivered');
      }
      if (Date.now() >= until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return summarize(
      moved.map((m) => ({ endpoint: m.endpoint, id: m.id, outcome: outcome.get(m.entry)! })),
      0,
    );
  });
}
