/**
 * WasmFrameAnalyzer (float64 wasm kernel) against FrameAnalyzer (JS) on real speech and synthetic frames, plus the
 * kernel's own log and the embedded module bytes. The kernel is float64 with the same FFT and sums as the JS, so
 * the bound is 1e-9 absolute; the measured differences are ~1e-14 (the log's last-ulp differences, summed by the DCT).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLACDecoder } from '@wasm-audio-decoders/flac';
import { CallmoodError } from '../src/errors.js';
import { DEFAULT_FEATURE_CONFIG, NARROWBAND_FEATURE_CONFIG, frameCount, resolveFeatureConfig, type FeatureConfig } from '../src/features/config.js';
import { FrameAnalyzer } from '../src/features/mfcc.js';
import { WasmFrameAnalyzer, wasmKernelMemoryBytes, wasmPlanBytes } from '../src/features/kernel-wasm.js';
import { FRAME_WASM_BASE64, FRAME_WASM_BYTES, FRAME_WASM_SHA256 } from '../src/features/wasm/frame-wasm.js';

/** The WebAssembly API, typed locally (lib ES2022 and @types/node 20 do not declare it). */
const WA = (globalThis as unknown as {
  WebAssembly: {
    Module: new (bytes: Uint8Array) => object;
    Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
    validate(bytes: Uint8Array): boolean;
  };
}).WebAssembly;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TOL = 1e-9;

const CONFIGS: Record<string, Readonly<FeatureConfig>> = {
  default: DEFAULT_FEATURE_CONFIG,
  '8 kHz (the shipped model)': NARROWBAND_FEATURE_CONFIG,
  'default logmel': resolveFeatureConfig({ kind: 'logmel' }),
  'hann/26 mels/0–8000 Hz/13 cepstra/lifter 22/nFft 1024': resolveFeatureConfig({
    window: 'hann', nMels: 26, fMin: 0, fMax: 8000, nMfcc: 13, lifter: 22, nFft: 1024,
  }),
  'same, logmel': resolveFeatureConfig({
    window: 'hann', nMels: 26, fMin: 0, fMax: 8000, nMfcc: 13, lifter: 22, nFft: 1024, kind: 'logmel',
  }),
  // Odd nMels (unpaired middle of the fold), odd nMfcc, nFft/2 an odd power of two (radix-2 first pass).
  'odd: 27 mels, 11 cepstra, nFft 2048': resolveFeatureConfig({ nMels: 27, nMfcc: 11, nFft: 2048, fMin: 20, fMax: 7600 }),
  'tiny: nFft 64, winLength 50': resolveFeatureConfig({
    nFft: 64, winLength: 50, hop: 25, nMels: 8, fMin: 0, fMax: 8000, nMfcc: 7, window: 'hann',
  }),
  'nFft 16, 3 mels': resolveFeatureConfig({ nFft: 16, winLength: 16, hop: 8, nMels: 3, fMin: 0, fMax: 8000, nMfcc: 3 }),
};

/** Max |a − b| over the frames of `x` (pre-emphasised here with the config's coefficient), through both analyzers. */
function compare(c: Readonly<FeatureConfig>, raw: ArrayLike<number>, frames = frameCount(c, raw.length)): number {
  const x = new Float64Array(raw.length);
  for (let i = 0, prev = 0; i < raw.length; i++) { x[i] = raw[i] - c.preEmphasis * prev; prev = raw[i]; }
  const js = new FrameAnalyzer(c);
  const wasm = new WasmFrameAnalyzer(c);
  assert.equal(wasm.staticDims, js.staticDims);
  const a = new Float64Array(js.staticDims);
  const b = new Float64Array(wasm.staticDims).fill(NaN);
  const win = new Float64Array(c.winLength);
  let max = 0;
  for (let f = 0; f < frames; f++) {
    js.analyze(x, f * c.hop, a);
    // Alternate the two copy paths: a frame at an offset in a long array, and a frame that is exactly the window.
    if (f & 1) {
      win.set(x.subarray(f * c.hop, f * c.hop + c.winLength));
      wasm.analyze(win, 0, b);
    } else {
      wasm.analyze(x, f * c.hop, b);
    }
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d <= max)) max = d; // NaN propagates into max and fails the bound
    }
  }
  return max;
}

