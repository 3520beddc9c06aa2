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
      const probs = predictWindows(tf, model, { x: m.x, n: m.n, frames, dims }, 256);
      port.postMessage({ id: m.id, probs }, [probs.buffer as ArrayBuffer]);
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
