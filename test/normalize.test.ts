import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameNormalizer, STD_EPSILON, Welford, checkFeatureStats } from '../src/features/normalize.js';
import type { FeatureStats, NormalizationSpec } from '../src/features/types.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, rng } from './helpers.js';

const DIMS = 5;

/** frames × DIMS values, coefficient d ~ N(offset + d, (1 + d)²) roughly (sum of uniforms). */
function frames(n: number, seed: number, offset = 0, scale = 1): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n * DIMS);
  for (let t = 0; t < n; t++) {
    for (let d = 0; d < DIMS; d++) x[t * DIMS + d] = offset + d + scale * (1 + d) * (r() + r() + r() - 1.5) * 2;
  }
  return x;
}

/** Two-pass mean and population std in float64, the reference. */
function twoPass(x: ArrayLike<number>, n: number, mask?: ArrayLike<number>): { mean: number[]; std: number[]; count: number } {
  const mean = new Array(DIMS).fill(0);
  const std = new Array(DIMS).fill(0);
  let count = 0;
  for (let t = 0; t < n; t++) {
    if (mask && !mask[t]) continue;
    count++;
    for (let d = 0; d < DIMS; d++) mean[d] += x[t * DIMS + d];
  }
  for (let d = 0; d < DIMS; d++) mean[d] /= count;
  for (let t = 0; t < n; t++) {
    if (mask && !mask[t]) continue;
    for (let d = 0; d < DIMS; d++) std[d] += (x[t * DIMS + d] - mean[d]) ** 2;
  }
  for (let d = 0; d < DIMS; d++) std[d] = Math.sqrt(std[d] / count);
  return { mean, std, count };
}

const close = (a: number[], b: number[], tol: number, what: string) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

test('Welford matches a two-pass computation; masks, merge, epsilon, empty', () => {
  const x = frames(5000, 1, 100); // a large offset: the naive Σx² − n·mean² would lose digits here
  const w = new Welford(DIMS);
  w.addMany(x, 5000);
  const s = w.stats();
  const ref = twoPass(x, 5000);
  assert.equal(s.count, 5000);
  close(s.mean, ref.mean, 1e-12, 'mean');
  close(s.std, ref.std, 1e-10, 'std');

  const mask = Uint8Array.from({ length: 5000 }, (_, t) => (t % 3 === 0 ? 1 : 0));
  const wm = new Welford(DIMS);
  wm.addMany(x, 5000, mask);
  const refm = twoPass(x, 5000, mask);
  assert.equal(wm.count, refm.count);
  close(wm.stats().mean, refm.mean, 1e-12, 'masked mean');
  close(wm.stats().std, refm.std, 1e-10, 'masked std');

  // Merging parts equals adding everything to one accumulator.
  const a = new Welford(DIMS), b = new Welford(DIMS), c = new Welford(DIMS);
  a.addMany(x.subarray(0, 1000 * DIMS), 1000);
  b.addMany(x.subarray(1000 * DIMS), 4000);
  a.merge(b);
  a.merge(c); // empty: no change
  close(a.stats().mean, ref.mean, 1e-12, 'merged mean');
  close(a.stats().std, ref.std, 1e-10, 'merged std');
  c.merge(a); // into an empty one
  close(c.stats().std, ref.std, 1e-10, 'merged into empty');

  const constant = new Welford(DIMS);
  for (let t = 0; t < 10; t++) constant.add([1, 2, 3, 4, 5]);
  assert.deepEqual(constant.stats().std, new Array(DIMS).fill(STD_EPSILON));
  assert.deepEqual(constant.stats(0.5).std, new Array(DIMS).fill(0.5));

  assertCallmoodError(() => new Welford(DIMS).stats(), ErrorCodes.EMPTY_AUDIO, /no frames/);
  assertCallmoodError(() => new Welford(0), ErrorCodes.INVALID_OPTION, /dims/);
  assertCallmoodError(() => a.merge(new Welford(3)), ErrorCodes.INVALID_OPTION, /dims 3 into 5/);
  assertCallmoodError(() => w.addMany(new Float32Array(9), 2), ErrorCodes.INVALID_OPTION, /needs 10/);
});

const globalStats: FeatureStats = { mean: [1, -2, 0.5, 3, 0], std: [2, 0.5, 1, 4, 1.5], count: 1000 };

test('global: (x − mean) / std, stateless', () => {
  const norm = new FrameNormalizer({ kind: 'global', stats: globalStats }, DIMS);
  const x = frames(50, 2);
  const out = new Float32Array(x.length);
  norm.processMany(x, 50, new Uint8Array(50).fill(1), out);
  for (let t = 0; t < 50; t++) {
    for (let d = 0; d < DIMS; d++) {
      const want = (x[t * DIMS + d] - globalStats.mean[d]) / globalStats.std[d];
      assert.ok(Math.abs(out[t * DIMS + d] - want) < 1e-6);
    }
  }
  assert.equal(norm.observed, 0);
  assert.deepEqual(norm.currentStats().mean, globalStats.mean);
});

