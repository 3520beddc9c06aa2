/**
 * The shared event bus of many-node mode. Every node appends each call event twice, in one pipeline: to the call's
 * own stream (`{prefix}:call:{callSid}`, keeping its last minute of events and expiring a minute after its last
 * one) and to one stream of all calls (`{prefix}:events`, `XADD … MAXLEN ~ eventsMaxLen`), so Redis memory stays
 * bounded whatever the traffic. A node reads only what its `/events` consumers follow: the streams of the calls they
 * asked for (`?callSid=`), or the stream of all calls if one of them takes every call; a node without consumers reads
 * nothing. Reading the whole bus on every node would make each node's Redis traffic grow with the whole deployment's.
 * A node's own events reach its feed directly, without the round trip (it skips its own entries when reading).
 * A consumer that connects after a call started first gets that call's last `catchUpMs` of events (`catchUp`, one
 * `XRANGE` of the call's stream from the id of that time: stream ids begin with the millisecond they were written).
 *
 * Redis unreachable: the node keeps serving its calls. Events wait in memory, in order, up to `bufferMaxEvents`;
 * past that the oldest are dropped (a live view wants the newest), counted and logged (once per outage, with the
 * count at recovery). When Redis returns, the buffer is written in order and the reader goes on from the last ids it
 * saw, so remote events of the outage arrive late rather than never, as far as the streams kept them.
 *
 * The bus also keeps this node's live calls in Redis and beats for it; calls of a node that stops beating are ended
 * by a survivor as `node-lost` (./liveness.ts), emitted here as `lost` for the server's fan-out.
 *
 * The bus is for live views. The CRM's at-least-once delivery does not depend on it: that is the webhook outbox
 * (src/sinks), which has its own durable Redis keys.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { EventEmitter } from 'eventemitter3';
import type { RedisSettings } from '../config/options.js';
import type { CallEndEvent, CallmoodEvent } from '../stream/events.js';
import { NodeLiveness, heldCall, heldField, withLivenessScripts, type HeldCall } from './liveness.js';
import type { Logger } from '../util/log.js';
import { redactUrl } from '../util/redis-url.js';
import { CallmoodError, ErrorCodes } from '../errors.js';

/** The bus connection's state, as `/healthz` shows it. */
export type BusState = 'connecting' | 'connected' | 'down' | 'closed';

export interface BusStats {
  state: BusState;
  /** This node's id in the stream's entries. */
  node: string;
  /** Events written to Redis by this node. */
  published: number;
  /** Events of other nodes read from Redis. */
  received: number;
  /** Events waiting in memory for Redis. */
  buffered: number;
  /** Events dropped because the buffer was full (since start). */
  dropped: number;
  /** The last Redis error, while not connected. */
  lastError: string | null;
  /** Nodes alive (beating within redis.nodeTtlMs, this one included) at this node's last beat; null before it. */
  nodes: number | null;
  /** Calls of dead nodes this node ended as node-lost (since start). */
  takenOver: number;
}

export interface BusEvents {
  /** An event another node published. */
  remote: (e: CallmoodEvent) => void;
  /** The call-ends of a dead node's calls, which this node took over (./liveness.ts): to go through its fan-out. */
  lost: (events: CallEndEvent[], node: string) => void;
  state: (state: BusState) => void;
}

/** A node id: host, pid and a random part, so a restarted process is a new node. */
export function makeNodeId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

const BATCH = 512;
/**
 * A call's stream keeps its last CALL_KEEP_MS of events (at least `catchUpMs`; XADD MINID ~, so about 150 events of a
 * talkative call) and expires CALL_KEEP_MS after its last one: live readers are never that far behind, and memory per
 * live call stays flat however long the call.
 */
export const CALL_KEEP_MS = 60_000;
/** Longest a read waits before it looks at the consumers' interest again, ms. */
const BLOCK_MS = 250;

/**
 * What this node's feed consumers follow: every call (`all`, non-null), and these calls; each with the time (ms since
 * the epoch) its first consumer connected, where reading a stream new to the node starts.
 */
export interface BusInterest {
  all: number | null;
  calls: ReadonlyMap<string, number>;
}

