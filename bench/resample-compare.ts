/**
 * Our StreamingResampler against libsamplerate (its wasm port, @alexanderolsen/libsamplerate-js), on the same
 * measurements, both streaming in 20 ms chunks:
 * - passband: worst gain deviation (dB) of tones up to 0.45 × the lower rate (our specification), and up to 0.40 ×
 *   (libsamplerate's MEDIUM converter is documented at 90% bandwidth, FASTEST at 80%);
 * - images (upsampling: the residual after removing the fitted tone) and aliases (downsampling: the output level of
 *   input tones from 0.55 × the output rate to the input's Nyquist frequency), worst, in dB;
 * - offset: where an input impulse comes out, against its true time, in output samples (0 = time-aligned);
 * - speed: seconds of audio per CPU second, best of 3 runs of 60 s of a speech-like signal.
 *
 * Run: node --import tsx bench/resample-compare.ts
 */
import lsr from '@alexanderolsen/libsamplerate-js';

import { StreamingResampler } from '../src/audio/resample.js';
import { benchResample } from '../src/bench/resample.js';
import { fitTone, levelDb, speechLikeSignal } from '../test/helpers/signal.js';

// The package is CommonJS (UMD): its exports arrive on the default import.
const { create, ConverterType } = lsr;

/** Pushes one chunk, returns the output samples it produced (valid until the next call). */
type Push = (chunk: Float32Array) => Float32Array;

interface Converter {
  name: string;
  /** A fresh stream for a rate pair. */
  open(inRate: number, outRate: number): Promise<{ push: Push; close(): void }>;
}

const CHUNK_MS = 20;
const SPEED_SECONDS = 60;
const SPEED_RUNS = 3;

const ours: Converter = {
  name: 'callmood StreamingResampler',
  async open(inRate, outRate) {
    const r = new StreamingResampler(inRate, outRate);
    return { push: (c) => r.push(c), close: () => r.close() };
  },
};

type ConverterTypeValue = (typeof ConverterType)[keyof typeof ConverterType];

function libsamplerate(label: string, converterType: ConverterTypeValue): Converter {
  return {
    name: `libsamplerate ${label}`,
    async open(inRate, outRate) {
      const src = await create(1, inRate, outRate, { converterType });
      let out = new Float32Array(0);
      const frames = { frames: 0 };
      return {
        push(c) {
          const need = Math.ceil((c.length * outRate) / inRate) + 16;
          if (out.length < need) out = new Float32Array(need);
          src.full(c, out, frames);
          return out.subarray(0, frames.frames);
        },
        close: () => src.destroy(),
      };
    },
  };
}

const CONVERTERS: Converter[] = [
  ours,
  libsamplerate('SINC_BEST_QUALITY', ConverterType.SRC_SINC_BEST_QUALITY),
  libsamplerate('SINC_MEDIUM_QUALITY', ConverterType.SRC_SINC_MEDIUM_QUALITY),
  libsamplerate('SINC_FASTEST', ConverterType.SRC_SINC_FASTEST),
];

const PAIRS: Array<[number, number]> = [
  [8000, 16000],
  [48000, 16000],
];

function chunkLength(rate: number): number {
  return Math.max(1, Math.round((rate * CHUNK_MS) / 1000));
}

/** Streams `x` through a fresh stream in 20 ms chunks; our resampler is flushed, libsamplerate has no flush. */
async function streamAll(conv: Converter, x: Float32Array, inRate: number, outRate: number): Promise<Float32Array> {
  const s = await conv.open(inRate, outRate);
  const out = new Float32Array(Math.ceil((x.length * outRate) / inRate) + 64);
  let o = 0;
  const step = chunkLength(inRate);
  for (let i = 0; i < x.length; i += step) {
    const y = s.push(x.subarray(i, Math.min(i + step, x.length)));
    out.set(y.subarray(0, Math.min(y.length, out.length - o)), o);
    o += y.length;
  }
  s.close();
  return out.subarray(0, Math.min(o, out.length));
}

