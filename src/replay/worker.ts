/** A replay worker thread: loads the model and the policy once, then replays one job at a time. See run.ts. */
import { parentPort, workerData } from 'node:worker_threads';
import { createContext, runJob, type ReplayJob, type RunSettings } from './run.js';

const port = parentPort!;
try {
  const ctx = await createContext((workerData as { settings: RunSettings }).settings);
  let queue = Promise.resolve();
  port.on('message', (m: { job: ReplayJob }) => {
    // One job at a time, in arrival order: a file's batches never share the model with another file's.
    queue = queue.then(async () => port.postMessage({ outcome: await runJob(m.job, ctx) }));
  });
  port.postMessage({ ready: true });
} catch (err) {
  const e = err as { code?: string; message?: string };
  port.postMessage({ error: { code: e.code ?? 'CALLMOOD_ERR_INTERNAL', message: e.message ?? String(err) } });
}
