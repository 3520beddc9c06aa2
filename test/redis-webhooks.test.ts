/**
 * The Redis webhook outbox (issue 15, many nodes on one Redis) with real parts only: a real redis-server with AOF
 * (test/helpers/redis.ts), a real HTTP server as the CRM, real child processes as nodes, SIGKILL, and the real CLI.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { FakeCrm, markEvent, type Received } from './helpers/webhook-crm.js';
import { cli, waitFor } from './helpers.js';
import { RedisWebhookSink, partitionOf } from '../src/sinks/redis-webhooks.js';
import { createWebhookSink } from '../src/sinks/webhook-sink.js';
import { WebhookSink } from '../src/sinks/webhooks.js';
import { DEFAULT_OPTIONS, type RedisSettings } from '../src/config/options.js';
import type { DeadLetter } from '../src/sinks/outbox.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const SECRET = 'whsec_redis_0123456789abcdef';
const fast = { baseMs: 20, maxMs: 200, jitter: 0.5 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const settings = (prefix: string, over: Partial<RedisSettings> = {}): RedisSettings => ({ ...DEFAULT_OPTIONS.redis, url: redis.url, prefix, leaseMs: 1000, ...over });

type Line = { level: string; code: string; message: string };
function collector(): { lines: Line[]; logger: (level: string, code: string, message: string) => void } {
  const lines: Line[] = [];
  return { lines, logger: (level, code, message) => lines.push({ level, code, message }) };
}

/**
 * Every expected (call, n) reached the CRM with a 2xx, per call the first deliveries came in order of n, every
 * request's signature checks out. Returns a message, or null; and the duplicates (2xx deliveries of an id already
 * delivered).
 */
function audit(received: Received[], expected: Map<string, number[]>): { problem: string | null; duplicates: number } {
  const firstSeen = new Set<string>();
  const firsts = new Map<string, number[]>();
  let duplicates = 0;
  for (const r of received) {
    if (!r.signatureOk) return { problem: `bad signature on ${r.callSid}/${r.name}`, duplicates };
    if (r.status < 200 || r.status >= 300) continue;
    if (firstSeen.has(r.id)) {
      duplicates++;
      continue;
    }
    firstSeen.add(r.id);
    firsts.set(r.callSid, [...(firsts.get(r.callSid) ?? []), Number(r.name)]);
  }
  for (const [call, ns] of expected) {
    const got = firsts.get(call) ?? [];
    const missing = ns.filter((n) => !got.includes(n));
    if (missing.length > 0) return { problem: `${call}: events ${missing.join(',')} never delivered (${got.length} delivered)`, duplicates };
    for (let i = 1; i < got.length; i++) {
      if (got[i] < got[i - 1]) return { problem: `${call}: event ${got[i]} delivered first after ${got[i - 1]}`, duplicates };
    }
  }
  return { problem: null, duplicates };
}