function tone(freq: number, rate: number, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

interface Row {
  converter: string;
  pair: string;
  passbandDb: number;
  passband40Db: number;
  imageAliasDb: number;
  offset: number;
  realtimeFactor: number;
}

async function measure(conv: Converter, inRate: number, outRate: number): Promise<Row> {
  const low = Math.min(inRate, outRate);
  const n = inRate; // 1 s per tone
  // Steady state: past the start-up and clear of the end (libsamplerate's stream still holds its last samples).
  const from = Math.round(0.1 * outRate);
  const to = Math.round(0.8 * outRate);
  let passband = 0;
  let passband40 = 0;
  let imageAlias = -Infinity;
  for (let k = 1; k <= 18; k++) {
    const f = (0.45 * low * k) / 18; // k = 16 is 0.40 × low
    const fit = fitTone(await streamAll(conv, tone(f, inRate, n), inRate, outRate), f, outRate, from, to);
    const gain = 20 * Math.log10(fit.amplitude);
    if (Math.abs(gain) > Math.abs(passband)) passband = gain;
    if (k <= 16 && Math.abs(gain) > Math.abs(passband40)) passband40 = gain;
    if (inRate < outRate) imageAlias = Math.max(imageAlias, fit.residualDb);
  }
  if (inRate > outRate) {
    for (let k = 0; k <= 15; k++) {
      const f = 0.55 * outRate + ((0.499 * inRate - 0.55 * outRate) * k) / 15;
      imageAlias = Math.max(imageAlias, levelDb(await streamAll(conv, tone(f, inRate, n), inRate, outRate), from, to));
    }
  }
  // An impulse at input time 0.1 s belongs at output index 0.1 · outRate.
  const impulse = new Float32Array(Math.round(0.3 * inRate));
  impulse[Math.round(0.1 * inRate)] = 1;
  const y = await streamAll(conv, impulse, inRate, outRate);
  let peak = 0;
  for (let j = 1; j < y.length; j++) if (Math.abs(y[j]) > Math.abs(y[peak])) peak = j;
  const offset = peak - Math.round(0.1 * outRate);

  // Speed: the same speech-like signal, the same 20 ms chunks, best of a few runs (the machine is shared).
  const step = chunkLength(inRate);
  const chunks = Math.round((10 * inRate) / step);
  const signal = speechLikeSignal(inRate, (chunks * step) / inRate);
  const views = Array.from({ length: chunks }, (_, c) => signal.subarray(c * step, (c + 1) * step));
  const total = Math.ceil((SPEED_SECONDS * inRate) / step);
  let best = 0;
  for (let run = 0; run < SPEED_RUNS + 1; run++) {
    const s = await conv.open(inRate, outRate);
    const before = process.cpuUsage();
    let sink = 0;
    for (let c = 0; c < total; c++) sink += s.push(views[c % chunks]).length;
    const used = process.cpuUsage(before);
    s.close();
    if (sink === 0) throw new Error('no output');
    // Run 0 warms the JIT and is not counted.
    if (run > 0) best = Math.max(best, ((total * step) / inRate) / ((used.user + used.system) / 1e6));
  }
  return { converter: conv.name, pair: `${inRate / 1000} → ${outRate / 1000} kHz`, passbandDb: passband, passband40Db: passband40, imageAliasDb: imageAlias, offset, realtimeFactor: best };
}

const rows: Row[] = [];
for (const [inRate, outRate] of PAIRS) {
  for (const conv of CONVERTERS) rows.push(await measure(conv, inRate, outRate));
}

console.log(`Streaming in ${CHUNK_MS} ms chunks, Node ${process.version}, one core of a shared 2-core machine.\n`);
const db = (v: number): string => (Math.abs(v) < 1e-3 ? v.toExponential(1) : v.toFixed(3));
console.log('| converter | rates | passband worst deviation ≤ 0.45 × lower rate (dB) | same ≤ 0.40 × (dB) | worst image (↑) / alias (↓) (dB) | impulse offset (output samples) | realtime factor |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.converter} | ${r.pair} | ${db(r.passbandDb)} | ${db(r.passband40Db)} | ${r.imageAliasDb.toFixed(1)} | ${r.offset} | ${r.realtimeFactor.toFixed(0)} |`);
}
console.log('\nImages: residual power after removing the fitted tone, for tones up to 0.45 × the lower rate. Aliases: output');
console.log('level of full-scale input tones from 0.55 × the output rate to the input Nyquist frequency. libsamplerate documents');
console.log('its converters as 97% (BEST), 90% (MEDIUM) and 80% (FASTEST) bandwidth (of the lower Nyquist frequency): MEDIUM');
console.log('reaches its band edge at 0.45 ×, FASTEST droops from below 0.40 ×. Realtime factor: seconds of audio per CPU second, best');
console.log(`of ${SPEED_RUNS} runs of ${SPEED_SECONDS} s; on this shared machine runs vary by ±20%.`);

const b = benchResample({ seconds: 600 });
console.log(`\nbenchResample(8 → 16 kHz, 600 s, 20 ms chunks): realtime factor ${b.realtimeFactor.toFixed(0)} (${b.cpuSeconds.toFixed(3)} CPU s)`);
