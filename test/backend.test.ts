import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type * as tfjs from '@tensorflow/tfjs';
import { initBackend, type BackendInfo } from '../src/model/backend.js';
import { ErrorCodes } from '../src/errors.js';
import { assertRejectsCallmood } from './helpers.js';
import { mulberry32 as rng } from '../src/util/random.js';

// TF.js backends are process-global: these tests share one initBackend() result and run in order.

const tfjsNodeInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
})();

/** Max abs difference allowed between our wasm kernel and the cpu backend's (float32 results of magnitude ≲ 50). */
const TOL = 1e-4;

let info: BackendInfo;
const logged: string[] = [];


function randn(n: number, r: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() + r() - 2) * 1.7; // roughly N(0, 1)
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Runs `fn` with the cpu backend active and switches back to wasm, whatever happens. */
async function onCpu<T>(tf: typeof tfjs, fn: () => T): Promise<T> {
  const prev = tf.getBackend();
  assert.ok(await tf.setBackend('cpu'));
  try {
    return fn();
  } finally {
    assert.ok(await tf.setBackend(prev));
  }
}

interface FilterCase {
  label: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: [number, number];
  pad: 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** dy's shape for a case, from the forward convolution's geometry. */
function outShape(tf: typeof tfjs, c: FilterCase): number[] {
  return tf.backend_util.computeConv2DInfo(
    c.x, c.filter, c.strides, c.dilations ?? 1, c.pad, c.dimRoundingMode, false,
    tf.backend_util.convertConv2DDataFormat(c.dataFormat ?? 'NHWC'),
  ).outShape;
}

function runFilterKernel(
  tf: typeof tfjs, c: FilterCase, xv: Float32Array, dyv: Float32Array, dyShape: number[],
  filterShape: [number, number, number, number], dilations?: [number, number],
): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor4d(xv, c.x);
    const dy = tf.tensor(dyv, dyShape);
    const attrs: Record<string, unknown> = {
      strides: c.strides, pad: c.pad, dataFormat: c.dataFormat ?? 'NHWC', filterShape,
      dimRoundingMode: c.dimRoundingMode,
    };
    if (dilations !== undefined) attrs.dilations = dilations;
    const out = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as never) as tfjs.Tensor;
    assert.deepEqual(out.shape, filterShape);
    return out.dataSync() as Float32Array;
  });
}

const CASES: FilterCase[] = [
  // conv1d's shapes: x [batch, 1, frames, channels], filter [1, k, in, out]
  { label: 'conv1d k5 same 40→64', x: [4, 1, 120, 40], filter: [1, 5, 40, 64], strides: [1, 1], pad: 'same' },
  { label: 'conv1d k3 valid 5→6', x: [3, 1, 17, 5], filter: [1, 3, 5, 6], strides: [1, 1], pad: 'valid' },
  { label: 'conv1d k4 stride 2 same 3→7', x: [2, 1, 19, 3], filter: [1, 4, 3, 7], strides: [1, 2], pad: 'same' },
  { label: 'conv1d k5 stride 3 valid 6→1', x: [2, 1, 23, 6], filter: [1, 5, 6, 1], strides: [1, 3], pad: 'valid' },
  { label: 'conv1d k3 explicit pad (0,2)', x: [2, 1, 11, 4], filter: [1, 3, 4, 5], strides: [1, 1], pad: [[0, 0], [0, 0], [0, 2], [0, 0]] },
  { label: 'conv1d k3 numeric pad 1 stride 2', x: [2, 1, 12, 2], filter: [1, 3, 2, 3], strides: [1, 2], pad: 1, dimRoundingMode: 'floor' },
  { label: 'conv1d filter wider than input, same', x: [1, 1, 3, 2], filter: [1, 7, 2, 2], strides: [1, 1], pad: 'same' },
  // genuinely 2D, including NCHW
  { label: '2d 3x2 stride (2,1) same', x: [2, 7, 9, 3], filter: [3, 2, 3, 5], strides: [2, 1], pad: 'same' },
  { label: '2d 3x3 valid NCHW', x: [2, 5, 8, 6], filter: [3, 3, 5, 4], strides: [1, 2], pad: 'valid', dataFormat: 'NCHW' },
  { label: '2d explicit asymmetric pad', x: [1, 6, 6, 2], filter: [2, 3, 2, 3], strides: [2, 2], pad: [[0, 0], [1, 0], [2, 1], [0, 0]] },
];

const DILATED_CASES: FilterCase[] = [
  { label: 'conv1d k3 dilation 2 same', x: [2, 1, 20, 5], filter: [1, 3, 5, 6], strides: [1, 1], pad: 'same', dilations: [1, 2] },
  { label: 'conv1d k3 dilation 3 valid', x: [2, 1, 25, 4], filter: [1, 3, 4, 4], strides: [1, 1], pad: 'valid', dilations: [1, 3] },
  { label: '2d 2x3 dilation (2,2) stride 2 same', x: [1, 9, 10, 3], filter: [2, 3, 3, 2], strides: [2, 2], pad: 'same', dilations: [2, 2] },
];

