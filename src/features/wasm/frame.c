/*
 * Per-frame MFCC / log-mel kernel for WebAssembly (SIMD128), float64 throughout.
 *
 * Freestanding: no libc, no imports. Built by scripts/build-wasm.sh; driven by src/features/kernel-wasm.ts, which
 * computes every table from the FeatureConfig (window, bit reversal, twiddles, mel weights, DCT) and writes them,
 * with a Ctx saying where they are, into this module's memory. This file holds no tables, only the arithmetic.
 *
 * One frame: x (winLength samples, zero-padded to n) · window → n/2-point complex FFT → real split pass giving the
 * power |X[k]|² for the bins the mel filters use → sparse mel sums → max(e, floor) → natural log → orthonormal
 * DCT-II folded by symmetry (skipped for kind logmel).
 *
 * Frames go through the FFT and the mel sums two at a time, one per SIMD lane, with complex numbers as separate real
 * and imaginary vectors (analyze_pair); a frame alone takes both lanes. The FFT mirrors src/features/fft.ts (RealFft)
 * operation for operation in each lane: even/odd samples as real/imaginary parts read in bit-reversed order, a
 * twiddle-free radix-2 or radix-2² first pass, radix-2² passes with three complex multiplications per four points,
 * then the split pass. The products and sums are the same IEEE operations in the same order as the JavaScript
 * (x·w as xr·wr + xi·(−wi), xi·wr + xr·wi; −i·q as (qi, −qr); a − b is a + (−b) in IEEE arithmetic), so the power
 * spectrum, the mel energies and the DCT sums match FrameAnalyzer bit for bit; only the log differs (fdlibm's
 * algorithm here, V8's ieee754::log there), by at most an ulp or so.
 *
 * StreamingFeatures drives it a block at a time: `preemphasize` writes a block's samples into a stage and
 * `analyze_frames` analyses every frame complete in it.
 */
#include <wasm_simd128.h>

typedef unsigned long long u64;
typedef v128_t v;

/* Layout written by kernel-wasm.ts (offsets asserted below; pointers are byte addresses in this memory). */
typedef struct {
  double floor;        /*  0: log floor (> 0) */
  int half;            /*  8: complex FFT size n/2 */
  int first;           /* 12: 2 or 4: block size after the twiddle-free first pass */
  int binLo;           /* 16: first power bin used */
  int binHi;           /* 20: one past the last */
  int nMels;           /* 24 */
  int halfM;           /* 28: ceil(nMels / 2) */
  int nPairs;          /* 32: output pairs of the DCT, ceil(nMfcc / 2) rounded up to a multiple of 4; 0 for logmel */
  int unused;          /* 36 */
  double *x;           /* 40: n samples; JS writes the first winLength, the rest stays zero */
  const double *win;   /* 44: n window values, zero past winLength */
  const int *brev;     /* 48: half entries: 2 * bitrev(p), an index into x */
  v *pair;             /* 52: scratch of analyze_pair (see there) */
  const v *tw;         /* 56: per pass, per k, splats: (w2r), (−w2i), (w2i), (w1r), (−w1i), (w1i), (w3r), (−w3i), (w3i) */
  const v *split;      /* 60: per k in [binLo, binHi), splats: (sin), (cos), (−sin) of 2πk/n */
  int unused2;         /* 64 */
  const int *mstart;   /* 68: per filter: first bin - binLo */
  const int *mlen;     /* 72: per filter: number of bins */
  const int *moff;     /* 76: per filter: offset of its first weight in mw */
  const double *mw;    /* 80: weights */
  double *logmel;      /* 84: nMels values rounded up to even; the output for kind logmel */
  v *folded;           /* 88: halfM pairs (L[m] + L[N−1−m], L[m] − L[N−1−m]) */
  const v *dct;        /* 92: halfM rows of nPairs pairs (DCT row 2j, row 2j+1) at column m; zero past nMfcc */
  v *out;              /* 96: nPairs pairs: the cepstra, in order */
} Ctx;

