/**
 * CRM webhooks for many callmood nodes sharing one Redis: the outbox lives in Redis, so when a node dies (SIGKILL,
 * lost machine) and never comes back, the others deliver what it had accepted. Same promises as the file sink
 * (webhooks.ts): signed, at least once, in order per call and endpoint, the event id as idempotency key, the same
 * retry classification and backoff (shared code: webhook-delivery.ts), dead letters, `callmood webhooks status|retry`.
 *
 * Keys, under `redis.prefix` (P = `redis.outboxPartitions`, E = an endpoint's name):
 *   {prefix}:wh:E:p{i}          stream: partition i of E; a call's events all go to i = fnv1a(callSid) mod P, each entry
 *                               {id, callSid, type, createdAt, body} with body the exact JSON signed and POSTed
 *   {prefix}:wh:E:p{i}:lease    string: the node delivering partition i now (SET NX PX leaseMs, renewed every leaseMs/3)
 *   {prefix}:wh:E:dead          hash: event id → the dead letter (the file sink's DeadLetter record, as JSON)
 *   {prefix}:wh:nodes           sorted set: live nodes, scored by when their heartbeat runs out
 *   {prefix}:wh:meta            hash: `partitions` = P, fixed by the first node: a node configured with another P
 *                               refuses to start (its calls would hash elsewhere and lose their order)
 *
 * Why this design:
 * - Per-call order needs one deliverer per call at a time. A partition per call hash, delivered by the one node that
 *   holds its lease, gives that without any coordination per event; P partitions spread the load over up to P nodes.
 * - The lease is the only fence. Every step that acts on a partition checks it inside Redis, atomically, in a Lua
 *   script: taking (free, or already ours), renewing, reading new entries, claiming pending ones, acknowledging,
 *   dead-lettering, releasing. A node that lost its lease therefore cannot acknowledge or dead-letter another owner's
 *   work, nor read entries away from it. Locally a lease counts only until (time its renewal was sent + 0.9·leaseMs):
 *   past that no new attempt starts, so a node cut off from Redis stops delivering before the lease can move.
 *   What can still happen is a request already in flight when the lease moves: a duplicate, which at-least-once
 *   allows (receivers dedupe by id).
 * - Reads are not blocking (XREADGROUP … BLOCK cannot run in a script, and a blocked read served after the lease
 *   moved would hand entries to a node that no longer delivers them): the owner polls its partitions every
 *   POLL_MS in one script call, and reads at once after its own enqueues reach Redis.
 * - Taking a partition: XGROUP CREATE … MKSTREAM, then XAUTOCLAIM every pending entry (min-idle 0 is safe: the lease
 *   is ours, so whoever read them before is no longer delivering), in stream-ID order, before any new entry: the
 *   pending entries precede every new one, so per-call order survives the move.
 * - Load: each node heartbeats into {prefix}:wh:nodes and takes free partitions up to its fair share,
 *   ceil(P / live nodes), per endpoint; a node above its share (the first of three to start took all) gives the
 *   excess back once their requests in flight are answered. A dead node's heartbeat runs out after leaseMs and so do
 *   its leases: the survivors' shares grow and they take its partitions.
 * - Memory in Redis stays bounded by the backlog: an entry is XACKed and XDELed together once the CRM answered 2xx or
 *   it was dead-lettered (no MAXLEN trimming, which would drop undelivered events). XLEN of a partition is therefore
 *   what is still to be delivered there. Memory in a node: at most about memoryWindow (+ one read) entries per
 *   endpoint, and the enqueue buffer, at most `redis.bufferMaxEvents`.
 * - Enqueue never waits on the network: it routes, appends to an in-memory buffer and returns a promise (one per
 *   tick) resolved once Redis accepted the events (pipelined XADDs, in order). While Redis is unreachable the buffer
 *   holds up to bufferMaxEvents events; more are dropped (the promise rejects), counted (`dropped` in stats) and
 *   logged once per outage, with the count when Redis accepts again; then the buffer is flushed in order.
 * - ioredis: `enableOfflineQueue: false`, so a command issued while Redis is down fails at once and the events stay
 *   in the sink's own bounded, counted buffer rather than in ioredis's unbounded queue; `maxRetriesPerRequest: null`
 *   (with the default autoResendUnfulfilledCommands), so a command already sent when the link broke is sent again
 *   after the reconnect instead of failing: an XADD twice is a duplicate at worst, the scripts check the lease again.
 *   ioredis reconnects by itself (every ≤ 1 s).
 * - Durability is Redis's: with AOF `appendfsync everysec` a Redis crash loses up to ~1 s of events callmood was told
 *   were accepted; `always` loses none (see src/sinks/README.md).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type ChainableCommander } from 'ioredis';
import { EventEmitter } from 'eventemitter3';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { RedisSettings } from '../config/options.js';
import type { CallmoodEvent } from '../stream/events.js';
import { silentLogger, toLogger, type Logger } from '../util/log.js';
import { resolveWebhookOptions, routeMatcher, type WebhookOptions, type WebhookOptionsInput } from '../config/webhook-options.js';
import { HttpEndpoint, attemptDelivery, logDeadLetter, openedSink, webhookBody, type Deliverable, type EndpointStats, type WebhookSinkEvents, type WebhookSinkRuntime } from './webhook-delivery.js';
import type { DeadLetter } from './outbox.js';
import { redactUrl } from '../util/redis-url.js';

/** The consumer group every node reads a partition with (the consumer is the node id). */
export const WEBHOOK_GROUP = 'callmood';
// How often an owner looks for new entries in its partitions, ms.
const POLL_MS = 100;
// Entries read from one partition at a time.
const READ_COUNT = 100;
// Events sent to Redis in one pipeline.
const FLUSH_BATCH = 500;

