/**
 * CRM webhooks: every routed event is written to a durable outbox and POSTed, signed, to each endpoint that takes
 * it, at least once.
 *
 * - `enqueue(event)` is cheap and synchronous in effect (route, one JSON.stringify, an array push): it never waits on
 *   the network or the disk. It returns a promise, shared by every event enqueued in the same tick, that resolves
 *   once they are fsync'ed (one write + sync per endpoint per tick).
 * - Per endpoint: events of one call go out one at a time, in enqueue order (the next is sent only after the CRM
 *   answered 2xx to the previous, or it was dead-lettered); different calls go in parallel up to `concurrency`.
 * - 2xx = delivered. 408, 429, 5xx, network errors and timeouts are retried with exponential backoff and jitter,
 *   honouring Retry-After. Other 4xx and 3xx are permanent: the event goes to the dead-letter file at once.
 *   After `maxAttempts` it goes there too; either way the call's next event follows.
 * - A crash loses nothing that was durable: on start the outbox is replayed and undelivered events are sent again,
 *   in order per call. Receivers dedupe by the body's `id`.
 * - `close()` first keeps delivering for up to `drainTimeoutMs` (the call-ends of the calls a shutdown cut would
 *   otherwise wait for the next start of this outbox, which a replaced instance never makes), then keeps the rest.
 */
import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, rmSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { CallmoodEvent } from '../stream/events.js';
import { silentLogger, toLogger, type Logger, type LoggerInput } from '../util/log.js';
import { resolveWebhookOptions, routeMatcher, type WebhookEndpointOptions, type WebhookOptions, type WebhookOptionsInput } from '../config/webhook-options.js';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signWebhook } from './webhook-signature.js';
import { Outbox, errnoText, makeDir, type DeadLetter, type OutboxEntry } from './outbox.js';

/** The JSON body of every delivery. */
export interface WebhookBody {
  /** Unique id of this event (a UUID made when it was enqueued): the idempotency key; the same for every endpoint and every attempt. */
  id: string;
  /** Version of this body's shape. */
  version: 1;
  /** The event's type, e.g. `call-end` or `action`. */
  type: CallmoodEvent['type'];
  callSid: string;
  streamSid: string;
  /** Call time of the event, ms since the stream started. */
  timeMs: number;
  /** Wall time it was enqueued, ISO 8601 UTC. */
  createdAt: string;
  /** The event itself, as on the event feed. */
  event: CallmoodEvent;
}

/** A delivery acknowledged with a 2xx. */
export interface DeliveredInfo {
  endpoint: string;
  id: string;
  callSid: string;
  type: string;
  status: number;
  attempts: number;
  /** From enqueue to the acknowledgement, ms. */
  latencyMs: number;
}

/** An attempt that failed. */
export interface AttemptFailedInfo {
  endpoint: string;
  id: string;
  callSid: string;
  attempt: number;
  /** HTTP status, or null without a response. */
  status: number | null;
  error: string;
  /** Not retried (4xx other than 408/429, or 3xx). */
  permanent: boolean;
  /** Wait before the next attempt, ms; null when none follows. */
  retryInMs: number | null;
}

/** What the sink emits, for metrics. */
export interface WebhookSinkEvents {
  delivered: (info: DeliveredInfo) => void;
  'attempt-failed': (info: AttemptFailedInfo) => void;
  'dead-letter': (letter: DeadLetter) => void;
}

/** Counters of one endpoint (monotonic since start, but `pending`, `inMemory` and `inFlight`, which are gauges). */
export interface EndpointStats {
  enqueued: number;
  delivered: number;
  failedAttempts: number;
  deadLettered: number;
  pending: number;
  inMemory: number;
  inFlight: number;
}