export class RedisEventBus extends EventEmitter<BusEvents> {
  readonly node: string;
  readonly key: string;
  private readonly writer: Redis;
  private readonly reader: Redis;
  /** Events to write, each with its change to this node's calls hash (a call-start adds, a call-end removes). */
  private readonly buffer: { callSid: string; text: string; held?: { field: string; value: string | null } }[] = [];
  /** The calls this node holds (call-start seen, call-end not yet), by heldField. */
  private readonly held = new Map<string, HeldCall>();
  /** Dead nodes' calls this node took over, until their call-ends are written (they stay in its hash till then). */
  private readonly adopted = new Map<string, HeldCall>();
  /** The calls hash must be rewritten: events carrying its changes were dropped. */
  private needResync = false;
  private readonly liveness: NodeLiveness;
  private upSince: number | null = null;
  private flushing = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Last id read, per stream key. */
  private readonly lastIds = new Map<string, string>();
  private interest: () => BusInterest = () => ({ all: null, calls: new Map() });
  private reading: Promise<void> | null = null;
  private closed = false;
  private st: BusState = 'connecting';
  private outageDropped = 0;
  private counts = { published: 0, received: 0, dropped: 0 };
  private lastError: string | null = null;

  constructor(
    private readonly settings: RedisSettings & { url: string },
    private readonly log: Logger,
    node = makeNodeId(),
  ) {
    super();
    this.node = node;
    this.key = `${settings.prefix}:events`;
    const common = {
      // Our own bounded buffer holds events while Redis is away; ioredis's offline queue would grow without bound.
      enableOfflineQueue: false,
      // A command cut by a disconnect fails at once and its events go back to the buffer.
      maxRetriesPerRequest: 0,
      // At most a quarter of nodeTtlMs between tries, so that after an outage every live node is back and beating well
      // within the TTL the first one back waits before judging (./liveness.ts).
      retryStrategy: (times: number) => Math.min(2000, Math.max(100, Math.floor(settings.nodeTtlMs / 4)), 50 * 2 ** Math.min(times, 6)),
      lazyConnect: false,
    };
    this.writer = new Redis(settings.url, { ...common, connectionName: `callmood-bus-w-${node}` });
    this.reader = new Redis(settings.url, { ...common, connectionName: `callmood-bus-r-${node}` });
    withLivenessScripts(this.writer);
    this.liveness = new NodeLiveness(
      node,
      settings,
      {
        redis: this.writer,
        connectedSince: () => (this.st === 'connected' ? this.upSince : null),
        held: () => [...this.held.values(), ...this.adopted.values()],
        lost: (events, from, _silentMs, calls) => {
          for (const c of calls) this.adopted.set(heldField(c), c);
          this.emit('lost', events, from);
        },
      },
      log,
    );
    this.writer.on('ready', () => this.setState('connected'));
    this.writer.on('error', (err: Error) => (this.lastError = err.message));
    // The reader's errors are the writer's too (same Redis); its loop retries on its own.
    this.reader.on('error', () => undefined);
    this.writer.on('close', () => {
      if (!this.closed) this.setState('down');
    });
  }

  get state(): BusState {
    return this.st;
  }

