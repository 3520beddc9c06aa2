/**
 * What handing a batch to the inference worker costs the main thread (the synchronous part of
 * WorkerEngine.predict), for a batch in an ordinary buffer (copied and transferred) and in a SharedArrayBuffer
 * (posted as a view): `node --import tsx bench/batch-transfer.ts [modelDir]`. One JSON line per case, with the
 * median over 200 batches (wall clock of the call, so the median rather than the mean: a shared machine preempts).
 */
import { WorkerEngine } from '../src/stream/engine.js';

const engine = await WorkerEngine.load(process.argv[2] ?? 'models/default');
const size = engine.windowSize;
const maxBatch = 64;
const buffers = {
  plain: new Float32Array(maxBatch * size),
  shared: new Float32Array(new SharedArrayBuffer(maxBatch * size * 4)),
};
for (const b of Object.values(buffers)) for (let i = 0; i < b.length; i++) b[i] = Math.sin(i);
for (const n of [1, 4, 32]) {
  for (const kind of ['plain', 'shared', 'plain', 'shared'] as const) {
    const x = buffers[kind].subarray(0, n * size);
    const times: number[] = [];
    for (let r = 0; r < 205; r++) {
      const t0 = performance.now();
      const p = engine.predict(x, n);
      if (r >= 5) times.push(performance.now() - t0);
      await p;
    }
    times.sort((a, b) => a - b);
    const median = times[times.length >> 1];
    process.stdout.write(`${JSON.stringify({ batch: n, buffer: kind, medianUsPerBatchMainThread: Number((median * 1000).toFixed(1)) })}\n`);
  }
}
await engine.close();
