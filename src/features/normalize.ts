/**
 * Feature normalisation: statistics over frames (Welford), and the one per-frame normaliser that training and the
 * live stream share.
 *
 * The rule, defined here once (`FrameNormalizer.process`): frame t is normalised with the statistics of the speech
 * frames *before* it (the global prior plus frames 0 … t−1 of this call that the speech gate passed), and only then,
 * if it is speech, added to them. So a frame never sees itself, the first frame of a call is normalised by the
 * global statistics alone, and training (makeWindows) and the live stream, which both call `process` frame by frame
 * in order, normalise every frame with exactly the same numbers.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { FeatureStats, NormalizationSpec } from './types.js';

/**
 * Smallest standard deviation used: a coefficient that does not vary (a constant test signal, a band the log floor
 * clamps everywhere) is divided by this, not by ~0. The features are natural-log energies whose real spread per
 * coefficient is 0.1–10, four orders above it.
 */
export const STD_EPSILON = 1e-3;

/** Running mean and variance per dimension over frames (Welford; Chan et al. to merge). Float64 throughout. */
export class Welford {
  readonly dims: number;
  private n = 0;
  private readonly mean: Float64Array;
  private readonly m2: Float64Array;

  constructor(dims: number) {
    if (!Number.isInteger(dims) || dims < 1) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `Welford: dims is ${dims}; allowed: an integer ≥ 1`);
    }
    this.dims = dims;
    this.mean = new Float64Array(dims);
    this.m2 = new Float64Array(dims);
  }

  /** Frames added so far. */
  get count(): number {
    return this.n;
  }

  /** Adds one frame: `dims` values from `offset`. */
  add(frame: ArrayLike<number>, offset = 0): void {
    const { mean, m2, dims } = this;
    const n = ++this.n;
    for (let d = 0; d < dims; d++) {
      const x = frame[offset + d];
      const delta = x - mean[d];
      mean[d] += delta / n;
      m2[d] += delta * (x - mean[d]);
    }
  }

  /** Adds the frames of a frames × dims row-major matrix; with `mask`, only those whose mask value is non-zero. */
  addMany(data: ArrayLike<number>, frames: number, mask?: ArrayLike<number>): void {
    if (data.length < frames * this.dims) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `Welford.addMany: ${frames} frames × ${this.dims} dims needs ${frames * this.dims} values; got ${data.length}`,
      );
    }
    if (mask && mask.length < frames) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `Welford.addMany: mask has ${mask.length} values for ${frames} frames`);
    }
    for (let t = 0; t < frames; t++) if (!mask || mask[t]) this.add(data, t * this.dims);
  }

  /** Adds everything `other` has seen (the result equals adding its frames here, up to rounding). */
  merge(other: Welford): void {
    if (other.dims !== this.dims) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `Welford.merge: dims ${other.dims} into ${this.dims}`);
    }
    if (other.n === 0) return;
    const na = this.n, nb = other.n, n = na + nb;
    for (let d = 0; d < this.dims; d++) {
      const delta = other.mean[d] - this.mean[d];
      this.mean[d] += (delta * nb) / n;
      this.m2[d] += other.m2[d] + (delta * delta * na * nb) / n;
    }
    this.n = n;
  }

  /** Mean and (population) standard deviation per dimension, std floored at `epsilon`. Throws EMPTY_AUDIO if empty. */
  stats(epsilon = STD_EPSILON): FeatureStats {
    if (this.n === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, 'feature statistics over no frames');
    const std: number[] = [];
    for (let d = 0; d < this.dims; d++) std.push(Math.max(Math.sqrt(Math.max(this.m2[d], 0) / this.n), epsilon));
    return { mean: Array.from(this.mean), std, count: this.n };
  }
}

