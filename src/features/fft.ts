import { CallmoodError, ErrorCodes } from '../errors.js';

/**
 * Power spectrum of a real frame of power-of-two length n, through one complex FFT of n/2 points (even samples as
 * real parts, odd samples as imaginary parts, then one split pass). The complex FFT is radix-2² decimation in
 * time: bit-reversed input, then passes that each do two radix-2 stages in registers with three complex
 * multiplications per four points. Tables and scratch are allocated in the constructor; `power` allocates nothing.
 */
export class RealFft {
  /** Number of power bins, n/2 + 1. */
  readonly bins: number;
  private readonly half: number;
  private readonly re: Float64Array;
  private readonly im: Float64Array;
  private readonly bitrev: Uint32Array;
  private readonly scratch: Float64Array;
  private scratchUsed = -1;
  /** Per radix-4 pass with quarter size m: for k < m, W^k, W^2k, W^3k (W = e^{-2πi/4m}) as re/im pairs. */
  private readonly twiddles: Float64Array;
  /** cos/sin(2πk/n) for the real split pass. */
  private readonly cosN: Float64Array;
  private readonly sinN: Float64Array;

  constructor(readonly n: number) {
    if (!Number.isInteger(n) || n < 8 || (n & (n - 1)) !== 0 || n > 65536) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `FFT size must be a power of two in [8, 65536], got ${n}`);
    }
    const half = n >> 1;
    this.half = half;
    this.bins = half + 1;
    this.re = new Float64Array(half);
    this.im = new Float64Array(half);
    this.bitrev = new Uint32Array(half);
    this.scratch = new Float64Array(n);
    const bits = Math.log2(half);
    for (let i = 0; i < half; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      this.bitrev[i] = r;
    }
    const tw: number[] = [];
    for (let m = this.firstBlock(); m < half; m *= 4) {
      for (let k = 0; k < m; k++) {
        for (let p = 1; p <= 3; p++) {
          const a = (-2 * Math.PI * p * k) / (4 * m);
          tw.push(Math.cos(a), Math.sin(a));
        }
      }
    }
    this.twiddles = Float64Array.from(tw);
    this.cosN = new Float64Array(half + 1);
    this.sinN = new Float64Array(half + 1);
    for (let k = 0; k <= half; k++) {
      this.cosN[k] = Math.cos((2 * Math.PI * k) / n);
      this.sinN[k] = Math.sin((2 * Math.PI * k) / n);
    }
  }

  /** Block size after the first, multiplication-free pass: 2 when log2(n/2) is odd, else 4. */
  private firstBlock(): number {
    return Math.log2(this.half) % 2 === 1 ? 2 : 4;
  }

  /**
   * Writes |X[k]|² for k in [kLo, kHi) of the real sequence x[offset + i] · window[i], i < used (≤ n), zero-padded to n.
   * `out` is indexed by k.
   */
  power(
    x: Float64Array,
    offset: number,
    window: Float64Array | null,
    used: number,
    out: Float64Array,
    kLo = 0,
    kHi = this.bins,
  ): void {
    const { half, re, im, bitrev, scratch } = this;
    // The windowed frame goes into a zero-padded scratch; its tail past `used` stays zero between calls.
    if (used !== this.scratchUsed) {
      scratch.fill(0);
      this.scratchUsed = used;
    }
    if (window) for (let i = 0; i < used; i++) scratch[i] = x[offset + i] * window[i];
    else for (let i = 0; i < used; i++) scratch[i] = x[offset + i];
    // First pass reads straight from scratch in bit-reversed order: z[i] = scratch[2i] + i·scratch[2i+1].
    let m: number;
    if (this.firstBlock() === 2) {
      for (let p = 0; p < half; p += 2) {
        const a = 2 * bitrev[p], b = 2 * bitrev[p + 1];
        const r0 = scratch[a], i0 = scratch[a + 1], r1 = scratch[b], i1 = scratch[b + 1];
        re[p] = r0 + r1; im[p] = i0 + i1; re[p + 1] = r0 - r1; im[p + 1] = i0 - i1;
      }
      m = 2;
    } else {
      // Two stages with twiddles 1 and −i only.
      for (let p = 0; p < half; p += 4) {
        const j0 = 2 * bitrev[p], j1 = 2 * bitrev[p + 1], j2 = 2 * bitrev[p + 2], j3 = 2 * bitrev[p + 3];
        const x0r = scratch[j0], x0i = scratch[j0 + 1], x1r = scratch[j1], x1i = scratch[j1 + 1];
        const x2r = scratch[j2], x2i = scratch[j2 + 1], x3r = scratch[j3], x3i = scratch[j3 + 1];
        const ar = x0r + x1r, ai = x0i + x1i;
        const br = x0r - x1r, bi = x0i - x1i;
        const cr = x2r + x3r, ci = x2i + x3i;
        const dr = x2r - x3r, di = x2i - x3i;
        re[p] = ar + cr; im[p] = ai + ci;
        re[p + 2] = ar - cr; im[p + 2] = ai - ci;
        // b ± (−i)·d
        re[p + 1] = br + di; im[p + 1] = bi - dr;
        re[p + 3] = br - di; im[p + 3] = bi + dr;
      }
      m = 4;
    }
    const tw = this.twiddles;
    let t = 0;
    for (; m < half; m *= 4) {
      const size = 4 * m;
      for (let k = 0; k < m; k++, t += 6) {
        const w1r = tw[t], w1i = tw[t + 1], w2r = tw[t + 2], w2i = tw[t + 3], w3r = tw[t + 4], w3i = tw[t + 5];
        for (let b = k; b < half; b += size) {
          const p1 = b + m, p2 = b + 2 * m, p3 = b + 3 * m;
          // Inputs in bit-reversed radix-2 order: p1 carries W^2k, p2 W^k, p3 W^3k.
          const a0r = re[b], a0i = im[b];
          const x1r = re[p1], x1i = im[p1];
          const c1r = x1r * w2r - x1i * w2i, c1i = x1r * w2i + x1i * w2r;
          const x2r = re[p2], x2i = im[p2];
          const c2r = x2r * w1r - x2i * w1i, c2i = x2r * w1i + x2i * w1r;
          const x3r = re[p3], x3i = im[p3];
          const c3r = x3r * w3r - x3i * w3i, c3i = x3r * w3i + x3i * w3r;
          const s0r = a0r + c1r, s0i = a0i + c1i;
          const s1r = a0r - c1r, s1i = a0i - c1i;
          const pr = c2r + c3r, pi = c2i + c3i;
          const qr = c2r - c3r, qi = c2i - c3i;
          re[b] = s0r + pr; im[b] = s0i + pi;
          re[p2] = s0r - pr; im[p2] = s0i - pi;
          // s1 ± (−i)·q, (−i)(qr + i qi) = qi − i qr
          re[p1] = s1r + qi; im[p1] = s1i - qr;
          re[p3] = s1r - qi; im[p3] = s1i + qr;
        }
      }
    }
    // Split: X[k] = (Z[k] + conj Z[h−k]) / 2 − i e^{−2πik/n} (Z[k] − conj Z[h−k]) / 2, with Z[h] = Z[0].
    const { cosN, sinN } = this;
    for (let k = kLo; k < kHi; k++) {
      const k1 = k === half ? 0 : k;
      const k2 = k === 0 ? 0 : half - k;
      const zr = re[k1], zi = im[k1];
      const cr = re[k2], ci = -im[k2];
      const er = zr + cr, ei = zi + ci;
      const or = zr - cr, oi = zi - ci;
      // o · (−i) · e^{−iθ} = o · (−sinθ − i cosθ)
      const c = cosN[k], s = sinN[k];
      const xr = 0.5 * (er - or * s + oi * c);
      const xi = 0.5 * (ei - or * c - oi * s);
      out[k] = xr * xr + xi * xi;
    }
  }
}
