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
import { describeEnd, ThreadGoneError, WorkerPool, type ThreadEnd } from '../util/worker-pool.js';
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

/** The model fields that must not change across a restart: the calls' streams were built for them. */
const modelShapeKey = (m: ModelMetadata) => JSON.stringify([m.labels, m.window, m.normalization]);

/** Why an inference worker ended, as health's lastError and the failed batches say it. */
function whyGone(end: ThreadEnd): string {
  switch (end.cause) {
    case 'killed':
      return end.reason;
    case 'refused':
      return `inference worker could not load the model: ${end.error instanceof Error ? end.error.message : String(end.error)}`;
    case 'closed':
      return 'inference worker closed';
    default:
      // `crashed: …`, `exited with code N`
      return `inference worker ${describeEnd(end)}`;
  }
}

/**
 * Runs the model in supervised worker threads (see the module comment). The threads, their restarts with backoff,
 * the hang timeout and the health status are util/worker-pool.ts's; the engine adds the model handshake (and the
 * check that a restarted worker loaded the same model), its error messages, and the `onWorker` observer.
 */
export class WorkerEngine extends EventEmitter<{ health: [EngineHealth] }> implements InferenceEngine {
  private closed = false;
  private ready!: { metadata: ModelMetadata; backend: string };
  /** Floats per window, computed once: the batcher asks for every window, and the config check behind it is zod. */
  private size = 0;
  private readonly pool: WorkerPool<NonNullable<WorkerReply['ready']>>;
  private lastError: string | null = null;
  private status: EngineHealth['status'] = 'restarting';
  private sinceMs = Date.now();
  private fatal: string | null = null;

  private constructor(
    private readonly modelDir: string,
    private readonly opts: WorkerEngineOptions,
  ) {
    super();
    // From source (tests, tsx) the worker module is .ts; compiled, .js.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    this.pool = new WorkerPool({
      moduleUrl: new URL(`./engine-worker.${ext}`, import.meta.url).href,
      data: { modelDir },
      threads: opts.threads,
      // A batch goes to the ready worker with the least work queued; none ready, predict() refuses it at once.
      perThread: Infinity,
      ready: (m) => this.handshake(m as WorkerReply),
      restart: {
        max: opts.maxRestarts,
        backoffMs: opts.backoffMs,
        maxBackoffMs: opts.maxBackoffMs,
        // The first load failing is load()'s to report; a changed model is not served again.
        allow: () => this.ready !== undefined && this.fatal === null,
      },
    });
    this.pool.on('started', (t) => {
      try {
        opts.onWorker?.(t.worker, t.slot);
      } catch (err) {
        t.kill(`onWorker threw: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
    this.pool.on('gone', (end) => {
      if (this.ready) this.lastError = this.fatal ?? whyGone(end);
    });
    this.pool.on('health', (h) => this.setStatus(h.status));
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
    const h = this.pool.health();
    return {
      status: this.status,
      healthy: this.healthy,
      readyWorkers: h.ready,
      workers: h.threads,
      restarts: h.restarts,
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
      await engine.pool.start();
    } catch (err) {
      await engine.close();
      throw err instanceof ThreadGoneError ? new CallmoodError(ErrorCodes.INFERENCE, whyGone(err.end)) : err;
    }
    return engine;
  }

  /** A worker's first message: the model it loaded, or why it could not (thrown: the pool ends that worker). */
  private handshake(m: WorkerReply): WorkerReply['ready'] {
    if (m.id !== 0) return undefined;
    if (!m.ready) {
      const e = m.error ?? { message: 'the inference worker did not load the model' };
      throw new CallmoodError((e.code as ErrorCode) ?? ErrorCodes.FILE_READ, e.message);
    }
    if (this.ready && modelShapeKey(m.ready.metadata) !== modelShapeKey(this.ready.metadata)) {
      // The model on disk was replaced by one the live streams were not built for: do not serve it.
      this.fatal = `the model in ${this.modelDir} changed since the server started (labels, window or normalisation differ); restart the server to load it`;
      throw new CallmoodError(ErrorCodes.INFERENCE, this.fatal);
    }
    if (!this.ready) {
      this.ready = m.ready;
      this.size = windowSizeOf(m.ready.metadata);
    }
    return m.ready;
  }

  private setStatus(status: EngineHealth['status']): void {
    if (status === this.status) return;
    this.status = status;
    this.sinceMs = Date.now();
    this.emit('health', this.health());
  }

  predict(x: Float32Array, n: number): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new CallmoodError(ErrorCodes.CLOSED, 'inference worker used after close()'));
    // No ready worker: refused at once. The pool's own count, not the engine's mirrored status, which follows it by an
    // event and would let a batch through to a thread that is already gone.
    if (this.pool.health().ready === 0) {
      const why = this.status === 'failed' ? `the inference worker failed and was not restarted (${this.lastError})` : 'the inference worker is restarting';
      return Promise.reject(new CallmoodError(ErrorCodes.INFERENCE, `${why}; the window was not scored`));
    }
    const timeout = { timeoutMs: this.opts.timeoutMs, timeoutReason: `inference worker did not answer a batch of ${n} within ${this.opts.timeoutMs} ms: terminated` };
    let sent: Promise<WorkerReply>;
    if (x.buffer instanceof SharedArrayBuffer) {
      // The worker reads the batch where it is; the caller leaves it alone until this promise settles.
      sent = this.pool.request<WorkerReply>({ x, n }, timeout);
    } else {
      // An exact-size copy is transferred, not cloned: cloning a view would copy its whole underlying buffer.
      const copy = x.slice(0, n * this.windowSize);
      sent = this.pool.request<WorkerReply>({ x: copy, n }, { ...timeout, transfer: [copy.buffer as ArrayBuffer] });
    }
    return sent.then(
      (m) => {
        if (m.probs) return m.probs;
        throw new CallmoodError((m.error?.code as ErrorCode) ?? ErrorCodes.INFERENCE, `inference failed: ${m.error?.message ?? 'unknown error'}`);
      },
      (err: unknown) => {
        if (!(err instanceof ThreadGoneError)) throw err;
        if (err.end.cause === 'closed') throw new CallmoodError(ErrorCodes.CLOSED, 'inference worker closed');
        throw new CallmoodError(ErrorCodes.INFERENCE, `${whyGone(err.end)}; the window was not scored`);
      },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
  }
}
