/**
 * Seeded random numbers for everything that must repeat: augmentation, shuffles, dropout seeds, test data.
 * mulberry32 (Tommy Ettinger's 32-bit generator): tiny, fast, and good enough for these uses; not cryptographic.
 */

/** One mulberry32 step: advances the state and returns the 32-bit output. */
function step(state: { a: number }): number {
  state.a = (state.a + 0x6d2b79f5) >>> 0;
  let t = state.a;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}

/** Uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  const s = { a: seed >>> 0 };
  return () => step(s) / 4294967296;
}

/** Standard normal numbers (Box–Muller over uniforms in (0, 1], so the log never sees 0). */
export function gaussian(seed: number): () => number {
  const s = { a: seed >>> 0 };
  const uniform = () => (step(s) + 1) / 4294967297;
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}