/** Runtime dependencies of the sink. */
export interface WebhookSinkRuntime {
  /** Where log records go: a pino (or pino-compatible) logger, or a `(level, code, message, fields)` function (default: none). */
  logger?: LoggerInput;
  /** Environment the `secretEnv` secrets are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

interface CallQueue {
  callSid: string;
  items: OutboxEntry[];
  head: number;
  state: 'idle' | 'ready' | 'sending' | 'waiting';
  timer: NodeJS.Timeout | null;
  /** Wall time the retry timer fires, while `waiting`. */
  retryAt: number;
  /** Wall time of the first failure since this call's last success, 0 when its last attempt succeeded. */
  failingSince: number;
}

interface PostResult {
  status: number | null;
  error: string | null;
  retryAfterMs: number | null;
}

const USER_AGENT = 'callmood-webhooks/1';
// Retry-After is honoured up to an hour: a larger value is more likely a misconfigured CRM than a plan.
const RETRY_AFTER_CAP_MS = 3_600_000;
const noop = () => undefined;

/** One endpoint: its outbox, its per-call queues and its HTTP agent. */
class Endpoint {
  readonly url: URL;
  readonly matches: (e: CallmoodEvent) => boolean;
  readonly outbox: Outbox;
  readonly agent: http.Agent;
  readonly calls = new Map<string, CallQueue>();
  readonly ready: CallQueue[] = [];
  readonly inFlight = new Set<http.ClientRequest>();
  sending = 0;
  failStreak = 0;
  lastSuccessAt = 0;
  readonly stats = { enqueued: 0, delivered: 0, failedAttempts: 0, deadLettered: 0 };

  constructor(
    readonly o: WebhookEndpointOptions,
    outboxDir: string,
    settings: { memoryWindow: number; compactAtBytes: number },
    log: Logger,
    deliverable: (ep: Endpoint, entries: OutboxEntry[]) => void,
  ) {
    this.url = new URL(o.url);
    this.matches = routeMatcher(o.events);
    this.outbox = new Outbox(
      outboxDir,
      o.name,
      settings,
      log,
      (entries) => deliverable(this, entries),
      () => this.starving(),
    );
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  }

  /**
   * Nothing in memory can be sent now, yet the CRM is not down: every call now failing began failing before the
   * CRM last took an event, so their failures are their own. In an outage the calls begin failing after the last
   * success, and the backlog rightly stays on disk.
   */
  private starving(): boolean {
    if (this.sending > 0 || this.ready.length > 0 || this.lastSuccessAt === 0) return false;
    for (const q of this.calls.values()) if (q.failingSince >= this.lastSuccessAt) return false;
    return true;
  }
}

/**
 * Delivers callmood events to CRM webhooks, signed, in order per call, at least once, through a durable outbox.
 * Construct it once per process (it locks its outbox folder), `enqueue` every event, `close()` on shutdown.
 */
export class WebhookSink extends EventEmitter<WebhookSinkEvents> {
  /** The resolved options. */
  readonly options: Readonly<WebhookOptions>;
  /** Resolves once every outbox is replayed and delivery has started; rejects if an outbox cannot be opened. */
  readonly ready: Promise<void>;
  private readonly log: Logger;
  private readonly endpoints: Endpoint[];
  private readonly lockPath: string | null;
  private nextFlush: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** close() was called: enqueue refuses. */
  private closed = false;
  /** Delivery has stopped (after the drain): no new attempts, no retries. */
  private stopped = false;
  private started = false;

  /** Validates the options (throws INVALID_OPTION), locks the outbox folder and starts replaying it. */
  constructor(input: WebhookOptionsInput | Readonly<WebhookOptions> = {}, runtime: WebhookSinkRuntime = {}) {
    super();
    this.options = resolveWebhookOptions(input as WebhookOptionsInput, runtime.env);
    this.log = runtime.logger ? toLogger(runtime.logger) : silentLogger;
    const settings = { memoryWindow: this.options.memoryWindow, compactAtBytes: this.options.compactAtBytes };
    this.endpoints = this.options.endpoints.map((o) => new Endpoint(o, this.options.outboxDir, settings, this.log, (ep, entries) => this.deliverable(ep, entries)));
    this.lockPath = this.endpoints.length > 0 ? lockOutbox(this.options.outboxDir) : null;
    this.ready = this.start();
    this.ready.catch(noop);
  }

