import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { readAudioFile } from '../src/audio/read.js';
import {
  DEFAULT_FEATURE_CONFIG,
  NARROWBAND_FEATURE_CONFIG,
  featureConfigKey,
  frameCount,
  resolveFeatureConfig,
  type FeatureConfig,
} from '../src/features/config.js';
import { StreamingFeatures, computeFeatures, type FrameCallback } from '../src/features/mfcc.js';
import { blockFrames } from '../src/features/tables.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, chunked, maxAbsDiff, rng } from './helpers.js';

const goldenDir = new URL('./fixtures/golden/', import.meta.url);
const root = new URL('../', import.meta.url);

interface Golden {
  source: string;
  config: Omit<FeatureConfig, 'kind'>;
  frames: number;
  framesStored: number;
  logMel: number[][];
  mfcc: number[][];
}

/** Tolerance against torchaudio (float64) for our float32 output: values reach ~-23, float32 spacing there ~2e-6. */
const GOLDEN_TOL = 1e-4;

function compareRows(name: string, rows: number[][], got: Float32Array, dims: number): number {
  let worst = 0;
  rows.forEach((row, t) => {
    assert.equal(row.length, dims, `${name}: dims`);
    row.forEach((v, j) => {
      worst = Math.max(worst, Math.abs(v - got[t * dims + j]));
    });
  });
  return worst;
}

const goldens = readdirSync(goldenDir).filter((f) => f.endsWith('.json'));

test('golden fixtures exist for real clips and synthetic signals, default, alternative and 8 kHz configs', () => {
  assert.ok(goldens.length >= 10, `found ${goldens.length}`);
  assert.ok(goldens.some((f) => f.includes('.alt.')));
  assert.ok(goldens.some((f) => f.includes('.8k.')));
  assert.ok(goldens.some((f) => f.startsWith('YAF_')));
});

for (const file of goldens) {
  test(`matches torchaudio within ${GOLDEN_TOL}: ${file}`, async (t) => {
    const g = JSON.parse(readFileSync(new URL(file, goldenDir), 'utf8')) as Golden;
    const audio = await readAudioFile(new URL(g.source, root).pathname);
    assert.equal(audio.sampleRate, g.config.sampleRate);
    const x = audio.channels[0];
    const mf = computeFeatures(x, { ...g.config, kind: 'mfcc' });
    assert.equal(mf.frames, g.frames, 'frame count');
    const errMfcc = compareRows(file, g.mfcc, mf.data, mf.dims);
    assert.ok(errMfcc <= GOLDEN_TOL, `${file}: MFCC max abs error ${errMfcc}`);
    const lm = computeFeatures(x, { ...g.config, kind: 'logmel', deltaOrder: 0 });
    const errLog = compareRows(file, g.logMel, lm.data, lm.dims);
    assert.ok(errLog <= GOLDEN_TOL, `${file}: log-mel max abs error ${errLog}`);
    t.diagnostic(`max abs error vs torchaudio: MFCC ${errMfcc.toExponential(2)}, log-mel ${errLog.toExponential(2)}`);
  });
}

function speechLike(seconds: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(Math.round(16000 * seconds));
  let phase = 0;
  for (let i = 0; i < x.length; i++) {
    const f0 = 120 + 40 * Math.sin((2 * Math.PI * i) / 16000);
    phase += (2 * Math.PI * f0) / 16000;
    const envelope = 0.5 + 0.5 * Math.sin((2 * Math.PI * 3 * i) / 16000);
    x[i] = envelope * (0.3 * Math.sin(phase) + 0.1 * Math.sin(3 * phase)) + 0.01 * (r() - 0.5);
  }
  return x;
}

function streamAll(cfg: Partial<FeatureConfig>, chunks: Float32Array[]): { data: number[]; indices: number[] } {
  const s = new StreamingFeatures(cfg);
  const data: number[] = [];
  const indices: number[] = [];
  const cb: FrameCallback = (f, k) => {
    data.push(...f);
    indices.push(k);
  };
  for (const c of chunks) s.push(c, cb);
  s.flush(cb);
  return { data, indices };
}

const altConfig: Partial<FeatureConfig> = { nMfcc: 13, lifter: 22, deltaOrder: 2, window: 'hann', nFft: 1024 };

