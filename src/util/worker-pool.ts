/**
 * A small pool of worker threads that answer requests: the one place where callmood starts its threads, routes
 * their messages, times them out, ends them and replaces them. Feature extraction (data/dataset.ts), replay
 * (replay/run.ts) and the inference engine (stream/engine.ts) all run on it; each keeps its own messages and errors.
 *
 * - Threads: `threads` of them, each started with `startModuleWorker(moduleUrl, data)`; `start()` starts them all.
 * - Ready handshake (optional): until `ready(message)` returns a value, a thread's messages go to it; throwing
 *   refuses the thread (it is ended, and `start()` rejects with what was thrown while the pool is first starting).
 * - Requests: `request(message)` posts `{ ...message, id }`; the reply carrying that `id` settles it with the whole
 *   reply (the caller reads it). A reply without an `id` answers the oldest request its thread holds, for workers
 *   that answer in order. Replies with an id the pool does not hold are ignored.
 * - Bound and queue: a thread holds at most `perThread` requests (default 1); the request goes to the ready thread
 *   holding the fewest (the lowest slot on a tie); when none has room, requests wait in FIFO order.
 * - Timeout (optional, per request): a request not answered within `timeoutMs` means a hung thread: it is terminated
 *   (and replaced, if restarts are on).
 * - A thread gone (crashed, exited, terminated from outside, timed out, refused) rejects every request it held with
 *   a ThreadGoneError saying why; with `restart`, its slot starts a new thread after a backoff that doubles with each
 *   failure in a row, until more than `restart.max` failures: then the slot has failed and stays empty. When every
 *   slot has failed, the queued requests are rejected, and so is every request made after.
 * - Events: `'started'` (a thread, before any message of it is handled; restarts included), `'ready'`, `'gone'`
 *   (a thread ended, with why and whether its slot restarts; emitted before the `'health'` change it causes) and
 *   `'health'` (each change of status).
 */
import type { Worker } from 'node:worker_threads';
import { EventEmitter } from 'eventemitter3';
import { startModuleWorker } from './worker.js';

/** Why a thread ended. */
export type ThreadEnd =
  /** An exception the thread did not catch. */
  | { cause: 'crashed'; error: Error }
  /** The thread exited by itself or was terminated from outside the pool. */
  | { cause: 'exited'; code: number }
  /** The pool ended it: a request timed out, or `kill()` was called (a 'started' listener that throws is a kill). */
  | { cause: 'killed'; reason: string }
  /** Its ready handshake refused it (what `ready` threw), or it could not be started at all. */
  | { cause: 'refused'; error: unknown }
  /** The pool was closed. */
  | { cause: 'closed' };

/** One line for an end, for logs and default messages. */
export function describeEnd(end: ThreadEnd): string {
  switch (end.cause) {
    case 'crashed':
      return `crashed: ${end.error.message}`;
    case 'exited':
      return `exited with code ${end.code}`;
    case 'killed':
      return end.reason;
    case 'refused':
      return `refused: ${end.error instanceof Error ? end.error.message : String(end.error)}`;
    case 'closed':
      return 'the pool was closed';
  }
}

/** The rejection of a request whose thread ended before answering it (or that no thread can take any more). */
export class ThreadGoneError extends Error {
  constructor(
    readonly end: ThreadEnd,
    /** The slot of the thread, or -1 for a request no thread held. */
    readonly slot: number,
  ) {
    super(`worker thread ${describeEnd(end)}`);
    this.name = 'ThreadGoneError';
  }
}

/** Replacement of dead threads. */
export interface RestartOptions {
  /** Failures of one slot before it gives up: more than `max` and it stays empty. */
  max: number;
  /** Delay before the first restart of a slot, ms; doubled with each failure in a row, up to `maxBackoffMs`. Default 0. */
  backoffMs?: number;
  /** Longest delay before a restart, ms. Default: `backoffMs`. */
  maxBackoffMs?: number;
  /** An answered request forgives the slot's failures so far ("in a row"); false counts them all. Default true. */
  resetOnAnswer?: boolean;
  /** Asked after each failure, before the budget: false leaves the slot failed (a fault no restart will mend). */
  allow?: (end: ThreadEnd, slot: number) => boolean;
}

