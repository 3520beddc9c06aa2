import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, truncate, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { ARCHITECTURES, MAX_WEIGHT_BYTES, buildModel, paramCount, toInferenceModel, weightBytes, type Arch } from '../src/model/architectures.js';
import { MODEL_FILES, loadModel, saveModel, type ModelMetadataInput } from '../src/model/io.js';
import { clipProbabilities, predictWindows } from '../src/model/predict.js';
import {
  ReduceLROnPlateau, computeClassWeights, getLearningRate, maskWindow, setLearningRate, trainModel, type EpochInfo, type TrainOptions,
} from '../src/model/train.js';
import type { WindowSet } from '../src/data/types.js';
import { EMOTION_LABELS } from '../src/labels.js';
import { resolveFeatureConfig } from '../src/features/config.js';
import { ErrorCodes } from '../src/errors.js';
import { assertRejectsCallmood, maxAbsDiff, rng } from './helpers.js';

// TF.js state is process-global: these tests share one backend and run in order.
const { tf } = await initBackend({ log: () => {} });
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'callmood-model-'));
  dirs.push(d);
  return d;
}

// Small windows keep the LSTM runs (one op chain per frame) fast; the realistic 120 × 40 is checked in the build test.
const FRAMES = 24;
const DIMS = 8;
const LABELS = [...EMOTION_LABELS];

/** Separable windows: class c raises coefficient c (and c + 7 if present) by 1.5 over noise in [-1, 1]. */
function synth(n: number, seed: number, frames = FRAMES, dims = DIMS, labelShift = 0): WindowSet {
  const r = rng(seed);
  const x = new Float32Array(n * frames * dims);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % LABELS.length;
    y[i] = (c + labelShift) % LABELS.length;
    for (let f = 0; f < frames; f++) {
      for (let d = 0; d < dims; d++) x[(i * frames + f) * dims + d] = (r() - 0.5) * 2 + (d % LABELS.length === c ? 1.5 : 0);
    }
  }
  // Three windows per clip.
  const clip = Int32Array.from({ length: n }, (_, i) => Math.floor(i / 3));
  return { x, n, frames, dims, y, labels: LABELS, clip, clips: [] };
}

function trainOpts(arch: Arch, over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    arch, train: synth(42, 1), val: synth(21, 2), epochs: 3, batchSize: 8, learningRate: 3e-3, seed: 7,
    patience: Infinity, plateau: { factor: 0.5, patience: 2, minLr: 1e-5 }, classWeights: 'balanced', ...over,
  };
}

function metadataFor(frames = FRAMES, dims = DIMS, labels: string[] = LABELS): ModelMetadataInput {
  const feature = { ...resolveFeatureConfig({ nMfcc: dims }) };
  return {
    arch: 'cnn',
    labels,
    window: { frames, hop: 25, minSpeechRatio: 0.5, feature },
    normalization: { kind: 'global', stats: { mean: Array(dims).fill(0), std: Array(dims).fill(1), count: 1000 } },
    training: {
      manifest: 'synthetic', corpora: ['synthetic'], speakers: { train: ['s1'], val: ['s2'], heldOut: [] },
      clips: { train: 14, val: 7 }, windows: { train: 42, val: 21 }, channel: 'wideband', seed: 7, epochs: 3, bestEpoch: 3,
      durations: { trainAudioSeconds: 50, valAudioSeconds: 25, trainingSeconds: 1 },
    },
    metrics: { valAcc: 1 },
    licence: 'synthetic test data, no licence',
  };
}