  /** Constructs a sink and waits until its outboxes are replayed. */
  static async open(input: WebhookOptionsInput | Readonly<WebhookOptions> = {}, runtime: WebhookSinkRuntime = {}): Promise<WebhookSink> {
    const sink = new WebhookSink(input, runtime);
    try {
      await sink.ready;
    } catch (err) {
      await sink.close(0, 0).catch(noop);
      throw err;
    }
    return sink;
  }

  private async start(): Promise<void> {
    if (this.endpoints.length === 0) return;
    const known = new Set(this.endpoints.map((e) => e.o.name));
    for (const d of readdirSync(this.options.outboxDir, { withFileTypes: true })) {
      if (d.isDirectory() && !known.has(d.name)) {
        this.log('warn', 'CALLMOOD_WEBHOOK_ORPHAN_OUTBOX', `outbox folder ${join(this.options.outboxDir, d.name)} belongs to no configured endpoint; its events wait there until an endpoint of that name is configured again`);
      }
    }
    const results = await Promise.all(this.endpoints.map((ep) => ep.outbox.open()));
    for (const [i, r] of results.entries()) {
      const ep = this.endpoints[i];
      if (r.pending > 0 || r.torn > 0) {
        this.log('info', 'CALLMOOD_WEBHOOK_REPLAY', `outbox ${ep.o.name}: ${r.pending} undelivered events from before, sending them again`, { endpoint: ep.o.name, pending: r.pending, torn: r.torn });
      }
    }
    this.started = true;
    for (const ep of this.endpoints) this.pump(ep);
  }