_Static_assert(sizeof(void *) == 4, "wasm32");
_Static_assert(__builtin_offsetof(Ctx, half) == 8, "layout");
_Static_assert(__builtin_offsetof(Ctx, x) == 40, "layout");
_Static_assert(__builtin_offsetof(Ctx, out) == 96, "layout");
_Static_assert(sizeof(Ctx) == 104, "layout");

__attribute__((export_name("ctx_size"))) int ctx_size(void) { return (int)sizeof(Ctx); }

static inline u64 bits(double x) {
  u64 u;
  __builtin_memcpy(&u, &x, 8);
  return u;
}

static inline double from_bits(u64 u) {
  double x;
  __builtin_memcpy(&x, &u, 8);
  return x;
}

/*
 * Natural log, fdlibm's e_log.c algorithm: x = 2^k (1 + f) with 1 + f in [√2/2, √2), s = f / (2 + f),
 * log(1 + f) = f − (hfsq − s·(hfsq + R)) with hfsq = f²/2 and R(s²) fdlibm's degree-7 minimax polynomial for the
 * tail of the atanh series 2s + 2s³/3 + …; error below 1 ulp. The exponent split (biasing by √2/2's bits so the
 * mantissa lands in [√2/2, √2)) follows musl.
 */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define LG1 6.666666666666735130e-01
#define LG2 3.999999999940941908e-01
#define LG3 2.857142874366239149e-01
#define LG4 2.222219843214978396e-01
#define LG5 1.818357216161805012e-01
#define LG6 1.531383769920937332e-01
#define LG7 1.479819860511658591e-01
#define SQRT_HALF_BITS 0x3fe6a09e667f3bcdULL
#define MANT_MASK 0x000fffffffffffffULL
#define MIN_NORMAL_BITS 0x0010000000000000ULL
#define INF_BITS 0x7ff0000000000000ULL

/* Scalar, any x > 0 (subnormals too); +Inf and NaN come back unchanged. */
static double ln(double x) {
  u64 u = bits(x);
  int k = 0;
  if (u < MIN_NORMAL_BITS) {
    x *= 0x1p54;
    u = bits(x);
    k = -54;
  } else if (u >= INF_BITS) {
    return x;
  }
  u += 0x3ff0000000000000ULL - SQRT_HALF_BITS;
  k += (int)(u >> 52) - 0x3ff;
  u = (u & MANT_MASK) + SQRT_HALF_BITS;
  double f = from_bits(u) - 1.0;
  double hfsq = 0.5 * f * f;
  double s = f / (2.0 + f);
  double z = s * s;
  double w = z * z;
  double t1 = w * (LG2 + w * (LG4 + w * LG6));
  double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
  double R = t2 + t1;
  double dk = (double)k;
  return s * (hfsq + R) + dk * LN2_LO - hfsq + f + dk * LN2_HI;
}

