/**
 * A worker for test/worker-pool.test.ts. workerData: `start` is 'ok' (post `{ ready: true }`), 'refuse' (post
 * `{ error }` instead), 'throw' (throw while loading) or 'silent' (no handshake message). Requests `{ id, op, … }`:
 * echo (answer `{ id, value, start, end }` after `ms`), crash (an uncaught exception), exit (`process.exit(code)`),
 * hang (never answer).
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';

const port = parentPort!;
const { start } = workerData as { start: 'ok' | 'refuse' | 'throw' | 'silent' };
if (start === 'throw') throw new Error('the module failed to load');

port.on('message', (m: { id: number; op: string; value?: unknown; ms?: number; code?: number }) => {
  const t0 = Date.now();
  if (m.op === 'echo') setTimeout(() => port.postMessage({ id: m.id, value: m.value, thread: threadId, start: t0, end: Date.now() }), m.ms ?? 0);
  else if (m.op === 'crash') setImmediate(() => { throw new Error('crashed on demand'); });
  else if (m.op === 'exit') process.exit(m.code ?? 0);
  // hang: nothing
});
if (start === 'ok') port.postMessage({ ready: true });
else if (start === 'refuse') port.postMessage({ error: 'no model here' });