test("prefer 'tensorflow' without tfjs-node installed fails clearly", { skip: tfjsNodeInstalled && 'tfjs-node is installed here' }, async () => {
  await assertRejectsCallmood(initBackend({ prefer: 'tensorflow', log: () => {} }), ErrorCodes.INVALID_OPTION, /tensorflow/, /tfjs-node not installed/);
});

test('invalid options are rejected with INVALID_OPTION', async () => {
  await assertRejectsCallmood(initBackend({ prefer: 'gpu' as never }), ErrorCodes.INVALID_OPTION, /prefer/);
  await assertRejectsCallmood(initBackend({ threads: 0 }), ErrorCodes.INVALID_OPTION, /threads/);
});

test('auto: the backend is one of the three, logged once, and the same on every call', async () => {
  info = await initBackend({ log: (m) => logged.push(m) });
  assert.ok(['tensorflow', 'wasm', 'cpu'].includes(info.name), `unexpected backend ${info.name}`);
  assert.equal(info.tf.getBackend(), info.name);
  if (!tfjsNodeInstalled) assert.equal(info.name, 'wasm', `wasm is expected without tfjs-node: ${info.reason}`);
  const again = await initBackend({ log: (m) => logged.push(m) });
  assert.equal(again, info, 'a second call must return the same result');
  assert.equal((await Promise.all([initBackend(), initBackend({ prefer: 'auto' })])).every((r) => r === info), true);
  assert.equal(logged.length, 1, `logged ${logged.length} times: ${logged.join(' | ')}`);
  assert.match(logged[0], new RegExp(`'${info.name}'`));
  assert.ok(info.reason.length > 0);
  const other = info.name === 'cpu' ? 'wasm' : 'cpu';
  await assertRejectsCallmood(initBackend({ prefer: other }), ErrorCodes.INVALID_OPTION, /already initialised/);
});

test('Conv2DBackpropFilter on wasm matches the cpu backend', async (t) => {
  if (info?.name !== 'wasm') return t.skip(`backend is ${info?.name}: callmood's wasm kernels are not in use`);
  const { tf } = info;
  const r = rng(1234);
  const diffs: string[] = [];
  for (const c of CASES) {
    const dyShape = outShape(tf, c);
    const xv = randn(c.x.reduce((a, b) => a * b), r);
    const dyv = randn(dyShape.reduce((a, b) => a * b), r);
    const got = runFilterKernel(tf, c, xv, dyv, dyShape, c.filter);
    const want = await onCpu(tf, () => runFilterKernel(tf, c, xv, dyv, dyShape, c.filter));
    const d = maxAbsDiff(got, want);
    diffs.push(`${c.label}: ${d.toExponential(2)}`);
    assert.ok(d <= TOL, `${c.label}: max |wasm − cpu| = ${d} > ${TOL}`);
    assert.ok(want.some((v) => v !== 0), `${c.label}: degenerate reference`);
  }
  t.diagnostic(diffs.join('; '));
  assert.equal(tf.getBackend(), 'wasm');
});

test('Conv2DBackpropFilter on wasm handles dilations (cpu reference: the zero-dilated filter)', async (t) => {
  if (info?.name !== 'wasm') return t.skip(`backend is ${info?.name}`);
  const { tf } = info;
  const r = rng(99);
  const diffs: string[] = [];
  for (const c of DILATED_CASES) {
    const [dh, dw] = c.dilations ?? [1, 1];
    const [kh, kw, ci, co] = c.filter;
    // A dilated filter is a dense filter of size (k−1)·d+1 with zeros between taps: its gradient at the real taps
    // is the dilated filter's gradient, and TF.js's cpu kernel computes the dense one.
    const dense: [number, number, number, number] = [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ci, co];
    const dyShape = outShape(tf, c);
    const xv = randn(c.x.reduce((a, b) => a * b), r);
    const dyv = randn(dyShape.reduce((a, b) => a * b), r);
    const got = runFilterKernel(tf, c, xv, dyv, dyShape, c.filter, c.dilations);
    const full = await onCpu(tf, () => runFilterKernel(tf, { ...c, dilations: undefined }, xv, dyv, dyShape, dense));
    const want = new Float32Array(got.length);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const src = ((i * dh) * dense[1] + j * dw) * ci * co;
        want.set(full.subarray(src, src + ci * co), (i * kw + j) * ci * co);
      }
    }
    const d = maxAbsDiff(got, want);
    diffs.push(`${c.label}: ${d.toExponential(2)}`);
    assert.ok(d <= TOL, `${c.label}: max |wasm − cpu| = ${d} > ${TOL}`);
  }
  t.diagnostic(diffs.join('; '));
});

