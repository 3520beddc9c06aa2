/**
 * Training and inference speed of the chosen TF.js backend vs cpu, on the workload of bench/RESULTS.md ("Backends"):
 * one epoch of 512 clips × 120 frames × 40 MFCC, batch 32, a ~67k-parameter Conv1D+BN model.
 *
 *   node --import tsx bench/backend.ts [--cpu-batches N] [--epochs N]
 *
 * On wasm it also times callmood's Conv2DBackpropFilter kernel inside the epoch (its share of the epoch) and
 * alone (multiply-adds per second). The cpu backend is timed on --cpu-batches batches (default 1, ~40 s each
 * here) and scaled to an epoch; --cpu-batches 0 skips it.
 */
import { parseArgs } from 'node:util';
import type * as tfjs from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';

const { values: args } = parseArgs({
  options: { 'cpu-batches': { type: 'string', default: '1' }, epochs: { type: 'string', default: '2' } },
});
const CPU_BATCHES = Number(args['cpu-batches']);
const EPOCHS = Number(args.epochs);
const CLIPS = 512;
const FRAMES = 120;
const COEFFS = 40;
const CLASSES = 7;
const BATCH = 32;

const info = await initBackend();
const { tf } = info;
const main = info.name;

function buildModel(): tfjs.Sequential {
  const l2 = tf.regularizers.l2({ l2: 1e-4 });
  const m = tf.sequential();
  m.add(tf.layers.conv1d({ inputShape: [FRAMES, COEFFS], filters: 64, kernelSize: 5, padding: 'same', kernelRegularizer: l2 }));
  m.add(tf.layers.batchNormalization());
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(tf.layers.maxPooling1d({ poolSize: 2 }));
  m.add(tf.layers.conv1d({ filters: 128, kernelSize: 5, padding: 'same', kernelRegularizer: l2 }));
  m.add(tf.layers.batchNormalization());
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(tf.layers.maxPooling1d({ poolSize: 2 }));
  m.add(tf.layers.conv1d({ filters: 64, kernelSize: 1, padding: 'same', kernelRegularizer: l2 }));
  m.add(tf.layers.batchNormalization());
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(tf.layers.globalAveragePooling1d());
  m.add(tf.layers.dropout({ rate: 0.3 }));
  m.add(tf.layers.dense({ units: 64, activation: 'relu' }));
  m.add(tf.layers.dense({ units: CLASSES, activation: 'softmax' }));
  m.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return m;
}

function data(n: number): { x: tfjs.Tensor3D; y: tfjs.Tensor2D } {
  return tf.tidy(() => ({
    x: tf.randomNormal([n, FRAMES, COEFFS], 0, 1, 'float32', 1) as tfjs.Tensor3D,
    y: tf.oneHot(tf.randomUniform([n], 0, CLASSES, 'int32', 2) as tfjs.Tensor1D, CLASSES) as tfjs.Tensor2D,
  }));
}

/** Wraps the registered backprop-filter kernel of `backend` to add up the time spent in it. */
function timeKernel(backend: string): { ms: () => number; reset: () => void } {
  const k = tf.getKernel('Conv2DBackpropFilter', backend);
  let total = 0;
  if (k !== undefined) {
    const inner = k.kernelFunc;
    tf.unregisterKernel('Conv2DBackpropFilter', backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (a) => {
        const t0 = performance.now();
        const out = inner(a);
        total += performance.now() - t0;
        return out;
      },
    });
  }
  return { ms: () => total, reset: () => void (total = 0) };
}

async function inferenceMs(model: tfjs.Sequential, batch: number, reps: number): Promise<number> {
  const x = tf.randomNormal([batch, FRAMES, COEFFS]);
  for (let i = 0; i < 3; i++) (model.predict(x) as tfjs.Tensor).dispose();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const y = model.predict(x) as tfjs.Tensor;
    await y.data();
    y.dispose();
  }
  x.dispose();
  return (performance.now() - t0) / reps;
}

