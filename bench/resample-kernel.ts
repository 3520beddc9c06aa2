/**
 * The 8 → 16 kHz resampler's two kernels side by side, streaming 20 ms chunks as a live call does:
 * `node --import tsx bench/resample-kernel.ts`. Prints CPU ms per second of audio for each, alternating, in one run.
 */
import { StreamingResampler } from '../src/audio/resample.js';
import { speechLikeSignal } from '../test/helpers/signal.js';

const x = speechLikeSignal(8000, 10, 1);
const rounds = 30;
for (const kernel of ['js', 'wasm', 'js', 'wasm'] as const) {
  const r = new StreamingResampler(8000, 16000, { kernel });
  for (let i = 0; i + 160 <= x.length; i += 160) r.push(x.subarray(i, i + 160)); // warm-up
  const c0 = process.cpuUsage();
  for (let rep = 0; rep < rounds; rep++) for (let i = 0; i + 160 <= x.length; i += 160) r.push(x.subarray(i, i + 160));
  const c = process.cpuUsage(c0);
  const msPerSecond = (c.user + c.system) / 1000 / (rounds * 10);
  process.stdout.write(`${JSON.stringify({ kernel, msPerAudioSecond: Number(msPerSecond.toFixed(3)) })}\n`);
}