test('three nodes on one Redis: one is SIGKILLed while the CRM is down; the survivors deliver everything it had accepted, in order per call, signed', { timeout: 90_000 }, async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  let up = false;
  crm.respond = () => (up ? { status: 200 } : { status: 503 });
  const prefix = 't1';
  const CALLS = 7;
  const PER_CALL = 30;
  const confirmed = new Map<string, number[]>();
  const held = new Map<string, number>();
  const maxHeld = new Map<string, number>();
  const state = new Map<string, { ready: boolean; enqueued: boolean; closed: boolean }>();
  const children: ChildProcess[] = [];
  const stderr: string[] = [];
  const nodes = ['n0', 'n1', 'n2'];
  for (const id of nodes) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/helpers/redis-webhook-child.ts'), redis.url, prefix, crm.url, id, String(CALLS), String(PER_CALL), '1500'], {
      cwd: root,
      env: { ...process.env, WEBHOOK_TEST_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    state.set(id, { ready: false, enqueued: false, closed: false });
    child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { ready?: true; ok?: [string, number]; held?: number; enqueued?: true; closed?: true };
      const s = state.get(id)!;
      if (m.ready) s.ready = true;
      if (m.enqueued) s.enqueued = true;
      if (m.closed) s.closed = true;
      if (m.ok) confirmed.set(m.ok[0], [...(confirmed.get(m.ok[0]) ?? []), m.ok[1]]);
      if (m.held !== undefined) {
        held.set(id, m.held);
        maxHeld.set(id, Math.max(maxHeld.get(id) ?? 0, m.held));
      }
    });
  }
  const victim = children[1];
  try {
    await waitFor(() => nodes.every((id) => state.get(id)!.ready), 'three nodes ready', 20_000);
    // The load spreads: each node delivers some partitions, together all 16.
    await waitFor(() => nodes.every((id) => (held.get(id) ?? 0) > 0) && nodes.reduce((n, id) => n + (held.get(id) ?? 0), 0) === 16, () => `partitions spread: ${JSON.stringify([...held])}`, 15_000);
    const spread = nodes.map((id) => held.get(id));
    // The victim dies half-way through its own enqueues, with the CRM down: its partitions hold events it had read.
    const victimCalls = () => [...confirmed].filter(([c]) => c.startsWith('CAn1x')).reduce((n, [, ns]) => n + ns.length, 0);
    await waitFor(() => victimCalls() >= (CALLS * PER_CALL) / 2, 'the victim to have half its events accepted', 20_000);
    const logAtKill = stderr.join('').length;
    victim.kill('SIGKILL');
    await waitFor(() => victim.exitCode !== null || victim.signalCode !== null, 'the victim to die', 5000);
    const victimConfirmed = victimCalls();
    assert.ok(victimConfirmed < CALLS * PER_CALL, `killed mid-way through its enqueues (${victimConfirmed} accepted)`);
    await waitFor(() => state.get('n0')!.enqueued && state.get('n2')!.enqueued, 'survivors to enqueue all', 20_000);
    await sleep(300);
    assert.ok(crm.received.length > 0 && crm.delivered().length === 0, `the CRM answered 503 to every attempt so far (${crm.received.length} attempts)`);
    up = true;
    const t0 = Date.now();
    await waitFor(() => audit(crm.received, confirmed).problem === null || null, () => `every confirmed event delivered: ${audit(crm.received, confirmed).problem}`, 30_000);
    const took = Date.now() - t0;
    const { problem, duplicates } = audit(crm.received, confirmed);
    assert.equal(problem, null);
    // The survivors took the victim's partitions over with the events it had read and not delivered.
    const claimed = stderr.join('').slice(logAtKill).split('\n').filter((l) => /CALLMOOD_WEBHOOK_PARTITION .*events pending from before/.test(l));
    assert.ok(claimed.length > 0, 'a survivor claimed events pending from the killed node');
    const total = [...confirmed.values()].reduce((n, ns) => n + ns.length, 0);
    // After the victim's leases ran out the survivors hold all 16 partitions.
    await waitFor(() => (held.get('n0') ?? 0) + (held.get('n2') ?? 0) === 16, () => `survivors hold every partition: ${JSON.stringify([...held])}`, 10_000);
    process.stdout.write(
      `# redis-webhooks: ${total} events accepted (${victimConfirmed} by the killed node) over ${confirmed.size} calls; ${claimed.length} of its partitions taken over with pending events; partitions at start ${spread.join('/')}; ` +
        `all delivered ${took} ms after the CRM came back; ${crm.delivered().length} 2xx deliveries, ${duplicates} duplicates; ${crm.received.length} requests in all\n`,
    );
    assert.equal(crm.overlaps, 0, 'one request at a time per call');
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await waitFor(() => children.every((c) => c.exitCode !== null || c.signalCode !== null), () => `children to exit: ${stderr.join('').slice(-2000)}`, 15_000).catch(() => {
      for (const c of children) c.kill('SIGKILL');
    });
    await crm.stop();
  }
  assert.ok(state.get('n0')!.closed && state.get('n2')!.closed, 'the survivors closed cleanly on SIGTERM');
});

