/**
 * Voice-activity decisions over feature frames: one causal, streaming gate that training and the live stream
 * both run on the very frames the model sees, so "speech" means the same thing in both and costs nothing extra.
 *
 * The frame energy is the mean natural-log mel power of the frame: c0/√nMels for `mfcc` (c0 of the orthonormal
 * DCT-II is Σ log-mel / √nMels; the lifter leaves c0 alone) or the mean of the static log-mel row for `logmel`.
 * Every rule below compares energies with each other, and every state starts from the first frame, so scaling the
 * audio by a gain shifts all energies by one constant and leaves the decisions unchanged (phone lines apply AGC:
 * absolute level is a trap). Two absolute levels remain, both at the very bottom: the mel log floor of the features
 * and `minLevelDbfs`, below which an energy counts as that level. The second is there because studio clips pause in
 * near-digital silence (16-bit quantisation noise; μ-law's dead zone turns quiet line noise into runs of exact
 * zeros): measured against such a floor, breaths and lip noise 40–60 dB below the voice stand 20 dB above it. The
 * default, white noise at −90 dBFS, is 50 dB below the quietest speech a phone line carries usefully.
 *
 * A frame is speech when its energy is above both
 * - the noise floor + `thresholdDb`: the floor follows the energy down quickly and rises only slowly, so it sits at
 *   the level of the pauses (line noise, room tone) and speech cannot drag it up; and
 * - the recent peak − `rangeDb`: the peak follows the energy up at once and decays slowly. This bounds how far
 *   below the caller's own speech level a frame may be and still count, which matters when the pauses are far
 *   quieter than any speech (near-digital silence in studio clips, a μ-law line with no noise decoding to exact
 *   zeros): there the floor sits 50–70 dB below speech and the floor rule alone would call breaths and
 *   reverberation tails speech.
 * After the last frame above both, `hangoverS` more frames are speech too, so the short gaps between words and
 * the weak consonants at their ends do not chop speech.
 *
 * The first frame sets the floor and the peak. If a call starts with speech at once, the floor starts at speech
 * level and nothing is speech until the first pause between syllables or words (50–200 ms of low energy in
 * running speech) pulls the floor down: the fast fall makes that take a few frames, so speech is detected within
 * about the first syllable (measured in test/vad.test.ts).
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { featureConfigKey, featureDims, resolveFeatureConfig, type FeatureConfig } from './config.js';
import { computeFeatures } from './mfcc.js';
import { gaussian } from '../util/random.js';

/** Tuning of the gate; every field optional, see `DEFAULT_SPEECH_GATE_OPTIONS` for the values and their reasons. */
export interface SpeechGateOptions {
  /** A frame is speech only if its energy is this many dB above the noise floor. */
  thresholdDb: number;
  /** … and no more than this many dB below the recent peak energy. */
  rangeDb: number;
  /** Frames after the last one above the thresholds that still count as speech, in seconds. */
  hangoverS: number;
  /** Time constant (s) with which the floor follows the energy down. */
  floorFallS: number;
  /** Rate (dB/s) at which the floor rises while the energy is above it. */
  floorRiseDbPerS: number;
  /** Rate (dB/s) at which the peak decays while the energy is below it. */
  peakFallDbPerS: number;
  /**
   * Quietest level taken as a measurement, as the RMS level (dBFS) of white noise whose frame energy it is: lower
   * energies count as this one. The one absolute level in the gate; see the module comment.
   */
  minLevelDbfs: number;
}

/**
 * Defaults, measured on 60 TESS, RAVDESS and CREMA-D clips, clean and through the telephone channel (`bench/dataset.ts
 * vad`; figures in bench/RESULTS.md, "Speech gate defaults"):
 * - thresholdDb 4.5: stationary line noise (white, band-limited) moves about ±1 dB frame to frame in mean log-mel
 *   energy; 4.5 dB above the floor (which sits low in that spread) let no frame of 20 s of white or telephone noise
 *   through at −20 to −70 dBFS, while 6 dB lost the weaker halves of words on a 20 dB-SNR line (clean vs telephone
 *   agreement 0.83 at 6 dB, 0.85 at 4.5 dB; 0.87 at 3 dB, where 1% of pure-noise frames became speech).
 * - rangeDb 35: running speech spans about 30 dB from stressed vowels to weak fricatives; frames more than 35 dB
 *   below the recent peak are breaths, lip noise and reverberation tails.
 * - hangoverS 0.15: gaps between words and stop closures last 50–150 ms; longer silences are pauses.
 * - floorFallS 0.03: three frames, so one pause between syllables (≥ 50 ms) brings the floor down to it, which is
 *   what lets a call that opens with speech be detected within its first syllables; longer than one frame so a
 *   single outlier frame does not pin the floor.
 * - floorRiseDbPerS 3: while someone talks for 3 s without a pause the floor creeps up 9 dB at most, still below
 *   their speech; after a real rise in line noise (a noisy room, AGC turning the gain up by 20 dB) the floor catches
 *   up within about 7 s, and until then the louder noise counts as speech, which the window speech ratio and the
 *   model tolerate better than losing speech.
 * - peakFallDbPerS 3: the peak forgets a shout at 3 dB/s, so the 35 dB range below it still holds the normal speech
 *   that follows, and after a quiet stretch the range rule is set by the new speech.
 * - minLevelDbfs −90: see the module comment; −85 rejected more pre-speech breath in RAVDESS but made the ×0.1
 *   decisions differ more (mean agreement 0.94 against 0.96), −100 let the breaths back in.
 */