/** Key names of the Redis outbox. */
export const webhookKeys = {
  stream: (prefix: string, endpoint: string, p: number) => `${prefix}:wh:${endpoint}:p${p}`,
  lease: (prefix: string, endpoint: string, p: number) => `${prefix}:wh:${endpoint}:p${p}:lease`,
  dead: (prefix: string, endpoint: string) => `${prefix}:wh:${endpoint}:dead`,
  nodes: (prefix: string) => `${prefix}:wh:nodes`,
  meta: (prefix: string) => `${prefix}:wh:meta`,
};

/** The partition of a call: 32-bit FNV-1a of its UTF-8 callSid, mod `partitions`. Stable across nodes and versions. */
export function partitionOf(callSid: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(callSid, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}

// Lua, each checking the lease first. KEYS[1] is always the lease, ARGV[1] the node id.
const SCRIPTS = {
  /** Takes a free lease, or renews one already ours: 1, else 0. ARGV[2] = leaseMs. */
  takeLease: `local v = redis.call('get', KEYS[1])
if not v then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
return 0`,
  /** Compare-and-pexpire. */
  renewLease: `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0`,
  /** Compare-and-delete. */
  releaseLease: `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`,
  /** KEYS[2] stream; ARGV[2] group, ARGV[3] cursor, ARGV[4] count: XAUTOCLAIM min-idle 0, or false when not ours. */
  claim: `if redis.call('get', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('xautoclaim', KEYS[2], ARGV[2], ARGV[1], 0, ARGV[3], 'COUNT', ARGV[4])`,
  /**
   * KEYS = lease1, stream1, lease2, stream2, …; ARGV[2] group, ARGV[3] count. New entries of each partition still
   * ours: a flat array {stream, entries, …}; the leases not ours are listed as {stream, false}.
   */
  read: `local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    local r = redis.call('xreadgroup', 'GROUP', ARGV[2], ARGV[1], 'COUNT', ARGV[3], 'STREAMS', KEYS[i + 1], '>')
    if r then table.insert(out, KEYS[i + 1]) table.insert(out, r[1][2]) end
  else
    table.insert(out, KEYS[i + 1]) table.insert(out, false)
  end
end
return out`,
  /** KEYS[2] stream; ARGV[2] group, ARGV[3] entry: XACK + XDEL, 1; 0 when not ours. */
  ack: `if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('xack', KEYS[2], ARGV[2], ARGV[3]) redis.call('xdel', KEYS[2], ARGV[3]) return 1`,
  /** KEYS[2] stream, KEYS[3] dead hash; ARGV[2] group, ARGV[3] entry, ARGV[4] event id, ARGV[5] letter: 1; 0 when not ours. */
  dead: `if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[3], ARGV[4], ARGV[5]) redis.call('xack', KEYS[2], ARGV[2], ARGV[3]) redis.call('xdel', KEYS[2], ARGV[3]) return 1`,
  /**
   * Not lease-checked (an operator's command; it only appends): KEYS[1] dead hash, KEYS[2] stream; ARGV id, callSid,
   * type, createdAt, body. Moves one dead letter back to its partition, atomically: the new entry id, or false when
   * another retry took it first.
   */
  requeue: `if redis.call('hdel', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('xadd', KEYS[2], '*', 'id', ARGV[1], 'callSid', ARGV[2], 'type', ARGV[3], 'createdAt', ARGV[4], 'body', ARGV[5])`,
} as const;

type ScriptName = keyof typeof SCRIPTS;
/** A Redis link with the outbox's scripts defined. */
export type OutboxRedis = Redis & { [K in ScriptName]: (numKeys: number, ...args: Array<string | number>) => Promise<unknown> };

type OutboxPipeline = ChainableCommander & { [K in ScriptName]: (numKeys: number, ...args: Array<string | number>) => OutboxPipeline };
const scripted = (p: ChainableCommander) => p as OutboxPipeline;

/** Connects to Redis the way every part of the Redis outbox does (see the header for the choice of options). */
export function connectOutboxRedis(url: string, name: string): OutboxRedis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: null,
    retryStrategy: (n: number) => Math.min(50 * 2 ** Math.min(n, 5), 1000),
    connectionName: name,
  }) as OutboxRedis;
  for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { lua });
  return redis;
}

/** Waits for `redis` to be ready, for up to `timeoutMs`; throws BACKEND_UNAVAILABLE naming `url` otherwise. */
export async function redisReady(redis: Redis, url: string, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  let last = '';
  const onError = (err: Error) => (last = err.message);
  redis.on('error', onError);
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new CallmoodError(ErrorCodes.BACKEND_UNAVAILABLE, `Redis ${redactUrl(url)} unreachable after ${timeoutMs} ms${last ? `: ${last}` : ''}`)), timeoutMs);
      redis.once('ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
  } finally {
    redis.off('error', onError);
  }
}

/** Fixes P for the deployment on first use; throws INVALID_OPTION when this node's P differs. */
async function checkPartitions(redis: Redis, prefix: string, partitions: number): Promise<void> {
  await redis.hsetnx(webhookKeys.meta(prefix), 'partitions', String(partitions));
  const fixed = await readPartitions(redis, prefix);
  if (fixed !== partitions) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `redis.outboxPartitions is ${partitions} but the webhook outbox under prefix ${prefix} has ${fixed} partitions: every node must use ${fixed} (a call's events would otherwise land in two partitions and lose their order)`,
    );
  }
}