/* Two lanes at once, both positive normal finite (the caller checks); same operations as ln(), same results. */
static inline v ln2(v x) {
  v u = wasm_i64x2_add(x, wasm_i64x2_const_splat(0x3ff0000000000000LL - (long long)SQRT_HALF_BITS));
  /* k = biased exponent − 1023, converted exactly: (2^52 + e) − (2^52 + 1023). */
  v dk = wasm_f64x2_sub(wasm_v128_or(wasm_u64x2_shr(u, 52), wasm_i64x2_const_splat(0x4330000000000000LL)),
                        wasm_f64x2_const_splat(0x1p52 + 1023.0));
  v m = wasm_i64x2_add(wasm_v128_and(u, wasm_i64x2_const_splat((long long)MANT_MASK)),
                       wasm_i64x2_const_splat((long long)SQRT_HALF_BITS));
  v f = wasm_f64x2_sub(m, wasm_f64x2_const_splat(1.0));
  v hfsq = wasm_f64x2_mul(wasm_f64x2_mul(wasm_f64x2_const_splat(0.5), f), f);
  v s = wasm_f64x2_div(f, wasm_f64x2_add(wasm_f64x2_const_splat(2.0), f));
  v z = wasm_f64x2_mul(s, s);
  v w = wasm_f64x2_mul(z, z);
#define C(a) wasm_f64x2_const_splat(a)
  v t1 = wasm_f64x2_mul(w, wasm_f64x2_add(C(LG2), wasm_f64x2_mul(w, wasm_f64x2_add(C(LG4), wasm_f64x2_mul(w, C(LG6))))));
  v t2 = wasm_f64x2_mul(z, wasm_f64x2_add(C(LG1), wasm_f64x2_mul(w, wasm_f64x2_add(C(LG3),
         wasm_f64x2_mul(w, wasm_f64x2_add(C(LG5), wasm_f64x2_mul(w, C(LG7))))))));
  v R = wasm_f64x2_add(t2, t1);
  v r = wasm_f64x2_add(wasm_f64x2_mul(s, wasm_f64x2_add(hfsq, R)), wasm_f64x2_mul(dk, C(LN2_LO)));
  r = wasm_f64x2_add(wasm_f64x2_sub(r, hfsq), f);
  return wasm_f64x2_add(r, wasm_f64x2_mul(dk, C(LN2_HI)));
#undef C
}

/* Exposed for the tests' accuracy sweep: the scalar log, and the two-lane one on (x, y). */
__attribute__((export_name("ln"))) double ln_export(double x) { return ln(x); }
__attribute__((export_name("ln2_lane0"))) double ln2_export(double x, double y) {
  return wasm_f64x2_extract_lane(ln2(wasm_f64x2_make(x, y)), 0);
}

/* The per-frame tail after the mel sums: max(e, floor) already applied in c->logmel → natural log → DCT. */
static void log_dct(const Ctx *c) {
  double *logmel = c->logmel;
  const int nMels = c->nMels;
  if (nMels & 1) logmel[nMels] = 1.0;
  for (int m = 0; m < nMels; m += 2) {
    v e = wasm_v128_load(logmel + m);
    v bad = wasm_v128_or(wasm_i64x2_lt(e, wasm_i64x2_const_splat((long long)MIN_NORMAL_BITS)),
                         wasm_i64x2_ge(e, wasm_i64x2_const_splat((long long)INF_BITS)));
    if (wasm_v128_any_true(bad)) {
      logmel[m] = ln(logmel[m]);
      logmel[m + 1] = ln(logmel[m + 1]);
    } else {
      wasm_v128_store(logmel + m, ln2(e));
    }
  }
  const int nPairs = c->nPairs;
  if (nPairs == 0) return;
  const int halfM = c->halfM;
  v *folded = c->folded;
  for (int m = 0; m < halfM; m++) {
    const double a = logmel[m], b = logmel[nMels - 1 - m];
    folded[m] = wasm_f64x2_add(wasm_f64x2_splat(a), wasm_v128_xor(wasm_f64x2_splat(b), wasm_f64x2_const(0.0, -0.0)));
  }
  const v *dct = c->dct;
  v *out = c->out;
  for (int j = 0; j < nPairs; j += 4) {
    v a0 = wasm_f64x2_const_splat(0.0), a1 = a0, a2 = a0, a3 = a0;
    const v *d = dct + j;
    for (int m = 0; m < halfM; m++, d += nPairs) {
      const v f = folded[m];
      a0 = wasm_f64x2_add(a0, wasm_f64x2_mul(d[0], f));
      a1 = wasm_f64x2_add(a1, wasm_f64x2_mul(d[1], f));
      a2 = wasm_f64x2_add(a2, wasm_f64x2_mul(d[2], f));
      a3 = wasm_f64x2_add(a3, wasm_f64x2_mul(d[3], f));
    }
    out[j] = a0;
    out[j + 1] = a1;
    out[j + 2] = a2;
    out[j + 3] = a3;
  }
}