export const DEFAULT_SPEECH_GATE_OPTIONS: Readonly<SpeechGateOptions> = Object.freeze({
  thresholdDb: 4.5,
  rangeDb: 35,
  hangoverS: 0.15,
  floorFallS: 0.03,
  floorRiseDbPerS: 3,
  peakFallDbPerS: 3,
  minLevelDbfs: -90,
});

/** Natural log of power per dB: the features are natural-log mel powers. */
const NATS_PER_DB = Math.LN10 / 10;

function checkOptions(o: SpeechGateOptions): void {
  const bad = (field: string, allowed: string) =>
    new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `speech gate: ${field} is ${String((o as unknown as Record<string, unknown>)[field])}; allowed: ${allowed}`,
    );
  const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (!finite(o.thresholdDb) || o.thresholdDb < 0 || o.thresholdDb > 60) throw bad('thresholdDb', 'a number of dB in [0, 60]');
  if (!finite(o.rangeDb) || o.rangeDb <= 0 || o.rangeDb > 200) throw bad('rangeDb', 'a number of dB in (0, 200]');
  if (!finite(o.hangoverS) || o.hangoverS < 0 || o.hangoverS > 5) throw bad('hangoverS', 'seconds in [0, 5]');
  if (!finite(o.floorFallS) || o.floorFallS < 0 || o.floorFallS > 60) throw bad('floorFallS', 'seconds in [0, 60]');
  if (!finite(o.floorRiseDbPerS) || o.floorRiseDbPerS < 0 || o.floorRiseDbPerS > 1000) {
    throw bad('floorRiseDbPerS', 'dB/s in [0, 1000]');
  }
  if (!finite(o.peakFallDbPerS) || o.peakFallDbPerS < 0 || o.peakFallDbPerS > 1000) throw bad('peakFallDbPerS', 'dB/s in [0, 1000]');
  if (!finite(o.minLevelDbfs) || o.minLevelDbfs < -200 || o.minLevelDbfs > 0) throw bad('minLevelDbfs', 'dBFS in [-200, 0]');
  const known = Object.keys(DEFAULT_SPEECH_GATE_OPTIONS);
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `speech gate: unknown option(s) ${unknown.join(', ')}; allowed: ${known.join(', ')}`,
    );
  }
}

const minEnergyCache = new Map<string, number>();

/**
 * Frame energy of white Gaussian noise at `dbfs` RMS under `config`: measured on 0.25 s of seeded noise through the
 * feature code itself (JS kernel), so window, pre-emphasis, band and log floor are all accounted for. Cached.
 */
export function whiteNoiseEnergy(config: Readonly<FeatureConfig>, dbfs: number): number {
  const key = `${featureConfigKey(config)}|${dbfs}`;
  const hit = minEnergyCache.get(key);
  if (hit !== undefined) return hit;
  const n = Math.max(config.winLength, Math.round(config.sampleRate / 4));
  const x = new Float32Array(n);
  const sigma = 10 ** (dbfs / 20);
  const normal = gaussian(0x9e3779b9);
  for (let i = 0; i < n; i++) x[i] = sigma * normal();
  const m = computeFeatures(x, config, { kernel: 'js' });
  const nMels = config.nMels;
  let sum = 0;
  for (let t = 0; t < m.frames; t++) {
    if (config.kind === 'mfcc') sum += m.data[t * m.dims] / Math.sqrt(nMels);
    else {
      let s = 0;
      for (let k = 0; k < nMels; k++) s += m.data[t * m.dims + k];
      sum += s / nMels;
    }
  }
  const e = sum / m.frames;
  minEnergyCache.set(key, e);
  return e;
}

/** Canonical key of gate options (for caches): equal keys give equal decisions. */
export function speechGateKey(options: Partial<SpeechGateOptions> = {}): string {
  const o = { ...DEFAULT_SPEECH_GATE_OPTIONS, ...options };
  checkOptions(o);
  const keys = Object.keys(DEFAULT_SPEECH_GATE_OPTIONS).sort() as (keyof SpeechGateOptions)[];
  return JSON.stringify(keys.map((k) => [k, o[k]]));
}

/**
 * Streaming speech/non-speech decision per feature frame. One per audio stream (call track or clip); `push` each
 * frame in order. Causal (a decision never waits for later frames), deterministic, allocation-free per frame;
 * pushing frames one by one or a whole clip through `speechMask` gives identical decisions.
 */