/** Partitions of the deployment (0 when no node has started yet). */
export async function readPartitions(redis: Redis, prefix: string): Promise<number> {
  return Number((await redis.hget(webhookKeys.meta(prefix), 'partitions')) ?? 0);
}

/** Where the sink's Redis link is. */
export type RedisLinkState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Counters of one endpoint of the Redis sink: those of the file sink, and the Redis side. */
export interface RedisEndpointStats extends EndpointStats {
  /** The Redis link. */
  redis: RedisLinkState;
  /** Events of this endpoint waiting in this node's memory for Redis to accept them (gauge). */
  buffered: number;
  /** Events of this endpoint dropped because the buffer was full (counter). */
  dropped: number;
  /** Partitions of this endpoint this node delivers now (gauge). */
  partitions: number;
}

/** Runtime dependencies of the Redis sink. */
export interface RedisWebhookSinkRuntime extends WebhookSinkRuntime {
  /** This node's name in leases and consumer groups; unique per process (default host-pid-random). */
  nodeId?: string;
}

/** An entry of a partition, in this node's memory. */
interface Entry extends Deliverable {
  streamId: string;
}

interface CallQueue {
  callSid: string;
  items: Entry[];
  state: 'idle' | 'ready' | 'sending' | 'waiting';
  timer: NodeJS.Timeout | null;
  retryAt: number;
}

/** A partition this node holds the lease of. */
interface Partition {
  index: number;
  stream: string;
  lease: string;
  /** `claiming` its pending entries, `active` (also reading new ones), `releasing` (no new attempts; given back once idle). */
  state: 'claiming' | 'active' | 'releasing';
  /** Local wall time until which the lease surely holds: renewal sent + 0.9·leaseMs. */
  validUntil: number;
  calls: Map<string, CallQueue>;
  inMemory: number;
  sending: number;
}

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
  /** Events of the batch not yet accepted by Redis. */
  left: number;
  /** Set when one of them was dropped. */
  error: Error | null;
  open: boolean;
}

interface Buffered {
  ep: Endpoint;
  stream: string;
  fields: string[];
  batch: Batch;
}

class Endpoint extends HttpEndpoint {
  readonly matches: (e: CallmoodEvent) => boolean;
  readonly parts = new Map<number, Partition>();
  readonly ready: Array<{ part: Partition; q: CallQueue }> = [];
  sending = 0;
  buffered = 0;
  /** Sum of XLEN over the partitions held, as of the last lease tick. */
  inRedis = 0;
  readonly stats = { enqueued: 0, delivered: 0, failedAttempts: 0, deadLettered: 0, dropped: 0 };

  constructor(o: WebhookOptions['endpoints'][number]) {
    super(o);
    this.matches = routeMatcher(o.events);
  }

  /** Entries read into memory, over the partitions held. */
  get inMemory(): number {
    let n = 0;
    for (const part of this.parts.values()) n += part.inMemory;
    return n;
  }
}