  /**
   * Routes an event to the endpoints that take it and queues it in their outboxes. Never waits: the returned promise
   * (shared by the events of this tick, never an unhandled rejection if ignored) resolves once they are on disk, and
   * rejects with FILE_READ if the disk write failed (they then wait in memory, neither durable nor sent, until a later
   * batch writes them; a process stopping meanwhile loses them). Throws CLOSED after
   * close().
   */
  enqueue(event: CallmoodEvent): Promise<void> {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, 'webhook sink used after close()');
    let body: string | null = null;
    let id = '';
    let now = 0;
    for (const ep of this.endpoints) {
      if (!ep.matches(event)) continue;
      if (body === null) {
        id = randomUUID();
        now = Date.now();
        body = JSON.stringify({
          id,
          version: 1,
          type: event.type,
          callSid: event.callSid,
          streamSid: event.streamSid,
          timeMs: event.timeMs,
          createdAt: new Date(now).toISOString(),
          event,
        } satisfies WebhookBody);
      }
      ep.stats.enqueued++;
      ep.outbox.add({ seq: 0, id, callSid: event.callSid, type: event.type, body, createdAtMs: now, size: 0, attempts: 0, firstAttemptAt: 0 });
    }
    return body === null ? RESOLVED : this.scheduleFlush();
  }

  private scheduleFlush(): Promise<void> {
    if (this.nextFlush) return this.nextFlush;
    const p = new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        this.nextFlush = null;
        Promise.all(this.endpoints.map((ep) => ep.outbox.flush())).then(() => resolve(), reject);
      });
    });
    p.catch(noop);
    this.nextFlush = p;
    return p;
  }

  /** Counters per endpoint name. */
  stats(): Record<string, EndpointStats> {
    const out: Record<string, EndpointStats> = {};
    for (const ep of this.endpoints) {
      out[ep.o.name] = { ...ep.stats, pending: ep.outbox.pending, inMemory: ep.outbox.inMemory, inFlight: ep.sending };
    }
    return out;
  }

  /** Resolves true once nothing is pending on any endpoint, false if `timeoutMs` passes first. */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    await this.ready;
    for (;;) {
      await this.scheduleFlush().catch(noop);
      if (this.endpoints.every((ep) => ep.outbox.pending === 0 && ep.sending === 0)) return true;
      if (Date.now() >= until || this.stopped) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Moves dead letters back into the outboxes (all, or those whose id is `id`; of one endpoint, or of all) and
   * delivers them again, behind the events already pending. Returns the ids moved per endpoint.
   */
  async requeueDeadLetters(filter: { id?: string; endpoint?: string } = {}): Promise<Array<{ endpoint: string; id: string }>> {
    await this.ready;
    const out: Array<{ endpoint: string; id: string }> = [];
    for (const ep of this.endpoints) {
      if (filter.endpoint !== undefined && ep.o.name !== filter.endpoint) continue;
      const moved = await ep.outbox.requeueDead((d) => filter.id === undefined || d.id === filter.id);
      ep.stats.enqueued += moved.length;
      for (const d of moved) out.push({ endpoint: ep.o.name, id: d.id });
    }
    return out;
  }

  /**
   * Stops: no new events; what is pending is delivered for up to `drainMs` (retries keep their backoff, and the drain
   * ends early once nothing can be sent before it would end); then no new deliveries, requests in flight get up to
   * `timeoutMs` to answer (then they are cut and their events stay pending), everything queued is written and
   * synced, the outbox is unlocked. Pending events are sent on the next start.
   */
  close(timeoutMs: number = this.options.closeTimeoutMs, drainMs: number = this.options.drainTimeoutMs): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs, drainMs);
    return this.closing;
  }

  /** Delivers pending events until none is left, `drainMs` passed, or nothing can be sent before it passes. */
  private async drainPending(drainMs: number): Promise<void> {
    const pending = () => this.endpoints.reduce((n, ep) => n + ep.outbox.pending, 0);
    const before = pending();
    if (before === 0 || drainMs <= 0 || !this.started) return;
    const t0 = Date.now();
    const until = t0 + drainMs;
    this.log('info', 'CALLMOOD_WEBHOOK_DRAIN', `close: delivering ${before} pending events for up to ${drainMs} ms`, { pending: before });
    // Only events that can go before `until` are worth waiting for: a CRM that is down and backing off, or a disk that
    // refuses writes, leaves the rest on disk at once rather than holding the shutdown for nothing.
    const hopeless = (ep: Endpoint) =>
      ep.sending === 0 &&
      ep.ready.length === 0 &&
      (ep.calls.size > 0 || ep.outbox.failing) &&
      [...ep.calls.values()].every((q) => q.state === 'waiting' && q.retryAt >= until);
    for (;;) {
      await this.scheduleFlush().catch(noop);
      const left = pending();
      const busy = this.endpoints.some((ep) => ep.sending > 0);
      if ((left === 0 && !busy) || Date.now() >= until || this.endpoints.every((ep) => ep.outbox.pending === 0 || hopeless(ep))) {
        const level = left === 0 ? 'info' : 'warn';
        this.log(level, 'CALLMOOD_WEBHOOK_DRAIN', `close: ${before - left} of ${before} pending events delivered in ${Date.now() - t0} ms${left > 0 ? `; ${left} stay in the outbox for the next start` : ''}`, { pending: left });
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async shutdown(timeoutMs: number, drainMs: number): Promise<void> {
    this.closed = true;
    await this.ready.catch(noop);
    await this.drainPending(drainMs);
    this.stopped = true;
    for (const ep of this.endpoints) {
      for (const q of ep.calls.values()) if (q.timer) clearTimeout(q.timer);
    }
    const busy = () => this.endpoints.some((ep) => ep.sending > 0);
    const until = Date.now() + timeoutMs;
    while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    if (busy()) {
      const n = this.endpoints.reduce((s, ep) => s + ep.sending, 0);
      this.log('warn', 'CALLMOOD_WEBHOOK_CLOSE_TIMEOUT', `close: ${n} webhook requests still in flight after ${timeoutMs} ms; cut, their events stay in the outbox`);
      for (const ep of this.endpoints) for (const req of ep.inFlight) req.destroy(new Error('sink closed'));
      for (let i = 0; i < 200 && busy(); i++) await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(this.endpoints.map((ep) => ep.outbox.close().catch((err: unknown) => this.log('error', 'CALLMOOD_WEBHOOK_WRITE_FAILED', `close: ${(err as Error).message}`))));
    for (const ep of this.endpoints) ep.agent.destroy();
    if (this.lockPath) rmSync(this.lockPath, { force: true });
  }

  // -------------------------------------------------------------------------------------------------------------
  // Delivery
  // -------------------------------------------------------------------------------------------------------------

  private deliverable(ep: Endpoint, entries: OutboxEntry[]): void {
    for (const e of entries) {
      let q = ep.calls.get(e.callSid);
      if (!q) {
        q = { callSid: e.callSid, items: [], head: 0, state: 'idle', timer: null, retryAt: 0, failingSince: 0 };
        ep.calls.set(e.callSid, q);
      }
      q.items.push(e);
      if (q.state === 'idle') {
        q.state = 'ready';
        ep.ready.push(q);
      }
    }
    if (this.started) this.pump(ep);
  }

  private pump(ep: Endpoint): void {
    if (this.stopped) return;
    while (ep.sending < ep.o.concurrency && ep.ready.length > 0) {
      const q = ep.ready.shift()!;
      q.state = 'sending';
      ep.sending++;
      this.attempt(ep, q).catch((err: unknown) => {
        this.log('error', 'CALLMOOD_ERR_INTERNAL', `webhook delivery: ${(err as Error).stack ?? String(err)}`, { endpoint: ep.o.name });
      });
    }
  }

  /** The call's next event is done with (delivered or dead): move its queue on. */
  private advance(ep: Endpoint, q: CallQueue): void {
    q.head++;
    // Drop the delivered prefix now and then rather than shift() each time.
    if (q.head >= 256 && q.head * 2 >= q.items.length) {
      q.items = q.items.slice(q.head);
      q.head = 0;
    }
    if (q.head < q.items.length) {
      q.state = 'ready';
      ep.ready.push(q);
    } else {
      q.state = 'idle';
      ep.calls.delete(q.callSid);
    }
  }

  private async attempt(ep: Endpoint, q: CallQueue): Promise<void> {
    const e = q.items[q.head];
    e.attempts++;
    if (e.firstAttemptAt === 0) e.firstAttemptAt = Date.now();
    const r = await this.post(ep, e);
    ep.sending--;
    if (r.status !== null && r.status >= 200 && r.status < 300) {
      if (ep.failStreak > 0) {
        this.log('info', 'CALLMOOD_WEBHOOK_RECOVERED', `endpoint ${ep.o.name} answers again after ${ep.failStreak} failed attempts`, { endpoint: ep.o.name });
        ep.failStreak = 0;
      }
      ep.stats.delivered++;
      ep.lastSuccessAt = Date.now();
      q.failingSince = 0;
      ep.outbox.ack(e);
      this.emit('delivered', { endpoint: ep.o.name, id: e.id, callSid: e.callSid, type: e.type, status: r.status, attempts: e.attempts, latencyMs: Date.now() - e.createdAtMs });
      this.advance(ep, q);
      // Acks are written lazily; a flush per tick at most.
      this.scheduleFlush();
      this.pump(ep);
      return;
    }
    ep.stats.failedAttempts++;
    if (q.failingSince === 0) q.failingSince = Date.now();
    const status = r.status;
    const error = r.error ?? `HTTP ${status}`;
    const permanent = status !== null && status < 500 && status !== 408 && status !== 429;
    const dead = permanent || e.attempts >= ep.o.maxAttempts;
    let retryInMs: number | null = null;
    if (!dead) {
      const b = ep.o.backoff;
      const base = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(e.attempts - 1, 40));
      retryInMs = Math.round(base * (1 - b.jitter * Math.random()));
      if (r.retryAfterMs !== null) retryInMs = Math.max(retryInMs, Math.min(r.retryAfterMs, RETRY_AFTER_CAP_MS));
    }
    if (ep.failStreak++ === 0) {
      this.log('warn', 'CALLMOOD_WEBHOOK_FAILING', `endpoint ${ep.o.name}: ${error}${dead ? '' : `; retrying in ${retryInMs} ms`}`, { endpoint: ep.o.name, id: e.id, callSid: e.callSid, status });
    }
    this.emit('attempt-failed', { endpoint: ep.o.name, id: e.id, callSid: e.callSid, attempt: e.attempts, status, error, permanent, retryInMs });
    if (this.stopped) {
      // Left pending in the outbox for the next start.
      q.state = 'waiting';
      return;
    }
    if (dead) {
      const letter: DeadLetter = {
        id: e.id,
        endpoint: ep.o.name,
        url: ep.o.url,
        callSid: e.callSid,
        type: e.type,
        attempts: e.attempts,
        firstAttemptAt: new Date(e.firstAttemptAt).toISOString(),
        deadAt: new Date().toISOString(),
        status,
        error: permanent ? `${error} (permanent: ${status} is not retried)` : error,
        body: JSON.parse(e.body) as Record<string, unknown>,
      };
      ep.stats.deadLettered++;
      this.log('warn', 'CALLMOOD_WEBHOOK_DEAD_LETTER', `endpoint ${ep.o.name}: event ${e.id} (${e.type}) dead after ${e.attempts} attempts: ${letter.error}`, { endpoint: ep.o.name, id: e.id, callSid: e.callSid });
      ep.outbox.deadLetter(e, letter).then(
        () => this.scheduleFlush(),
        (err: unknown) => this.log('error', 'CALLMOOD_WEBHOOK_WRITE_FAILED', `endpoint ${ep.o.name}: cannot write the dead letter of ${e.id}: ${(err as Error).message}; it stays in the outbox`, { endpoint: ep.o.name, id: e.id }),
      );
      this.emit('dead-letter', letter);
      this.advance(ep, q);
      this.pump(ep);
      return;
    }
    q.state = 'waiting';
    q.retryAt = Date.now() + retryInMs!;
    ep.outbox.maybeLoad();
    q.timer = setTimeout(() => {
      q.timer = null;
      if (this.stopped) return;
      q.state = 'ready';
      ep.ready.push(q);
      this.pump(ep);
    }, retryInMs!);
  }

  private post(ep: Endpoint, e: OutboxEntry): Promise<PostResult> {
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      const settle = (r: PostResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ep.inFlight.delete(req);
        resolve(r);
      };
      const body = Buffer.from(e.body, 'utf8');
      const t = Math.floor(Date.now() / 1000);
      const headers: http.OutgoingHttpHeaders = {
        ...ep.o.headers,
        'Content-Type': 'application/json',
        'Content-Length': body.length,
        'User-Agent': USER_AGENT,
        [EVENT_ID_HEADER]: e.id,
        'Callmood-Event-Type': e.type,
        'Callmood-Attempt': String(e.attempts),
        [SIGNATURE_HEADER]: signWebhook(body, ep.o.secret!, t),
      };
      const mod = ep.url.protocol === 'https:' ? https : http;
      const req = mod.request(ep.url, { method: 'POST', agent: ep.agent, headers });
      ep.inFlight.add(req);
      const timer = setTimeout(() => req.destroy(new Error(`no response within ${ep.o.timeoutMs} ms`)), ep.o.timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => settle({ status: null, error: err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message, retryAfterMs: null }));
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
        if (status >= 200 && status < 300) {
          res.resume();
          settle({ status, error: null, retryAfterMs: null });
          return;
        }
        // Keep the start of the CRM's answer for the dead letter; drain the rest so the socket can be reused.
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < 300) text += chunk;
        });
        const done = () => settle({ status, error: `HTTP ${status}${text ? `: ${text.slice(0, 300).replace(/\s+/g, ' ').trim()}` : ''}`, retryAfterMs });
        res.on('end', done);
        res.on('error', done);
        res.on('aborted', done);
      });
      req.end(body);
    });
  }
}