/** What a pool runs; see the module comment. */
export interface WorkerPoolOptions<Ready = true> {
  /** The worker's module (a .ts URL under tsx, .js compiled). */
  moduleUrl: string;
  /** workerData of every thread. */
  data: Record<string, unknown>;
  /** Threads (slots), at least 1. */
  threads: number;
  /** Requests one thread holds at once; default 1. `Infinity`: never queue while a thread is ready. */
  perThread?: number;
  /** The ready handshake: undefined while not ready yet, the ready value once it is; throws to refuse the thread. */
  ready?: (message: unknown, slot: number) => Ready | undefined;
  /** Replacement of dead threads; absent, a dead thread's slot fails at once. */
  restart?: RestartOptions;
}

/** A slot's state: `starting` (its thread has not passed the handshake), `ready`, `backoff` (waiting to restart), `failed`. */
export type SlotState = 'starting' | 'ready' | 'backoff' | 'failed';

/** The pool's health; `status` as the engine reports it (see stream/engine.ts's EngineHealth). */
export interface PoolHealth {
  /** `ok`: every slot ready; `degraded`: some; `restarting`: none yet; `failed`: every slot failed; `closed`. */
  status: 'ok' | 'degraded' | 'restarting' | 'failed' | 'closed';
  ready: number;
  threads: number;
  /** Threads started to replace a dead one, since the pool started. */
  restarts: number;
}

/** A running thread as listeners see it. */
export interface PoolThread {
  readonly slot: number;
  readonly worker: Worker;
  /** Terminates the thread with this reason (its end is `{ cause: 'killed', reason }`). */
  kill(reason: string): void;
}

/** Options of one request. */
export interface RequestOptions {
  /** Buffers to transfer with the message. */
  transfer?: ArrayBuffer[];
  /** Not answered within this many ms: its thread is terminated. */
  timeoutMs?: number;
  /** The end's reason on that timeout; default `did not answer within <timeoutMs> ms`. */
  timeoutReason?: string;
}

export interface WorkerPoolEvents<Ready> {
  started: [PoolThread];
  ready: [PoolThread, Ready];
  /** A slot's thread ended (or could not be started): why, the slot, and whether the slot starts another thread. */
  gone: [ThreadEnd, number, boolean];
  health: [PoolHealth];
}

interface Held {
  resolve: (reply: unknown) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout | null;
}

interface Queued {
  message: object;
  opts: RequestOptions;
  resolve: (reply: unknown) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  index: number;
  state: SlotState;
  thread: Thread | null;
  failures: number;
  backoffTimer: NodeJS.Timeout | null;
}

interface Thread extends PoolThread {
  held: Map<number, Held>;
  /** Set once: the first reason it ends (a kill or a refusal wins over the exit it causes). */
  end: ThreadEnd | null;
  crash: Error | null;
}

/** A pool of worker threads; see the module comment. */
export class WorkerPool<Ready = true> extends EventEmitter<WorkerPoolEvents<Ready>> {
  private readonly slots: Slot[];
  private readonly queue: Queued[] = [];
  private readonly perThread: number;
  private nextId = 1;
  private restarts = 0;
  private closed = false;
  private status: PoolHealth['status'] = 'restarting';
  private firstStart: { pending: number; resolve: () => void; reject: (e: unknown) => void } | null = null;
  private lastEnd: ThreadEnd | null = null;

  constructor(private readonly opts: WorkerPoolOptions<Ready>) {
    super();
    if (!(Number.isInteger(opts.threads) && opts.threads >= 1)) throw new RangeError(`worker pool: threads is ${opts.threads}; allowed: an integer ≥ 1`);
    this.perThread = opts.perThread ?? 1;
    if (!(this.perThread >= 1)) throw new RangeError(`worker pool: perThread is ${this.perThread}; allowed: ≥ 1`);
    this.slots = Array.from({ length: opts.threads }, (_, index) => ({ index, state: 'starting' as const, thread: null, failures: 0, backoffTimer: null }));
  }

