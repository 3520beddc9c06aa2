import { Worker } from 'node:worker_threads';

/**
 * Worker bootstrap, evaluated as a script: under tsx (a .ts module URL) it registers tsx's loader in the worker
 * first, since Node 20 workers do not inherit `--import tsx`; compiled, it imports the .js module directly.
 */
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.__tsxApi) (await import(workerData.__tsxApi)).register();
  await import(workerData.__entry);
})().catch((err) => { setImmediate(() => { throw err; }); });
`;

/** Starts a worker thread running the ES module at `moduleUrl` (a .ts file under tsx, or compiled .js). */
export function startModuleWorker(moduleUrl: string, data: Record<string, unknown>): Worker {
  const tsxApi = moduleUrl.endsWith('.ts') ? import.meta.resolve('tsx/esm/api') : null;
  return new Worker(BOOT, { eval: true, workerData: { ...data, __entry: moduleUrl, __tsxApi: tsxApi } });
}