const RESOLVED = Promise.resolve();

/** Retry-After as delay-seconds or an HTTP date, in ms from now; null when absent or unreadable. */
export function parseRetryAfter(v: string | undefined): number | null {
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

/** What a lock file says of its holder: PID, start time (/proc/PID/stat field 22) and boot id, when they were known. */
interface LockHolder {
  pid: number;
  startTime: string | null;
  bootId: string | null;
}

/**
 * Start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat, see proc(5)); null when the
 * process does not exist or there is no /proc. A PID is reused, a PID with its start time is not (within one boot).
 */
function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2, the command name, is in parentheses and may itself hold spaces and ')': count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state), so field 22 is fields[19].
    const t = fields[19];
    return t !== undefined && /^\d+$/.test(t) ? t : null;
  } catch {
    return null;
  }
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function readHolder(path: string): LockHolder | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
  // Older versions wrote the PID alone.
  if (/^\d+$/.test(text)) return { pid: Number(text), startTime: null, bootId: null };
  try {
    const o = JSON.parse(text) as Partial<LockHolder>;
    if (!Number.isInteger(o.pid) || (o.pid as number) <= 0) return null;
    return { pid: o.pid as number, startTime: typeof o.startTime === 'string' ? o.startTime : null, bootId: typeof o.bootId === 'string' ? o.bootId : null };
  } catch {
    return null;
  }
}

