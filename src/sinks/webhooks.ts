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
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, rmSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { CallmoodEvent } from '../stream/events.js';
import { silentLogger, toLogger, type Logger, type LoggerInput } from '../util/log.js';
import { resolveWebhookOptions, routeMatcher, type WebhookEndpointOptions, type WebhookOptions, type WebhookOptionsInput } from '../config/webhook-options.js';
import { Outbox, errnoText, makeDir, type OutboxEntry } from './outbox.js';
import { HttpEndpoint, attemptDelivery, logDeadLetter, openedSink, webhookBody, type EndpointStats, type WebhookSinkEvents, type WebhookSinkRuntime } from './webhook-delivery.js';

export { parseRetryAfter, type WebhookBody, type DeliveredInfo, type AttemptFailedInfo, type WebhookSinkEvents, type EndpointStats, type WebhookSinkRuntime } from './webhook-delivery.js';

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

const noop = () => undefined;

/** One endpoint: its outbox, its per-call queues and its HTTP agent. */
class Endpoint extends HttpEndpoint {
  readonly matches: (e: CallmoodEvent) => boolean;
  readonly outbox: Outbox;
  readonly calls = new Map<string, CallQueue>();
  readonly ready: CallQueue[] = [];
  sending = 0;
  readonly stats = { enqueued: 0, delivered: 0, failedAttempts: 0, deadLettered: 0 };

  constructor(
    o: WebhookEndpointOptions,
    outboxDir: string,
    settings: { memoryWindow: number; compactAtBytes: number },
    log: Logger,
    deliverable: (ep: Endpoint, entries: OutboxEntry[]) => void,
  ) {
    super(o);
    this.matches = routeMatcher(o.events);
    this.outbox = new Outbox(
      outboxDir,
      o.name,
      settings,
      log,
      (entries) => deliverable(this, entries),
      () => this.starving(),
    );
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
    return openedSink(new WebhookSink(input, runtime));
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
        body = webhookBody(event, id, now);
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
      for (const ep of this.endpoints) ep.cut('sink closed');
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
    const r = await attemptDelivery(ep, e, this.log);
    ep.sending--;
    if (r.kind === 'delivered') {
      ep.stats.delivered++;
      q.failingSince = 0;
      ep.outbox.ack(e);
      this.emit('delivered', r.info);
      this.advance(ep, q);
      // Acks are written lazily; a flush per tick at most.
      this.scheduleFlush();
      this.pump(ep);
      return;
    }
    ep.stats.failedAttempts++;
    if (q.failingSince === 0) q.failingSince = Date.now();
    this.emit('attempt-failed', r.failed);
    if (this.stopped) {
      // Left pending in the outbox for the next start.
      q.state = 'waiting';
      return;
    }
    if (r.kind === 'dead') {
      const letter = r.letter;
      ep.stats.deadLettered++;
      logDeadLetter(this.log, letter);
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
    q.retryAt = Date.now() + r.retryInMs;
    ep.outbox.maybeLoad();
    q.timer = setTimeout(() => {
      q.timer = null;
      if (this.stopped) return;
      q.state = 'ready';
      ep.ready.push(q);
      this.pump(ep);
    }, r.retryInMs);
  }
}

const RESOLVED = Promise.resolve();

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