  /**
   * Starts every thread. A thread that cannot be started at all throws here (nothing is left running); otherwise
   * resolves once every thread is ready, or rejects with the first failure before that: what `ready` threw, or a
   * ThreadGoneError. Call once.
   */
  start(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.firstStart = { pending: this.slots.length, resolve, reject };
    });
    try {
      for (const s of this.slots) this.spawn(s, true);
    } catch (err) {
      for (const s of this.slots) void s.thread?.worker.terminate();
      this.closed = true;
      throw err;
    }
    return done;
  }

  /** The current health. */
  health(): PoolHealth {
    return { status: this.status, ready: this.readyCount(), threads: this.slots.length, restarts: this.restarts };
  }

  /** Each slot's state, in slot order. */
  states(): SlotState[] {
    return this.slots.map((s) => s.state);
  }

  /**
   * Sends `{ ...message, id }` to a ready thread with room, or queues it; resolves with the reply. Rejects with a
   * ThreadGoneError when its thread ends first (or the pool is closed, or every slot has failed).
   */
  request<Reply = unknown>(message: object, opts: RequestOptions = {}): Promise<Reply> {
    if (this.closed) return Promise.reject(new ThreadGoneError({ cause: 'closed' }, -1));
    if (this.status === 'failed') return Promise.reject(this.failedError());
    return new Promise<Reply>((resolve, reject) => {
      const q: Queued = { message, opts, resolve: resolve as (r: unknown) => void, reject };
      const t = this.pick();
      if (t) this.send(t, q);
      else this.queue.push(q);
    });
  }

  /** Ends every thread; held and queued requests reject with a ThreadGoneError (`closed`). No 'gone' events follow. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.updateStatus();
    const err = new ThreadGoneError({ cause: 'closed' }, -1);
    for (const q of this.queue.splice(0)) q.reject(err);
    const ending: Promise<number>[] = [];
    for (const s of this.slots) {
      if (s.backoffTimer) clearTimeout(s.backoffTimer);
      s.backoffTimer = null;
      const t = s.thread;
      if (!t) continue;
      t.end ??= { cause: 'closed' };
      this.rejectHeld(t, new ThreadGoneError({ cause: 'closed' }, s.index));
      ending.push(t.worker.terminate());
    }
    this.firstStart?.reject(err);
    this.firstStart = null;
    await Promise.all(ending);
  }

  private readyCount(): number {
    return this.slots.filter((s) => s.state === 'ready').length;
  }

  /** What requests get once every slot has failed: the last end seen. */
  private failedError(): ThreadGoneError {
    return new ThreadGoneError(this.lastEnd ?? { cause: 'closed' }, -1);
  }

  private spawn(slot: Slot, first: boolean): void {
    const worker = startModuleWorker(this.opts.moduleUrl, this.opts.data);
    const t: Thread = {
      slot: slot.index,
      worker,
      held: new Map(),
      end: null,
      crash: null,
      kill: (reason) => {
        if (t.end) return;
        t.end = { cause: 'killed', reason };
        void worker.terminate();
      },
    };
    slot.thread = t;
    slot.state = 'starting';
    const handshake = this.opts.ready;
    let ready = !handshake;
    // One listener for the thread's whole life: the handshake first, then replies.
    worker.on('message', (m: unknown) => {
      if (t.end) return;
      if (!ready) {
        let value: Ready | undefined;
        try {
          value = handshake!(m, slot.index);
        } catch (err) {
          t.end = { cause: 'refused', error: err };
          if (first) this.startFailed(err);
          void worker.terminate();
          return;
        }
        if (value === undefined) return;
        ready = true;
        this.becomeReady(slot, t, value, first);
        return;
      }
      this.reply(slot, t, m);
    });
    worker.on('error', (err) => {
      t.crash ??= err;
    });
    worker.on('exit', (code) => this.ended(slot, t, code, first));
    try {
      this.emit('started', t);
    } catch (err) {
      t.kill(`a 'started' listener threw: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (ready) this.becomeReady(slot, t, true as Ready, first);
  }

  private becomeReady(slot: Slot, t: Thread, value: Ready, first: boolean): void {
    if (t.end) return;
    slot.state = 'ready';
    this.emit('ready', t, value);
    if (first && this.firstStart && --this.firstStart.pending === 0) {
      this.firstStart.resolve();
      this.firstStart = null;
    }
    this.updateStatus();
    this.drain();
  }

  private startFailed(err: unknown): void {
    this.firstStart?.reject(err);
    this.firstStart = null;
  }

  private reply(slot: Slot, t: Thread, m: unknown): void {
    const id = (m as { id?: unknown } | null)?.id;
    const key = typeof id === 'number' ? id : t.held.keys().next().value;
    if (key === undefined) return;
    const h = t.held.get(key);
    if (!h) return;
    t.held.delete(key);
    if (h.timer) clearTimeout(h.timer);
    if (this.opts.restart?.resetOnAnswer !== false) slot.failures = 0;
    h.resolve(m);
    this.drain();
  }

  private ended(slot: Slot, t: Thread, code: number, first: boolean): void {
    const end: ThreadEnd = t.end ?? (t.crash ? { cause: 'crashed', error: t.crash } : { cause: 'exited', code });
    t.end = end;
    if (slot.thread === t) slot.thread = null;
    if (this.closed) return;
    this.rejectHeld(t, new ThreadGoneError(end, slot.index));
    if (first && slot.state === 'starting') this.startFailed(new ThreadGoneError(end, slot.index));
    this.slotFailed(slot, end);
  }

  /** A slot lost its thread: count the failure, then restart it after its backoff or give it up. */
  private slotFailed(slot: Slot, end: ThreadEnd): void {
    this.lastEnd = end;
    slot.failures++;
    const r = this.opts.restart;
    const restarting = !!r && (r.allow?.(end, slot.index) ?? true) && slot.failures <= r.max;
    slot.state = restarting ? 'backoff' : 'failed';
    this.emit('gone', end, slot.index, restarting);
    this.updateStatus();
    if (this.status === 'failed') {
      const err = this.failedError();
      for (const q of this.queue.splice(0)) q.reject(err);
    }
    if (!restarting) return;
    const base = r!.backoffMs ?? 0;
    const delay = Math.min(r!.maxBackoffMs ?? base, base * 2 ** (slot.failures - 1));
    slot.backoffTimer = setTimeout(() => {
      slot.backoffTimer = null;
      if (this.closed) return;
      this.restarts++;
      try {
        this.spawn(slot, false);
      } catch (err) {
        // The thread could not even be started: a failure of the slot like any other.
        this.slotFailed(slot, { cause: 'refused', error: err });
      }
    }, delay);
    // Not unref'd: a request may be queued for this slot, and a live thread would hold the process open anyway.
  }

  private rejectHeld(t: Thread, err: ThreadGoneError): void {
    for (const h of t.held.values()) {
      if (h.timer) clearTimeout(h.timer);
      h.reject(err);
    }
    t.held.clear();
  }

  /** The ready thread with room holding the fewest requests (lowest slot on a tie), or null. */
  private pick(): Thread | null {
    let best: Thread | null = null;
    for (const s of this.slots) {
      const t = s.thread;
      if (s.state !== 'ready' || !t || t.end || t.held.size >= this.perThread) continue;
      if (!best || t.held.size < best.held.size) best = t;
    }
    return best;
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const t = this.pick();
      if (!t) return;
      this.send(t, this.queue.shift()!);
    }
  }

  private send(t: Thread, q: Queued): void {
    const id = this.nextId++;
    let timer: NodeJS.Timeout | null = null;
    const ms = q.opts.timeoutMs;
    if (ms !== undefined) {
      timer = setTimeout(() => {
        if (t.held.has(id)) t.kill(q.opts.timeoutReason ?? `did not answer within ${ms} ms`);
      }, ms);
      timer.unref();
    }
    t.held.set(id, { resolve: q.resolve, reject: q.reject, timer });
    t.worker.postMessage({ ...q.message, id }, q.opts.transfer ?? []);
  }

  private updateStatus(): void {
    let status: PoolHealth['status'];
    if (this.closed) status = 'closed';
    else {
      const ready = this.readyCount();
      const failed = this.slots.every((s) => s.state === 'failed');
      status = failed ? 'failed' : ready === this.slots.length ? 'ok' : ready > 0 ? 'degraded' : 'restarting';
    }
    if (status === this.status) return;
    this.status = status;
    this.emit('health', this.health());
  }
}