test('Redis away: enqueue goes on into the buffer, stats and logs say so, everything is delivered in order once it is back; a full buffer drops, counted and logged', { timeout: 60_000 }, async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  const log = collector();
  const sink = await RedisWebhookSink.open({ endpoints: [{ name: 'crm', url: crm.url, events: ['mark'], secret: SECRET, backoff: fast }] }, settings('t2'), { logger: log.logger, nodeId: 'solo' });
  const calls = ['CAa', 'CAb', 'CAc'];
  const expected = new Map<string, number[]>(calls.map((c) => [c, []]));
  const promises: Promise<void>[] = [];
  let n = 0;
  const enqueueRound = () => {
    for (const c of calls) {
      promises.push(sink.enqueue(markEvent(c, n)));
      expected.get(c)!.push(n);
    }
    n++;
  };
  try {
    for (let i = 0; i < 10; i++) enqueueRound();
    await Promise.all(promises);
    await redis.pause();
    const downAt = Date.now();
    // Enqueue keeps working for ~2 s while Redis is down.
    while (Date.now() - downAt < 2000) {
      enqueueRound();
      await sleep(50);
    }
    const st = sink.stats().crm;
    assert.notEqual(st.redis, 'connected', `stats say Redis is away: ${st.redis}`);
    assert.ok(st.buffered > 0, `events are buffered while Redis is away: ${JSON.stringify(st)}`);
    assert.equal(st.dropped, 0);
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_REDIS_DOWN'), `logged that Redis is down: ${JSON.stringify(log.lines.map((l) => l.code))}`);
    assert.equal(log.lines.filter((l) => l.code === 'CALLMOOD_REDIS_DOWN').length, 1, 'logged once per outage');
    await redis.resume();
    await Promise.all(promises);
    assert.ok(await sink.drain(20_000), 'everything delivered after Redis came back');
    const { problem, duplicates } = audit(crm.received, expected);
    assert.equal(problem, null);
    process.stdout.write(`# redis-webhooks: ${n * calls.length} events, ${st.buffered} buffered during a ${Date.now() - downAt} ms outage, ${duplicates} duplicates\n`);
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_REDIS_RECOVERED'), 'logged the recovery');
    assert.equal(sink.stats().crm.redis, 'connected');
  } finally {
    await sink.close(1000, 0);
  }

  // A buffer of 5: the rest is dropped, counted, logged once, and the enqueue promise says so.
  const small = collector();
  const tiny = await RedisWebhookSink.open({ endpoints: [{ name: 'crm', url: crm.url, events: ['mark'], secret: SECRET, backoff: fast }] }, settings('t2b', { bufferMaxEvents: 5 }), { logger: small.logger, nodeId: 'tiny' });
  try {
    await redis.pause();
    const outcomes: Array<Promise<boolean>> = [];
    for (let i = 0; i < 20; i++) {
      outcomes.push(tiny.enqueue(markEvent('CAt', i)).then(() => true, () => false));
      await new Promise((r) => setImmediate(r));
    }
    const st = tiny.stats().crm;
    assert.deepEqual([st.buffered, st.dropped, st.enqueued], [5, 15, 20], JSON.stringify(st));
    assert.equal(small.lines.filter((l) => l.code === 'CALLMOOD_WEBHOOK_BUFFER_FULL').length, 1, `the drops logged once: ${JSON.stringify(small.lines)}`);
    await redis.resume();
    const ok = await Promise.all(outcomes);
    assert.deepEqual(ok, [...Array(5).fill(true), ...Array(15).fill(false)], 'the first five accepted, the rest refused');
    assert.ok(await tiny.drain(20_000), 'the buffered five delivered');
    const rec = small.lines.find((l) => l.code === 'CALLMOOD_WEBHOOK_BUFFER_RECOVERED');
    assert.ok(rec && /15 were dropped/.test(rec.message), `the count of drops logged at recovery: ${JSON.stringify(small.lines)}`);
    const got = crm.delivered().filter((r) => r.callSid === 'CAt').map((r) => Number(r.name));
    assert.deepEqual([...new Set(got)], [0, 1, 2, 3, 4]);
  } finally {
    await tiny.close(1000, 0);
    await crm.stop();
  }
});

