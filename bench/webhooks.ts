/**
 * Webhook sink benchmark (not a test): the cost of `enqueue` on the audio path, the time until enqueued events are
 * on disk, the memory a large backlog holds, and delivery throughput to a loopback CRM. Prints one JSON line.
 *
 *   node --expose-gc --import tsx bench/webhooks.ts [--events 100000]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebhookSink } from '../src/sinks/webhooks.js';
import type { EmotionEvent } from '../src/stream/events.js';

const args = process.argv.slice(2);
const EVENTS = Number(args[args.indexOf('--events') + 1] || 100_000) || 100_000;
const SECRET = 'bench_secret_0123456789';
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

function emotion(call: number, n: number): EmotionEvent {
  const probs = { angry: 0.41, calm: 0.02, disgust: 0.05, fearful: 0.04, happy: 0.08, neutral: 0.3, sad: 0.1 };
  return {
    type: 'emotion',
    callSid: `CA${String(call).padStart(32, '0')}`,
    streamSid: `MZ${String(call).padStart(32, '0')}`,
    timeMs: n * 250,
    customParameters: { From: '+15550100', To: '+15550199' },
    track: 'inbound',
    windowStartMs: n * 250 - 1200,
    speechRatio: 0.82,
    probs,
    label: 'angry',
    confidence: 0.41,
    state: { probs, label: 'angry', confidence: 0.39 },
    latencyMs: 7.3,
  };
}

async function crm(delayMs = 0): Promise<{ url: string; count: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      const answer = () => res.writeHead(204).end();
      if (delayMs) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    count: () => n,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** Enqueues EVENTS events over 100 calls with the CRM down: enqueue cost, durability latency, memory and disk. */
async function backlog(memoryWindow: number) {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-webhooks-'));
  // Nothing listens on port 9 (discard) here: every attempt fails fast and waits a long backoff.
  const sink = await WebhookSink.open({
    outboxDir: dir,
    memoryWindow,
    endpoints: [{ name: 'crm', url: 'http://127.0.0.1:9/hook', events: ['emotion'], secret: SECRET, backoff: { baseMs: 600_000, maxMs: 600_000, jitter: 0 } }],
  });
  sink.on('attempt-failed', () => undefined);
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const perTick = 1000;
  let enqueueNs = 0n;
  const durableMs: number[] = [];
  for (let i = 0; i < EVENTS; i += perTick) {
    const batch: EmotionEvent[] = [];
    for (let j = i; j < Math.min(EVENTS, i + perTick); j++) batch.push(emotion(j % 100, Math.floor(j / 100)));
    const t0 = process.hrtime.bigint();
    let p: Promise<void> = Promise.resolve();
    for (const e of batch) p = sink.enqueue(e);
    const t1 = process.hrtime.bigint();
    enqueueNs += t1 - t0;
    await p;
    durableMs.push(Number(process.hrtime.bigint() - t1) / 1e6);
  }
  gc();
  const stats = sink.stats().crm;
  const heap1 = process.memoryUsage().heapUsed;
  const rss1 = process.memoryUsage().rss;
  const logBytes = statSync(join(dir, 'crm', 'outbox.jsonl')).size;
  const t = Date.now();
  await sink.close(0);
  const closeMs = Date.now() - t;
  const reopen0 = Date.now();
  const again = await WebhookSink.open({
    outboxDir: dir,
    memoryWindow,
    endpoints: [{ name: 'crm', url: 'http://127.0.0.1:9/hook', events: ['emotion'], secret: SECRET, backoff: { baseMs: 600_000, maxMs: 600_000, jitter: 0 } }],
  });
  const replayMs = Date.now() - reopen0;
  const pendingAfterReplay = again.stats().crm.pending;
  await again.close(0);
  rmSync(dir, { recursive: true, force: true });
  durableMs.sort((a, b) => a - b);
  return {
    memoryWindow,
    events: EVENTS,
    bodyBytes: Buffer.byteLength(JSON.stringify(emotion(1, 1))) + 150,
    enqueueUsPerEvent: Number(enqueueNs / BigInt(EVENTS)) / 1000,
    durableMsP50: durableMs[Math.floor(durableMs.length / 2)],
    durableMsP99: durableMs[Math.floor(durableMs.length * 0.99)],
    pending: stats.pending,
    inMemory: stats.inMemory,
    heapMB: +((heap1 - heap0) / 2 ** 20).toFixed(1),
    rssMB: +((rss1 - rss0) / 2 ** 20).toFixed(1),
    logMB: +(logBytes / 2 ** 20).toFixed(1),
    closeMs,
    replayMs,
    pendingAfterReplay,
  };
}

/** Delivers `n` events over 100 calls to a loopback CRM answering 204 (after `delayMs`). */
async function throughput(n: number, concurrency: number, delayMs: number) {
  const server = await crm(delayMs);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-webhooks-'));
  const sink = await WebhookSink.open({ outboxDir: dir, endpoints: [{ name: 'crm', url: server.url, events: ['emotion'], secret: SECRET, concurrency }] });
  const t0 = Date.now();
  for (let j = 0; j < n; j++) sink.enqueue(emotion(j % 100, Math.floor(j / 100)));
  const drained = await sink.drain(120_000);
  const s = (Date.now() - t0) / 1000;
  await sink.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  return { events: n, concurrency, crmDelayMs: delayMs, drained, seconds: +s.toFixed(2), eventsPerSecond: Math.round(n / s), received: server.count() };
}

const result = {
  backlog: [await backlog(10_000), await backlog(EVENTS)],
  delivery: [await throughput(20_000, 4, 0), await throughput(20_000, 16, 0), await throughput(5_000, 16, 20)],
};
process.stdout.write(`${JSON.stringify(result)}\n`);