test('adaptive: before any speech it is global; after n frames it is the pooled prior + running statistics', () => {
  const prior = 200;
  const spec: NormalizationSpec = { kind: 'adaptive', stats: globalStats, priorFrames: prior };
  const norm = new FrameNormalizer(spec, DIMS);
  const x = frames(300, 3, 4, 0.5); // a speaker whose voice differs from the global statistics
  const one = new Float32Array(DIMS);
  norm.normalize(x, one);
  for (let d = 0; d < DIMS; d++) assert.ok(Math.abs(one[d] - (x[d] - globalStats.mean[d]) / globalStats.std[d]) < 1e-6);

  for (let t = 0; t < 300; t++) norm.observe(x, t * DIMS);
  // By hand: the prior is `prior` frames with the global mean and variance.
  const own = twoPass(x, 300);
  const n = 300;
  const mean = own.mean.map((m, d) => (prior * globalStats.mean[d] + n * m) / (prior + n));
  const second = own.mean.map(
    (m, d) => (prior * (globalStats.std[d] ** 2 + globalStats.mean[d] ** 2) + n * (own.std[d] ** 2 + m * m)) / (prior + n),
  );
  const std = second.map((s, d) => Math.sqrt(s - mean[d] ** 2));
  const cur = norm.currentStats();
  assert.equal(cur.count, 300);
  close(cur.mean, mean, 1e-9, 'pooled mean');
  close(cur.std, std, 1e-9, 'pooled std');

  // A long call: the statistics become the caller's own.
  const long = frames(100000, 4, -3, 2);
  const norm2 = new FrameNormalizer(spec);
  for (let t = 0; t < 100000; t++) norm2.observe(long, t * DIMS);
  const ref = twoPass(long, 100000);
  close(norm2.currentStats().mean, ref.mean, 0.01, 'long-call mean');
  close(norm2.currentStats().std, ref.std, 0.01, 'long-call std');

  norm2.reset();
  assert.equal(norm2.observed, 0);
  close(norm2.currentStats().mean, globalStats.mean, 1e-12, 'reset mean');
  close(norm2.currentStats().std, globalStats.std, 1e-12, 'reset std');

  // priorFrames 0: the first speech frame alone has zero spread, floored at epsilon; before any, global.
  const bare = new FrameNormalizer({ kind: 'adaptive', stats: globalStats, priorFrames: 0 });
  assert.deepEqual(bare.currentStats().mean, globalStats.mean);
  bare.observe([1, 1, 1, 1, 1]);
  assert.deepEqual(bare.currentStats().std, new Array(DIMS).fill(STD_EPSILON));
});

test('process: each frame with the statistics of the frames before it; only speech is observed; in place works', () => {
  const spec: NormalizationSpec = { kind: 'adaptive', stats: globalStats, priorFrames: 20 };
  const x = frames(400, 5, 2);
  const speech = Uint8Array.from({ length: 400 }, (_, t) => (Math.floor(t / 37) % 3 === 0 ? 0 : 1));

  const a = new FrameNormalizer(spec);
  const outA = new Float32Array(x.length);
  a.processMany(x, 400, speech, outA);

  // By hand with the two primitives: normalise, then observe if speech.
  const b = new FrameNormalizer(spec);
  const outB = new Float32Array(x.length);
  for (let t = 0; t < 400; t++) {
    b.normalize(x, outB, t * DIMS, t * DIMS);
    if (speech[t]) b.observe(x, t * DIMS);
  }
  assert.deepEqual(outA, outB);
  assert.equal(a.observed, speech.reduce((s, v) => s + v, 0));

  // In place: the same numbers.
  const c = new FrameNormalizer(spec);
  const inPlace = Float32Array.from(x);
  c.processMany(inPlace, 400, speech, inPlace);
  assert.deepEqual(inPlace, outA);

  // Non-speech frames do not move the statistics.
  const d = new FrameNormalizer(spec);
  d.processMany(x, 400, new Uint8Array(400), new Float32Array(x.length));
  assert.equal(d.observed, 0);
  assert.deepEqual(d.currentStats().mean, globalStats.mean);
});

test('invalid specs are refused', () => {
  assertCallmoodError(
    () => new FrameNormalizer({ kind: 'zscore', stats: globalStats } as unknown as NormalizationSpec),
    ErrorCodes.INVALID_OPTION,
    /kind is zscore/,
  );
  assertCallmoodError(() => new FrameNormalizer({ kind: 'global', stats: globalStats }, 40), ErrorCodes.INVALID_OPTION, /5 dims but the features have 40/);
  assertCallmoodError(
    () => new FrameNormalizer({ kind: 'adaptive', stats: globalStats, priorFrames: -1 }),
    ErrorCodes.INVALID_OPTION,
    /priorFrames is -1/,
  );
  assertCallmoodError(() => checkFeatureStats({ mean: [0, 1], std: [1], count: 1 }), ErrorCodes.INVALID_OPTION, /2 values and std 1/);
  assertCallmoodError(() => checkFeatureStats({ mean: [0], std: [0], count: 1 }), ErrorCodes.INVALID_OPTION, /std\[0\] is 0/);
  assertCallmoodError(() => checkFeatureStats({ mean: [Number.NaN], std: [1], count: 1 }), ErrorCodes.INVALID_OPTION, /mean\[0\]/);
});