/*
 * One radix-2² butterfly over split complex vectors: with s = x0 + x1, d = x0 − x1, p = x2 + x3 and
 * q = −i·(x2 − x3), out0 = s + p, out1 = d + q, out2 = s − p, out3 = d − q (the order fft.ts computes them in).
 */
static inline void radix4(v *r0, v *i0, v *r1, v *i1, v *r2, v *i2, v *r3, v *i3,
                          v x0r, v x0i, v x1r, v x1i, v x2r, v x2i, v x3r, v x3i) {
  v sr = wasm_f64x2_add(x0r, x1r), si = wasm_f64x2_add(x0i, x1i);
  v dr = wasm_f64x2_sub(x0r, x1r), di = wasm_f64x2_sub(x0i, x1i);
  v pr = wasm_f64x2_add(x2r, x3r), pi = wasm_f64x2_add(x2i, x3i);
  v qr = wasm_f64x2_sub(x2i, x3i), qi = wasm_f64x2_neg(wasm_f64x2_sub(x2r, x3r));
  *r0 = wasm_f64x2_add(sr, pr);
  *i0 = wasm_f64x2_add(si, pi);
  *r2 = wasm_f64x2_sub(sr, pr);
  *i2 = wasm_f64x2_sub(si, pi);
  *r1 = wasm_f64x2_add(dr, qr);
  *i1 = wasm_f64x2_add(di, qi);
  *r3 = wasm_f64x2_sub(dr, qr);
  *i3 = wasm_f64x2_sub(di, qi);
}

/*
 * Two frames at once, frame A in lane 0 and frame B in lane 1 of every vector (A and B may be the same frame), up to
 * the mel energies: each lane runs the scalar operations of one frame (see the top of this file).
 *
 * Scratch at c->pair (16-byte aligned): X, n pairs of windowed samples; ZR and ZI, half + 1 pairs each; P, the
 * power bins' pairs; L, nMels pairs of mel energies, max(e, floor) applied.
 */
