/**
 * Test signals and measurements that the resampler's tests and its comparison with libsamplerate
 * (bench/resample-compare.ts) share: a speech-like signal, a least-squares tone fit, a level in dB.
 */

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
