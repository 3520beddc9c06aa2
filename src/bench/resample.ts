/**
 * Resampler throughput benchmark (`callmood bench resample`), plus the small signal tools that the resampler's
 * tests and its comparison with libsamplerate share: a speech-like test signal and a least-squares tone fit.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { StreamingResampler } from '../audio/resample.js';

/** Options of `benchResample`; every field is optional. */
export interface BenchResampleOptions {
  /** Input rate in Hz (default 8000, the Twilio rate). */
  inRate?: number;
  /** Output rate in Hz (default 16000, the model's rate). */
  outRate?: number;
  /** Seconds of audio streamed in the timed loop (default 600). */
  seconds?: number;
  /** Chunk length in milliseconds (default 20, a Twilio media frame). */
  chunkMs?: number;
}

/** What `benchResample` measured. */
export interface BenchResampleResult {
  /** Seconds of audio resampled per CPU second (user + system) of this process. */
  realtimeFactor: number;
  /** Input rate in Hz. */
  inRate: number;
  /** Output rate in Hz. */
  outRate: number;
  /** Chunk length in milliseconds. */
  chunkMs: number;
  /** Seconds of audio streamed in the timed loop (whole chunks, so it can exceed the request slightly). */
  seconds: number;
  /** CPU seconds (user + system) spent in the timed loop. */
  cpuSeconds: number;
}

const DEFAULT_BENCH: Required<BenchResampleOptions> = Object.freeze({
  inRate: 8000,
  outRate: 16000,
  seconds: 600,
  chunkMs: 20,
});

/** Length of the signal that the timed loop cycles through: long enough to vary, small enough to stay cached. */
const SIGNAL_SECONDS = 10;
/** Audio streamed before timing, so the timed loop runs optimised code. */
const WARMUP_SECONDS = 5;

/**
 * A deterministic speech-like signal: a voiced source (an impulse train whose pitch glides between ~100 and
 * ~220 Hz) through three formant resonators, plus breath noise, gated by a ~4 Hz syllable envelope with pauses.
 * Peak level about −6 dBFS. Not speech, but it has speech's spectrum tilt, pitch range and syllable rhythm.
 */
export function speechLikeSignal(rate: number, seconds: number, seed = 1): Float32Array {
  const n = Math.max(0, Math.round(rate * seconds));
  const x = new Float32Array(n);
  let state = seed >>> 0 || 1;
  const noise = (): number => {
    // xorshift32: fast, seeded, good enough for a test signal
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296 - 0.5;
  };
  // Two-pole resonators at typical formant frequencies (Hz) and bandwidths (Hz), kept below the Nyquist frequency.
  const formants = [
    [500, 80],
    [1500, 120],
    [2500, 160],
  ]
    .filter(([f]) => f < 0.45 * rate)
    .map(([f, bw]) => {
      const r = Math.exp((-Math.PI * bw) / rate);
      return { a1: 2 * r * Math.cos((2 * Math.PI * f) / rate), a2: -r * r, g: 1 - r, y1: 0, y2: 0 };
    });
  let phase = 0;
  let peak = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const f0 = 160 + 60 * Math.sin(2 * Math.PI * 0.7 * t) * Math.sin(2 * Math.PI * 0.13 * t + 1);
    phase += f0 / rate;
    let source = 0;
    if (phase >= 1) {
      phase -= 1;
      source = 1;
    }
    source += 0.05 * noise();
    let y = 0;
    for (const f of formants) {
      const v = f.g * source + f.a1 * f.y1 + f.a2 * f.y2;
      f.y2 = f.y1;
      f.y1 = v;
      y += v;
    }
    // Syllables at ~4 Hz, and a pause of ~0.4 s every ~2.3 s.
    const syllable = Math.max(0, Math.sin(2 * Math.PI * 4.1 * t));
    const pause = (t % 2.3) < 0.4 ? 0.02 : 1;
    const v = y * syllable * pause + 0.002 * noise();
    x[i] = v;
    peak = Math.max(peak, Math.abs(v));
  }
  if (peak > 0) for (let i = 0; i < n; i++) x[i] *= 0.5 / peak;
  return x;
}