const noop = () => undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fieldsOf(flat: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

/**
 * Delivers callmood events to CRM webhooks through an outbox in Redis shared by every node (see the header).
 * Construct one per process with `createWebhookSink` (sinks/index.ts), `enqueue` every event, `close()` on shutdown.
 */
export class RedisWebhookSink extends EventEmitter<WebhookSinkEvents> {
  /** The resolved webhook options. */
  readonly options: Readonly<WebhookOptions>;
  /** This node's id in leases and consumer groups. */
  readonly nodeId: string;
  /**
   * Resolves once Redis was reached, the partition count checked and the first leases taken; rejects (INVALID_OPTION)
   * when this node's outboxPartitions differs from the deployment's. Waits as long as Redis is unreachable; enqueue
   * works meanwhile (buffered).
   */
  readonly ready: Promise<void>;
  private readonly redisSettings: Readonly<RedisSettings>;
  private readonly log: Logger;
  private readonly endpoints: Endpoint[];
  private readonly redis: OutboxRedis;
  private link: RedisLinkState = 'connecting';
  private downSince = 0;
  private downLogged = false;
  private readonly buffer: Buffered[] = [];
  private batch: Batch | null = null;
  private flushing = false;
  private flushTimer: NodeJS.Timeout | null = null;
  /** Drops since the last time the buffer accepted again (logged once per run). */
  private droppedRun = 0;
  private ticking = false;
  private tickTimer: NodeJS.Timeout | null = null;
  private readLoopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  /** Reads that found nothing new since the last one that found something (for the drain). */
  private emptyReads = 0;
  private started = false;
  private closed = false;
  private stopped = false;
  private closing: Promise<void> | null = null;

  /** Validates the options (throws INVALID_OPTION) and starts connecting; needs `redis.url`. */
  constructor(input: WebhookOptionsInput | Readonly<WebhookOptions>, redis: Readonly<RedisSettings>, runtime: RedisWebhookSinkRuntime = {}) {
    super();
    if (!redis.url) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'the Redis webhook sink needs redis.url');
    this.options = resolveWebhookOptions(input as WebhookOptionsInput, runtime.env);
    this.redisSettings = redis;
    this.log = runtime.logger ? toLogger(runtime.logger) : silentLogger;
    this.nodeId = runtime.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.endpoints = this.options.endpoints.map((o) => new Endpoint(o));
    this.redis = connectOutboxRedis(redis.url, `callmood-webhooks-${this.nodeId}`);
    this.redis.on('ready', () => this.onReady());
    this.redis.on('close', () => this.onDown(null));
    this.redis.on('error', (err: Error) => this.onDown(err));
    this.redis.on('end', () => (this.link = 'closed'));
    this.ready = this.start();
    this.ready.catch(noop);
  }

  /** Constructs a sink and waits for `ready`; closes it and throws if that fails. */
  static async open(input: WebhookOptionsInput | Readonly<WebhookOptions>, redis: Readonly<RedisSettings>, runtime: RedisWebhookSinkRuntime = {}): Promise<RedisWebhookSink> {
    return openedSink(new RedisWebhookSink(input, redis, runtime));
  }

  private async start(): Promise<void> {
    if (this.redis.status !== 'ready') await new Promise<void>((r) => this.redis.once('ready', () => r()));
    await checkPartitions(this.redis, this.redisSettings.prefix, this.redisSettings.outboxPartitions);
    if (this.closed) return;
    this.started = true;
    await this.tick();
    this.tickTimer = setInterval(() => void this.tick(), Math.max(100, Math.floor(this.redisSettings.leaseMs / 3)));
    this.tickTimer.unref();
    this.readLoopDone = this.readLoop();
  }

  // -------------------------------------------------------------------------------------------------------------
  // The Redis link
  // -------------------------------------------------------------------------------------------------------------

  private onReady(): void {
    this.link = 'connected';
    if (this.downLogged) {
      const buffered = this.buffer.length;
      this.log('info', 'CALLMOOD_REDIS_RECOVERED', `webhooks: Redis reachable again after ${Date.now() - this.downSince} ms; sending the ${buffered} events buffered meanwhile${this.droppedRun > 0 ? ` (${this.droppedRun} dropped: the buffer was full)` : ''}`, { buffered, dropped: this.droppedRun });
      this.downLogged = false;
    }
    this.downSince = 0;
    this.kickFlush();
  }

  private onDown(err: Error | null): void {
    if (this.closing && this.stopped) return;
    if (this.link === 'connected' || (err && this.link === 'connecting')) {
      if (this.link === 'connected') this.link = 'reconnecting';
      if (this.downSince === 0) this.downSince = Date.now();
      if (!this.downLogged) {
        this.downLogged = true;
        this.log('warn', 'CALLMOOD_REDIS_DOWN', `webhooks: Redis ${redactUrl(this.redisSettings.url!)} unreachable${err ? ` (${err.message})` : ''}; events are buffered in memory (up to ${this.redisSettings.bufferMaxEvents}) until it is back`, { nodeId: this.nodeId });
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Enqueue: an in-memory buffer, flushed to Redis in order
  // -------------------------------------------------------------------------------------------------------------

  /**
   * Routes an event to the endpoints that take it and buffers it for Redis. Never waits: the returned promise (shared
   * by the events of this tick, never an unhandled rejection if ignored) resolves once Redis accepted them, and
   * rejects with BACKEND_UNAVAILABLE if one was dropped because the buffer was full. Throws CLOSED after close().
   */
  enqueue(event: CallmoodEvent): Promise<void> {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, 'webhook sink used after close()');
    const { prefix, outboxPartitions } = this.redisSettings;
    let fields: string[] | null = null;
    let partition = 0;
    let batch: Batch | null = null;
    for (const ep of this.endpoints) {
      if (!ep.matches(event)) continue;
      if (fields === null) {
        const id = randomUUID();
        const now = Date.now();
        fields = ['id', id, 'callSid', event.callSid, 'type', event.type, 'createdAt', new Date(now).toISOString(), 'body', webhookBody(event, id, now)];
        partition = partitionOf(event.callSid, outboxPartitions);
      }
      batch ??= this.currentBatch();
      ep.stats.enqueued++;
      if (this.buffer.length >= this.redisSettings.bufferMaxEvents) {
        this.drop(ep, batch);
        continue;
      }
      batch.left++;
      ep.buffered++;
      this.buffer.push({ ep, stream: webhookKeys.stream(prefix, ep.o.name, partition), fields, batch });
    }
    return batch === null ? RESOLVED : batch.promise;
  }

  private currentBatch(): Batch {
    if (this.batch) return this.batch;
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(noop);
    const b: Batch = { promise, resolve, reject, left: 0, error: null, open: true };
    this.batch = b;
    setImmediate(() => {
      this.batch = null;
      b.open = false;
      if (b.left === 0) this.settle(b);
      this.kickFlush();
    });
    return b;
  }

  private settle(b: Batch): void {
    if (b.open || b.left > 0) return;
    if (b.error) b.reject(b.error);
    else b.resolve();
  }

  private drop(ep: Endpoint, batch: Batch): void {
    ep.stats.dropped++;
    if (this.droppedRun++ === 0) {
      this.log('error', 'CALLMOOD_WEBHOOK_BUFFER_FULL', `webhooks: ${this.buffer.length} events wait for Redis (redis.bufferMaxEvents); dropping new events until Redis accepts again`, { endpoint: ep.o.name, nodeId: this.nodeId });
    }
    batch.error ??= new CallmoodError(ErrorCodes.BACKEND_UNAVAILABLE, `webhook events dropped: ${this.buffer.length} already wait for Redis (redis.bufferMaxEvents)`);
  }

  private kickFlush(): void {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    void this.flush();
  }

  /** Sends the buffer to Redis in order, a pipeline at a time; stops at the first refusal and tries again later. */
  private async flush(): Promise<void> {
    if (this.flushing || !this.started) return;
    this.flushing = true;
    try {
      while (this.buffer.length > 0 && this.link === 'connected') {
        const items = this.buffer.slice(0, FLUSH_BATCH);
        const pipe = this.redis.pipeline();
        for (const it of items) pipe.xadd(it.stream, '*', ...it.fields);
        let accepted = 0;
        try {
          const res = (await pipe.exec()) ?? [];
          while (accepted < res.length && !res[accepted][0]) accepted++;
        } catch {
          // nothing known accepted: sent again, in order (a duplicate at worst)
        }
        this.buffer.splice(0, accepted);
        for (const it of items.slice(0, accepted)) {
          it.ep.buffered--;
          it.batch.left--;
          this.settle(it.batch);
        }
        if (accepted > 0) this.wake?.();
        if (accepted < items.length) break;
      }
    } finally {
      this.flushing = false;
    }
    if (this.buffer.length === 0 && this.droppedRun > 0) {
      this.log('warn', 'CALLMOOD_WEBHOOK_BUFFER_RECOVERED', `webhooks: Redis accepts events again; ${this.droppedRun} were dropped while the buffer was full`, { dropped: this.droppedRun });
      this.droppedRun = 0;
    }
    if (this.buffer.length > 0 && !this.flushTimer && !this.stopped) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        void this.flush();
      }, 200);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Leases
  // -------------------------------------------------------------------------------------------------------------

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      await this.leaseTick();
    } catch (err) {
      // Redis went away mid-tick: the next tick tries again; leases not renewed in time stop delivery by themselves.
      if (this.link === 'connected') this.log('warn', 'CALLMOOD_WEBHOOK_LEASE_ERROR', `webhooks: lease upkeep failed: ${(err as Error).message}`, { nodeId: this.nodeId });
    } finally {
      this.ticking = false;
    }
  }

  private async leaseTick(): Promise<void> {
    const { prefix, leaseMs, outboxPartitions: P } = this.redisSettings;
    for (const ep of this.endpoints) {
      for (const part of [...ep.parts.values()]) if (Date.now() >= part.validUntil) this.dropPart(ep, part, 'its lease was not renewed in time');
    }
    if (this.link !== 'connected') return;
    const now = Date.now();
    const nodes = webhookKeys.nodes(prefix);
    const hb = await this.redis.multi().zadd(nodes, now + leaseMs, this.nodeId).zremrangebyscore(nodes, '-inf', now).zcard(nodes).exec();
    const live = Math.max(1, Number(hb?.[2]?.[1] ?? 1));
    const share = Math.ceil(P / live);
    // Renew what is held, every endpoint in one pipeline.
    const held = this.heldParts();
    if (held.length > 0) {
      const sentAt = Date.now();
      const pipe = scripted(this.redis.pipeline());
      for (const { part } of held) pipe.renewLease(1, part.lease, this.nodeId, leaseMs);
      const res = (await pipe.exec()) ?? [];
      for (const [i, { ep, part }] of held.entries()) {
        const [err, v] = res[i] ?? [new Error('no answer'), 0];
        if (err) continue;
        if (v === 1) part.validUntil = Math.max(part.validUntil, sentAt + leaseMs * 0.9);
        else this.dropPart(ep, part, 'another node holds its lease now');
      }
    }
    for (const ep of this.endpoints) {
      if (!this.closed) {
        await this.takeShare(ep, share);
        this.giveBackExcess(ep, share);
      }
      for (const part of [...ep.parts.values()]) {
        if (part.state === 'releasing' && part.sending === 0) await this.releasePart(ep, part);
      }
    }
    // Pending gauge: what waits in the partitions held (delivered entries are deleted, so XLEN is the backlog).
    const parts = this.heldParts();
    const inRedis = new Map<Endpoint, number>();
    if (parts.length > 0) {
      const pipe = this.redis.pipeline();
      for (const { part } of parts) pipe.xlen(part.stream);
      const res = (await pipe.exec()) ?? [];
      for (const [i, { ep }] of parts.entries()) {
        const [err, v] = res[i] ?? [new Error('no answer'), 0];
        inRedis.set(ep, (inRedis.get(ep) ?? 0) + (err ? 0 : Number(v)));
      }
    }
    for (const ep of this.endpoints) ep.inRedis = inRedis.get(ep) ?? 0;
  }

  /** The partitions this node holds, over every endpoint. */
  private heldParts(): Array<{ ep: Endpoint; part: Partition }> {
    return this.endpoints.flatMap((ep) => [...ep.parts.values()].map((part) => ({ ep, part })));
  }

  /** Takes free partitions (in random order, so nodes starting together spread) until `share` are held. */
  private async takeShare(ep: Endpoint, share: number): Promise<void> {
    const { prefix, leaseMs, outboxPartitions: P } = this.redisSettings;
    let active = [...ep.parts.values()].filter((p) => p.state !== 'releasing').length;
    if (active >= share) return;
    const free: number[] = [];
    const owners = await this.redis.mget(Array.from({ length: P }, (_, i) => webhookKeys.lease(prefix, ep.o.name, i)));
    for (let i = 0; i < P; i++) if (!ep.parts.has(i) && (owners[i] === null || owners[i] === this.nodeId)) free.push(i);
    for (let i = free.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [free[i], free[j]] = [free[j], free[i]];
    }
    for (const index of free) {
      if (active >= share || this.closed) return;
      const lease = webhookKeys.lease(prefix, ep.o.name, index);
      const sentAt = Date.now();
      if ((await this.redis.takeLease(1, lease, this.nodeId, leaseMs)) !== 1) continue;
      const part: Partition = { index, stream: webhookKeys.stream(prefix, ep.o.name, index), lease, state: 'claiming', validUntil: sentAt + leaseMs * 0.9, calls: new Map(), inMemory: 0, sending: 0 };
      ep.parts.set(index, part);
      active++;
      try {
        await this.claim(ep, part);
      } catch (err) {
        this.dropPart(ep, part, `claiming failed: ${(err as Error).message}`);
        throw err;
      }
    }
  }

  /** A new partition: its group, then every pending entry, in stream order, before any new one. */
  private async claim(ep: Endpoint, part: Partition): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', part.stream, WEBHOOK_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    let cursor = '0-0';
    let claimed = 0;
    for (let i = 0; i < 100_000; i++) {
      const r = (await this.redis.claim(2, part.lease, part.stream, this.nodeId, WEBHOOK_GROUP, cursor, 500)) as [string, Array<[string, string[] | null]>, string[]] | null;
      if (ep.parts.get(part.index) !== part) return;
      if (!r) {
        this.dropPart(ep, part, 'another node took its lease while it was being claimed');
        return;
      }
      claimed += r[1].length;
      this.addEntries(ep, part, r[1]);
      cursor = r[0];
      if (cursor === '0-0') break;
    }
    part.state = 'active';
    this.log(claimed > 0 ? 'info' : 'debug', 'CALLMOOD_WEBHOOK_PARTITION', `webhooks: ${ep.o.name} partition ${part.index} delivered by ${this.nodeId} now${claimed > 0 ? `; ${claimed} events pending from before` : ''}`, { endpoint: ep.o.name, partition: part.index, claimed });
    this.wake?.();
  }

  /** Above its share (more nodes came up): the partitions with the least in memory are given back once idle. */
  private giveBackExcess(ep: Endpoint, share: number): void {
    const active = [...ep.parts.values()].filter((p) => p.state !== 'releasing').sort((a, b) => a.inMemory - b.inMemory);
    for (const part of active.slice(0, Math.max(0, active.length - share))) part.state = 'releasing';
  }

  private async releasePart(ep: Endpoint, part: Partition): Promise<void> {
    this.dropPart(ep, part, null);
    await this.redis.releaseLease(1, part.lease, this.nodeId);
  }

  /** Forgets a partition locally; its entries stay pending in Redis for whoever holds it next. */
  private dropPart(ep: Endpoint, part: Partition, why: string | null): void {
    if (ep.parts.get(part.index) !== part) return;
    ep.parts.delete(part.index);
    for (const q of part.calls.values()) if (q.timer) clearTimeout(q.timer);
    if (why) this.log('warn', 'CALLMOOD_WEBHOOK_PARTITION_LOST', `webhooks: ${ep.o.name} partition ${part.index}: ${why}; ${this.nodeId} stops delivering it (${part.inMemory} events stay pending in Redis)`, { endpoint: ep.o.name, partition: part.index });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Reading and delivering
  // -------------------------------------------------------------------------------------------------------------

  /** Polls the active partitions for new entries (one lease-checked script per round) until the sink stops. */
  private async readLoop(): Promise<void> {
    while (!this.stopped) {
      let got = 0;
      const targets: Array<{ ep: Endpoint; part: Partition }> = [];
      for (const ep of this.endpoints) {
        if (ep.inMemory >= this.options.memoryWindow) continue;
        for (const part of ep.parts.values()) if (part.state === 'active') targets.push({ ep, part });
      }
      if (targets.length > 0 && this.link === 'connected') {
        const keys = targets.flatMap((t) => [t.part.lease, t.part.stream]);
        try {
          const res = (await this.redis.read(keys.length, ...keys, this.nodeId, WEBHOOK_GROUP, READ_COUNT)) as Array<string | Array<[string, string[] | null]> | null>;
          for (let i = 0; i + 1 < res.length; i += 2) {
            const t = targets.find((x) => x.part.stream === res[i]);
            const entries = res[i + 1] as Array<[string, string[] | null]> | null;
            if (!t || t.ep.parts.get(t.part.index) !== t.part) continue;
            if (!entries) {
              this.dropPart(t.ep, t.part, 'another node holds its lease now');
              continue;
            }
            got += entries.length;
            this.addEntries(t.ep, t.part, entries);
          }
        } catch (err) {
          // Redis away: the link's own logs say so. A Redis that came back without its data (no AOF) lost the consumer
          // groups: give the partitions up, the next lease tick takes them again and recreates the groups.
          if (/NOGROUP/.test((err as Error).message)) for (const t of targets) this.dropPart(t.ep, t.part, 'its consumer group is gone (Redis lost its data?)');
        }
      }
      this.emptyReads = got > 0 ? 0 : this.emptyReads + 1;
      if (got >= READ_COUNT) continue;
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          this.wake = null;
          r();
        }, POLL_MS);
        this.wake = () => {
          clearTimeout(t);
          this.wake = null;
          r();
        };
      });
    }
  }

  private addEntries(ep: Endpoint, part: Partition, entries: Array<[string, string[] | null]>): void {
    for (const [streamId, flat] of entries) {
      // A pending entry deleted meanwhile: nothing to send.
      if (!flat) continue;
      const f = fieldsOf(flat);
      if (!f.id || !f.body || !f.callSid) {
        this.log('error', 'CALLMOOD_WEBHOOK_BAD_ENTRY', `webhooks: ${part.stream} entry ${streamId} is not a callmood event; skipped`, { endpoint: ep.o.name });
        continue;
      }
      const created = Date.parse(f.createdAt ?? '');
      const e: Entry = { streamId, id: f.id, callSid: f.callSid, type: f.type ?? 'unknown', body: f.body, createdAtMs: Number.isFinite(created) ? created : Date.now(), attempts: 0, firstAttemptAt: 0 };
      let q = part.calls.get(e.callSid);
      if (!q) {
        q = { callSid: e.callSid, items: [], state: 'idle', timer: null, retryAt: 0 };
        part.calls.set(e.callSid, q);
      }
      q.items.push(e);
      part.inMemory++;
      if (q.state === 'idle') {
        q.state = 'ready';
        ep.ready.push({ part, q });
      }
    }
    this.pump(ep);
  }

  private holds(ep: Endpoint, part: Partition): boolean {
    return ep.parts.get(part.index) === part;
  }

  private pump(ep: Endpoint): void {
    if (this.stopped) return;
    while (ep.sending < ep.o.concurrency && ep.ready.length > 0) {
      const { part, q } = ep.ready.shift()!;
      if (!this.holds(ep, part) || part.state === 'releasing') continue;
      if (Date.now() >= part.validUntil) {
        this.dropPart(ep, part, 'its lease was not renewed in time');
        continue;
      }
      q.state = 'sending';
      ep.sending++;
      part.sending++;
      this.attempt(ep, part, q).catch((err: unknown) => {
        this.log('error', 'CALLMOOD_ERR_INTERNAL', `webhook delivery: ${(err as Error).stack ?? String(err)}`, { endpoint: ep.o.name });
      });
    }
  }

  private async attempt(ep: Endpoint, part: Partition, q: CallQueue): Promise<void> {
    const e = q.items[0];
    const r = await attemptDelivery(ep, e, this.log);
    ep.sending--;
    part.sending--;
    if (r.kind === 'delivered') {
      ep.stats.delivered++;
      this.emit('delivered', r.info);
    } else {
      ep.stats.failedAttempts++;
      this.emit('attempt-failed', r.failed);
    }
    // Lost meanwhile: the next owner sends it again (a duplicate at worst).
    if (!this.holds(ep, part) || (this.stopped && r.kind !== 'delivered')) {
      q.state = 'waiting';
      this.pump(ep);
      return;
    }
    if (r.kind === 'retry') {
      q.state = 'waiting';
      q.retryAt = Date.now() + r.retryInMs;
      q.timer = setTimeout(() => {
        q.timer = null;
        if (this.stopped || !this.holds(ep, part)) return;
        q.state = 'ready';
        ep.ready.push({ part, q });
        this.pump(ep);
      }, r.retryInMs);
      return;
    }
    // Delivered or dead: settled in Redis only while the lease is ours (checked in the script).
    const { prefix } = this.redisSettings;
    let ours = false;
    try {
      ours =
        (r.kind === 'delivered'
          ? await this.redis.ack(2, part.lease, part.stream, this.nodeId, WEBHOOK_GROUP, e.streamId)
          : await this.redis.dead(3, part.lease, part.stream, webhookKeys.dead(prefix, ep.o.name), this.nodeId, WEBHOOK_GROUP, e.streamId, e.id, JSON.stringify(r.letter))) === 1;
    } catch {
      ours = false;
    }
    if (!this.holds(ep, part)) return;
    if (!ours) {
      this.dropPart(ep, part, `could not settle event ${e.id} under its lease`);
      this.pump(ep);
      return;
    }
    if (r.kind === 'dead') {
      ep.stats.deadLettered++;
      logDeadLetter(this.log, r.letter);
      this.emit('dead-letter', r.letter);
    }
    q.items.shift();
    part.inMemory--;
    if (q.items.length > 0) {
      q.state = 'ready';
      ep.ready.push({ part, q });
    } else {
      q.state = 'idle';
      part.calls.delete(q.callSid);
    }
    this.pump(ep);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Inspection, dead letters, shutdown
  // -------------------------------------------------------------------------------------------------------------

  /** Counters per endpoint name; `pending` = this node's buffer + the backlog of the partitions it holds. */
  stats(): Record<string, RedisEndpointStats> {
    const out: Record<string, RedisEndpointStats> = {};
    for (const ep of this.endpoints) {
      const { dropped, ...counters } = ep.stats;
      out[ep.o.name] = { ...counters, pending: ep.buffered + ep.inRedis, inMemory: ep.inMemory, inFlight: ep.sending, redis: this.link, buffered: ep.buffered, dropped, partitions: ep.parts.size };
    }
    return out;
  }

  /** Partitions this node delivers now, per endpoint. */
  heldPartitions(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const ep of this.endpoints) out[ep.o.name] = [...ep.parts.keys()].sort((a, b) => a - b);
    return out;
  }

  /**
   * Resolves true once nothing is pending anywhere (this node's buffer, and every partition of every endpoint in
   * Redis, whichever node delivers it), false if `timeoutMs` passes first.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    const { prefix, outboxPartitions: P } = this.redisSettings;
    for (;;) {
      if (this.buffer.length === 0 && this.endpoints.every((ep) => ep.sending === 0) && this.link === 'connected') {
        try {
          const pipe = this.redis.pipeline();
          for (const ep of this.endpoints) for (let i = 0; i < P; i++) pipe.xlen(webhookKeys.stream(prefix, ep.o.name, i));
          const res = (await pipe.exec()) ?? [];
          if (res.every(([err, v]) => !err && Number(v) === 0)) return true;
        } catch {
          // not now
        }
      }
      if (Date.now() >= until || this.stopped) return false;
      await sleep(20);
    }
  }

  /**
   * Moves dead letters back to their partitions (all, or those whose id is `id`; of one endpoint, or of all), behind
   * the events pending there; whichever node holds a partition delivers them. Safe while other nodes run. Returns
   * the ids moved per endpoint.
   */
  async requeueDeadLetters(filter: { id?: string; endpoint?: string } = {}): Promise<Array<{ endpoint: string; id: string }>> {
    await this.ready;
    const out = await requeueRedisDeadLetters(this.redis, this.redisSettings.prefix, this.endpoints.map((e) => e.o.name), filter);
    for (const m of out) {
      const ep = this.endpoints.find((e) => e.o.name === m.endpoint);
      if (ep) ep.stats.enqueued++;
    }
    this.wake?.();
    return out.map(({ endpoint, id }) => ({ endpoint, id }));
  }

  /**
   * Stops: no new events; what is buffered is sent to Redis and what this node has read is delivered, for up to
   * `drainMs`; then no new attempts, requests in flight get up to `timeoutMs` (then they are cut and their events stay
   * pending in Redis); the leases are released (if still ours) so other nodes take the partitions at once; the
   * heartbeat is removed; the link is closed. Events Redis never accepted by then are lost, and logged.
   */
  close(timeoutMs: number = this.options.closeTimeoutMs, drainMs: number = this.options.drainTimeoutMs): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs, drainMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number, drainMs: number): Promise<void> {
    this.closed = true;
    const t0 = Date.now();
    const until = t0 + drainMs;
    if (this.batch) this.batch.open = false;
    // Only what can go before `until` is worth waiting for: calls backing off past it stay pending in Redis.
    const busy = () =>
      this.buffer.length > 0 ||
      this.endpoints.some((ep) => ep.sending > 0 || (ep.inMemory > 0 && [...ep.parts.values()].some((p) => [...p.calls.values()].some((q) => q.state !== 'waiting' || q.retryAt < until))));
    if (this.started) {
      this.emptyReads = 0;
      while (Date.now() < until && (busy() || this.emptyReads < 1)) await sleep(5);
    }
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.wake?.();
    for (const ep of this.endpoints) for (const part of ep.parts.values()) for (const q of part.calls.values()) if (q.timer) clearTimeout(q.timer);
    const inFlight = () => this.endpoints.some((ep) => ep.sending > 0);
    const cutAt = Date.now() + timeoutMs;
    while (inFlight() && Date.now() < cutAt) await sleep(5);
    if (inFlight()) {
      this.log('warn', 'CALLMOOD_WEBHOOK_CLOSE_TIMEOUT', `close: webhook requests still in flight after ${timeoutMs} ms; cut, their events stay pending in Redis`);
      for (const ep of this.endpoints) ep.cut('sink closed');
      for (let i = 0; i < 200 && inFlight(); i++) await sleep(5);
    }
    if (this.link === 'connected') {
      const pipe = this.redis.pipeline();
      for (const { part } of this.heldParts()) scripted(pipe).releaseLease(1, part.lease, this.nodeId);
      pipe.zrem(webhookKeys.nodes(this.redisSettings.prefix), this.nodeId);
      await Promise.race([pipe.exec().catch(noop), sleep(Math.max(100, timeoutMs))]);
    }
    for (const { ep, part } of this.heldParts()) this.dropPart(ep, part, null);
    if (this.buffer.length > 0) {
      const lost = this.buffer.splice(0);
      this.log('error', 'CALLMOOD_WEBHOOK_LOST', `close: ${lost.length} webhook events never reached Redis (unreachable); they are lost`, { lost: lost.length });
      const err = new CallmoodError(ErrorCodes.BACKEND_UNAVAILABLE, 'the webhook sink closed before Redis accepted these events');
      for (const it of lost) {
        it.ep.buffered--;
        it.batch.error ??= err;
        it.batch.left--;
        this.settle(it.batch);
      }
    }
    this.redis.disconnect();
    this.link = 'closed';
    await this.readLoopDone.catch(noop);
    for (const ep of this.endpoints) ep.agent.destroy();
  }
}