test('each architecture builds for 120 × 40 → 7 within the weight budget, seeded', () => {
  const n0 = tf.memory().numTensors;
  for (const arch of ARCHITECTURES) {
    const m = buildModel(tf, arch, { frames: 120, dims: 40, classes: 7, seed: 1 });
    const again = buildModel(tf, arch, { frames: 120, dims: 40, classes: 7, seed: 1 });
    const other = buildModel(tf, arch, { frames: 120, dims: 40, classes: 7, seed: 2 });
    try {
      assert.deepEqual(m.inputs[0].shape, [null, 120, 40], arch);
      assert.deepEqual(m.outputs[0].shape, [null, 7], arch);
      const params = paramCount(m);
      assert.ok(params > 10_000 && weightBytes(m) <= MAX_WEIGHT_BYTES, `${arch}: ${params} params, ${weightBytes(m)} bytes`);
      // Same seed → the same initial weights, bit for bit; another seed → different ones.
      const w = (x: tfjs.LayersModel) => x.weights.map((v) => v.read().dataSync() as Float32Array);
      const [a, b, c] = [w(m), w(again), w(other)];
      a.forEach((t, i) => assert.equal(maxAbsDiff(t, b[i]), 0, `${arch} weight ${i}`));
      assert.ok(a.some((t, i) => maxAbsDiff(t, c[i]) > 0), `${arch}: seed 2 gave the same weights`);
      const y = tf.tidy(() => (m.predict(tf.zeros([2, 120, 40])) as tfjs.Tensor).dataSync() as Float32Array);
      assert.equal(y.length, 14);
      for (let i = 0; i < 2; i++) assert.ok(Math.abs(y.slice(i * 7, i * 7 + 7).reduce((s, v) => s + v, 0) - 1) < 1e-5);
    } finally {
      m.dispose();
      again.dispose();
      other.dispose();
    }
  }
  // Building leaks nothing (TF.js's LSTM unitForgetBias initialiser would, outside the build's tidy).
  assert.equal(tf.memory().numTensors, n0);
});

test('buildModel rejects bad options', () => {
  assert.throws(() => buildModel(tf, 'gru' as Arch, { frames: 120, dims: 40, classes: 7, seed: 1 }), { code: ErrorCodes.INVALID_OPTION });
  assert.throws(() => buildModel(tf, 'cnn', { frames: 4, dims: 40, classes: 7, seed: 1 }), /frames/);
  assert.throws(() => buildModel(tf, 'cnn', { frames: 120, dims: 40, classes: 1, seed: 1 }), /classes/);
});

// Per architecture: a tiny run whose loss falls, repeated with the same seed (identical history: exact, no tolerance
// needed on wasm — also measured exact across processes at 120 × 40, batch 32), with constant
// tensor counts across epochs; then save → load → identical predictions.
for (const arch of ARCHITECTURES) {
  test(`${arch}: loss falls, same seed repeats exactly, tensors do not grow, save → load predicts identically`, async () => {
    const n0 = tf.memory().numTensors;
    const counts: number[] = [];
    const first = await trainModel(tf, trainOpts(arch, { onEpoch: () => void counts.push(tf.memory().numTensors) }));
    const h = first.history;
    assert.equal(h.length, 3);
    assert.ok(h[2].loss < h[0].loss * 0.8, `${arch}: loss ${h.map((e) => e.loss.toFixed(3)).join(' → ')}`);
    assert.ok(h[2].valLoss < h[0].valLoss, `${arch}: val loss ${h.map((e) => e.valLoss.toFixed(3)).join(' → ')}`);
    // Adam's slots exist from the first step on: the count must not move from epoch to epoch.
    assert.ok(counts.every((c) => c === counts[0]), `${arch}: tensors per epoch ${counts.join(', ')}`);

    const second = await trainModel(tf, trainOpts(arch));
    const keys = ['loss', 'acc', 'valLoss', 'valAcc', 'lr'] as const;
    for (let e = 0; e < h.length; e++) {
      for (const k of keys) assert.equal(second.history[e][k], h[e][k], `${arch} epoch ${e + 1} ${k}: ${second.history[e][k]} vs ${h[e][k]}`);
    }
    second.model.dispose();

    const val = synth(21, 2);
    const before = predictWindows(tf, first.model, val);
    const dir = await tempDir();
    await saveModel(dir, first.model, { ...metadataFor(), arch });
    first.model.dispose();
    assert.equal(tf.memory().numTensors, n0, `${arch}: tensors left after training and disposing`);
    const { model, metadata } = await loadModel(dir, { fold: false });
    assert.equal(metadata.arch, arch);
    assert.deepEqual(metadata.labels, LABELS);
    const afterLoad = predictWindows(tf, model, val);
    assert.equal(maxAbsDiff(before, afterLoad), 0, `${arch}: predictions changed through save → load`);
    model.dispose();
    // The default load folds conv stacks for inference: same probabilities within float32 rounding, no BatchNorm
    // or Dropout left; other architectures come back as saved.
    const folded = (await loadModel(dir)).model;
    const foldedOut = predictWindows(tf, folded, val);
    assert.ok(maxAbsDiff(before, foldedOut) < 1e-5, `${arch}: folded model differs by ${maxAbsDiff(before, foldedOut)}`);
    const kinds = folded.layers.map((l) => l.getClassName());
    if (arch.startsWith('cnn') && arch !== 'cnn-lstm') {
      assert.ok(!kinds.includes('BatchNormalization') && !kinds.includes('Dropout') && kinds.includes('Conv2D'), `${arch}: ${kinds.join(', ')}`);
    } else {
      assert.ok(kinds.includes('LSTM'), `${arch}: ${kinds.join(', ')}`);
    }
    folded.dispose();
    assert.equal(tf.memory().numTensors, n0);
  });
}