const lines: string[] = [`backend: ${main} (${info.reason})`];
const { x, y } = data(CLIPS);

// --- the kernel alone, on the first two conv layers' shapes (the cpu backend's kernel takes ~25 s per call on
// these: its per-element TensorBuffer.get loop; see the cpu training line below) ---
if (main === 'wasm') {
  const shapes = [
    { x: [BATCH, 1, FRAMES, COEFFS], f: [1, 5, COEFFS, 64] },
    { x: [BATCH, 1, FRAMES / 2, 64], f: [1, 5, 64, 128] },
  ] as const;
  for (const s of shapes) {
    const macs = s.x[0] * s.x[2] * s.f[1] * s.f[2] * s.f[3];
    const attrs = { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: [...s.f] };
    const xs = tf.randomNormal([...s.x]);
    const dy = tf.randomNormal([s.x[0], 1, s.x[2], s.f[3]]);
    const once = (): void => (tf.engine().runKernel('Conv2DBackpropFilter', { x: xs, dy }, attrs as never) as tfjs.Tensor).dispose();
    for (let i = 0; i < 3; i++) once();
    const reps = 20;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) once();
    const ms = (performance.now() - t0) / reps;
    tf.dispose([xs, dy]);
    lines.push(`Conv2DBackpropFilter alone, x [${s.x}] filter [${s.f}]: ${ms.toFixed(1)} ms = ${(macs / ms / 1e6).toFixed(2)} G multiply-adds/s`);
  }
}

// --- the chosen backend: full epochs ---
const kernelTimer = main === 'wasm' ? timeKernel('wasm') : undefined;
const model = buildModel();
lines.push(`model: ${model.countParams()} parameters`);
for (let e = 0; e < EPOCHS; e++) {
  kernelTimer?.reset();
  const t0 = performance.now();
  await model.fit(x, y, { epochs: 1, batchSize: BATCH, shuffle: true, verbose: 0 });
  const s = (performance.now() - t0) / 1000;
  const k = kernelTimer ? `, of which Conv2DBackpropFilter ${(kernelTimer.ms() / 1000).toFixed(2)} s` : '';
  lines.push(`${main}: epoch ${e + 1} of ${CLIPS} clips: ${s.toFixed(2)} s${k}${e === 0 ? ' (includes warm-up)' : ''}`);
}
lines.push(`${main}: inference ${(await inferenceMs(model, 1, 50)).toFixed(2)} ms per window, ${(await inferenceMs(model, BATCH, 10)).toFixed(2)} ms per batch of ${BATCH}`);
model.dispose();

// --- cpu: a few batches, scaled to an epoch (a full one takes minutes) ---
if (main !== 'cpu' && CPU_BATCHES > 0) {
  await tf.setBackend('cpu');
  const cpuModel = buildModel();
  const xb = x.slice([0, 0, 0], [BATCH, FRAMES, COEFFS]);
  const yb = y.slice([0, 0], [BATCH, CLASSES]);
  // No warm-up batch: one takes ~40 s here, and JIT warm-up is noise at that scale.
  const t0 = performance.now();
  for (let i = 0; i < CPU_BATCHES; i++) await cpuModel.trainOnBatch(xb, yb);
  const perBatch = (performance.now() - t0) / CPU_BATCHES / 1000;
  lines.push(`cpu: ${perBatch.toFixed(2)} s per batch of ${BATCH} (${CPU_BATCHES} timed) → ≈ ${(perBatch * (CLIPS / BATCH)).toFixed(0)} s per epoch of ${CLIPS} clips`);
  lines.push(`cpu: inference ${(await inferenceMs(cpuModel, 1, 10)).toFixed(2)} ms per window, ${(await inferenceMs(cpuModel, BATCH, 2)).toFixed(1)} ms per batch of ${BATCH}`);
  cpuModel.dispose();
  tf.dispose([xb, yb]);
  await tf.setBackend(main);
}

process.stdout.write(`${lines.join('\n')}\n`);
