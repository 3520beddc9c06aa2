/**
 * Audio for the benchmarks, made here rather than read from files so that `callmood bench` runs from the installed
 * package, which ships no recordings.
 */

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

/**
 * A call's audio for the call and replay benchmarks: turns of `benchSignal` voice, 1.2–3.4 s long, with pauses of
 * 0.4–1.2 s between them, over faint line noise (about −60 dBFS, 50 dB below the voice). With two channels the turns
 * alternate between them (a caller and an agent: about 37% of each channel is voice); with one, every turn is on it
 * (a caller talking: about 74%). What the pipeline costs does not depend on what is said, but it does depend on how
 * much of a call is speech: windows the speech gate finds mostly silent are not scored. Deterministic for a `seed`.
 */
export function benchCall(seconds: number, rate: number, channels: 1 | 2 = 2, seed = 1): Float32Array[] {
  const n = Math.round(seconds * rate);
  let s = seed >>> 0 || 1;
  const random = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
  const out = Array.from({ length: channels }, () => {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = 0.003 * (random() - 0.5);
    return x;
  });
  let at = Math.round(0.5 * rate);
  for (let turn = 0; at < n; turn++) {
    const voice = benchSignal(1.2 + 2.2 * random(), rate, seed + turn + 1);
    const dst = out[turn % channels];
    for (let i = 0; i < voice.length && at + i < n; i++) dst[at + i] += voice[i];
    at += voice.length + Math.round((0.4 + 0.8 * random()) * rate);
  }
  return out;
}

/** CPU seconds (user + system) spent by this process while `fn` runs. */
export function cpuSeconds(fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}