static void analyze_pair(const Ctx *c, const double *a, const double *b, int winLength) {
  v *s = c->pair;
  const v *tw = c->tw, *sp = c->split;
  const int half = c->half, n = 2 * half;
  const int lo = c->binLo, hi = c->binHi;
  v *X = s, *ZR = X + n, *ZI = ZR + half + 1, *P = ZI + half + 1, *L = P + (hi - lo);
  const double *win = c->win;
  int j = 0;
  for (; j + 2 <= winLength; j += 2) {
    v va = wasm_v128_load(a + j), vb = wasm_v128_load(b + j), w = wasm_v128_load(win + j);
    X[j] = wasm_f64x2_mul(wasm_i64x2_shuffle(va, vb, 0, 2), wasm_i64x2_shuffle(w, w, 0, 0));
    X[j + 1] = wasm_f64x2_mul(wasm_i64x2_shuffle(va, vb, 1, 3), wasm_i64x2_shuffle(w, w, 1, 1));
  }
  if (j < winLength) {
    X[j] = wasm_f64x2_mul(wasm_f64x2_make(a[j], b[j]), wasm_f64x2_splat(win[j]));
    j++;
  }
  /* Past the window the samples are zero, and so are x·win for finite x: exactly what one frame at a time sees. */
  for (; j < n; j++) X[j] = wasm_f64x2_mul(wasm_f64x2_const_splat(0.0), wasm_f64x2_splat(win[j]));
  const int *brev = c->brev;
  int m;
  if (c->first == 2) {
    for (int p = 0; p < half; p += 2) {
      const int ia = brev[p], ib = brev[p + 1];
      v x0r = X[ia], x0i = X[ia + 1], x1r = X[ib], x1i = X[ib + 1];
      ZR[p] = wasm_f64x2_add(x0r, x1r);
      ZI[p] = wasm_f64x2_add(x0i, x1i);
      ZR[p + 1] = wasm_f64x2_sub(x0r, x1r);
      ZI[p + 1] = wasm_f64x2_sub(x0i, x1i);
    }
    m = 2;
  } else {
    for (int p = 0; p < half; p += 4) {
      const int j0 = brev[p], j1 = brev[p + 1], j2 = brev[p + 2], j3 = brev[p + 3];
      radix4(ZR + p, ZI + p, ZR + p + 1, ZI + p + 1, ZR + p + 2, ZI + p + 2, ZR + p + 3, ZI + p + 3,
             X[j0], X[j0 + 1], X[j1], X[j1 + 1], X[j2], X[j2 + 1], X[j3], X[j3 + 1]);
    }
    m = 4;
  }
  for (; m < half; m *= 4) {
    const int size = 4 * m;
    for (int blk = 0; blk < half; blk += size) {
      v *r0 = ZR + blk, *r1 = r0 + m, *r2 = r1 + m, *r3 = r2 + m;
      v *i0 = ZI + blk, *i1 = i0 + m, *i2 = i1 + m, *i3 = i2 + m;
      const v *t = tw;
      for (int k = 0; k < m; k++, t += 9) {
        v w2r = t[0], w2n = t[1], w2i = t[2], w1r = t[3], w1n = t[4], w1i = t[5], w3r = t[6], w3n = t[7], w3i = t[8];
        /* Inputs in bit-reversed radix-2 order: the second carries W^2k, the third W^k, the fourth W^3k. */
        v c1r = wasm_f64x2_add(wasm_f64x2_mul(r1[k], w2r), wasm_f64x2_mul(i1[k], w2n));
        v c1i = wasm_f64x2_add(wasm_f64x2_mul(i1[k], w2r), wasm_f64x2_mul(r1[k], w2i));
        v c2r = wasm_f64x2_add(wasm_f64x2_mul(r2[k], w1r), wasm_f64x2_mul(i2[k], w1n));
        v c2i = wasm_f64x2_add(wasm_f64x2_mul(i2[k], w1r), wasm_f64x2_mul(r2[k], w1i));
        v c3r = wasm_f64x2_add(wasm_f64x2_mul(r3[k], w3r), wasm_f64x2_mul(i3[k], w3n));
        v c3i = wasm_f64x2_add(wasm_f64x2_mul(i3[k], w3r), wasm_f64x2_mul(r3[k], w3i));
        radix4(r0 + k, i0 + k, r1 + k, i1 + k, r2 + k, i2 + k, r3 + k, i3 + k, r0[k], i0[k], c1r, c1i, c2r, c2i, c3r, c3i);
      }
    }
    tw += 9 * m;
  }
  /*
   * Split: X[k] = (E − or·(sin, cos) + oi·(cos, −sin)) / 2 with E = Z[k] + conj Z[h−k], O = Z[k] − conj Z[h−k]
   * (Z[h] = Z[0]), then |X[k]|² = xr² + xi².
   */
  ZR[half] = ZR[0];
  ZI[half] = ZI[0];
  const v halfv = wasm_f64x2_const_splat(0.5);
  for (int k = lo; k < hi; k++, sp += 3) {
    v sn = sp[0], cs = sp[1], nsn = sp[2];
    v zr = ZR[k], zi = ZI[k], hr = ZR[half - k], hi_ = ZI[half - k];
    v er = wasm_f64x2_add(zr, hr), ei = wasm_f64x2_sub(zi, hi_);
    v or_ = wasm_f64x2_sub(zr, hr), oi = wasm_f64x2_add(zi, hi_);
    v xr = wasm_f64x2_mul(halfv, wasm_f64x2_add(wasm_f64x2_sub(er, wasm_f64x2_mul(or_, sn)), wasm_f64x2_mul(oi, cs)));
    v xi = wasm_f64x2_mul(halfv, wasm_f64x2_add(wasm_f64x2_sub(ei, wasm_f64x2_mul(or_, cs)), wasm_f64x2_mul(oi, nsn)));
    P[k - lo] = wasm_f64x2_add(wasm_f64x2_mul(xr, xr), wasm_f64x2_mul(xi, xi));
  }
  const int *mstart = c->mstart, *mlen = c->mlen, *moff = c->moff;
  const double *mw = c->mw;
  const v floor = wasm_f64x2_splat(c->floor);
  const int nMels = c->nMels;
  for (int mm = 0; mm < nMels; mm++) {
    const v *p = P + mstart[mm];
    const double *w = mw + moff[mm];
    v e = wasm_f64x2_const_splat(0.0);
    for (int jj = 0, len = mlen[mm]; jj < len; jj++) e = wasm_f64x2_add(e, wasm_f64x2_mul(p[jj], wasm_f64x2_splat(w[jj])));
    L[mm] = wasm_v128_bitselect(e, floor, wasm_f64x2_gt(e, floor));
  }
}

