/**
 * Inference engines behind the MicroBatcher. `WorkerEngine` (the default for serving) loads the model in a worker
 * thread: its TF.js backend computes there, on the second core, while the main thread keeps every call's audio
 * moving. `InProcessEngine` runs on the calling thread (replay, tests, tools).
 *
 * The worker is supervised: if it dies (an exception, out of memory, terminated) or does not answer a batch within
 * `timeoutMs`, every batch it held is rejected with INFERENCE (each window's track turns that into an `error` event,
 * so no call waits forever), and a new worker loads the same model after a backoff that doubles per failure in a
 * row. Until it is ready, batches are rejected at once. After `maxRestarts` failures in a row the engine gives up
 * (`health().status === 'failed'`): /healthz should then fail so the process is replaced. Every change of health is
 * emitted as a `'health'` event.
 */
import type { Worker } from 'node:worker_threads';
import { EventEmitter } from 'eventemitter3';
import { CallmoodError, ErrorCodes, type ErrorCode } from '../errors.js';
import { startModuleWorker } from '../util/worker.js';
import { initBackend } from '../model/backend.js';
import { loadModel, type ModelMetadata } from '../model/io.js';
import { predictWindows } from '../model/predict.js';
import { featureDims, resolveFeatureConfig } from '../features/config.js';
import type { InferenceEngine } from './batcher.js';

function windowSizeOf(metadata: ModelMetadata): number {
  return metadata.window.frames * featureDims(resolveFeatureConfig(metadata.window.feature));
}

/** Runs the model on this thread. */
export class InProcessEngine implements InferenceEngine {
  private constructor(
    private readonly predictFn: (x: Float32Array, n: number) => Float32Array,
    private readonly dispose: () => void,
    readonly metadata: ModelMetadata,
    readonly windowSize: number,
    readonly classes: number,
  ) {}

  /** Loads a model directory on the process's TF.js backend. */
  static async load(modelDir: string): Promise<InProcessEngine> {
    const { tf } = await initBackend({ log: () => {} });
    const { model, metadata } = await loadModel(modelDir);
    const frames = metadata.window.frames;
    const size = windowSizeOf(metadata);
    const dims = size / frames;
    return new InProcessEngine(
      (x, n) => predictWindows(tf, model, { x, n, frames, dims }, 256),
      () => model.dispose(),
      metadata,
      size,
      metadata.labels.length,
    );
  }

  async predict(x: Float32Array, n: number): Promise<Float32Array> {
    return this.predictFn(x, n);
  }

  async close(): Promise<void> {
    this.dispose();
  }
}

interface WorkerReply {
  id: number;
  probs?: Float32Array;
  error?: { code?: string; message: string };
  ready?: { metadata: ModelMetadata; backend: string };
}

/** Supervision and pool settings of a WorkerEngine; every field optional, see DEFAULT_WORKER_ENGINE_OPTIONS. */
export interface WorkerEngineOptions {
  /** Worker threads, each with its own copy of the model; a batch goes to the one with the least work queued. */
  threads: number;
  /** A batch not answered within this many ms means a hung worker: it is terminated and restarted. */
  timeoutMs: number;
  /** Restarts of one worker in a row (without a batch answered between them) before the engine gives up. */
  maxRestarts: number;
  /** Delay before the first restart, ms; doubled for each failure in a row, up to `maxBackoffMs`. */
  backoffMs: number;
  /** Longest delay between restarts, ms. */
  maxBackoffMs: number;
  /**
   * Called with each inference worker thread as it starts, restarts included (`slot` is its index in the pool), so an
   * operator can follow the threads: their `performance.eventLoopUtilization()`, `getHeapSnapshot()`, their events.
   * A worker ended from outside (`terminate()`) is treated as a crash: its batches fail with INFERENCE and it restarts.
   */
  onWorker?: (worker: Worker, slot: number) => void;
}