/** What `fitTone` found. */
export interface ToneFit {
  /** Amplitude of the best-fitting sinusoid at the given frequency. */
  amplitude: number;
  /** Its phase in radians, as in amplitude · sin(2π f t + phase); t = index / rate. */
  phase: number;
  /** Power left after subtracting the fitted sinusoid, relative to the sinusoid's power, in dB. */
  residualDb: number;
}

/**
 * Least-squares fit of a sinusoid at a known frequency to `y[from..to)` (sampled at `rate`). The residual holds
 * everything else: images, aliases, noise, distortion.
 */
export function fitTone(y: ArrayLike<number>, freq: number, rate: number, from: number, to: number): ToneFit {
  let ss = 0;
  let sc = 0;
  let cc = 0;
  let ys = 0;
  let yc = 0;
  const w = (2 * Math.PI * freq) / rate;
  for (let j = from; j < to; j++) {
    const s = Math.sin(w * j);
    const c = Math.cos(w * j);
    ss += s * s;
    sc += s * c;
    cc += c * c;
    ys += y[j] * s;
    yc += y[j] * c;
  }
  const det = ss * cc - sc * sc;
  const a = (ys * cc - yc * sc) / det; // sin weight
  const b = (yc * ss - ys * sc) / det; // cos weight
  let residual = 0;
  let tone = 0;
  for (let j = from; j < to; j++) {
    const m = a * Math.sin(w * j) + b * Math.cos(w * j);
    residual += (y[j] - m) ** 2;
    tone += m * m;
  }
  return { amplitude: Math.hypot(a, b), phase: Math.atan2(b, a), residualDb: 10 * Math.log10(residual / tone) };
}

/** Mean power of `y[from..to)` relative to a full-scale (amplitude 1) sinusoid, in dB. */
export function levelDb(y: ArrayLike<number>, from: number, to: number): number {
  let p = 0;
  for (let j = from; j < to; j++) p += y[j] * y[j];
  return 10 * Math.log10(p / (to - from) / 0.5);
}

/**
 * Streams `seconds` of a speech-like signal through a `StreamingResampler` in `chunkMs` chunks and measures the
 * process's CPU time (user + system) around the loop, after a warm-up.
 * @throws CallmoodError INVALID_OPTION for a non-positive or non-finite `seconds` or `chunkMs`;
 *   UNSUPPORTED_RATE for a bad rate
 */
export function benchResample(opts: BenchResampleOptions = {}): BenchResampleResult {
  const o = { ...DEFAULT_BENCH, ...stripUndefined(opts) };
  for (const field of ['seconds', 'chunkMs'] as const) {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${field} must be a positive number of ${field === 'seconds' ? 'seconds' : 'milliseconds'}, got ${String(v)}`);
    }
  }
  const resampler = new StreamingResampler(o.inRate, o.outRate); // validates the rates
  const chunk = Math.max(1, Math.round((o.inRate * o.chunkMs) / 1000));
  // A whole number of chunks, so every chunk is a view of the signal.
  const chunksInSignal = Math.max(1, Math.round((SIGNAL_SECONDS * o.inRate) / chunk));
  const signal = speechLikeSignal(o.inRate, (chunksInSignal * chunk) / o.inRate);
  const views: Float32Array[] = [];
  for (let c = 0; c < chunksInSignal; c++) views.push(signal.subarray(c * chunk, (c + 1) * chunk));

  const run = (count: number): number => {
    let sink = 0;
    for (let c = 0; c < count; c++) {
      const y = resampler.push(views[c % chunksInSignal]);
      if (y.length > 0) sink += y[0];
    }
    return sink;
  };
  run(Math.ceil((WARMUP_SECONDS * o.inRate) / chunk));
  resampler.reset();

  const chunks = Math.ceil((o.seconds * o.inRate) / chunk);
  const before = process.cpuUsage();
  const sink = run(chunks);
  const used = process.cpuUsage(before);
  resampler.close();
  if (Number.isNaN(sink)) throw new Error('unreachable: keeps the loop from being optimised away');

  const cpuSeconds = (used.user + used.system) / 1e6;
  const seconds = (chunks * chunk) / o.inRate;
  return {
    realtimeFactor: seconds / Math.max(cpuSeconds, 1e-6),
    inRate: o.inRate,
    outRate: o.outRate,
    chunkMs: o.chunkMs,
    seconds,
    cpuSeconds,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
