/**
 * CPU cost per window of the shipped model by batch size, on this process's TF.js backend: the sizes are
 * interleaved round by round so every size sees the same machine, and the median of the rounds is printed. This is
 * what set the default batch (config batch.maxBatch) to 32:
 *
 *   node --import tsx bench/batch-size.ts [MODEL_DIR]
 */
import { InProcessEngine } from '../src/stream/engine.js';

const engine = await InProcessEngine.load(process.argv[2] ?? 'models/default');
const x = new Float32Array(64 * engine.windowSize).map(() => Math.random() - 0.5);
const sizes = [4, 8, 16, 24, 32, 48, 64];
const rounds = 4;
const perWindowUs: Record<number, number[]> = {};
for (const n of sizes) {
  for (let i = 0; i < 3; i++) await engine.predict(x.subarray(0, n * engine.windowSize), n);
  perWindowUs[n] = [];
}
for (let round = 0; round < rounds; round++) {
  for (const n of sizes) {
    const reps = Math.ceil(256 / n);
    const c0 = process.cpuUsage();
    for (let r = 0; r < reps; r++) await engine.predict(x.subarray(0, n * engine.windowSize), n);
    const c = process.cpuUsage(c0);
    perWindowUs[n].push((c.user + c.system) / (reps * n));
  }
}
for (const n of sizes) {
  const v = [...perWindowUs[n]].sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ batch: n, cpuUsPerWindowMedian: v[Math.floor(v.length / 2)], rounds: v })}\n`);
}
await engine.close();