let speechCache: Float32Array[] | null = null;
async function speech(): Promise<Float32Array[]> {
  if (speechCache) return speechCache;
  const dir = join(root, 'test/fixtures/audio');
  const decoder = new FLACDecoder();
  await decoder.ready;
  const out: Float32Array[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.flac')).sort()) {
    const r = await decoder.decodeFile(new Uint8Array(readFileSync(join(dir, f))));
    assert.equal(r.sampleRate, 16000, f);
    out.push(r.channelData[0]);
    await decoder.reset();
  }
  decoder.free();
  assert.ok(out.length >= 3);
  speechCache = out;
  return out;
}

/** Deterministic pseudo-random numbers in [−1, 1). */
function noise(n: number, seed: number): Float64Array {
  const x = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 31 - 1;
  }
  return x;
}

function synthetic(sr: number, n: number): [string, Float64Array][] {
  const t = (f: (i: number) => number) => Float64Array.from({ length: n }, (_, i) => f(i));
  return [
    ['zeros', new Float64Array(n)],
    ['tone 1 kHz', t((i) => 0.5 * Math.sin((2 * Math.PI * 1000 * i) / sr))],
    ['three tones + noise', t((i) => Math.sin(i * 0.11) + 0.3 * Math.sin(i * 1.7) + 0.05 * Math.sin(i * 2.9))],
    ['white noise', noise(n, 7)],
    ['chirp 50 Hz–7 kHz', t((i) => Math.sin(2 * Math.PI * (50 * (i / sr) + 0.5 * 6950 * (i / sr) ** 2 / (n / sr))))],
    ['impulses', t((i) => (i % 397 === 0 ? 1 : 0))],
    ['DC', t(() => 0.25)],
    ['loud noise ×1e6', noise(n, 11).map((v) => v * 1e6)],
    ['faint noise ×3e-6 (bands around the floor)', noise(n, 13).map((v) => v * 3e-6)],
    ['50 Hz hum + faint speech band', t((i) => Math.sin((2 * Math.PI * 50 * i) / sr) + 1e-4 * Math.sin((2 * Math.PI * 1500 * i) / sr))],
  ];
}

test('embedded module: base64 bytes equal frame.wasm, size and sha256 as recorded', () => {
  const embedded = Buffer.from(FRAME_WASM_BASE64, 'base64');
  const file = readFileSync(join(root, 'src/features/wasm/frame.wasm'));
  assert.equal(embedded.length, FRAME_WASM_BYTES);
  assert.ok(embedded.equals(file), 'frame-wasm.ts is stale: rerun scripts/build-wasm.sh');
  assert.equal(createHash('sha256').update(embedded).digest('hex'), FRAME_WASM_SHA256);
  assert.ok(WA.validate(embedded));
});

test('kernel log: within 1 ulp-ish of Math.log from subnormals to 1e300, vector lanes equal the scalar', (t) => {
  const inst = new WA.Instance(new WA.Module(Buffer.from(FRAME_WASM_BASE64, 'base64')), {});
  const ln = inst.exports.ln as (x: number) => number;
  const ln2 = inst.exports.ln2_lane0 as (x: number, y: number) => number;
  let maxAbs = 0;
  let maxRel = 0;
  let laneMismatch = 0;
  const check = (x: number) => {
    const want = Math.log(x);
    const got = ln(x);
    const d = Math.abs(got - want);
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / Math.max(1, Math.abs(want)));
    if (x >= 2.2250738585072014e-308 && ln2(x, 1) !== got) laneMismatch++;
  };
  const r = noise(400_000, 3);
  for (let i = 0; i < r.length; i++) check(Math.exp(r[i] * 700)); // log-uniform over ~[1e-304, 1e304]
  for (let i = 0; i < 100_000; i++) check(1 + (r[i] * 0.3)); // around 1, where log is near 0
  for (const x of [5e-324, 1e-320, 2.2250738585072014e-308, 1e-10, 0.7071067811865476, 0.7071067811865475, 1,
    Math.SQRT2, 2, Math.E, 1e10, Number.MAX_VALUE]) check(x);
  assert.equal(ln(Infinity), Infinity);
  assert.ok(Number.isNaN(ln(NaN)));
  t.diagnostic(`kernel log vs Math.log: max abs error ${maxAbs.toExponential(2)}, max error relative to max(1, |log x|) ` +
    `${maxRel.toExponential(2)}`);
  assert.ok(maxAbs <= 2e-13, `max abs error ${maxAbs}`); // values up to |log| ≈ 745, whose ulp is 1.1e-13
  assert.ok(maxRel <= 4.5e-16, `max relative error ${maxRel}`); // 2 ulp
  assert.equal(laneMismatch, 0);
});