export class SpeechGate {
  /** Values per feature frame the gate expects. */
  readonly dims: number;
  readonly options: Readonly<SpeechGateOptions>;
  private readonly kind: 'mfcc' | 'logmel';
  private readonly nMels: number;
  private readonly c0Scale: number;
  private readonly threshold: number;
  private readonly range: number;
  private readonly hangoverFrames: number;
  private readonly fallCoeff: number;
  private readonly floorRise: number;
  private readonly peakFall: number;
  /** Energies below this count as this (see `minLevelDbfs`). */
  readonly minEnergy: number;
  private floor = 0;
  private peak = 0;
  private hang = 0;
  private started = false;
  private frameCount = 0;
  private lastEnergy = 0;

  constructor(featureConfig: Partial<FeatureConfig> = {}, options: Partial<SpeechGateOptions> = {}) {
    const c = resolveFeatureConfig(featureConfig);
    const o: SpeechGateOptions = { ...DEFAULT_SPEECH_GATE_OPTIONS, ...options };
    checkOptions(o);
    this.options = Object.freeze(o);
    this.dims = featureDims(c);
    this.kind = c.kind;
    this.nMels = c.nMels;
    this.c0Scale = 1 / Math.sqrt(c.nMels);
    const frameS = c.hop / c.sampleRate;
    this.threshold = o.thresholdDb * NATS_PER_DB;
    this.range = o.rangeDb * NATS_PER_DB;
    this.hangoverFrames = Math.round(o.hangoverS / frameS);
    // One-pole follower: after k frames below, the gap to the energy shrinks by (1 − a)^k = exp(−k·frame/τ).
    this.fallCoeff = o.floorFallS === 0 ? 1 : 1 - Math.exp(-frameS / o.floorFallS);
    this.floorRise = o.floorRiseDbPerS * NATS_PER_DB * frameS;
    this.peakFall = o.peakFallDbPerS * NATS_PER_DB * frameS;
    this.minEnergy = whiteNoiseEnergy(c, o.minLevelDbfs);
  }

  /** Frames pushed since construction or the last reset. */
  get frames(): number {
    return this.frameCount;
  }

  /** Energy (mean natural-log mel power) of the last frame pushed. */
  get energy(): number {
    return this.lastEnergy;
  }

  /** Current noise floor, in the same units as `energy`. */
  get noiseFloor(): number {
    return this.floor;
  }

  /** Mean natural-log mel power of a frame (static part; deltas, if any, are ignored). */
  frameEnergy(frame: ArrayLike<number>, offset = 0): number {
    if (this.kind === 'mfcc') return frame[offset] * this.c0Scale;
    let s = 0;
    for (let m = 0; m < this.nMels; m++) s += frame[offset + m];
    return s / this.nMels;
  }

  /** Takes the next frame (`dims` values from `offset`) and returns whether it is speech. */
  push(frame: ArrayLike<number>, offset = 0): boolean {
    const raw = this.frameEnergy(frame, offset);
    if (!Number.isFinite(raw)) {
      throw new CallmoodError(ErrorCodes.INVALID_AUDIO, `speech gate: frame ${this.frameCount} has a non-finite energy (${raw})`);
    }
    this.frameCount++;
    this.lastEnergy = raw;
    const e = raw > this.minEnergy ? raw : this.minEnergy;
    if (!this.started) {
      this.started = true;
      this.floor = e;
      this.peak = e;
    } else {
      // Floor: fast down, slow (rate-limited) up.
      if (e < this.floor) this.floor += this.fallCoeff * (e - this.floor);
      else this.floor = Math.min(e, this.floor + this.floorRise);
      // Peak: up at once, slow (rate-limited) down, never below the floor.
      if (e > this.peak) this.peak = e;
      else this.peak = Math.max(e, this.peak - this.peakFall);
      if (this.peak < this.floor) this.peak = this.floor;
    }
    const above = e > this.floor + this.threshold && e > this.peak - this.range;
    if (above) {
      this.hang = this.hangoverFrames;
      return true;
    }
    if (this.hang > 0) {
      this.hang--;
      return true;
    }
    return false;
  }

  /** Forgets everything: the next frame starts a new stream. */
  reset(): void {
    this.floor = 0;
    this.peak = 0;
    this.hang = 0;
    this.started = false;
    this.frameCount = 0;
    this.lastEnergy = 0;
  }
}

/**
 * Speech decisions for a whole clip's features (frames × dims, row-major): exactly what pushing its frames one by
 * one through a new `SpeechGate` gives. 1 = speech.
 */
export function speechMask(
  features: Float32Array,
  frames: number,
  dims: number,
  featureConfig: Partial<FeatureConfig> = {},
  options: Partial<SpeechGateOptions> = {},
): Uint8Array {
  const gate = new SpeechGate(featureConfig, options);
  if (dims !== gate.dims) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `speechMask: dims is ${dims} but the feature config gives ${gate.dims} values per frame`,
    );
  }
  if (!Number.isInteger(frames) || frames < 0 || features.length < frames * dims) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `speechMask: ${frames} frames × ${dims} dims needs ${frames * dims} values; the array holds ${features.length}`,
    );
  }
  const mask = new Uint8Array(frames);
  for (let t = 0; t < frames; t++) mask[t] = gate.push(features, t * dims) ? 1 : 0;
  return mask;
}
