/**
 * A telephone channel for wideband audio: what a caller's voice goes through before it reaches Twilio as 8 kHz
 * μ-law. Down to 8 kHz, optional line noise at a given SNR, band-limited to the voice band (300–3400 Hz by
 * default, ITU-T G.712's channel), G.711 encoded and decoded, then back up to the input rate. Training uses it as
 * augmentation and evaluation as `--channel telephone`; deterministic for a given seed.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { ALAW_TO_FLOAT, MULAW_TO_FLOAT, decodeG711Into, encodeAlaw, encodeMulaw } from './codecs.js';
import { resample } from './resample.js';
import { assertFiniteSamples } from './validate.js';
import { gaussian } from '../util/random.js';

/** Telephone channel settings; every field optional, see `DEFAULT_TELEPHONE_OPTIONS`. */
export interface TelephoneOptions {
  /** Lower band edge in Hz (−3 dB point of a 4th-order Butterworth high-pass). */
  lowHz: number;
  /** Upper band edge in Hz (−3 dB point of a 4th-order Butterworth low-pass), below 4000. */
  highHz: number;
  /** G.711 law: `mulaw` (North America, Japan, and Twilio's streams) or `alaw` (Europe). */
  codec: 'mulaw' | 'alaw';
  /** Line noise: white noise added before band-limiting, this many dB below the active speech level; null: none. */
  snrDb: number | null;
  /** Gain in dB applied before encoding (clipping happens as on a real line). */
  gainDb: number;
  /** Seed of the noise generator. */
  seed: number;
}

/** Defaults: the G.712 voice band, μ-law, no added noise, unity gain. */
export const DEFAULT_TELEPHONE_OPTIONS: Readonly<TelephoneOptions> = Object.freeze({
  lowHz: 300,
  highHz: 3400,
  codec: 'mulaw',
  snrDb: null,
  gainDb: 0,
  seed: 1,
});

const LINE_RATE = 8000;

/** RBJ cookbook biquad coefficients, normalised by a0: [b0, b1, b2, a1, a2]. */
function biquad(kind: 'lowpass' | 'highpass', f0: number, q: number, fs: number): number[] {
  const w = (2 * Math.PI * f0) / fs;
  const cos = Math.cos(w);
  const alpha = Math.sin(w) / (2 * q);
  const a0 = 1 + alpha;
  const b1 = kind === 'lowpass' ? 1 - cos : -(1 + cos);
  const b0 = kind === 'lowpass' ? (1 - cos) / 2 : (1 + cos) / 2;
  return [b0 / a0, b1 / a0, b0 / a0, (-2 * cos) / a0, (1 - alpha) / a0];
}

/** Q of the two sections of a 4th-order Butterworth filter. */
const BUTTERWORTH4_Q = [1 / (2 * Math.cos(Math.PI / 8)), 1 / (2 * Math.cos((3 * Math.PI) / 8))];

function filterInPlace(x: Float64Array, [b0, b1, b2, a1, a2]: number[]): void {
  let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const y = b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
    x2 = x1; x1 = v; y2 = y1; y1 = y;
    x[i] = y;
  }
}


/**
 * Active speech level: mean power over the 20 ms blocks within 30 dB of the loudest one, so the silence around a
 * clip does not make the noise quieter than intended (a simplification of ITU-T P.56).
 */
export function activeLevel(x: ArrayLike<number>, blockSize: number): number {
  const powers: number[] = [];
  for (let i = 0; i + blockSize <= x.length; i += blockSize) {
    let p = 0;
    for (let j = i; j < i + blockSize; j++) p += x[j] * x[j];
    powers.push(p / blockSize);
  }
  if (powers.length === 0) {
    let p = 0;
    for (let j = 0; j < x.length; j++) p += x[j] * x[j];
    return x.length ? p / x.length : 0;
  }
  const peak = Math.max(...powers);
  const active = powers.filter((p) => p >= peak * 1e-3);
  return active.reduce((s, p) => s + p, 0) / active.length;
}

function validate(o: TelephoneOptions): void {
  const bad = (field: string, allowed: string, value: unknown) =>
    new CallmoodError(ErrorCodes.INVALID_OPTION, `telephone channel: ${field} is ${String(value)}; allowed: ${allowed}`);
  if (!(o.lowHz >= 0 && o.lowHz < o.highHz)) throw bad('lowHz', `0 ≤ lowHz < highHz (${o.highHz})`, o.lowHz);
  if (!(o.highHz > 0 && o.highHz < LINE_RATE / 2)) throw bad('highHz', `0 < highHz < ${LINE_RATE / 2}`, o.highHz);
  if (o.codec !== 'mulaw' && o.codec !== 'alaw') throw bad('codec', `'mulaw' or 'alaw'`, o.codec);
  if (o.snrDb !== null && !(Number.isFinite(o.snrDb) && o.snrDb >= -20 && o.snrDb <= 120)) {
    throw bad('snrDb', 'null or a number of dB in [-20, 120]', o.snrDb);
  }
  if (!(Number.isFinite(o.gainDb) && Math.abs(o.gainDb) <= 60)) throw bad('gainDb', 'a number of dB in [-60, 60]', o.gainDb);
  if (!Number.isInteger(o.seed)) throw bad('seed', 'an integer', o.seed);
}

/**
 * Passes `x` (mono, `sampleRate` Hz, any supported rate) through the telephone channel and returns audio at the
 * same rate and length.
 */
export function telephoneChannel(
  x: Float32Array,
  sampleRate: number,
  options: Partial<TelephoneOptions> = {},
): Float32Array {
  const o: TelephoneOptions = { ...DEFAULT_TELEPHONE_OPTIONS, ...options };
  validate(o);
  assertFiniteSamples(x, 'telephone channel input');
  if (x.length === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, 'telephone channel input has no samples');
  const narrow = Float64Array.from(resample(x, sampleRate, LINE_RATE));
  const gain = 10 ** (o.gainDb / 20);
  if (gain !== 1) for (let i = 0; i < narrow.length; i++) narrow[i] *= gain;
  if (o.snrDb !== null) {
    const level = activeLevel(narrow, LINE_RATE / 50);
    const sigma = Math.sqrt(level / 10 ** (o.snrDb / 10));
    const noise = gaussian(o.seed);
    for (let i = 0; i < narrow.length; i++) narrow[i] += sigma * noise();
  }
  for (const q of BUTTERWORTH4_Q) filterInPlace(narrow, biquad('highpass', o.lowHz, q, LINE_RATE));
  for (const q of BUTTERWORTH4_Q) filterInPlace(narrow, biquad('lowpass', o.highHz, q, LINE_RATE));
  const line = Float32Array.from(narrow);
  const bytes = o.codec === 'mulaw' ? encodeMulaw(line) : encodeAlaw(line);
  decodeG711Into(bytes, o.codec === 'mulaw' ? MULAW_TO_FLOAT : ALAW_TO_FLOAT, line);
  const wide = resample(line, LINE_RATE, sampleRate);
  // resample() rounds lengths up: trim or pad to exactly the input length so the clip keeps its timing.
  if (wide.length === x.length) return wide;
  const out = new Float32Array(x.length);
  out.set(wide.subarray(0, x.length));
  return out;
}