/** Checks statistics (e.g. read from a model's metadata): equal lengths, finite, std > 0; returns their dims. */
export function checkFeatureStats(stats: FeatureStats, what = 'stats'): number {
  const fail = (why: string) => new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: ${why}`);
  if (!stats || !Array.isArray(stats.mean) || !Array.isArray(stats.std)) throw fail('mean and std must be arrays');
  if (stats.mean.length === 0 || stats.mean.length !== stats.std.length) {
    throw fail(`mean has ${stats.mean.length} values and std ${stats.std.length}; they must be equal and non-zero`);
  }
  for (let d = 0; d < stats.mean.length; d++) {
    if (!Number.isFinite(stats.mean[d])) throw fail(`mean[${d}] is ${stats.mean[d]}`);
    if (!(Number.isFinite(stats.std[d]) && stats.std[d] > 0)) throw fail(`std[${d}] is ${stats.std[d]}; allowed: finite and > 0`);
  }
  return stats.mean.length;
}

/**
 * Normalises feature frames one at a time, for one call (or, in training, one speaker). `global`: (x − mean)/std
 * with the training set's statistics, stateless. `adaptive`: mean and std from the global statistics counted as
 * `priorFrames` frames pooled with the speech frames observed so far (first and second moments pooled, so the
 * variance includes the spread between the two means); the first frames of a call are normalised almost globally,
 * a long call by the caller's own voice. Allocation-free per frame.
 */
export class FrameNormalizer {
  readonly dims: number;
  readonly spec: NormalizationSpec;
  private readonly adaptive: boolean;
  private readonly prior: number;
  private readonly gMean: Float64Array;
  private readonly gVar: Float64Array;
  /** Σ (x − global mean) and Σ (x − global mean)² over observed frames: shifted sums stay accurate for long calls. */
  private readonly s1: Float64Array;
  private readonly s2: Float64Array;
  private n = 0;
  /** Current mean and 1/std; recomputed lazily after observations. */
  private readonly mean: Float64Array;
  private readonly invStd: Float64Array;
  private dirty = false;

  /** @param dims if given, must equal the statistics' length (a guard against a model/feature mismatch) */
  constructor(spec: NormalizationSpec, dims?: number) {
    if (!spec || (spec.kind !== 'global' && spec.kind !== 'adaptive')) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `normalization kind is ${String((spec as { kind?: unknown } | undefined)?.kind)}; allowed: 'global' or 'adaptive'`,
      );
    }
    const d = checkFeatureStats(spec.stats, 'normalization stats');
    if (dims !== undefined && dims !== d) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `normalization stats have ${d} dims but the features have ${dims}`);
    }
    if (spec.kind === 'adaptive' && !(Number.isFinite(spec.priorFrames) && spec.priorFrames >= 0)) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `normalization priorFrames is ${String(spec.priorFrames)}; allowed: a number ≥ 0`,
      );
    }
    this.spec = spec;
    this.dims = d;
    this.adaptive = spec.kind === 'adaptive';
    this.prior = spec.kind === 'adaptive' ? spec.priorFrames : 0;
    this.gMean = Float64Array.from(spec.stats.mean);
    this.gVar = Float64Array.from(spec.stats.std, (s) => s * s);
    this.s1 = new Float64Array(d);
    this.s2 = new Float64Array(d);
    this.mean = Float64Array.from(spec.stats.mean);
    this.invStd = Float64Array.from(spec.stats.std, (s) => 1 / s);
  }

  /** Speech frames observed since construction or the last reset (always 0 for `global`). */
  get observed(): number {
    return this.n;
  }

  /** Normalises `dims` values of `frame` from `offset` into `out` from `outOffset` with the current statistics. */
  normalize(frame: ArrayLike<number>, out: Float32Array, offset = 0, outOffset = 0): void {
    if (this.dirty) this.refresh();
    const { mean, invStd, dims } = this;
    for (let d = 0; d < dims; d++) out[outOffset + d] = (frame[offset + d] - mean[d]) * invStd[d];
  }

  /** Adds a speech frame to the running statistics (`adaptive`; a no-op for `global`). */
  observe(frame: ArrayLike<number>, offset = 0): void {
    if (!this.adaptive) return;
    const { gMean, s1, s2, dims } = this;
    for (let d = 0; d < dims; d++) {
      const v = frame[offset + d] - gMean[d];
      s1[d] += v;
      s2[d] += v * v;
    }
    this.n++;
    this.dirty = true;
  }

  /**
   * THE rule, for training and live alike: normalise the frame with the statistics of the frames before it, then,
   * if it is speech, observe it. `out` may be the very array of `frame` (same offset): the frame is read before it
   * is overwritten.
   */
  process(frame: ArrayLike<number>, isSpeech: boolean, out: Float32Array, offset = 0, outOffset = 0): void {
    if (this.dirty) this.refresh();
    const { mean, invStd, dims } = this;
    if (!(isSpeech && this.adaptive)) {
      for (let d = 0; d < dims; d++) out[outOffset + d] = (frame[offset + d] - mean[d]) * invStd[d];
      return;
    }
    const { gMean, s1, s2 } = this;
    for (let d = 0; d < dims; d++) {
      const x = frame[offset + d];
      out[outOffset + d] = (x - mean[d]) * invStd[d];
      const v = x - gMean[d];
      s1[d] += v;
      s2[d] += v * v;
    }
    this.n++;
    this.dirty = true;
  }

  /** `process` over a clip's frames (frames × dims, row-major) in order, with its speech mask, into `out`. */
  processMany(data: ArrayLike<number>, frames: number, speech: ArrayLike<number>, out: Float32Array): void {
    const dims = this.dims;
    if (data.length < frames * dims || out.length < frames * dims || speech.length < frames) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `FrameNormalizer.processMany: ${frames} frames × ${dims} dims; data ${data.length}, out ${out.length}, mask ${speech.length}`,
      );
    }
    for (let t = 0; t < frames; t++) this.process(data, speech[t] !== 0, out, t * dims, t * dims);
  }

  /** The statistics the next frame will be normalised with (allocates; for inspection and tests). */
  currentStats(): FeatureStats {
    if (this.dirty) this.refresh();
    return {
      mean: Array.from(this.mean),
      std: Array.from(this.invStd, (v) => 1 / v),
      count: this.n,
    };
  }

  /** Forgets the observed frames: back to the global statistics, for a new call. */
  reset(): void {
    this.s1.fill(0);
    this.s2.fill(0);
    this.n = 0;
    this.mean.set(this.gMean);
    for (let d = 0; d < this.dims; d++) this.invStd[d] = 1 / Math.sqrt(this.gVar[d]);
    this.dirty = false;
  }

  private refresh(): void {
    const { gMean, gVar, s1, s2, mean, invStd, dims } = this;
    const w = this.prior + this.n;
    this.dirty = false;
    if (w === 0) {
      mean.set(gMean);
      for (let d = 0; d < dims; d++) invStd[d] = 1 / Math.sqrt(gVar[d]);
      return;
    }
    for (let d = 0; d < dims; d++) {
      const shift = s1[d] / w;
      const second = (this.prior * gVar[d] + s2[d]) / w;
      const variance = second - shift * shift;
      mean[d] = gMean[d] + shift;
      invStd[d] = 1 / Math.max(Math.sqrt(variance > 0 ? variance : 0), STD_EPSILON);
    }
  }
}
