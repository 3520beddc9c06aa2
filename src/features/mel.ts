import { CallmoodError, ErrorCodes } from '../errors.js';
import type { FeatureConfig } from './config.js';

const hzToMel = (f: number) => 2595 * Math.log10(1 + f / 700);
const melToHz = (m: number) => 700 * (10 ** (m / 2595) - 1);

/**
 * Triangular mel filters (HTK mel scale, unnormalised, slopes in Hz as torchaudio's `melscale_fbanks`), stored
 * sparsely: filter m covers bins start[m] … start[m] + length[m] − 1 with weights at offset[m] in `weights`.
 */
export interface MelFilterbank {
  start: Int32Array;
  length: Int32Array;
  offset: Int32Array;
  weights: Float64Array;
  /** First and one-past-last FFT bin any filter touches. */
  binLo: number;
  binHi: number;
}

export function melFilterbank(c: FeatureConfig): MelFilterbank {
  const bins = c.nFft / 2 + 1;
  const mLo = hzToMel(c.fMin);
  const mHi = hzToMel(c.fMax);
  const edges = new Float64Array(c.nMels + 2);
  for (let i = 0; i < edges.length; i++) edges[i] = melToHz(mLo + ((mHi - mLo) * i) / (c.nMels + 1));
  const start = new Int32Array(c.nMels);
  const length = new Int32Array(c.nMels);
  const offset = new Int32Array(c.nMels);
  const all: number[] = [];
  let binLo = bins;
  let binHi = 0;
  for (let m = 0; m < c.nMels; m++) {
    const [lo, mid, hi] = [edges[m], edges[m + 1], edges[m + 2]];
    let first = -1;
    let last = -1;
    const w: number[] = [];
    for (let k = 0; k < bins; k++) {
      const f = (k * c.sampleRate) / 2 / (bins - 1);
      const v = Math.max(0, Math.min((f - lo) / (mid - lo), (hi - f) / (hi - mid)));
      if (v > 0) {
        if (first < 0) first = k;
        last = k;
      }
      if (first >= 0 && last === k) w.push(v);
    }
    if (first < 0) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `mel filter ${m} (${lo.toFixed(1)}–${hi.toFixed(1)} Hz) covers no FFT bin: with nFft ${c.nFft} bins are ` +
          `${(c.sampleRate / c.nFft).toFixed(2)} Hz apart; raise nFft, lower nMels or widen fMin–fMax`,
      );
    }
    w.length = last - first + 1;
    start[m] = first;
    length[m] = w.length;
    offset[m] = all.length;
    all.push(...w);
    binLo = Math.min(binLo, first);
    binHi = Math.max(binHi, last + 1);
  }
  return { start, length, offset, weights: Float64Array.from(all), binLo, binHi };
}