for (const [name, c] of Object.entries(CONFIGS)) {
  test(`matches FrameAnalyzer on speech (FLAC fixtures): ${name}`, async (t) => {
    const clips = await speech();
    let max = 0;
    let frames = 0;
    for (const clip of clips) {
      max = Math.max(max, compare(c, clip));
      frames += frameCount(c, clip.length);
    }
    t.diagnostic(`${frames} frames, max abs difference ${max.toExponential(2)}`);
    assert.ok(frames > 1000);
    assert.ok(max <= TOL, `max abs difference ${max}`);
  });

  test(`matches FrameAnalyzer on synthetic signals: ${name}`, (t) => {
    const n = Math.max(4 * c.winLength, 8000);
    const parts: string[] = [];
    let worst = 0;
    for (const [label, x] of synthetic(c.sampleRate, n)) {
      const d = compare(c, x);
      parts.push(`${label} ${d.toExponential(1)}`);
      worst = Math.max(worst, d);
      assert.ok(d <= TOL, `${label}: max abs difference ${d}`);
    }
    t.diagnostic(`max abs difference ${worst.toExponential(2)} (${parts.join(', ')})`);
  });
}

test('analyzers of several configs interleaved, across memory growth, keep agreeing', () => {
  const x = noise(40_000, 5);
  const before = wasmKernelMemoryBytes();
  const d0 = compare(DEFAULT_FEATURE_CONFIG, x, 20);
  // A config with 16384-point tables does not fit in the first page: the memory grows and its buffer is replaced.
  const big = resolveFeatureConfig({ nFft: 16384, winLength: 16000, hop: 8000, nMels: 64, fMin: 0, fMax: 8000 });
  const dBig = compare(big, x, 3);
  assert.ok(wasmKernelMemoryBytes() > before);
  const js = new FrameAnalyzer(DEFAULT_FEATURE_CONFIG);
  const wasm = new WasmFrameAnalyzer(DEFAULT_FEATURE_CONFIG);
  const a = new Float64Array(40);
  const b = new Float64Array(40);
  js.analyze(x, 123, a);
  wasm.analyze(x, 123, b);
  for (let i = 0; i < 40; i++) assert.ok(Math.abs(a[i] - b[i]) <= TOL);
  assert.ok(Math.max(d0, dBig) <= TOL, `${d0} ${dBig}`);
});

for (const [name, c] of Object.entries(CONFIGS)) {
  test(`a block of frames (two at a time, an odd one alone) equals analyze frame by frame, bit for bit: ${name}`, () => {
    const wasm = new WasmFrameAnalyzer(c);
    const frames = Math.min(wasm.blockFrames, 7);
    const x = noise(c.winLength + (frames - 1) * c.hop, 3);
    const d = wasm.staticDims;
    const one = new Float64Array(d);
    for (const count of [frames, frames - 1, 1]) {
      const stage = wasm.stageData();
      stage.set(x, wasm.stageOffset);
      const out = new Float64Array(count * d).fill(NaN);
      wasm.analyzeStage(count, out);
      for (let f = 0; f < count; f++) {
        wasm.analyze(x, f * c.hop, one);
        for (let i = 0; i < d; i++) assert.ok(Object.is(out[f * d + i], one[i]), `${count} frames: frame ${f}, value ${i}: ${out[f * d + i]} vs ${one[i]}`);
      }
    }
  });
}

test('memory: the default config takes one block, shared by every analyzer of that config', () => {
  const bytes = wasmPlanBytes(DEFAULT_FEATURE_CONFIG);
  // Tables and scratch (about 54 KB, two frames' worth), and the stage, its float32 input and the results
  // StreamingFeatures analyses blocks of frames with (about 59 KB).
  assert.ok(bytes > 0 && bytes < 120_000, `${bytes}`);
  const mem = wasmKernelMemoryBytes();
  const many = Array.from({ length: 500 }, () => new WasmFrameAnalyzer(resolveFeatureConfig({})));
  assert.equal(wasmKernelMemoryBytes(), mem);
  assert.equal(many[499].staticDims, 40);
});

test('invalid configs are refused like FrameAnalyzer refuses them', () => {
  const bad: Partial<FeatureConfig>[] = [
    { nFft: 500 } as Partial<FeatureConfig>, // not a power of two (resolveFeatureConfig would refuse it too)
    { nMels: 128, nFft: 64, winLength: 64 }, // empty mel filters
  ];
  for (const p of bad) {
    const c = { ...DEFAULT_FEATURE_CONFIG, ...p };
    assert.throws(() => new FrameAnalyzer(c), CallmoodError);
    assert.throws(() => new WasmFrameAnalyzer(c), CallmoodError);
  }
});
