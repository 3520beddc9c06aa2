/*
 * 8 → 16 kHz (exactly 2×) polyphase upsampling for WebAssembly (SIMD128), the filter StreamingResampler designs.
 *
 * Freestanding: no libc, no imports. Built by scripts/build-wasm.sh; driven by src/audio/resample.ts, which copies
 * the input history and the filter's coefficients into this module's memory and the output back.
 *
 * Output pair k (input time k + 25 of `s`): the even sample is the input itself (the phase-0 row of the table is a
 * unit impulse); the odd one, half a sample later, is the symmetric 52-tap phase-1 row folded into 26 pairs:
 * Σ_j (s[k + j] + s[k + 51 − j]) · c[j]. Bit-exact with the JavaScript path: each f64x2 lane computes one output with
 * the JavaScript's operations in the JavaScript's order (float32 inputs widened to float64, four partial sums over
 * j mod 4 with the last two pairs in the first, summed as (a0 + a1) + (a2 + a3), rounded once to float32).
 * The two lanes are two neighbouring outputs, so no sum is reassociated. wasm has no fused multiply-add here, and
 * the build passes -ffp-contract=off all the same.
 */
#include <wasm_simd128.h>

typedef v128_t v;

#define PAIRS 26
#define SPAN 51 /* distance between the two taps of pair 0 */

static inline v ld2(const float *p) { return wasm_f64x2_promote_low_f32x4(wasm_v128_load64_zero(p)); }

/*
 * s: count + 51 input samples (float32); out: 2·count samples; c: the 26 folded coefficients (float64).
 */
__attribute__((export_name("up2"))) void up2(const float *s, int count, float *out, const double *c) {
  v cs[PAIRS];
  for (int j = 0; j < PAIRS; j++) cs[j] = wasm_f64x2_splat(c[j]);
  int k = 0;
  for (; k + 2 <= count; k += 2) {
    const float *x = s + k;
    const float *y = s + k + SPAN;
    v a0 = wasm_f64x2_splat(0.0), a1 = a0, a2 = a0, a3 = a0;
    for (int j = 0; j < 24; j += 4) {
      a0 = wasm_f64x2_add(a0, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + j), ld2(y - j)), cs[j]));
      a1 = wasm_f64x2_add(a1, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + j + 1), ld2(y - j - 1)), cs[j + 1]));
      a2 = wasm_f64x2_add(a2, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + j + 2), ld2(y - j - 2)), cs[j + 2]));
      a3 = wasm_f64x2_add(a3, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + j + 3), ld2(y - j - 3)), cs[j + 3]));
    }
    a0 = wasm_f64x2_add(a0, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + 24), ld2(y - 24)), cs[24]));
    a0 = wasm_f64x2_add(a0, wasm_f64x2_mul(wasm_f64x2_add(ld2(x + 25), ld2(y - 25)), cs[25]));
    v odd = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_add(wasm_f64x2_add(a0, a1), wasm_f64x2_add(a2, a3)));
    v even = wasm_v128_load64_zero(s + k + 25);
    wasm_v128_store(out + 2 * k, wasm_i32x4_shuffle(even, odd, 0, 4, 1, 5));
  }
  for (; k < count; k++) {
    const float *x = s + k;
    const float *y = s + k + SPAN;
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int j = 0; j < 24; j += 4) {
      a0 += ((double)x[j] + (double)y[-j]) * c[j];
      a1 += ((double)x[j + 1] + (double)y[-j - 1]) * c[j + 1];
      a2 += ((double)x[j + 2] + (double)y[-j - 2]) * c[j + 2];
      a3 += ((double)x[j + 3] + (double)y[-j - 3]) * c[j + 3];
    }
    a0 += ((double)x[24] + (double)y[-24]) * c[24];
    a0 += ((double)x[25] + (double)y[-25]) * c[25];
    out[2 * k] = s[k + 25];
    out[2 * k + 1] = (float)((a0 + a1) + (a2 + a3));
  }
}
