import { loadavg } from 'node:os';
import { initBackend } from '../model/backend.js';
import { loadModel } from '../model/io.js';
import { paramCount, toInferenceModel, weightBytes } from '../model/architectures.js';
import { featureDims, resolveFeatureConfig } from '../features/config.js';
import type * as tfjs from '@tensorflow/tfjs';

/** Result of `benchModel`: inference cost on this process's TF.js backend. */
export interface ModelBenchResult {
  /** Median ms per window, one window per call. */
  msPerWindow: number;
  /** Median ms per window in batches of `batch`. */
  msPerWindowBatched: number;
  batch: number;
  backend: string;
  arch: string;
  params: number;
  weightBytes: number;
  rounds: number;
  /** 1-minute load average before and after: on a shared machine the figures are only as good as this. */
  loadAverage: [number, number];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Times the model on random windows: single and batched rounds interleaved (ABAB…), each timing including the
 * input tensor and reading the result back, as the live stream does.
 */
export async function benchModel(opts: { modelDir: string; batch?: number; rounds?: number; perRound?: number }): Promise<ModelBenchResult> {
  const batch = opts.batch ?? 32;
  const rounds = opts.rounds ?? 7;
  // 64 calls per round (~30 ms) measured 1.4–1.9 ms single for the model that 512 calls measured at 0.5 ms on the
  // same loaded machine: rounds that short are dominated by scheduling and GC. 256 calls and a longer warm-up.
  const perRound = opts.perRound ?? 256;
  const { tf, name } = await initBackend({ log: () => {} });
  // Size as saved; speed as served (loadModel's default folds a conv stack for inference, as the live engine loads it).
  const { model: saved, metadata } = await loadModel(opts.modelDir, { fold: false });
  const params = paramCount(saved);
  const bytes = weightBytes(saved);
  const model = toInferenceModel(tf, saved);
  if (model !== saved) saved.dispose();
  const frames = metadata.window.frames;
  const dims = featureDims(resolveFeatureConfig(metadata.window.feature));
  const x = new Float32Array(batch * frames * dims);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 12.9898) * 1.5;
  const run = (n: number) =>
    tf.tidy(() => (model.predict(tf.tensor3d(x.subarray(0, n * frames * dims), [n, frames, dims])) as tfjs.Tensor).dataSync());
  for (let i = 0; i < 32; i++) run(1);
  for (let i = 0; i < 4; i++) run(batch);
  const load0 = loadavg()[0];
  const single: number[] = [];
  const batched: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    for (let i = 0; i < perRound; i++) run(1);
    single.push((performance.now() - t0) / perRound);
    t0 = performance.now();
    for (let i = 0; i < perRound / 8; i++) run(batch);
    batched.push((performance.now() - t0) / ((perRound / 8) * batch));
  }
  const result = {
    msPerWindow: median(single),
    msPerWindowBatched: median(batched),
    batch,
    backend: name,
    arch: metadata.arch,
    params,
    weightBytes: bytes,
    rounds,
    loadAverage: [load0, loadavg()[0]] as [number, number],
  };
  model.dispose();
  return result;
}