for (const [label, cfg] of [
  ['default', {}],
  ['deltas + lifter + hann', altConfig],
  ['log-mel with deltas', { kind: 'logmel', deltaOrder: 1 }],
  ['hop longer than the window', { hop: 480 }],
] as const) {
  test(`streaming in any chunking equals the whole clip exactly (${label})`, () => {
    const x = speechLike(2.3, 7);
    const whole = computeFeatures(x, cfg);
    assert.equal(whole.frames, frameCount(whole.config, x.length));
    const r = rng(11);
    const chunkings: Record<string, () => number> = {
      '1 sample': () => 1,
      '7 samples': () => 7,
      '20 ms': () => 320,
      random: () => 1 + r() * 900,
    };
    for (const [name, sizes] of Object.entries(chunkings)) {
      const { data, indices } = streamAll(cfg, chunked(x, sizes));
      assert.deepEqual(indices, Array.from({ length: whole.frames }, (_, i) => i), `${name}: frame indices`);
      const diff = maxAbsDiff(data, whole.data);
      assert.ok(diff <= 1e-5, `${name}: max abs difference ${diff}`);
      assert.equal(diff, 0, `${name}: expected bit-exact, got ${diff}`);
    }
  });
}

test('a frame is delivered as soon as its window is complete (no delay without deltas)', () => {
  const s = new StreamingFeatures();
  const seen: number[] = [];
  const x = speechLike(0.1, 3);
  s.push(x.subarray(0, 399), (_, k) => seen.push(k));
  assert.equal(seen.length, 0);
  s.push(x.subarray(399, 400), (_, k) => seen.push(k));
  assert.deepEqual(seen, [0]);
  s.push(x.subarray(400, 560), (_, k) => seen.push(k));
  assert.deepEqual(seen, [0, 1]);
});

test('deltas arrive deltaWindow × order frames late and flush delivers the rest', () => {
  const s = new StreamingFeatures({ deltaOrder: 2, deltaWindow: 2 });
  const x = speechLike(0.5, 5);
  let n = 0;
  s.push(x, () => n++);
  const expected = frameCount(s.config, x.length);
  assert.equal(n, expected - 4);
  s.flush(() => n++);
  assert.equal(n, expected);
});

test('the feature arrays handed to the callback are reused (no allocation per frame)', () => {
  // Without deltas, one array per frame of a block (up to 32 frames), the same ones for every block; with deltas, one.
  for (const [cfg, most] of [[{}, blockFrames(DEFAULT_FEATURE_CONFIG)], [{ deltaOrder: 1 }, 1]] as const) {
    const s = new StreamingFeatures(cfg);
    const seen = new Set<Float32Array>();
    let frames = 0;
    const cb: FrameCallback = (f) => { seen.add(f); frames++; };
    s.push(speechLike(1.5, 1), cb);
    s.flush(cb);
    assert.ok(frames > 3 * most, `${frames} frames`);
    assert.ok(seen.size >= 1 && seen.size <= most, `${seen.size} arrays for ${frames} frames`);
  }
});

test('a clip shorter than one window gives no frames; a silent clip hits the log floor', () => {
  assert.equal(computeFeatures(new Float32Array(399)).frames, 0);
  const silent = computeFeatures(new Float32Array(16000), { kind: 'logmel' });
  assert.equal(silent.frames, 98);
  assert.ok(silent.data.every((v) => Math.abs(v - Math.log(1e-10)) < 1e-5));
});

test('reset and flush start a new stream at frame 0 with the same output', () => {
  const x = speechLike(0.5, 9);
  const s = new StreamingFeatures();
  const a: number[] = [];
  const b: number[] = [];
  s.push(x, (f) => a.push(...f));
  s.flush(() => {});
  s.push(x, (f) => b.push(...f));
  assert.deepEqual(a, b);
  s.push(x.subarray(0, 1234), () => {});
  s.reset();
  const c: number[] = [];
  s.push(x, (f, k) => {
    if (c.length === 0) assert.equal(k, 0);
    c.push(...f);
  });
  assert.deepEqual(c, a);
});

test('NaN or infinite samples are refused before they touch the stream state', () => {
  const s = new StreamingFeatures();
  const x = speechLike(0.2, 2);
  const good: number[] = [];
  s.push(x.subarray(0, 1000), (f) => good.push(...f));
  const bad = x.slice(1000, 2000);
  bad[17] = NaN;
  assertCallmoodError(() => s.push(bad, () => {}), ErrorCodes.INVALID_AUDIO, /sample 17 is NaN/, /finite/);
  bad[17] = Infinity;
  assertCallmoodError(() => s.push(bad, () => {}), ErrorCodes.INVALID_AUDIO, /sample 17 is Infinity/);
  // The stream goes on as if the bad chunk never came.
  s.push(x.subarray(1000), (f) => good.push(...f));
  assert.equal(maxAbsDiff(good, computeFeatures(x).data), 0);
});

test('use after close is an error', () => {
  const s = new StreamingFeatures();
  s.close();
  assertCallmoodError(() => s.push(new Float32Array(10), () => {}), ErrorCodes.CLOSED, /after close/);
  assertCallmoodError(() => s.flush(() => {}), ErrorCodes.CLOSED);
});