test('a different seed gives a different run', async () => {
  const a = await trainModel(tf, trainOpts('cnn', { epochs: 1 }));
  const b = await trainModel(tf, trainOpts('cnn', { epochs: 1, seed: 8 }));
  assert.notEqual(a.history[0].loss, b.history[0].loss);
  a.model.dispose();
  b.model.dispose();
});

test('early stopping stops after `patience` epochs without progress and restores the best weights', async () => {
  // Validation labels are the training labels shifted by one class: the better the model fits, the worse the
  // validation loss, so the first epoch is the best.
  const val = synth(21, 2, FRAMES, DIMS, 1);
  const r = await trainModel(tf, trainOpts('cnn', { val, epochs: 8, patience: 2, learningRate: 1e-2 }));
  assert.equal(r.stopReason, 'early-stopping');
  assert.equal(r.history.length, r.bestEpoch + 2);
  assert.ok(r.bestEpoch < r.history.length);
  // The returned model is the best epoch's: its validation loss is that epoch's, not the last one's.
  const probs = predictWindows(tf, r.model, val);
  const w = r.classWeights;
  let wl = 0;
  let ws = 0;
  for (let i = 0; i < val.n; i++) {
    wl += -Math.log(Math.max(1e-7, probs[i * 7 + val.y[i]])) * w[val.y[i]];
    ws += w[val.y[i]];
  }
  const best = r.history[r.bestEpoch - 1].valLoss;
  assert.ok(Math.abs(wl / ws - best) < 1e-6, `restored val loss ${wl / ws} vs best epoch's ${best} (last ${r.history.at(-1)!.valLoss})`);
  r.model.dispose();
});

test('reduce-LR-on-plateau: scripted validation losses', () => {
  const p = new ReduceLROnPlateau(1e-3, { factor: 0.5, patience: 2, minLr: 2e-4 });
  // improve, improve, stall, stall (→ ×0.5), stall, stall (→ ×0.5), improve, stall, stall (→ floor 2e-4), stall, stall
  const losses = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.5, 0.5, 0.50005, 0.6, 0.6];
  const lrs = losses.map((l) => p.step(l));
  assert.deepEqual(lrs, [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2.5e-4, 2e-4, 2e-4, 2e-4]);
  // An improvement smaller than minDelta (1e-4 by default) is a stall: 0.50005 above did not reset the count.
  const c = new ReduceLROnPlateau(1, { factor: 0.1, patience: 1, minLr: 0, cooldown: 2 });
  // With a cooldown of 2, a reduction is followed by 2 epochs in which stalls are not counted.
  const got = [1, 1, 1, 1, 1, 1].map((l) => c.step(l));
  const want = [1, 0.1, 0.1, 0.01, 0.01, 0.001];
  assert.ok(got.every((v, i) => Math.abs(v - want[i]) < 1e-12), `cooldown: ${got.join(', ')}`);
});

