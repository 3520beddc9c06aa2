import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { CallmoodError, ErrorCodes } from '../src/errors.js';
import { StreamingResampler, resample, resampledLength, resampleRatio } from '../src/audio/resample.js';
import { benchResample } from '../src/bench/resample.js';
import { fitTone, levelDb, speechLikeSignal } from './helpers/signal.js';
import { mulberry32 as rng } from '../src/util/random.js';

/** The input rates the product meets: telephone, old PC rates, wideband, TDT (24414.0625 Hz), CD, studio. */
const INPUT_RATES = [8000, 11025, 16000, 22050, 24414.0625, 44100, 48000];
/** Every input rate to the model's 16 kHz, plus the telephone-channel simulator's 16 → 8 kHz. */
const PAIRS: Array<[number, number]> = [...INPUT_RATES.map((r): [number, number] => [r, 16000]), [16000, 8000]];
/**
 * Ratios whose exact phase table would be too big (L = 16000 and 32000), so phases are interpolated, and the ends
 * of the supported range.
 */
const ODD_PAIRS: Array<[number, number]> = [
  [44101, 16000],
  [7999.5, 16000],
  [4000, 192000],
  [192000, 4000],
];


function tone(freq: number, rate: number, n: number, amplitude = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

/** Pushes `x` in chunks of the sizes `sizes()` returns, flushes, and concatenates (copying each view). */
function streamed(x: Float32Array, inRate: number, outRate: number, sizes: () => number): Float32Array {
  const r = new StreamingResampler(inRate, outRate);
  const parts: Float32Array[] = [];
  for (let i = 0; i < x.length; ) {
    const n = Math.min(sizes(), x.length - i);
    parts.push(r.push(x.subarray(i, i + n)).slice());
    i += n;
  }
  parts.push(r.flush().slice());
  r.close();
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function assertCode(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CallmoodError, `expected a CallmoodError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

describe('StreamingResampler: streaming equals whole-signal', () => {
  for (const [inRate, outRate] of [...PAIRS, ...ODD_PAIRS, [8000, 44100] as [number, number]]) {
    it(`${inRate} → ${outRate} Hz, chunks of 1, 7, 160, 10000 and random sizes`, () => {
      const n = Math.round(inRate * 0.6) + 13;
      const noise = rng(7);
      const x = speechLikeSignal(inRate, n / inRate, 3);
      for (let i = 0; i < n; i++) x[i] += 0.1 * (noise() - 0.5);
      const whole = resample(x, inRate, outRate);
      const chunkings: Array<[string, () => number]> = [
        ['1', () => 1],
        ['7', () => 7],
        ['160', () => 160],
        ['10000', () => 10000],
        ['random 1..2000 (seed 11)', ((r) => () => 1 + Math.floor(r() * 2000))(rng(11))],
        ['random 0..40 (seed 12)', ((r) => () => Math.floor(r() * 41))(rng(12))],
      ];
      for (const [name, sizes] of chunkings) {
        const s = streamed(x, inRate, outRate, sizes);
        assert.equal(s.length, whole.length, `chunks of ${name}: length ${s.length} vs ${whole.length}`);
        const d = maxAbsDiff(s, whole);
        // Each output sample is computed from the same inputs, coefficients and order: bit-exact.
        assert.equal(d, 0, `chunks of ${name}: max abs diff ${d} from the whole-signal result`);
      }
    });
  }
});

describe('8 → 16 kHz: the WebAssembly kernel equals the JavaScript path bit for bit', () => {
  /** Streams `x` through a resampler with the given kernel in chunks of `sizes()`, flushes, concatenates. */
  function run(x: Float32Array, kernel: 'wasm' | 'js', sizes: () => number): Float32Array {
    const r = new StreamingResampler(8000, 16000, { kernel });
    const parts: number[] = [];
    for (let i = 0; i < x.length; ) {
      const n = Math.min(sizes(), x.length - i);
      parts.push(...r.push(x.subarray(i, i + n)));
      i += n;
    }
    parts.push(...r.flush());
    r.close();
    return Float32Array.from(parts);
  }
  const noise = rng(21);
  const signals: Array<[string, Float32Array]> = [
    ['speech-like', speechLikeSignal(8000, 1.3, 5)],
    ['full-scale noise', Float32Array.from({ length: 9001 }, () => 2 * noise() - 1)],
    ['tiny values (1e-30) and an impulse', Float32Array.from({ length: 777 }, (_, i) => (i === 300 ? 1 : 1e-30 * (noise() - 0.5)))],
  ];
  for (const [name, x] of signals) {
    it(`${name}: chunks of 160, 1, 5000 (over one kernel block) and random sizes`, () => {
      const js = run(x, 'js', () => 160);
      assert.equal(js.length, resampledLength(x.length, 8000, 16000));
      const r = rng(4);
      for (const [what, sizes] of [['160', () => 160], ['1', () => 1], ['5000', () => 5000], ['random', () => 1 + Math.floor(r() * 700)]] as const) {
        const wasm = run(x, 'wasm', sizes);
        assert.equal(wasm.length, js.length, what);
        let differ = 0;
        for (let i = 0; i < js.length; i++) if (!Object.is(wasm[i], js[i])) differ++;
        assert.equal(differ, 0, `${what}: ${differ} samples differ`);
      }
    });
  }
  it('rejects an unknown kernel', () => {
    assertCode(() => new StreamingResampler(8000, 16000, { kernel: 'gpu' as 'js' }), ErrorCodes.INVALID_OPTION, /kernel/);
  });
});

describe('output length', () => {
  it('is ceil(totalIn · outRate / inRate), streaming and whole alike', () => {
    for (const [inRate, outRate] of [...PAIRS, ...ODD_PAIRS, [16000, 48000] as [number, number]]) {
      for (const n of [0, 1, 2, 3, 159, 160, 161, 441, 3125, 12345, 48001]) {
        const expected = Math.ceil((n * outRate) / inRate);
        assert.equal(resampledLength(n, inRate, outRate), expected, `resampledLength(${n}, ${inRate}, ${outRate})`);
        const x = new Float32Array(n).fill(0.25);
        assert.equal(resample(x, inRate, outRate).length, expected, `resample: ${n} samples ${inRate} → ${outRate}`);
        assert.equal(streamed(x, inRate, outRate, () => 37).length, expected, `streamed: ${n} samples ${inRate} → ${outRate}`);
      }
    }
  });

  it('rejects a length that is not a whole number', () => {
    assertCode(() => resampledLength(-1, 8000, 16000), ErrorCodes.INVALID_OPTION, /-1/);
    assertCode(() => resampledLength(1.5, 8000, 16000), ErrorCodes.INVALID_OPTION, /1\.5/);
  });

  it('takes 24414.0625 Hz as the exact fraction 390625/16', () => {
    assert.deepEqual(resampleRatio(24414.0625, 16000), [2048, 3125]);
    assert.deepEqual(resampleRatio(44100, 16000), [160, 441]);
    assert.deepEqual(resampleRatio(8000, 16000), [2, 1]);
    // 3125 input samples at 390625/16 Hz last exactly 0.128 s = 2048 output samples at 16 kHz.
    assert.equal(resampledLength(3125 * 7, 24414.0625, 16000), 2048 * 7);
  });

  it('is the identity when the rates are equal', () => {
    const x = speechLikeSignal(8000, 0.3);
    assert.deepEqual(resample(x, 8000, 8000), x);
    // … computed by the filter as well as by the shortcut that skips it.
    const r = new StreamingResampler(8000, 8000);
    const y = Float32Array.from([...r.push(x), ...r.flush()]);
    assert.deepEqual(y, x);
    const bad = x.slice();
    bad[100] = NaN;
    assert.throws(() => resample(bad, 8000, 8000), (e: unknown) => e instanceof CallmoodError && e.code === ErrorCodes.INVALID_AUDIO && /sample 100/.test(e.message));
  });
});

describe('quality, measured with tones', () => {
  for (const [inRate, outRate] of [...PAIRS, ...ODD_PAIRS.slice(0, 2)]) {
    it(`${inRate} → ${outRate} Hz: passband within ±0.1 dB, images and aliases ≥ 60 dB down`, (t) => {
      const low = Math.min(inRate, outRate);
      const n = Math.round(inRate); // 1 s
      // Steady state: away from the zeros before and after the signal.
      const from = Math.round(outRate * 0.1);
      const to = Math.round(outRate * 0.9);
      let worstGain = 0;
      let worstGainAt = 0;
      let worstResidual = -Infinity;
      let worstResidualAt = 0;
      for (let k = 0; k <= 15; k++) {
        const f = k === 0 ? 50 : (0.45 * low * k) / 15;
        const fit = fitTone(resample(tone(f, inRate, n), inRate, outRate), f, outRate, from, to);
        const gainDb = 20 * Math.log10(fit.amplitude);
        if (Math.abs(gainDb) > Math.abs(worstGain)) [worstGain, worstGainAt] = [gainDb, f];
        // Upsampling: the residual is the images; downsampling: anything the tone leaked into.
        if (fit.residualDb > worstResidual) [worstResidual, worstResidualAt] = [fit.residualDb, f];
      }
      let worstAlias = -Infinity;
      let worstAliasAt = 0;
      if (inRate > outRate) {
        // Tones from 0.55 × the output rate up to the input's Nyquist frequency must vanish.
        for (let k = 0; k <= 15; k++) {
          const f = 0.55 * outRate + ((0.499 * inRate - 0.55 * outRate) * k) / 15;
          const level = levelDb(resample(tone(f, inRate, n), inRate, outRate), from, to);
          if (level > worstAlias) [worstAlias, worstAliasAt] = [level, f];
        }
      }
      const summary =
        `${inRate} → ${outRate} Hz: passband worst ${worstGain.toExponential(1)} dB at ${worstGainAt.toFixed(0)} Hz; ` +
        `${inRate < outRate ? 'images' : 'residual'} worst ${worstResidual.toFixed(1)} dB at ${worstResidualAt.toFixed(0)} Hz` +
        (inRate > outRate ? `; aliases worst ${worstAlias.toFixed(1)} dB at ${worstAliasAt.toFixed(0)} Hz` : '');
      t.diagnostic(summary);
      assert.ok(Math.abs(worstGain) <= 0.1, summary);
      assert.ok(worstResidual <= -60, summary);
      assert.ok(worstAlias <= -60, summary);
    });
  }
});

describe('time alignment', () => {
  for (const [inRate, outRate] of [[8000, 16000], [48000, 16000], [24414.0625, 16000], [16000, 8000]] as const) {
    it(`${inRate} → ${outRate} Hz: output j is the input tone at time j / outRate`, (t) => {
      const n = Math.round(inRate * 0.5);
      for (const f of [300, 1000, 3000]) {
        const y = resample(tone(f, inRate, n, 0.8), inRate, outRate);
        const from = Math.round(outRate * 0.1);
        const to = Math.round(outRate * 0.4);
        const fit = fitTone(y, f, outRate, from, to);
        let maxErr = 0;
        for (let j = from; j < to; j++) maxErr = Math.max(maxErr, Math.abs(y[j] - 0.8 * Math.sin((2 * Math.PI * f * j) / outRate)));
        const shiftSamples = (fit.phase / (2 * Math.PI * f)) * outRate;
        const msg = `${inRate} → ${outRate} Hz, ${f} Hz: phase ${fit.phase.toExponential(2)} rad (${shiftSamples.toExponential(2)} output samples), max error ${maxErr.toExponential(2)}`;
        t.diagnostic(msg);
        assert.ok(Math.abs(fit.phase) < 1e-4, msg);
        assert.ok(maxErr < 1e-4, msg);
      }
    });
  }

  it('keeps every input sample unchanged at the even outputs of 8 → 16 kHz', () => {
    const x = speechLikeSignal(8000, 0.2);
    const y = resample(x, 8000, 16000);
    for (let i = 0; i < x.length; i++) assert.equal(y[2 * i], x[i], `sample ${i}`);
  });
});

describe('stream life cycle', () => {
  it('returns the same reused view in steady state (20 ms chunks, 8 → 16 kHz)', () => {
    const r = new StreamingResampler(8000, 16000);
    const chunk = speechLikeSignal(8000, 0.02);
    r.push(chunk);
    const first = r.push(chunk);
    for (let k = 0; k < 50; k++) {
      // Not even a new view object: the same Float32Array comes back, refilled.
      assert.equal(r.push(chunk), first, `push ${k} returned a new array in steady state`);
    }
    assert.equal(first.length, 320);
    r.close();
  });

  it('reset() and flush() bring back the fresh state', () => {
    const x = speechLikeSignal(48000, 0.3, 5);
    const fresh = resample(x, 48000, 16000);
    const r = new StreamingResampler(48000, 16000);
    r.push(speechLikeSignal(48000, 0.1, 9));
    r.reset();
    const afterReset = [...r.push(x), ...r.flush()];
    assert.deepEqual(Float32Array.from(afterReset), fresh);
    // flush() ended the previous signal, so this one starts at time 0 again.
    const afterFlush = [...r.push(x), ...r.flush()];
    assert.deepEqual(Float32Array.from(afterFlush), fresh);
  });

  it('throws CLOSED after close()', () => {
    const r = new StreamingResampler(8000, 16000);
    r.close();
    r.close();
    assertCode(() => r.push(new Float32Array(4)), ErrorCodes.CLOSED, /close/);
    assertCode(() => r.flush(), ErrorCodes.CLOSED);
    assertCode(() => r.reset(), ErrorCodes.CLOSED);
  });
});

describe('bad input', () => {
  it('rejects unsupported rates, naming the value and the range', () => {
    for (const bad of [0, -8000, NaN, Infinity, -Infinity, 3999, 192001, 1e9]) {
      assertCode(() => new StreamingResampler(bad, 16000), ErrorCodes.UNSUPPORTED_RATE, new RegExp(`inRate ${String(bad)}.*4000.*192000`));
      assertCode(() => new StreamingResampler(16000, bad), ErrorCodes.UNSUPPORTED_RATE, new RegExp(`outRate ${String(bad)}.*4000.*192000`));
      assertCode(() => resample(new Float32Array(8), bad, 16000), ErrorCodes.UNSUPPORTED_RATE);
    }
    assertCode(() => new StreamingResampler('8000' as unknown as number, 16000), ErrorCodes.UNSUPPORTED_RATE, /inRate 8000/);
  });

  it('rejects NaN and infinite samples, naming the index, and ignores that chunk', () => {
    const x = speechLikeSignal(8000, 0.1);
    for (const badValue of [NaN, Infinity, -Infinity]) {
      const r = new StreamingResampler(8000, 16000);
      const good = [...r.push(x.subarray(0, 400))];
      const bad = x.slice(400, 560);
      bad[37] = badValue;
      assertCode(() => r.push(bad), ErrorCodes.INVALID_AUDIO, new RegExp(`sample 37 .*${String(badValue)}`));
      good.push(...r.push(x.subarray(400)), ...r.flush());
      assert.deepEqual(Float32Array.from(good), resample(x, 8000, 16000), 'the bad chunk left a trace');
    }
    assertCode(() => resample(Float32Array.of(0, 1, NaN), 8000, 16000), ErrorCodes.INVALID_AUDIO, /sample 2/);
  });
});

describe('benchResample', () => {
  it('reports a realtime factor for a short run', () => {
    const r = benchResample({ seconds: 2 });
    assert.equal(r.inRate, 8000);
    assert.equal(r.outRate, 16000);
    assert.equal(r.chunkMs, 20);
    assert.equal(r.seconds, 2);
    assert.ok(r.realtimeFactor > 1, `realtime factor ${r.realtimeFactor}`);
    assertCode(() => benchResample({ seconds: 0 }), ErrorCodes.INVALID_OPTION, /seconds/);
    assertCode(() => benchResample({ chunkMs: NaN }), ErrorCodes.INVALID_OPTION, /chunkMs/);
  });
});