/** Defaults: one worker (two measured no faster on a 2-core machine), 10 s timeout, 5 restarts from 100 ms to 5 s. */
export const DEFAULT_WORKER_ENGINE_OPTIONS: Readonly<Omit<WorkerEngineOptions, 'onWorker'>> = Object.freeze({
  threads: 1,
  timeoutMs: 10_000,
  maxRestarts: 5,
  backoffMs: 100,
  maxBackoffMs: 5_000,
});

function resolveWorkerEngineOptions(o: Partial<WorkerEngineOptions>): WorkerEngineOptions {
  const r = { ...DEFAULT_WORKER_ENGINE_OPTIONS, ...o };
  const bad = (f: keyof WorkerEngineOptions, allowed: string) =>
    new CallmoodError(ErrorCodes.INVALID_OPTION, `worker engine: ${f} is ${String(r[f])}; allowed: ${allowed}`);
  if (!(Number.isInteger(r.threads) && r.threads >= 1 && r.threads <= 16)) throw bad('threads', 'an integer in [1, 16]');
  if (!(r.timeoutMs >= 1)) throw bad('timeoutMs', 'ms ≥ 1');
  if (!(Number.isInteger(r.maxRestarts) && r.maxRestarts >= 0)) throw bad('maxRestarts', 'an integer ≥ 0');
  if (!(r.backoffMs >= 0)) throw bad('backoffMs', 'ms ≥ 0');
  if (!(r.maxBackoffMs >= r.backoffMs)) throw bad('maxBackoffMs', 'ms ≥ backoffMs');
  if (r.onWorker !== undefined && typeof r.onWorker !== 'function') throw bad('onWorker', 'a function');
  return r;
}

/**
 * The engine's health. `ok`: every worker is ready. `degraded`: some worker is restarting, another serves.
 * `restarting`: no worker is ready; batches are rejected until one is. `failed`: restarts exhausted (or the model on
 * disk no longer matches the one loaded); every batch is rejected. `closed`: after close().
 */
export interface EngineHealth {
  status: 'ok' | 'degraded' | 'restarting' | 'failed' | 'closed';
  /** True for `ok` and `degraded`: batches are being answered. */
  healthy: boolean;
  /** Worker threads that are loaded and answering. */
  readyWorkers: number;
  /** Worker threads configured. */
  workers: number;
  /** Restarts since the engine loaded (all workers). */
  restarts: number;
  /** The last failure, or null if none. */
  lastError: string | null;
  /** When the status last changed (ms since the epoch). */
  sinceMs: number;
}

interface Pending {
  resolve: (p: Float32Array) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/** One worker thread and what it holds. */
interface Slot {
  index: number;
  worker: Worker | null;
  state: 'loading' | 'ready' | 'backoff' | 'failed';
  waiting: Map<number, Pending>;
  /** Failures since the last answered batch. */
  failures: number;
  /** Why the current worker is being terminated by us (a hang), if it is. */
  killReason: string | null;
  backoffTimer: NodeJS.Timeout | null;
}

/** The model fields that must not change across a restart: the calls' streams were built for them. */
const modelShapeKey = (m: ModelMetadata) => JSON.stringify([m.labels, m.window, m.normalization]);

/** Runs the model in supervised worker threads (see the module comment). */
export class WorkerEngine extends EventEmitter<{ health: [EngineHealth] }> implements InferenceEngine {
  private nextId = 1;
  private closed = false;
  private ready!: { metadata: ModelMetadata; backend: string };
  /** Floats per window, computed once: the batcher asks for every window, and the config check behind it is zod. */
  private size = 0;
  private readonly slots: Slot[];
  private restarts = 0;
  private lastError: string | null = null;
  private status: EngineHealth['status'] = 'restarting';
  private sinceMs = Date.now();
  private fatal: string | null = null;

  private constructor(
    private readonly modelDir: string,
    private readonly opts: WorkerEngineOptions,
  ) {
    super();
    this.slots = Array.from({ length: opts.threads }, (_, index) => ({
      index,
      worker: null,
      state: 'loading' as const,
      waiting: new Map<number, Pending>(),
      failures: 0,
      killReason: null,
      backoffTimer: null,
    }));
  }

