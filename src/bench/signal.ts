/**
 * A deterministic speech-like test signal for benchmarks: a gliding harmonic voice with a syllable-rate envelope
 * and a little noise. The cost of our DSP does not depend on the content, but a realistic level keeps the log
 * floor and the clipping paths as rarely taken as in speech.
 */
export function benchSignal(seconds: number, rate: number, seed = 1): Float32Array {
  const x = new Float32Array(Math.round(seconds * rate));
  let s = seed >>> 0 || 1;
  let phase = 0;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const t = i / rate;
    phase += (2 * Math.PI * (140 + 30 * Math.sin(2 * Math.PI * 0.5 * t))) / rate;
    const env = 0.55 + 0.45 * Math.sin(2 * Math.PI * 4 * t);
    x[i] = env * (0.25 * Math.sin(phase) + 0.1 * Math.sin(2 * phase) + 0.05 * Math.sin(5 * phase)) + 0.003 * (s / 4294967296 - 0.5);
  }
  return x;
}

/** CPU seconds (user + system) spent by this process while `fn` runs. */
export function cpuSeconds(fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}