  /** Resolves once both connections are up and reading has started (rejects after `timeoutMs`). */
  async ready(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.writer.status !== 'ready' || this.reader.status !== 'ready') {
      if (Date.now() > until) throw new CallmoodError(ErrorCodes.BACKEND_UNAVAILABLE, `Redis at ${redactUrl(this.settings.url)} did not answer within ${timeoutMs} ms${this.lastError ? `: ${this.lastError}` : ''}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    this.reading ??= this.readLoop();
  }

  /**
   * Starts this node's beats (./liveness.ts): from now on it counts as alive, and if it stops beating for
   * redis.nodeTtlMs a survivor ends its calls. The server calls it once its model is loaded, so that a long load does
   * not read as a dead node.
   */
  startBeating(): void {
    if (!this.closed) this.liveness.start();
  }

  /** Beats on but takes over no dead node's calls: the server calls it when it starts draining. */
  stopReaping(): void {
    this.liveness.stopReaping();
  }

  /** Tells the bus what this node's consumers follow (asked before every read). */
  setInterest(fn: () => BusInterest): void {
    this.interest = fn;
  }

  /** The stream of one call. */
  callKey(callSid: string): string {
    return `${this.settings.prefix}:call:${callSid}`;
  }

  /** Appends an event; never waits. */
  publish(e: CallmoodEvent): void {
    if (this.closed) return;
    let held: { field: string; value: string | null } | undefined;
    if (e.type === 'call-start' || e.type === 'call-end') {
      const field = heldField(e);
      if (e.type === 'call-start') {
        const c = heldCall(e);
        this.held.set(field, c);
        held = { field, value: JSON.stringify(c) };
      } else {
        this.held.delete(field);
        held = { field, value: null };
      }
    }
    this.buffer.push({ callSid: e.callSid, text: JSON.stringify(e), held });
    this.bound();
    this.scheduleFlush();
  }

  /** Keeps the buffer within bufferMaxEvents by dropping the oldest: counted, and logged once per outage. */
  private bound(): void {
    const over = this.buffer.length - this.settings.bufferMaxEvents;
    if (over <= 0) return;
    const gone = this.buffer.splice(0, over);
    if (gone.some((b) => b.held)) this.needResync = true;
    this.counts.dropped += over;
    if (this.outageDropped === 0) {
      this.log('error', 'CALLMOOD_BUS_DROPPED', `event bus: Redis unreachable and ${this.settings.bufferMaxEvents} events buffered (redis.bufferMaxEvents); dropping the oldest from now on, counted in callmood_bus_dropped_total`);
    }
    this.outageDropped += over;
  }

  /**
   * The events of `callSid` in the last `catchUpMs` (oldest first). Reading that call's stream goes on after the last
   * of them, so nothing is sent twice or skipped between the catch-up and the live events.
   */
  async catchUp(callSid: string): Promise<CallmoodEvent[]> {
    const key = this.callKey(callSid);
    const now = Date.now();
    if (this.settings.catchUpMs === 0 || this.writer.status !== 'ready') {
      if (!this.lastIds.has(key)) this.lastIds.set(key, `${now}-0`);
      return [];
    }
    const rows = (await this.writer.xrange(key, `${Math.max(0, now - this.settings.catchUpMs)}-0`, '+')) as [string, string[]][];
    const out: CallmoodEvent[] = [];
    for (const [, fields] of rows) {
      const text = field(fields, 'e');
      if (text) out.push(JSON.parse(text) as CallmoodEvent);
    }
    const last = rows.length > 0 ? rows[rows.length - 1][0] : `${now}-0`;
    const seen = this.lastIds.get(key);
    if (!seen || compareIds(last, seen) > 0) this.lastIds.set(key, last);
    return out;
  }

  stats(): BusStats {
    return {
      state: this.st,
      node: this.node,
      ...this.counts,
      buffered: this.buffer.length,
      lastError: this.st === 'connected' ? null : this.lastError,
      ...this.liveness.counts,
    };
  }

  /**
   * Writes what is buffered (bounded by `timeoutMs`), leaves the set of live nodes if it holds no call any more (else
   * a survivor ends them as node-lost), stops reading, disconnects.
   */
  async close(timeoutMs = 3000): Promise<void> {
    if (this.closed) return;
    const until = Date.now() + timeoutMs;
    while ((this.buffer.length > 0 || this.flushing) && this.writer.status === 'ready' && Date.now() < until) {
      this.scheduleFlush();
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.buffer.length > 0) this.log('warn', 'CALLMOOD_BUS_CLOSE', `event bus: ${this.buffer.length} events not written to Redis at close`);
    // Bounded too: a Redis that hangs without closing the connection must not hold the shutdown.
    const holdsNothing = this.buffer.length === 0 && !this.flushing && this.held.size === 0 && this.adopted.size === 0;
    await Promise.race([this.liveness.stop(holdsNothing), new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())).unref())]);
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.setState('closed');
    this.reader.disconnect();
    this.writer.disconnect();
    await this.reading?.catch(() => undefined);
  }

  private setState(s: BusState): void {
    if (this.st === s || this.st === 'closed') return;
    const was = this.st;
    this.st = s;
    if (s === 'down') {
      this.log('error', 'CALLMOOD_BUS_DOWN', `event bus: lost Redis at ${redactUrl(this.settings.url)}${this.lastError ? ` (${this.lastError})` : ''}; calls go on, events wait in memory (up to ${this.settings.bufferMaxEvents})`);
    } else if (s === 'connected' && was === 'down') {
      this.log('info', 'CALLMOOD_BUS_UP', `event bus: Redis is back; writing ${this.buffer.length} buffered events${this.outageDropped > 0 ? `; ${this.outageDropped} were dropped during the outage` : ''}`, { buffered: this.buffer.length, dropped: this.outageDropped });
      this.outageDropped = 0;
      // What the outage's buffer dropped may include a call's entry in this node's calls hash.
      this.needResync = true;
    }
    this.upSince = s === 'connected' ? Date.now() : null;
    if (s === 'connected') {
      this.liveness.beatNow();
      this.scheduleFlush();
    }
    this.emit('state', s);
  }

  private scheduleFlush(): void {
    if (this.flushing || (this.buffer.length === 0 && !this.needResync) || this.closed) return;
    this.flushing = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    try {
      if (this.needResync && !this.closed) {
        if (this.writer.status !== 'ready') return;
        this.needResync = false;
        if (!(await this.liveness.resync())) {
          this.needResync = true;
          return this.retrySoon();
        }
      }
      while (this.buffer.length > 0 && !this.closed) {
        if (this.writer.status !== 'ready') return;
        const batch = this.buffer.splice(0, BATCH);
        let ok = 0;
        try {
          const p = this.writer.pipeline();
          const keep = Math.max(CALL_KEEP_MS, this.settings.catchUpMs);
          // Where each event's commands begin in the pipeline: three, and a fourth for a call-start or call-end.
          const at: number[] = [];
          let n = 0;
          for (const { callSid, text, held } of batch) {
            at.push(n);
            const key = this.callKey(callSid);
            p.xadd(key, 'MINID', '~', Date.now() - keep, '*', 'n', this.node, 'e', text);
            p.pexpire(key, keep);
            p.xadd(this.key, 'MAXLEN', '~', this.settings.eventsMaxLen, '*', 'n', this.node, 'e', text);
            n += 3;
            if (held) {
              if (held.value === null) p.hdel(this.liveness.callsKey, held.field);
              else p.hset(this.liveness.callsKey, held.field, held.value);
              n++;
            }
          }
          at.push(n);
          const results = (await p.exec()) ?? [];
          // An event is written when all its commands answered OK; from the first failure on, the batch goes back
          // to the buffer, in order (a half-written event is written again: at least once).
          const okAt = (k: number) => {
            const mine = results.slice(at[k], at[k + 1]);
            return mine.length === at[k + 1] - at[k] && mine.every((r) => r && !r[0]);
          };
          while (ok < batch.length && okAt(ok)) ok++;
          if (ok < batch.length) this.lastError = String(results.slice(at[ok], at[ok + 1]).find((r) => r?.[0])?.[0] ?? 'pipeline failed');
        } catch (err) {
          this.lastError = (err as Error).message;
        }
        this.counts.published += ok;
        // A taken-over call's call-end is written: the call may leave the hash for good.
        for (let k = 0; k < ok; k++) if (batch[k].held?.value === null) this.adopted.delete(batch[k].held!.field);
        if (ok < batch.length) {
          this.buffer.unshift(...batch.slice(ok));
          this.bound();
          return this.retrySoon();
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private retrySoon(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.scheduleFlush();
    }, 250);
    this.retryTimer.unref();
  }

  private async readLoop(): Promise<void> {
    while (!this.closed) {
      try {
        const want = this.interest();
        // One consumer of every call: the stream of all calls covers the rest. Else the streams of the calls asked for.
        // Switching to the stream of all calls, start it early enough for the calls already being read.
        const allFrom = want.all === null || this.lastIds.has(this.key) ? want.all : Math.min(want.all, ...[...this.lastIds.values()].map((id) => Number(id.split('-')[0])));
        const since = new Map<string, number>(allFrom !== null ? [[this.key, allFrom]] : [...want.calls].map(([c, t]) => [this.callKey(c), t]));
        const keys = [...since.keys()];
        for (const k of [...this.lastIds.keys()]) if (!since.has(k)) this.lastIds.delete(k);
        if (keys.length === 0) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        // A stream new to this node is read from when its consumer connected, not from when this loop came round.
        const ids = keys.map((k) => this.lastIds.get(k) ?? (this.lastIds.set(k, `${since.get(k)}-0`), `${since.get(k)}-0`));
        const res = (await this.reader.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...ids)) as [string, [string, string[]][]][] | null;
        if (!res) continue;
        for (const [key, entries] of res) {
          for (const [id, fields] of entries) {
            this.lastIds.set(key, id);
            if (field(fields, 'n') === this.node) continue;
            const text = field(fields, 'e');
            if (!text) continue;
            this.counts.received++;
            try {
              this.emit('remote', JSON.parse(text) as CallmoodEvent);
            } catch (err) {
              this.log('error', 'CALLMOOD_BUS_ERROR', `event bus: an entry ${id} could not be handled: ${(err as Error).message}`);
            }
          }
        }
      } catch (err) {
        if (this.closed) return;
        this.lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
}

/** Orders two stream ids (ms-seq). */
function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}

function field(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
