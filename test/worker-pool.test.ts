/**
 * The worker pool of src/util/worker-pool.ts with real threads running test/helpers/pool-worker.ts: FIFO dispatch,
 * the bound on threads and requests per thread, a timed-out thread replaced, crashes replaced within the restart
 * budget and then given up, and a ready handshake that fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ThreadGoneError, WorkerPool, type PoolHealth, type ThreadEnd, type WorkerPoolOptions } from '../src/util/worker-pool.js';

const moduleUrl = new URL('./helpers/pool-worker.ts', import.meta.url).href;

interface Echo {
  id: number;
  value: number;
  thread: number;
  start: number;
  end: number;
}

/** The handshake of pool-worker.ts: `{ ready: true }`, or `{ error }` refused. */
const handshake = (m: unknown): true | undefined => {
  const r = m as { ready?: true; error?: string };
  if (r.error) throw new Error(`refused: ${r.error}`);
  return r.ready;
};

function pool(options: Partial<WorkerPoolOptions> & { start?: string } = {}): WorkerPool {
  const { start = 'ok', ...rest } = options;
  return new WorkerPool({ moduleUrl, data: { start }, threads: 1, ready: handshake, ...rest });
}

const echo = (p: WorkerPool, value: number, ms = 0) => p.request<Echo>({ op: 'echo', value, ms });

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Most intervals open at one time. */
function maxOverlap(replies: Echo[]): number {
  const marks = replies.flatMap((r) => [[r.start, 1] as const, [r.end, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let most = 0;
  for (const [, d] of marks) most = Math.max(most, (open += d));
  return most;
}

async function rejectsGone(p: Promise<unknown>, cause: ThreadEnd['cause'], pattern?: RegExp): Promise<ThreadGoneError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ThreadGoneError, `expected a ThreadGoneError (${cause}), got ${String(caught)}`);
  assert.equal(caught.end.cause, cause, `end of: ${caught.message}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

test('requests are sent in FIFO order, to at most `threads` threads holding `perThread` each', async () => {
  const p = pool({ threads: 2 });
  try {
    await p.start();
    assert.deepEqual(p.health(), { status: 'ok', ready: 2, threads: 2, restarts: 0 } satisfies PoolHealth);
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => echo(p, i, 40)));
    assert.deepEqual(replies.map((r) => r.value), [0, 1, 2, 3, 4, 5], 'each reply answers its own request');
    const ids = replies.map((r) => r.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'queued requests leave the queue in the order they came');
    assert.equal(new Set(replies.map((r) => r.thread)).size, 2, 'both threads served');
    assert.equal(maxOverlap(replies), 2, 'never more than two requests at once');
  } finally {
    await p.close();
  }
  const q = pool({ threads: 1, perThread: 3 });
  try {
    await q.start();
    const replies = await Promise.all(Array.from({ length: 7 }, (_, i) => echo(q, i, 40)));
    assert.equal(maxOverlap(replies), 3, 'one thread holds up to perThread requests');
  } finally {
    await q.close();
  }
});

test('a request not answered in time terminates its thread, which is replaced; the others are served meanwhile', async () => {
  const p = pool({ restart: { max: 2, backoffMs: 10 } });
  const started: number[] = [];
  const gone: [ThreadEnd, boolean][] = [];
  p.on('started', (t) => started.push(t.slot));
  p.on('gone', (end, _slot, restarting) => gone.push([end, restarting]));
  try {
    await p.start();
    const hung = p.request({ op: 'hang' }, { timeoutMs: 100, timeoutReason: 'the test worker hung' });
    const behind = echo(p, 7);
    await rejectsGone(hung, 'killed', /the test worker hung/);
    assert.equal((await behind).value, 7, 'the request queued behind the hung one is served by the new thread');
    assert.deepEqual(started, [0, 0], 'the slot started a second thread');
    assert.deepEqual(gone, [[{ cause: 'killed', reason: 'the test worker hung' }, true]]);
    assert.equal(p.health().restarts, 1);
    await rejectsGone(p.request({ op: 'hang' }, { timeoutMs: 50 }), 'killed', /did not answer within 50 ms/);
  } finally {
    await p.close();
  }
});

test('a crashed thread fails what it held and is replaced within the budget; past it the slot fails, and so do requests', async () => {
  const p = pool({ restart: { max: 2, backoffMs: 5, resetOnAnswer: false } });
  const health: PoolHealth['status'][] = [];
  p.on('health', (h) => health.push(h.status));
  try {
    await p.start();
    await rejectsGone(p.request({ op: 'crash' }), 'crashed', /crashed on demand/);
    assert.equal((await echo(p, 1)).value, 1, 'the replacement answers');
    await rejectsGone(p.request({ op: 'exit', code: 3 }), 'exited', /code 3/);
    assert.equal((await echo(p, 2)).value, 2, 'the second replacement answers');
    const third = p.request({ op: 'crash' });
    const queued = echo(p, 3);
    await rejectsGone(third, 'crashed');
    await rejectsGone(queued, 'crashed', /crashed on demand/);
    assert.equal(p.health().status, 'failed');
    assert.equal(p.health().restarts, 2);
    await rejectsGone(echo(p, 4), 'crashed');
    assert.deepEqual(health, ['ok', 'restarting', 'ok', 'restarting', 'ok', 'failed']);
  } finally {
    await p.close();
  }
  assert.equal(p.health().status, 'closed');
  await rejectsGone(echo(p, 5), 'closed');
});

test('failures in a row: an answered request forgives the earlier ones (the default)', async () => {
  const p = pool({ restart: { max: 1 } });
  try {
    await p.start();
    for (let i = 0; i < 3; i++) {
      await rejectsGone(p.request({ op: 'crash' }), 'crashed');
      assert.equal((await echo(p, i)).value, i, `replacement ${i + 1} answers`);
    }
    assert.equal(p.health().restarts, 3);
    await rejectsGone(p.request({ op: 'crash' }), 'crashed');
    await rejectsGone(p.request({ op: 'crash' }), 'crashed');
    await until(() => p.health().status === 'failed', 'two crashes in a row to exhaust a budget of one');
  } finally {
    await p.close();
  }
});

test('a thread ended from outside, or by an allow() that says no, is not restarted past what allow() lets', async () => {
  const p = pool({ threads: 2, restart: { max: 5, allow: (end) => end.cause !== 'exited' } });
  const workers: import('node:worker_threads').Worker[] = [];
  p.on('started', (t) => (workers[t.slot] = t.worker));
  try {
    await p.start();
    await workers[1].terminate();
    await until(() => p.health().status === 'degraded', 'slot 1 to fail');
    assert.deepEqual(p.states(), ['ready', 'failed']);
    assert.equal((await echo(p, 1)).value, 1, 'slot 0 still serves');
  } finally {
    await p.close();
  }
});

test('a ready handshake that fails rejects start(): refused, crashed while loading, or silent until killed', async () => {
  const refused = pool({ threads: 2, start: 'refuse' });
  await assert.rejects(refused.start(), /refused: no model here/);
  await refused.close();

  const crashing = pool({ start: 'throw', restart: { max: 3 } });
  const gone: boolean[] = [];
  crashing.on('gone', (_end, _slot, restarting) => gone.push(restarting));
  await rejectsGone(crashing.start(), 'crashed', /the module failed to load/);
  await crashing.close();

  const silent = pool({ start: 'silent' });
  silent.on('started', (t) => setTimeout(() => t.kill('no handshake within 100 ms'), 100));
  await rejectsGone(silent.start(), 'killed', /no handshake within 100 ms/);
  await silent.close();

  const throwing = pool();
  throwing.on('started', () => {
    throw new Error('listener broke');
  });
  await rejectsGone(throwing.start(), 'killed', /'started' listener threw: listener broke/);
  await throwing.close();
});

test('without a handshake a thread is ready as soon as it starts; close() rejects what is held and queued', async () => {
  const p = new WorkerPool({ moduleUrl, data: { start: 'silent' }, threads: 1 });
  await p.start();
  const held = rejectsGone(p.request({ op: 'hang' }), 'closed');
  const queued = rejectsGone(echo(p, 1), 'closed');
  await p.close();
  await held;
  await queued;
});
