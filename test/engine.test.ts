/**
 * WorkerEngine supervision with the real model in real worker threads: a worker that dies or hangs fails only the
 * batches it held (INFERENCE), is restarted with backoff, and the engine reports its health; calls keep getting
 * events after the restart and never hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { readAudioFile } from '../src/audio/read.js';
import { resample } from '../src/audio/resample.js';
import { MicroBatcher } from '../src/stream/batcher.js';
import { WorkerEngine, type EngineHealth } from '../src/stream/engine.js';
import { EmotionTrack } from '../src/stream/track.js';
import type { CallmoodEvent } from '../src/stream/events.js';
import { ErrorCodes } from '../src/errors.js';
import { assertRejectsCallmood, rng } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const modelDir = `${root}models/default`;

function windows(engine: WorkerEngine, n: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n * engine.windowSize);
  for (let i = 0; i < x.length; i++) x[i] = r() * 2 - 1;
  return x;
}

/**
 * A WorkerEngine whose threads the test follows through the `onWorker` option; `kill()` terminates the live ones
 * from outside, as a crash or an out-of-memory kill ends a thread; `started` counts every thread started.
 */
async function observedEngine(options: { backoffMs: number }) {
  const live: Worker[] = [];
  const seen = { started: 0 };
  const engine = await WorkerEngine.load(modelDir, {
    ...options,
    onWorker: (w, slot) => {
      live[slot] = w;
      seen.started++;
    },
  });
  return { engine, seen, kill: async () => void (await Promise.all(live.map((w) => w.terminate()))) };
}

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a worker killed mid-batch fails that batch with INFERENCE, restarts, and then answers as before', async () => {
  const { engine, seen: observed, kill } = await observedEngine({ backoffMs: 20 });
  try {
    assert.equal(observed.started, 1, 'the observer is told of the thread');
    const seen: EngineHealth['status'][] = [];
    engine.on('health', (h) => seen.push(h.status));
    assert.equal(engine.health().status, 'ok');
    assert.equal(engine.healthy, true);
    const x = windows(engine, 8, 1);
    const first = await engine.predict(x, 8);
    assert.equal(first.length, 8 * engine.classes);

    // The kill must land while the thread holds the batch. A batch of 1,024 windows keeps it busy for about 200 ms
    // here, yet a preempted test process could still see the answer first: such a batch was answered, not lost, so
    // it is tried again (at most 3 times) rather than counted either way.
    const big = windows(engine, 1024, 3);
    let kills = 0;
    let lost: Promise<unknown> | null = null;
    while (!lost && kills < 3) {
      const inFlight = engine.predict(big, 1024).then(
        (probs) => ({ probs }),
        (err: unknown) => ({ err }),
      );
      await kill();
      kills++;
      const r = await inFlight;
      if ('err' in r) lost = Promise.reject(r.err);
      else await until(() => engine.healthy, 'the restart after a kill that came too late');
    }
    assert.ok(lost, `in ${kills} tries the kill never caught a batch in flight`);
    await assertRejectsCallmood(lost, ErrorCodes.INFERENCE, /exited|crashed/, /not scored/);
    // While it restarts, batches are refused at once rather than queued behind a dead thread.
    if (!engine.healthy) await assertRejectsCallmood(engine.predict(x, 8), ErrorCodes.INFERENCE, /restarting/);

    await until(() => engine.healthy, 'the restarted worker');
    const h = engine.health();
    assert.equal(h.status, 'ok');
    assert.equal(h.restarts, kills, 'one restart per kill');
    assert.match(h.lastError ?? '', /exited|crashed/);
    assert.deepEqual(seen, Array.from({ length: kills }, () => ['restarting', 'ok']).flat());
    const again = await engine.predict(x, 8);
    assert.deepEqual(again, first, 'the restarted worker runs the same model');
    assert.equal(observed.started, kills + 1, 'the observer is told of each restarted thread too');
  } finally {
    await engine.close();
  }
  assert.equal(engine.health().status, 'closed');
  await assertRejectsCallmood(engine.predict(new Float32Array(engine.windowSize), 1), ErrorCodes.CLOSED);
});