/*
 * Copies the `dims` results of the frame just analysed (the cepstra, or the log-mel for kind logmel) to frame f of
 * dst, or, when dst32 is not null, rounds them to float32 into frame f of dst32 (the rounding a Float32Array store
 * does: to nearest, ties to even).
 */
static inline void results(const Ctx *c, int dims, int f, double *dst, float *dst32) {
  const double *res = c->nPairs > 0 ? (const double *)c->out : c->logmel;
  if (dst32) {
    float *o = dst32 + f * dims;
    for (int k = 0; k < dims; k++) o[k] = (float)res[k];
  } else {
    double *o = dst + f * dims;
    for (int k = 0; k < dims; k++) o[k] = res[k];
  }
}

/* The mel energies of lane `lane` of the last analyze_pair into c->logmel, then log and DCT. */
static void finish(const Ctx *c, int lane) {
  const int nMels = c->nMels, half = c->half;
  const v *L = c->pair + 2 * half + 2 * (half + 1) + (c->binHi - c->binLo);
  double *logmel = c->logmel;
  for (int m = 0; m < nMels; m++) logmel[m] = lane == 0 ? wasm_f64x2_extract_lane(L[m], 0) : wasm_f64x2_extract_lane(L[m], 1);
  log_dct(c);
}

/* Runs one frame: c->x (winLength samples, rest zero) → c->logmel, and c->out when nPairs > 0. */
__attribute__((export_name("analyze"))) void analyze(const Ctx *c) {
  /* x is zero past winLength and so is the window: all of it goes in as the window's length. */
  analyze_pair(c, c->x, c->x, 2 * c->half);
  finish(c, 0);
}

/*
 * Runs `frames` frames of one stream in a single call (what StreamingFeatures does with every block of samples):
 * frame f is the winLength samples at src + f·hop, analysed exactly as analyze() does; its `dims` results go to
 * dst + f·dims, or as float32 to dst32 + f·dims when dst32 is not null. Frames go two at a time, an odd last one
 * alone in both lanes. One call per block instead of one per frame saves the JavaScript ↔ wasm crossings and the
 * per-frame copies on the JavaScript side.
 */
__attribute__((export_name("analyze_frames")))
void analyze_frames(const Ctx *c, const double *src, int frames, int hop, int winLength, int dims, double *dst, float *dst32) {
  int f = 0;
  for (; f + 2 <= frames; f += 2, src += 2 * hop) {
    analyze_pair(c, src, src + hop, winLength);
    for (int lane = 0; lane < 2; lane++) {
      finish(c, lane);
      results(c, dims, f + lane, dst, dst32);
    }
  }
  if (f < frames) {
    analyze_pair(c, src, src, winLength);
    finish(c, 0);
    results(c, dims, f, dst, dst32);
  }
}

/*
 * Pre-emphasis of n float32 samples into dst: dst[j] = src[j] − a·src[j−1], src[−1] being `prev` (the sample before
 * them), in double as StreamingFeatures computes it, so the results are the same bit for bit.
 */
__attribute__((export_name("preemphasize")))
void preemphasize(const float *src, int n, double prev, double a, double *dst) {
  for (int j = 0; j < n; j++) {
    const double x = src[j];
    dst[j] = x - a * prev;
    prev = x;
  }
}