/** Whether the process that wrote a lock still runs; a PID now held by another process (or this one, reborn) is not it. */
function holderAlive(h: LockHolder): boolean {
  const boot = bootId();
  if (h.bootId !== null && boot !== null && h.bootId !== boot) return false;
  if (h.startTime === null) {
    // A lock of an older version: this process never wrote it, so its PID being ours is reuse (a container's PID 1).
    return h.pid !== process.pid && isRunning(h.pid);
  }
  const now = processStartTime(h.pid);
  if (now !== null) return now === h.startTime;
  // No such process, or no /proc here (not Linux): the PID alone is all there is to go by.
  return processStartTime(process.pid) === null ? isRunning(h.pid) : false;
}

/**
 * Takes `<outboxDir>/lock`: two processes appending to and compacting one outbox would corrupt it. The lock names
 * its holder by PID, process start time and boot id, so a lock left by a process that died is taken over even when
 * its PID now belongs to another live process, as it always does in a container where callmood is PID 1 before and
 * after a crash. (Processes in other PID namespaces sharing the folder cannot see each other: give each its own.)
 */
function lockOutbox(outboxDir: string): string {
  try {
    makeDir(outboxDir);
  } catch (err) {
    throw new CallmoodError(ErrorCodes.FILE_READ, `cannot create the webhook outbox folder ${outboxDir}: ${errnoText(err)}`, { cause: err });
  }
  const path = join(outboxDir, 'lock');
  const me: LockHolder = { pid: process.pid, startTime: processStartTime(process.pid), bootId: bootId() };
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(path, 'wx');
      try {
        writeSync(fd, `${JSON.stringify(me)}\n`);
      } finally {
        closeSync(fd);
      }
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new CallmoodError(ErrorCodes.FILE_READ, `cannot lock the webhook outbox ${path}: ${errnoText(err)}`, { cause: err });
      }
      const holder = existsSync(path) ? readHolder(path) : null;
      if (holder !== null && holderAlive(holder)) {
        const self = holder.pid === process.pid;
        throw new CallmoodError(
          ErrorCodes.INVALID_OPTION,
          `webhook outbox ${outboxDir} is in use by process ${holder.pid}${self ? ' (this one: one WebhookSink per outbox)' : ''}; stop it first, or give this one another outboxDir`,
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new CallmoodError(ErrorCodes.INVALID_OPTION, `webhook outbox ${outboxDir}: cannot take its lock ${path}`);
}

function isRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
