/**
 * One model shared by all calls: windows from many calls are gathered for a few milliseconds and run as one
 * batch, which costs far less per window than one inference each (bench/RESULTS.md, "The shipped model's
 * inference"). The engine may run in a worker thread, so the event loop that carries every call's audio stays free.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';

/**
 * Runs a batch of windows: `x` holds n windows of `windowSize` floats (it may be longer); resolves to n × classes
 * probabilities. The caller reuses `x` once the promise settles.
 */
export interface InferenceEngine {
  readonly windowSize: number;
  readonly classes: number;
  predict(x: Float32Array, n: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Micro-batching options. */
export interface BatcherOptions {
  /** Largest batch run at once. */
  maxBatch: number;
  /** Longest a window waits for others before its batch runs (ms). */
  maxWaitMs: number;
  /** Batches allowed in flight at once (1 keeps results in submission order and the engine busy). */
  maxInFlight: number;
}

/** Defaults: batches of up to 32 (the cheapest size per window on wasm; see BatchSettings), at most 5 ms of gathering. */
export const DEFAULT_BATCHER_OPTIONS: Readonly<BatcherOptions> = Object.freeze({ maxBatch: 32, maxWaitMs: 5, maxInFlight: 1 });

/**
 * Batch buffers live in shared memory: a worker engine reads the windows where the batcher wrote them, so a batch
 * crosses to the inference thread without a copy: posting a shared view costs the main thread far less than copying
 * and transferring a fresh buffer (bench/batch-transfer.ts; figures in bench/RESULTS.md).
 */
function sharedFloats(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * Float32Array.BYTES_PER_ELEMENT));
}

/**
 * Batch buffers back from the engine, kept for the next batches: a fresh maxBatch × windowSize array per batch is
 * garbage to collect (and, being outside the JavaScript heap, it pushes V8 toward full collections). A batcher keeps
 * its own pool; offline replay shares one across the files a thread replays, large enough for the batches one
 * segment queues at once.
 */
export class BufferPool {
  private readonly free: Float32Array[] = [];

  /** @param max buffers kept; more given back are dropped */
  constructor(readonly max: number) {
    if (!(Number.isInteger(max) && max >= 0)) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `buffer pool size is ${max}; allowed: an integer ≥ 0`);
  }

  /** A buffer of exactly `length` floats: a kept one if there is one of that length, else a new one. */
  take(length: number): Float32Array {
    const free = this.free;
    for (let i = free.length - 1; i >= 0; i--) {
      const x = free[i];
      if (x.length !== length) continue;
      free[i] = free[free.length - 1];
      free.pop();
      return x;
    }
    return sharedFloats(length);
  }

  give(x: Float32Array): void {
    if (this.free.length < this.max) this.free.push(x);
  }

  /** Buffers kept now. */
  get size(): number {
    return this.free.length;
  }
}

interface Pending {
  resolve: (probs: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Batch {
  x: Float32Array;
  waiting: Pending[];
}

/** Gathers windows into batches for an InferenceEngine. */
export class MicroBatcher {
  private readonly opts: BatcherOptions;
  /** Batches full or due, waiting for the engine, oldest first; the last one may still be filling. */
  private batches: Batch[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** The last batch's wait is over: run it as soon as the engine is free. */
  private due = false;
  private inFlight = 0;
  private closed = false;
  /** Batch buffers back from the engine, reused (see BufferPool). */
  private readonly pool: BufferPool;
  /** Batches run so far and windows in them (for metrics). */
  readonly stats = { batches: 0, windows: 0, lastBatchMs: 0 };

  /** @param pool where batch buffers come from and go back to; default: a pool of this batcher's own, 2 × maxInFlight */
  constructor(private readonly engine: InferenceEngine, options: Partial<BatcherOptions> = {}, pool?: BufferPool) {
    this.opts = { ...DEFAULT_BATCHER_OPTIONS, ...options };
    if (!(Number.isInteger(this.opts.maxBatch) && this.opts.maxBatch >= 1)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `maxBatch is ${this.opts.maxBatch}; allowed: an integer ≥ 1`);
    }
    if (!(this.opts.maxWaitMs >= 0)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `maxWaitMs is ${this.opts.maxWaitMs}; allowed: ≥ 0`);
    }
    if (!(Number.isInteger(this.opts.maxInFlight) && this.opts.maxInFlight >= 1)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `maxInFlight is ${this.opts.maxInFlight}; allowed: an integer ≥ 1`);
    }
    this.pool = pool ?? new BufferPool(2 * this.opts.maxInFlight);
  }

  /** Queues one window (copied) and resolves to its probabilities. */
  infer(window: Float32Array): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new CallmoodError(ErrorCodes.CLOSED, 'inference used after close()'));
    const size = this.engine.windowSize;
    if (window.length !== size) {
      return Promise.reject(
        new CallmoodError(ErrorCodes.INVALID_OPTION, `window has ${window.length} values; the model takes ${size}`),
      );
    }
    return new Promise((resolve, reject) => {
      let last = this.batches[this.batches.length - 1];
      if (!last || last.waiting.length >= this.opts.maxBatch) {
        last = { x: this.pool.take(this.opts.maxBatch * size), waiting: [] };
        this.batches.push(last);
      }
      last.x.set(window, last.waiting.length * size);
      last.waiting.push({ resolve, reject });
      if (last.waiting.length >= this.opts.maxBatch) this.pump();
      else if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.due = true;
          this.pump();
        }, this.opts.maxWaitMs);
      }
    });
  }

  /** Windows waiting for a batch to run. */
  get queued(): number {
    return this.batches.reduce((n, b) => n + b.waiting.length, 0);
  }

  /** Runs full batches, and the filling one once its wait is over, while the engine has room. */
  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.batches.length > 0) {
      const first = this.batches[0];
      const full = first.waiting.length >= this.opts.maxBatch;
      if (!full && !(this.due && this.batches.length === 1)) break;
      this.batches.shift();
      if (this.batches.length === 0) this.due = false;
      this.run(first);
    }
  }

  private run(batch: Batch): void {
    const n = batch.waiting.length;
    const k = this.engine.classes;
    this.inFlight++;
    const started = performance.now();
    this.engine
      .predict(batch.x.subarray(0, n * this.engine.windowSize), n)
      .then(
        (probs) => {
          this.stats.batches++;
          this.stats.windows += n;
          this.stats.lastBatchMs = performance.now() - started;
          for (let i = 0; i < n; i++) batch.waiting[i].resolve(probs.slice(i * k, (i + 1) * k));
        },
        (err: unknown) => {
          for (const p of batch.waiting) p.reject(err);
        },
      )
      .finally(() => {
        this.pool.give(batch.x);
        this.inFlight--;
        // Windows that gathered while the engine was busy have waited long enough.
        if (this.batches.length > 0 && !this.timer) this.due = true;
        this.pump();
      });
  }

  /** Runs what is queued, waits for it, then closes the engine. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.due = true;
    this.pump();
    while (this.inFlight > 0 || this.batches.length > 0) {
      await new Promise((r) => setTimeout(r, 1));
      this.due = true;
      this.pump();
    }
    await this.engine.close();
  }
}