const RESOLVED = Promise.resolve();

/**
 * Moves dead letters back to their partitions through `redis` (see RedisWebhookSink.requeueDeadLetters); used by the
 * sink and by `callmood webhooks retry --redis`. Each move is atomic (HDEL + XADD in one script), so two retries at
 * once move a letter once.
 */
export async function requeueRedisDeadLetters(
  redis: OutboxRedis,
  prefix: string,
  endpoints: readonly string[],
  filter: { id?: string; endpoint?: string } = {},
): Promise<Array<{ endpoint: string; id: string; stream: string; entry: string }>> {
  const P = await readPartitions(redis, prefix);
  const out: Array<{ endpoint: string; id: string; stream: string; entry: string }> = [];
  if (P === 0) return out;
  for (const name of endpoints) {
    if (filter.endpoint !== undefined && name !== filter.endpoint) continue;
    const dead = webhookKeys.dead(prefix, name);
    const letters: DeadLetter[] = [];
    if (filter.id !== undefined) {
      const v = await redis.hget(dead, filter.id);
      if (v) letters.push(JSON.parse(v) as DeadLetter);
    } else {
      for (const v of Object.values(await redis.hgetall(dead))) letters.push(JSON.parse(v) as DeadLetter);
    }
    // Oldest first, so one call's letters go back in the order they died.
    letters.sort((a, b) => a.deadAt.localeCompare(b.deadAt));
    if (letters.length === 0) continue;
    // One pipeline, in that order; each script stays atomic on its own.
    const pipe = scripted(redis.pipeline());
    const streams = letters.map((l) => webhookKeys.stream(prefix, name, partitionOf(l.callSid, P)));
    for (const [i, l] of letters.entries()) {
      const createdAt = typeof l.body.createdAt === 'string' ? l.body.createdAt : new Date().toISOString();
      pipe.requeue(2, dead, streams[i], l.id, l.callSid, l.type, createdAt, JSON.stringify(l.body));
    }
    const res = (await pipe.exec()) ?? [];
    for (const [i, l] of letters.entries()) {
      const [err, entry] = res[i] ?? [new Error('no answer'), null];
      if (err) throw err;
      if (typeof entry === 'string') out.push({ endpoint: name, id: l.id, stream: streams[i], entry });
    }
  }
  return out;
}
