import type { FeatureConfig } from './config.js';

/** The analysis window, symmetric (HTK and torch's periodic=False): Hamming 0.54 − 0.46 cos, or Hann. */
export function analysisWindow(c: FeatureConfig): Float64Array {
  const w = new Float64Array(c.winLength);
  const n = c.winLength - 1;
  for (let i = 0; i < c.winLength; i++) {
    const cos = Math.cos((2 * Math.PI * i) / n);
    w[i] = c.window === 'hamming' ? 0.54 - 0.46 * cos : 0.5 - 0.5 * cos;
  }
  return w;
}

/**
 * Orthonormal DCT-II coefficient of cepstrum k at mel m, lifter folded in, for the folded form both kernels use:
 * row k is even about the middle of the mel axis for even k and odd for odd k, so it is applied to the folded sums
 * L[m] + L[N−1−m] (even k) or differences L[m] − L[N−1−m] (odd k) for m < ⌈nMels/2⌉.
 */
export function foldedDctCoefficient(c: FeatureConfig, k: number, m: number): number {
  const { nMels, lifter } = c;
  const scale = (k === 0 ? Math.sqrt(1 / nMels) : Math.sqrt(2 / nMels)) *
    (lifter > 0 ? 1 + (lifter / 2) * Math.sin((Math.PI * k) / lifter) : 1);
  // The middle element of an odd-length axis is not folded with itself: halve its weight in the even sum.
  const self = nMels % 2 === 1 && m === Math.ceil(nMels / 2) - 1 ? 0.5 : 1;
  return self * scale * Math.cos((Math.PI / nMels) * (m + 0.5) * k);
}

/**
 * Frames StreamingFeatures analyses per block (one call into the kernel): up to 32, fewer for long hops so the
 * stage, winLength + (frames − 1)·hop samples, stays near 4096 samples (32 KiB) or one window if that is longer.
 */
export function blockFrames(c: FeatureConfig): number {
  return Math.max(1, Math.min(32, Math.floor(4096 / c.hop)));
}

/** Samples of the stage a block of blockFrames(c) frames is analysed from. */
export function stageCapacity(c: FeatureConfig): number {
  return c.winLength + (blockFrames(c) - 1) * c.hop;
}

/**
 * Pre-emphasis as both analyzers compute it: dst[at + j] = x[j] − a·x[j − 1] in double, for the `count` samples of
 * `src` from `from`, with `prev` the sample before them.
 */
export function preemphasizeInto(
  src: ArrayLike<number>, from: number, count: number, prev: number, a: number, dst: Float64Array, at: number,
): void {
  for (let j = 0; j < count; j++) {
    const x = src[from + j];
    dst[at + j] = x - a * prev;
    prev = x;
  }
}
