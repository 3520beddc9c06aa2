/**
 * Inference engines behind the MicroBatcher. `WorkerEngine` (the default for serving) loads the model in a worker
 * thread: its TF.js backend computes there, on the second core, while the main thread keeps every call's audio
 * moving. `InProcessEngine` runs on the calling thread (replay, tests, tools).
 */
import type { Worker } from 'node:worker_threads';
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

/** Runs the model in a worker thread; requests are answered in order. */
export class WorkerEngine implements InferenceEngine {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: unknown) => void }>();
  private closed = false;
  private ready!: { metadata: ModelMetadata; backend: string };

  private constructor(private readonly worker: Worker) {}

  /** The model's metadata, as the worker loaded it. */
  get metadata(): ModelMetadata {
    return this.ready.metadata;
  }

  /** The TF.js backend the worker runs. */
  get backend(): string {
    return this.ready.backend;
  }

  get windowSize(): number {
    return windowSizeOf(this.ready.metadata);
  }

  get classes(): number {
    return this.ready.metadata.labels.length;
  }

  private failAll(err: unknown): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  /** Starts a worker and loads `modelDir` in it; resolves once the model is ready. */
  static async load(modelDir: string): Promise<WorkerEngine> {
    // From source (tests, tsx) the worker module is .ts; compiled, .js.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const worker = startModuleWorker(new URL(`./engine-worker.${ext}`, import.meta.url).href, { modelDir });
    const engine = new WorkerEngine(worker);
    await new Promise<void>((resolve, reject) => {
      // One listener for the worker's whole life: its first message says whether the model loaded.
      worker.on('message', (m: WorkerReply) => {
        if (m.id === 0) {
          if (m.ready) {
            engine.ready = m.ready;
            resolve();
          } else {
            const e = m.error ?? { message: 'the inference worker did not load the model' };
            reject(new CallmoodError((e.code as ErrorCode) ?? ErrorCodes.FILE_READ, e.message));
            void worker.terminate();
          }
          return;
        }
        const w = engine.waiting.get(m.id);
        if (!w) return;
        engine.waiting.delete(m.id);
        if (m.probs) w.resolve(m.probs);
        else w.reject(new CallmoodError((m.error?.code as ErrorCode) ?? ErrorCodes.INVALID_OPTION, m.error?.message ?? 'inference failed'));
      });
      worker.on('error', (err) => {
        reject(err);
        engine.failAll(err);
      });
      worker.on('exit', (code) => {
        const err = new Error(`inference worker exited with code ${code}`);
        reject(err);
        if (!engine.closed) engine.failAll(err);
      });
    });
    return engine;
  }

  predict(x: Float32Array, n: number): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new CallmoodError(ErrorCodes.CLOSED, 'inference worker used after close()'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      // The batch buffer is transferred, not copied: the batcher hands over a fresh array per batch.
      const copy = x.byteOffset === 0 && x.byteLength === x.buffer.byteLength ? x : x.slice();
      this.worker.postMessage({ id, x: copy, n }, [copy.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new CallmoodError(ErrorCodes.CLOSED, 'inference worker closed'));
    await this.worker.terminate();
  }
}
