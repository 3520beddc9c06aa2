/** The inference worker: loads one model and answers batches. See engine.ts. */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../model/backend.js';
import { loadModel } from '../model/io.js';
import { predictWindows } from '../model/predict.js';
import { featureDims, resolveFeatureConfig } from '../features/config.js';

const port = parentPort!;
try {
  const { tf, name } = await initBackend({ log: () => {} });
  const { model, metadata } = await loadModel((workerData as { modelDir: string }).modelDir);
  const frames = metadata.window.frames;
  const dims = featureDims(resolveFeatureConfig(metadata.window.feature));
  port.on('message', (m: { id: number; x: Float32Array; n: number }) => {
    try {
      // x may be a view of the batcher's shared buffer, longer than the batch.
      const x = m.x.length === m.n * frames * dims ? m.x : m.x.subarray(0, m.n * frames * dims);
      const probs = predictWindows(tf, model, { x, n: m.n, frames, dims }, 256);
      // A few dozen floats: cloning them is cheaper than transferring their buffer.
      port.postMessage({ id: m.id, probs });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      port.postMessage({ id: m.id, error: { code: e.code, message: e.message ?? String(err) } });
    }
  });
  port.postMessage({ id: 0, ready: { metadata, backend: name } });
} catch (err) {
  const e = err as { code?: string; message?: string };
  port.postMessage({ id: 0, error: { code: e.code, message: e.message ?? String(err) } });
}