test('a worker that does not answer in time is terminated; after maxRestarts failures in a row the engine fails', async () => {
  // 1 ms is far less than any batch of 64 windows takes, so every batch times out: each one is a hung worker.
  const engine = await WorkerEngine.load(modelDir, { timeoutMs: 1, maxRestarts: 1, backoffMs: 10 });
  try {
    const x = windows(engine, 64, 2);
    await assertRejectsCallmood(engine.predict(x, 64), ErrorCodes.INFERENCE, /did not answer a batch of 64 within 1 ms/);
    await until(() => engine.healthy, 'the first restart');
    await assertRejectsCallmood(engine.predict(x, 64), ErrorCodes.INFERENCE, /did not answer/);
    await until(() => engine.health().status === 'failed', 'giving up');
    assert.equal(engine.healthy, false);
    assert.equal(engine.health().restarts, 1);
    await assertRejectsCallmood(engine.predict(x, 1), ErrorCodes.INFERENCE, /failed and was not restarted/);
  } finally {
    await engine.close();
  }
});

test('a call whose worker dies gets error events for the lost windows, then emotions again, and ends', async () => {
  const { engine, kill } = await observedEngine({ backoffMs: 20 });
  const batcher = new MicroBatcher(engine, { maxBatch: 64, maxWaitMs: 2 });
  try {
    const m = engine.metadata;
    const a = await readAudioFile(`${root}test/fixtures/audio/YAF_back_angry.flac`);
    const audio = resample(a.channels[0], a.sampleRate, 8000);
    const events: CallmoodEvent[] = [];
    let armed = false;
    let killedAt = -1;
    let crash: Promise<void> | null = null;
    const track = new EmotionTrack(
      { labels: m.labels, window: m.window, normalization: m.normalization },
      (w) => {
        const p = batcher.infer(w);
        // The worker dies with this window queued: it must come back as an error event.
        if (armed && killedAt < 0) {
          killedAt = events.length;
          crash = kill();
        }
        return p;
      },
      (e) => events.push(e),
      () => ({ callSid: 'CA1', streamSid: 'MZ1', customParameters: {} }),
      'inbound',
    );
    const pushClip = async () => {
      for (let i = 0; i < audio.length; i += 160) {
        track.push(audio.subarray(i, i + 160));
        if (crash) {
          await crash;
          crash = null;
        }
      }
    };
    // The clip once, until its emotions come back; again with the worker killed at its first window; then, once the
    // worker is back, twice more.
    await pushClip();
    await until(() => events.some((e) => e.type === 'emotion'), 'the first emotion');
    armed = true;
    await pushClip();
    await until(() => engine.healthy, 'the restarted worker');
    await pushClip();
    await pushClip();
    const summary = await track.end();
    assert.ok(killedAt > 0, 'the worker was killed during the call');
    const after = events.slice(killedAt);
    const errors = after.filter((e) => e.type === 'error');
    assert.ok(errors.length >= 1, 'the window lost with the worker is reported');
    for (const e of errors) {
      assert.equal(e.type === 'error' && e.code, ErrorCodes.INFERENCE);
      assert.equal(e.type === 'error' && e.permanent, false);
    }
    assert.ok(after.some((e) => e.type === 'emotion'), 'emotions continue after the restart');
    assert.ok(summary.windows > 0);
    assert.equal(engine.health().restarts, 1);
  } finally {
    await batcher.close();
  }
});

test('an onWorker observer that throws ends that thread as a failed start, with the reason', async () => {
  await assertRejectsCallmood(
    WorkerEngine.load(modelDir, {
      maxRestarts: 0,
      onWorker: () => {
        throw new Error('observer broke');
      },
    }),
    ErrorCodes.INFERENCE,
    /onWorker threw: observer broke/,
  );
});