test('reduce-LR-on-plateau inside training lowers the optimizer rate when val loss stalls', async () => {
  // LSTM: no BatchNorm, so with a learning rate of 1e-9 nothing the validation loss depends on moves by more than
  // minDelta: every epoch after the first is a stall.
  const small = (n: number, seed: number) => synth(n, seed, 12, 7);
  const seen: EpochInfo[] = [];
  const r = await trainModel(tf, {
    ...trainOpts('lstm'), train: small(14, 1), val: small(7, 2), epochs: 4, learningRate: 1e-9,
    plateau: { factor: 0.5, patience: 1, minLr: 3e-10 }, onEpoch: (i) => void seen.push(i),
  });
  assert.deepEqual(r.history.map((e) => e.lr), [1e-9, 1e-9, 5e-10, 3e-10]);
  assert.equal(seen.length, 4);
  assert.ok(seen.every((e, i) => e.epoch === i + 1 && e.epochs === 4 && e.seconds > 0 && e.etaSeconds >= 0));
  r.model.dispose();

  // The rate set is the rate used: Adam at rate 0 moves nothing.
  const v = tf.variable(tf.tensor1d([1, 2, 3]));
  const opt = tf.train.adam(0.1);
  setLearningRate(opt, 0);
  assert.equal(getLearningRate(opt), 0);
  opt.minimize(() => tf.sum(tf.square(v)) as tfjs.Scalar, false, [v]);
  assert.deepEqual([...v.dataSync()], [1, 2, 3]);
  setLearningRate(opt, 0.1);
  opt.minimize(() => tf.sum(tf.square(v)) as tfjs.Scalar, false, [v]);
  assert.ok(v.dataSync()[0] < 1);
  opt.dispose();
  v.dispose();
});

test('balanced class weights: n / (classes present × count), mean 1 over the windows', () => {
  const y = Int32Array.from([0, 0, 0, 1, 2, 2]);
  const w = computeClassWeights(y, 4, 'balanced');
  assert.ok(maxAbsDiff(w, [6 / 9, 2, 1, 0]) < 1e-7, `${[...w]}`);
  assert.ok(Math.abs(Array.from(y, (c) => w[c]).reduce((a, b) => a + b, 0) / y.length - 1) < 1e-6);
  assert.deepEqual([...computeClassWeights(y, 4, 'none')], [1, 1, 1, 1]);
});