test('dead letters in Redis: `callmood webhooks status --redis` shows them and the partition owners; `retry --redis` moves them back while the server runs', { timeout: 60_000 }, async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = (r) => (r.callSid === 'CAd' && r.name === '1' ? { status: 422 } : { status: 200 });
  const prefix = 't3';
  const sink = createWebhookSink({ endpoints: [{ name: 'crm', url: crm.url, events: ['mark'], secret: SECRET, backoff: fast }] }, settings(prefix), { nodeId: 'server-a' });
  assert.ok(sink instanceof RedisWebhookSink, 'with redis.url the factory makes the Redis sink');
  assert.ok(createWebhookSink({}, { ...settings(prefix), url: null }) instanceof WebhookSink, 'without it, the file sink');
  const dead: DeadLetter[] = [];
  sink.on('dead-letter', (d) => dead.push(d));
  try {
    await sink.ready;
    for (let i = 0; i < 3; i++) void sink.enqueue(markEvent('CAd', i));
    await waitFor(() => crm.delivered().filter((r) => r.callSid === 'CAd').length === 2 && dead.length === 1, 'two delivered, one dead', 10_000);
    assert.deepEqual(crm.delivered().filter((r) => r.callSid === 'CAd').map((r) => r.name), ['0', '2'], 'the call goes on past its dead letter');
    assert.match(dead[0].error, /HTTP 422.*permanent/);

    const status = await cli('webhooks', 'status', '--redis', redis.url, '--prefix', prefix, '--json');
    assert.equal(status.code, 0, status.stderr);
    const rows = JSON.parse(status.stdout) as Array<{ endpoint: string; pending: number; dead: number; partitions: Array<{ partition: number; owner: string | null }> }>;
    assert.equal(rows.length, 1, status.stdout);
    assert.deepEqual([rows[0].endpoint, rows[0].pending, rows[0].dead], ['crm', 0, 1]);
    assert.ok(rows[0].partitions.length === 16 && rows[0].partitions.every((p) => p.owner === 'server-a'), `every partition held by the one node: ${status.stdout}`);
    const table = await cli('webhooks', 'status', '--redis', redis.url, '--prefix', prefix);
    assert.match(table.stdout, /crm\s+0\s+0\s+1/, table.stdout);
    assert.match(table.stdout, /server-a: partitions 0,1,2/, table.stdout);

    const retry = await cli('webhooks', 'retry', '--redis', redis.url, '--prefix', prefix, '--timeout', '10000');
    assert.equal(retry.code, 1, `exit 1: dead again\n${retry.stdout}${retry.stderr}`);
    assert.match(retry.stdout, /1 dead letter sent again: 0 delivered, 1 dead again/, retry.stdout);
    crm.respond = () => ({ status: 200 });
    const before = crm.delivered().length;
    const again = await cli('webhooks', 'retry', '--redis', redis.url, '--prefix', prefix, '--id', dead[0].id, '--timeout', '10000');
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    assert.match(again.stdout, /1 dead letter sent again: 1 delivered, 0 dead again, 0 still pending/, again.stdout);
    const redelivered = crm.delivered().slice(before);
    assert.deepEqual(redelivered.map((r) => [r.id, r.name, r.signatureOk]), [[dead[0].id, '1', true]], 'the same id, signed');
    const none = await cli('webhooks', 'retry', '--redis', redis.url, '--prefix', prefix, '--id', 'no-such-id');
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /--id no-such-id: no dead letter/);
    const after = JSON.parse((await cli('webhooks', 'status', '--redis', redis.url, '--prefix', prefix, '--json')).stdout) as typeof rows;
    assert.deepEqual([after[0].pending, after[0].dead], [0, 0]);
  } finally {
    await sink.close(1000, 0);
    await crm.stop();
  }
});

test('partitionOf is stable and spreads calls', () => {
  assert.equal(partitionOf('CA0123456789abcdef', 16), partitionOf('CA0123456789abcdef', 16));
  const counts = new Array<number>(16).fill(0);
  for (let i = 0; i < 1600; i++) counts[partitionOf(`CA${i.toString(16).padStart(32, '0')}`, 16)]++;
  assert.ok(Math.min(...counts) > 50, `every partition gets calls: ${counts.join(',')}`);
});