test('bad configs name the field and what is allowed', () => {
  const bad: [Partial<FeatureConfig> | Record<string, unknown>, RegExp][] = [
    [{ nFft: 500 }, /nFft: must be a power of two/],
    [{ nFft: 256 }, /nFft: must be ≥ winLength \(400\)/],
    [{ fMax: 9000 }, /fMax: must be ≤ sampleRate \/ 2 \(8000\)/],
    [{ fMin: 4000, fMax: 3000 }, /fMin: must be < fMax/],
    [{ nMfcc: 60 }, /nMfcc: must be ≤ nMels \(40\)/],
    [{ preEmphasis: 1.5 }, /preEmphasis/],
    [{ window: 'blackman' } as unknown as Partial<FeatureConfig>, /window/],
    [{ hopp: 10 } as unknown as Partial<FeatureConfig>, /unknown field\(s\) hopp; allowed: sampleRate, winLength, hop/],
    [{ deltaOrder: 3 }, /deltaOrder/],
  ];
  for (const [cfg, re] of bad) {
    assertCallmoodError(() => resolveFeatureConfig(cfg as Partial<FeatureConfig>), ErrorCodes.INVALID_OPTION, /invalid feature config/, re);
  }
  // Too many mel filters for the FFT resolution: some filter would cover no bin at all.
  assertCallmoodError(
    () => new StreamingFeatures({ nMels: 128, nFft: 512 }),
    ErrorCodes.INVALID_OPTION,
    /covers no FFT bin/,
    /raise nFft/,
  );
});

test('the default config is frozen and its key identifies it', () => {
  assert.ok(Object.isFrozen(DEFAULT_FEATURE_CONFIG));
  assert.equal(featureConfigKey(resolveFeatureConfig({})), featureConfigKey(DEFAULT_FEATURE_CONFIG));
  assert.notEqual(featureConfigKey(resolveFeatureConfig({ nMels: 41 })), featureConfigKey(DEFAULT_FEATURE_CONFIG));
  // Key order does not matter.
  const shuffled = Object.fromEntries(Object.entries(DEFAULT_FEATURE_CONFIG).reverse()) as unknown as FeatureConfig;
  assert.equal(featureConfigKey(shuffled), featureConfigKey(DEFAULT_FEATURE_CONFIG));
});

test('the wasm and JavaScript frame kernels give the same features on a real clip', async () => {
  const x = (await readAudioFile(new URL('./fixtures/audio/YAF_back_angry.flac', import.meta.url).pathname)).channels[0];
  for (const cfg of [{}, altConfig]) {
    const wasm = computeFeatures(x, cfg, { kernel: 'wasm' });
    const js = computeFeatures(x, cfg, { kernel: 'js' });
    const diff = maxAbsDiff(wasm.data, js.data);
    assert.ok(diff <= 1e-5, `max abs difference ${diff}`);
  }
  assertCallmoodError(
    () => new StreamingFeatures({}, { kernel: 'gpu' as 'js' }),
    ErrorCodes.INVALID_OPTION,
    /kernel is 'gpu'; allowed: 'wasm' or 'js'/,
  );
});

test('float64 input gives exactly the features of the same float32 samples (two pre-emphasis paths)', () => {
  const x = speechLike(1.7, 3);
  for (const cfg of [{}, NARROWBAND_FEATURE_CONFIG, { hop: 480 }]) {
    for (const kernel of ['wasm', 'js'] as const) {
      const a = computeFeatures(x, cfg, { kernel });
      const b = computeFeatures(Float64Array.from(x) as unknown as Float32Array, cfg, { kernel });
      assert.ok(a.frames > 10);
      assert.equal(maxAbsDiff(a.data, b.data), 0, `${kernel} ${JSON.stringify(cfg)}`);
    }
  }
});

test('streams of one config interleaved in 20 ms pieces give what each gives alone (the shared wasm stage keeps nothing)', () => {
  const xs = [speechLike(1.3, 21), speechLike(1.3, 22), speechLike(1.3, 23)];
  const alone = xs.map((x) => computeFeatures(x, NARROWBAND_FEATURE_CONFIG).data);
  const streams = xs.map(() => new StreamingFeatures(NARROWBAND_FEATURE_CONFIG));
  const got: number[][] = xs.map(() => []);
  const cbs: FrameCallback[] = got.map((g) => (f) => g.push(...f));
  for (let at = 0; at < xs[0].length; at += 160) {
    xs.forEach((x, s) => streams[s].push(x.subarray(at, at + 160), cbs[s]));
  }
  streams.forEach((s, i) => s.flush(cbs[i]));
  for (let s = 0; s < xs.length; s++) {
    assert.equal(got[s].length, alone[s].length, `stream ${s}: values`);
    assert.equal(maxAbsDiff(got[s], alone[s]), 0, `stream ${s}`);
  }
});