  /** The model's metadata, as the worker loaded it. */
  get metadata(): ModelMetadata {
    return this.ready.metadata;
  }

  /** The TF.js backend the worker runs. */
  get backend(): string {
    return this.ready.backend;
  }

  get windowSize(): number {
    return this.size;
  }

  get classes(): number {
    return this.ready.metadata.labels.length;
  }

  /** True while batches are being answered (status `ok` or `degraded`). */
  get healthy(): boolean {
    return this.status === 'ok' || this.status === 'degraded';
  }

  /** The current health (see EngineHealth); changes are also emitted as `'health'` events. */
  health(): EngineHealth {
    return {
      status: this.status,
      healthy: this.healthy,
      readyWorkers: this.slots.filter((s) => s.state === 'ready').length,
      workers: this.slots.length,
      restarts: this.restarts,
      lastError: this.lastError,
      sinceMs: this.sinceMs,
    };
  }

  /**
   * Starts the worker threads and loads `modelDir` in each; resolves once all are ready. A model that fails to load
   * here rejects (no restarts: a wrong directory should stop the server from starting).
   */
  static async load(modelDir: string, options: Partial<WorkerEngineOptions> = {}): Promise<WorkerEngine> {
    const engine = new WorkerEngine(modelDir, resolveWorkerEngineOptions(options));
    try {
      await Promise.all(engine.slots.map((s) => engine.spawn(s)));
    } catch (err) {
      await engine.close();
      throw err;
    }
    engine.updateStatus();
    return engine;
  }