test('conv1d gradients (input and filter) on wasm match the cpu backend', async (t) => {
  if (info?.name !== 'wasm') return t.skip(`backend is ${info?.name}`);
  const { tf } = info;
  const r = rng(7);
  const cases: { x: [number, number, number]; f: [number, number, number]; stride: number; pad: 'same' | 'valid' }[] = [
    { x: [3, 120, 40], f: [5, 40, 16], stride: 1, pad: 'same' },
    { x: [2, 31, 6], f: [4, 6, 5], stride: 2, pad: 'same' },
    { x: [2, 29, 3], f: [3, 3, 9], stride: 3, pad: 'valid' },
  ];
  const diffs: string[] = [];
  for (const c of cases) {
    const xv = randn(c.x[0] * c.x[1] * c.x[2], r);
    const fv = randn(c.f[0] * c.f[1] * c.f[2], r);
    const grads = (): Float32Array[] => tf.tidy(() => {
      const x = tf.tensor3d(xv, c.x);
      const f = tf.tensor3d(fv, c.f);
      // A non-uniform upstream gradient, so every output position weighs differently.
      const g = tf.grads((a: tfjs.Tensor, b: tfjs.Tensor) => tf.conv1d(a as tfjs.Tensor3D, b as tfjs.Tensor3D, c.stride, c.pad).square().sum());
      return g([x, f]).map((t) => t.dataSync() as Float32Array);
    });
    const got = grads();
    const want = await onCpu(tf, grads);
    const label = `x [${c.x}] f [${c.f}] stride ${c.stride} ${c.pad}`;
    // Magnitudes here reach ~1e3 (squared loss), so compare relative to the largest value.
    for (const [i, name] of ['dx', 'dfilter'].entries()) {
      const scale = Math.max(1, ...Array.from(want[i], Math.abs));
      const d = maxAbsDiff(got[i], want[i]) / scale;
      diffs.push(`${label} ${name}: ${d.toExponential(2)} (relative)`);
      assert.ok(d <= 1e-5, `${label} ${name}: max |wasm − cpu| / max|cpu| = ${d} > 1e-5`);
    }
  }
  t.diagnostic(diffs.join('; '));
});

test('the wasm kernel rejects what it does not support, clearly', async (t) => {
  if (info?.name !== 'wasm') return t.skip(`backend is ${info?.name}`);
  const { tf } = info;
  const x = tf.zeros([1, 1, 8, 2]);
  const dyBad = tf.zeros([1, 1, 5, 3]); // 'same' keeps 8 frames, not 5
  const attrs = { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: [1, 3, 2, 3] };
  assert.throws(
    () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dyBad }, attrs as never),
    (e: Error & { code?: string }) => e.code === ErrorCodes.INVALID_OPTION && /dy shape/.test(e.message),
  );
  assert.throws(
    () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: tf.zeros([1, 1, 8, 3]) }, { ...attrs, dilations: [1, 0] } as never),
    (e: Error & { code?: string }) => e.code === ErrorCodes.INVALID_OPTION && /dilations/.test(e.message),
  );
  tf.dispose([x, dyBad]);
});

test('a tiny Conv1D model trains on wasm and its loss falls', async (t) => {
  if (info?.name !== 'wasm') return t.skip(`backend is ${info?.name}`);
  const { tf } = info;
  assert.equal(tf.getBackend(), 'wasm');
  const r = rng(42);
  const n = 32;
  const frames = 120;
  const coeffs = 40;
  const xv = randn(n * frames * coeffs, r);
  const labels = new Int32Array(n);
  // Learnable on purpose: the class is which of 4 coefficient bands carries an offset.
  for (let i = 0; i < n; i++) {
    labels[i] = i % 4;
    for (let f = 0; f < frames; f++) for (let c = labels[i] * 10; c < labels[i] * 10 + 10; c++) xv[(i * frames + f) * coeffs + c] += 1;
  }
  const x = tf.tensor3d(xv, [n, frames, coeffs]);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 4);
  const model = tf.sequential();
  model.add(tf.layers.conv1d({ inputShape: [frames, coeffs], filters: 8, kernelSize: 5, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.maxPooling1d({ poolSize: 2 }));
  model.add(tf.layers.conv1d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }));
  model.add(tf.layers.globalAveragePooling1d());
  model.add(tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  const losses: number[] = [];
  for (let step = 0; step < 8; step++) {
    const l = await model.trainOnBatch(x, y);
    losses.push(Array.isArray(l) ? l[0] : l);
  }
  t.diagnostic(`losses: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  assert.ok(losses.every(Number.isFinite), `non-finite loss: ${losses}`);
  assert.ok(losses[losses.length - 1] < 0.8 * losses[0], `loss did not fall: ${losses.map((l) => l.toFixed(3)).join(' → ')}`);
  tf.dispose([x, y]);
  model.dispose();
});
