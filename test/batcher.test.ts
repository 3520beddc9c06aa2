import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, MicroBatcher, type InferenceEngine } from '../src/stream/batcher.js';
import { ErrorCodes } from '../src/errors.js';
import { assertRejectsCallmood } from './helpers.js';

/** An engine whose answer is a known function of each window: [mean, 1 − mean]; it records its batch sizes. */
class MeanEngine implements InferenceEngine {
  readonly classes = 2;
  readonly batches: number[] = [];
  closed = false;
  constructor(readonly windowSize: number, private readonly delayMs = 2, private readonly fail = false) {}
  /** The buffers batches arrived in. */
  readonly buffers = new Set<ArrayBufferLike>();
  async predict(x: Float32Array, n: number): Promise<Float32Array> {
    this.batches.push(n);
    this.buffers.add(x.buffer);
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fail) throw new Error('engine down');
    const out = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < this.windowSize; j++) s += x[i * this.windowSize + j];
      out[2 * i] = s / this.windowSize;
      out[2 * i + 1] = 1 - s / this.windowSize;
    }
    return out;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const win = (v: number, size = 8) => new Float32Array(size).fill(v);

test('windows from many callers are batched and each gets its own answer', async () => {
  const engine = new MeanEngine(8);
  const b = new MicroBatcher(engine, { maxBatch: 16, maxWaitMs: 5 });
  const values = Array.from({ length: 40 }, (_, i) => i / 40);
  const results = await Promise.all(values.map((v) => b.infer(win(v))));
  results.forEach((r, i) => {
    assert.ok(Math.abs(r[0] - values[i]) < 1e-6, `window ${i}: ${r[0]}`);
    assert.ok(Math.abs(r[1] - (1 - values[i])) < 1e-6);
  });
  assert.ok(engine.batches.length <= 4, `batches ${engine.batches}`);
  assert.ok(engine.batches.every((n) => n <= 16));
  assert.equal(engine.batches.reduce((a, n) => a + n, 0), 40);
  assert.equal(b.stats.windows, 40);
  await b.close();
  assert.ok(engine.closed);
});

test('a lone window waits no longer than maxWaitMs', async () => {
  const engine = new MeanEngine(8, 0);
  const b = new MicroBatcher(engine, { maxBatch: 64, maxWaitMs: 3 });
  const t0 = performance.now();
  await b.infer(win(0.5));
  assert.ok(performance.now() - t0 < 200, 'answered promptly');
  assert.deepEqual(engine.batches, [1]);
  await b.close();
});

test('an engine failure rejects that batch only; later windows still work', async () => {
  const failing = new MeanEngine(8, 1, true);
  const b = new MicroBatcher(failing, { maxBatch: 4, maxWaitMs: 1 });
  await assert.rejects(b.infer(win(0.1)), /engine down/);
  await b.close();
  const ok = new MicroBatcher(new MeanEngine(8), { maxBatch: 4, maxWaitMs: 1 });
  assert.ok((await ok.infer(win(0.25)))[0] > 0.24);
  await ok.close();
});

test('wrong window size and use after close are clear errors', async () => {
  const b = new MicroBatcher(new MeanEngine(8));
  await assertRejectsCallmood(b.infer(win(0, 7)), ErrorCodes.INVALID_OPTION, /window has 7 values; the model takes 8/);
  await b.close();
  await assertRejectsCallmood(b.infer(win(0)), ErrorCodes.CLOSED);
});

test('a shared buffer pool: a second batcher runs its batches in the first one\'s buffers, and the answers stay right', async () => {
  const pool = new BufferPool(4);
  const e1 = new MeanEngine(8, 0);
  const b1 = new MicroBatcher(e1, { maxBatch: 4, maxWaitMs: 0 }, pool);
  const values = Array.from({ length: 12 }, (_, i) => i / 12);
  await Promise.all(values.map((v) => b1.infer(win(v))));
  await b1.close();
  assert.ok(pool.size >= 1 && pool.size <= 4, `pool holds ${pool.size}`);
  const e2 = new MeanEngine(8, 0);
  const b2 = new MicroBatcher(e2, { maxBatch: 4, maxWaitMs: 0 }, pool);
  const results = await Promise.all(values.map((v) => b2.infer(win(1 - v))));
  results.forEach((r, i) => assert.ok(Math.abs(r[0] - (1 - values[i])) < 1e-6, `window ${i}: ${r[0]}`));
  await b2.close();
  for (const buf of e2.buffers) assert.ok(e1.buffers.has(buf), 'the second batcher allocated a buffer although the pool had one');
  // A pool of another size keeps no more than it may; a buffer of another length is never handed out.
  const small = new BufferPool(1);
  small.give(new Float32Array(8));
  small.give(new Float32Array(8));
  assert.equal(small.size, 1);
  assert.equal(small.take(16).length, 16);
  assert.equal(small.size, 1);
  assert.throws(() => new BufferPool(-1), /buffer pool size is -1; allowed: an integer ≥ 0/);
});