  /** Starts a worker in `slot`; resolves when its model is loaded, rejects if it could not load. */
  private spawn(slot: Slot): Promise<void> {
    // From source (tests, tsx) the worker module is .ts; compiled, .js.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const worker = startModuleWorker(new URL(`./engine-worker.${ext}`, import.meta.url).href, { modelDir: this.modelDir });
    slot.worker = worker;
    slot.state = 'loading';
    slot.killReason = null;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let crash: string | null = null;
      const settle = (err: Error | null) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
      // One listener for the worker's whole life: its first message says whether the model loaded.
      worker.on('message', (m: WorkerReply) => {
        if (m.id === 0) {
          if (m.ready) {
            if (this.ready && modelShapeKey(m.ready.metadata) !== modelShapeKey(this.ready.metadata)) {
              // The model on disk was replaced by one the live streams were not built for: do not serve it.
              this.fatal = `the model in ${this.modelDir} changed since the server started (labels, window or normalisation differ); restart the server to load it`;
              slot.killReason = this.fatal;
              void worker.terminate();
              settle(new CallmoodError(ErrorCodes.INFERENCE, this.fatal));
              return;
            }
            if (!this.ready) {
              this.ready = m.ready;
              this.size = windowSizeOf(m.ready.metadata);
            }
            slot.state = 'ready';
            this.updateStatus();
            settle(null);
          } else {
            const e = m.error ?? { message: 'the inference worker did not load the model' };
            slot.killReason = `inference worker could not load the model: ${e.message}`;
            void worker.terminate();
            settle(new CallmoodError((e.code as ErrorCode) ?? ErrorCodes.FILE_READ, e.message));
          }
          return;
        }
        const w = slot.waiting.get(m.id);
        if (!w) return;
        slot.waiting.delete(m.id);
        clearTimeout(w.timer);
        slot.failures = 0;
        if (m.probs) w.resolve(m.probs);
        else w.reject(new CallmoodError((m.error?.code as ErrorCode) ?? ErrorCodes.INFERENCE, `inference failed: ${m.error?.message ?? 'unknown error'}`));
      });
      worker.on('error', (err) => {
        crash = err.message;
      });
      worker.on('exit', (code) => {
        if (slot.worker === worker) slot.worker = null;
        const why = slot.killReason ?? (crash ? `inference worker crashed: ${crash}` : `inference worker exited with code ${code}`);
        settle(new CallmoodError(ErrorCodes.INFERENCE, why));
        this.onWorkerGone(slot, why);
      });
      // Told once the engine's own listeners are on, so whatever the observer does is seen as it would be otherwise.
      try {
        this.opts.onWorker?.(worker, slot.index);
      } catch (err) {
        slot.killReason = `onWorker threw: ${err instanceof Error ? err.message : String(err)}`;
        void worker.terminate();
      }
    });
  }

  /** A worker is gone: fail what it held and, unless closing, schedule its restart. */
  private onWorkerGone(slot: Slot, why: string): void {
    this.failSlot(slot, new CallmoodError(ErrorCodes.INFERENCE, `${why}; the window was not scored`));
    if (this.closed) return;
    if (!this.ready) {
      // The first load failed; load() reports it.
      slot.state = 'failed';
      return;
    }
    this.lastError = why;
    slot.failures++;
    if (this.fatal || slot.failures > this.opts.maxRestarts) {
      slot.state = 'failed';
      if (this.fatal) this.lastError = this.fatal;
      this.updateStatus();
      return;
    }
    slot.state = 'backoff';
    this.updateStatus();
    const delay = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (slot.failures - 1));
    slot.backoffTimer = setTimeout(() => {
      slot.backoffTimer = null;
      if (this.closed) return;
      this.restarts++;
      // A failed load ends in the worker's exit, which lands back here with one more failure counted.
      this.spawn(slot).catch(() => {});
    }, delay);
    slot.backoffTimer.unref();
  }

  private failSlot(slot: Slot, err: unknown): void {
    for (const w of slot.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    slot.waiting.clear();
  }

  private updateStatus(): void {
    let status: EngineHealth['status'];
    if (this.closed) status = 'closed';
    else {
      const ready = this.slots.filter((s) => s.state === 'ready').length;
      const failed = this.slots.every((s) => s.state === 'failed');
      status = failed ? 'failed' : ready === this.slots.length ? 'ok' : ready > 0 ? 'degraded' : 'restarting';
    }
    if (status === this.status) return;
    this.status = status;
    this.sinceMs = Date.now();
    this.emit('health', this.health());
  }

  predict(x: Float32Array, n: number): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new CallmoodError(ErrorCodes.CLOSED, 'inference worker used after close()'));
    // The ready worker with the least work queued.
    let slot: Slot | null = null;
    for (const s of this.slots) if (s.state === 'ready' && s.worker && (!slot || s.waiting.size < slot.waiting.size)) slot = s;
    if (!slot) {
      const why = this.status === 'failed' ? `the inference worker failed and was not restarted (${this.lastError})` : 'the inference worker is restarting';
      return Promise.reject(new CallmoodError(ErrorCodes.INFERENCE, `${why}; the window was not scored`));
    }
    const target = slot;
    const worker = slot.worker!;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!target.waiting.has(id) || target.worker !== worker) return;
        target.killReason = `inference worker did not answer a batch of ${n} within ${this.opts.timeoutMs} ms: terminated`;
        void worker.terminate();
      }, this.opts.timeoutMs);
      timer.unref();
      target.waiting.set(id, { resolve, reject, timer });
      if (x.buffer instanceof SharedArrayBuffer) {
        // The worker reads the batch where it is; the caller leaves it alone until this promise settles.
        worker.postMessage({ id, x, n });
      } else {
        // An exact-size copy is transferred, not cloned: cloning a view would copy its whole underlying buffer.
        const copy = x.slice(0, n * this.windowSize);
        worker.postMessage({ id, x: copy, n }, [copy.buffer as ArrayBuffer]);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.updateStatus();
    const closedErr = new CallmoodError(ErrorCodes.CLOSED, 'inference worker closed');
    await Promise.all(
      this.slots.map(async (s) => {
        if (s.backoffTimer) clearTimeout(s.backoffTimer);
        this.failSlot(s, closedErr);
        await s.worker?.terminate();
      }),
    );
  }
}