test('predictWindows is batch-size independent and tidy; clipProbabilities averages per clip', () => {
  const m = buildModel(tf, 'cnn', { frames: FRAMES, dims: DIMS, classes: 7, seed: 3 });
  const set = synth(10, 5);
  const n0 = tf.memory().numTensors;
  const all = predictWindows(tf, m, set);
  const ones = predictWindows(tf, m, set, 1);
  const threes = predictWindows(tf, m, { x: set.x, n: set.n, frames: set.frames, dims: set.dims }, 3);
  assert.equal(tf.memory().numTensors, n0);
  assert.equal(all.length, 70);
  // A different batch size could change the summation order in XNNPACK; measured here: 0 for all three archs at
  // 120 × 40 (batches 1, 7, 256), allowed 1e-6.
  assert.ok(maxAbsDiff(all, ones) <= 1e-6 && maxAbsDiff(all, threes) <= 1e-6);
  const clips = clipProbabilities(set, all);
  assert.deepEqual(clips.map((c) => [c.clip, c.windows]), [[0, 3], [1, 3], [2, 3], [3, 1]]);
  for (let k = 0; k < 7; k++) {
    assert.ok(Math.abs(clips[1].probs[k] - (all[21 + k] + all[28 + k] + all[35 + k]) / 3) < 1e-6);
  }
  assert.throws(() => predictWindows(tf, m, synth(2, 1, FRAMES + 1)), /do not fit the model's input shape/);
  m.dispose();
});

test('toInferenceModel folds BatchNorm into fused convs: same outputs at 120 × 40 with non-trivial statistics', () => {
  const r = rng(11);
  const set = synth(16, 12, 120, 40);
  for (const arch of ['cnn', 'cnn-fast'] as const) {
    const m = buildModel(tf, arch, { frames: 120, dims: 40, classes: 7, seed: 5 });
    // Moving statistics and affine parameters far from their initial 0/1, so a wrong fold would show.
    for (const l of m.layers.filter((x) => x.getClassName() === 'BatchNormalization')) {
      l.setWeights(l.getWeights().map((w, i) => {
        const v = Float32Array.from({ length: w.size }, () => (i === 3 ? 0.2 + 3 * r() : (r() - 0.5) * 2));
        return tf.tensor(v, w.shape);
      }));
    }
    const n0 = tf.memory().numTensors;
    const f = toInferenceModel(tf, m);
    assert.notEqual(f, m);
    const a = predictWindows(tf, m, set);
    const b = predictWindows(tf, f, set);
    const d = maxAbsDiff(a, b);
    // Measured: 1.2e-7 (cnn). Leaving out BatchNorm's epsilon alone gives 4.8e-4.
    assert.ok(d < 1e-5, `${arch}: max abs difference ${d}`);
    assert.ok(maxAbsDiff(a, new Float32Array(a.length).fill(1 / 7)) > 1e-2, `${arch}: outputs are uniform, the test would not see a bad fold`);
    f.dispose();
    assert.equal(tf.memory().numTensors, n0, `${arch}: folding leaked tensors`);
    m.dispose();
  }
  const lstm = buildModel(tf, 'lstm', { frames: FRAMES, dims: DIMS, classes: 7, seed: 5 });
  assert.equal(toInferenceModel(tf, lstm), lstm);
  lstm.dispose();
});

test('maskWindow zeroes at most one run of frames and one band of coefficients, repeatably', () => {
  let sawTime = false;
  let sawDims = false;
  for (let k = 0; k < 50; k++) {
    const w = new Float32Array(120 * 40).fill(1);
    maskWindow(w, 120, 40, { time: 12, dims: 6 }, rng(k));
    const again = new Float32Array(120 * 40).fill(1);
    maskWindow(again, 120, 40, { time: 12, dims: 6 }, rng(k));
    assert.equal(maxAbsDiff(w, again), 0);
    const zeroFrames = Array.from({ length: 120 }, (_, f) => w.subarray(f * 40, f * 40 + 40).every((v) => v === 0)).filter(Boolean).length;
    const zeroDims = Array.from({ length: 40 }, (_, d) => Array.from({ length: 120 }, (_, f) => w[f * 40 + d]).every((v) => v === 0)).filter(Boolean).length;
    // A full-width band would zero every frame; with dims ≤ 6 of 40 that cannot happen.
    assert.ok(zeroFrames <= 12 && zeroDims <= 6, `frames ${zeroFrames}, dims ${zeroDims}`);
    sawTime ||= zeroFrames > 0;
    sawDims ||= zeroDims > 0;
  }
  assert.ok(sawTime && sawDims, 'masks were drawn');
});

test('bad model directories give clear CallmoodErrors naming the file and field', async () => {
  const m = buildModel(tf, 'cnn', { frames: FRAMES, dims: DIMS, classes: 7, seed: 4 });
  const good = await tempDir();
  await saveModel(good, m, metadataFor());
  const files = Object.fromEntries(
    await Promise.all(Object.values(MODEL_FILES).map(async (f) => [f, await readFile(path.join(good, f))] as const)),
  ) as Record<string, Buffer>;
  /** A copy of the good directory with `change` applied. */
  const variant = async (change: (dir: string) => Promise<void>): Promise<string> => {
    const d = await tempDir();
    for (const [f, b] of Object.entries(files)) await writeFile(path.join(d, f), b);
    await change(d);
    return d;
  };
  const editMetadata = (edit: (md: Record<string, any>) => void) => async (d: string) => {
    const md = JSON.parse(files[MODEL_FILES.metadata].toString('utf8'));
    edit(md);
    await writeFile(path.join(d, MODEL_FILES.metadata), JSON.stringify(md));
  };

  const loaded = await loadModel(good);
  loaded.model.dispose();

  await assertRejectsCallmood(loadModel(await variant((d) => unlink(path.join(d, MODEL_FILES.metadata)))),
    ErrorCodes.FILE_READ, /metadata\.json: missing/);
  await assertRejectsCallmood(loadModel(await variant((d) => unlink(path.join(d, MODEL_FILES.weights)))),
    ErrorCodes.FILE_READ, /weights\.bin: missing/);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => (md.window.frames = 100)))),
    ErrorCodes.CORRUPT_FILE, /model\.json vs .*metadata\.json: input shape \[null, 24, 8\] does not match metadata\.json window\.frames × feature dims = \[null, 100, 8\]/);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => (md.window.feature.nMfcc = 13)))),
    ErrorCodes.CORRUPT_FILE, /metadata\.json: normalization\.stats\.mean has 8 values, expected 13/);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => (md.labels = LABELS.slice(0, 6))))),
    ErrorCodes.CORRUPT_FILE, /output shape \[null, 7\] does not match metadata\.json labels \(6:/);
  await assertRejectsCallmood(loadModel(await variant((d) => truncate(path.join(d, MODEL_FILES.weights), 1000))),
    ErrorCodes.CORRUPT_FILE, /weights\.bin: 1000 bytes, but model\.json's weightsManifest describes \d+ bytes/);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => delete md.training.seed))),
    ErrorCodes.CORRUPT_FILE, /metadata\.json: invalid metadata: training\.seed: /);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => (md.window.feature.window = 'kaiser')))),
    ErrorCodes.CORRUPT_FILE, /metadata\.json: window\.feature: .*window/);
  await assertRejectsCallmood(loadModel(await variant(editMetadata((md) => (md.version = 2)))),
    ErrorCodes.UNSUPPORTED_FORMAT, /metadata\.json: version 2 is not supported/);
  await assertRejectsCallmood(loadModel(await variant((d) => writeFile(path.join(d, MODEL_FILES.model), '{"modelTopology":'))),
    ErrorCodes.CORRUPT_FILE, /model\.json: not valid JSON/);
  await assertRejectsCallmood(loadModel(await variant(async (d) => {
    const j = JSON.parse(files[MODEL_FILES.model].toString('utf8'));
    j.weightsManifest[0].paths = ['../weights.bin'];
    await writeFile(path.join(d, MODEL_FILES.model), JSON.stringify(j));
  })), ErrorCodes.CORRUPT_FILE, /is not a file name in the model directory/);

  // saveModel checks before writing anything.
  const empty = path.join(await tempDir(), 'never');
  await assertRejectsCallmood(saveModel(empty, m, metadataFor(120)), ErrorCodes.INVALID_OPTION, /saveModel: input shape \[null, 24, 8\] does not match/);
  await assertRejectsCallmood(saveModel(empty, m, { ...metadataFor(), licence: '' }), ErrorCodes.INVALID_OPTION, /saveModel metadata: invalid metadata: licence/);
  await assert.rejects(readFile(path.join(empty, MODEL_FILES.model)), { code: 'ENOENT' });
  m.dispose();
});

test('trainModel rejects inconsistent options', async () => {
  await assertRejectsCallmood(trainModel(tf, trainOpts('cnn', { val: synth(7, 2, FRAMES + 8) })), ErrorCodes.INVALID_OPTION, /val windows are 32 × 8/);
  await assertRejectsCallmood(trainModel(tf, trainOpts('cnn', { plateau: { factor: 1.5, patience: 1, minLr: 0 } })), ErrorCodes.INVALID_OPTION, /plateau\.factor/);
  await assertRejectsCallmood(trainModel(tf, trainOpts('cnn', { patience: 0 })), ErrorCodes.INVALID_OPTION, /patience/);
});
