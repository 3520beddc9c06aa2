import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { CallmoodError } from '../src/errors.js';
import type { CallmoodEvent, ActionEvent } from '../src/stream/events.js';
import { WebhookSink } from '../src/sinks/webhooks.js';
import { resolveWebhookOptions, type WebhookEndpointInput } from '../src/config/webhook-options.js';
import { signWebhook, verifyWebhookSignature } from '../src/sinks/webhook-signature.js';
import { loadWebhookConfig, retryDeadLetters, webhookStatus } from '../src/sinks/webhook-admin.js';
import { webhooksCommand } from '../src/cli/webhooks.js';
import { FakeCrm, checkOrder, markEvent } from './helpers/webhook-crm.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const SECRET = 'whsec_test_0123456789abcdef';
const tmp = () => mkdtempSync(join(tmpdir(), 'callmood-webhooks-'));
const fast = { baseMs: 10, maxMs: 50, jitter: 0.5 };

type Line = { level: string; code: string; message: string };
function collector(): { lines: Line[]; logger: (level: string, code: string, message: string) => void } {
  const lines: Line[] = [];
  return { lines, logger: (level, code, message) => lines.push({ level, code, message }) };
}

function endpoint(crm: FakeCrm, over: Partial<WebhookEndpointInput> = {}): WebhookEndpointInput {
  return { name: 'crm', url: crm.url, events: ['mark'], secret: SECRET, backoff: fast, ...over };
}

function action(callSid: string, kind: ActionEvent['action'], n: number): ActionEvent {
  return {
    type: 'action',
    callSid,
    streamSid: `MZ${callSid}`,
    timeMs: n * 1000,
    customParameters: {},
    actionId: `act-${n}`,
    action: kind,
    rule: 'angry-caller',
    track: 'inbound',
    level: kind === 'soften_offer' ? 1 : null,
    handler: null,
    reason: 'angry for 4 s of speech',
    evidence: { angryMs: 4000 },
    dryRun: false,
  };
}

function errorOf(fn: () => unknown): CallmoodError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CallmoodError, String(e));
    return e;
  }
  assert.fail('expected a CallmoodError');
}

test('bad webhook options name the endpoint, the field and what is allowed', () => {
  const ep = { name: 'sales', url: 'http://127.0.0.1:9/x', events: ['mark'], secret: SECRET };
  let e = errorOf(() => resolveWebhookOptions({ endpoints: [ep, { ...ep, name: 'crm2', events: ['call-end', 'anger'] }] }));
  assert.equal(e.code, 'CALLMOOD_ERR_INVALID_OPTION');
  assert.match(e.message, /webhooks\.endpoints\[1\] \(crm2\)\.events\[1\] is "anger"/);
  assert.match(e.message, /call-start, speech-start.*action-result.*action:<kind>.*flag_customer/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, events: ['action:hug'] }] }));
  assert.match(e.message, /events\[0\] is "action:hug"/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, concurrency: 0 }] }));
  assert.match(e.message, /endpoints\[0\] \(sales\)\.concurrency is 0; allowed: an integer in \[1, 256\]/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, backoff: { jitter: 2 } }] }));
  assert.match(e.message, /backoff\.jitter is 2; allowed: a number in \[0, 1\]/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, url: 'ftp://x' }] }));
  assert.match(e.message, /\.url is "ftp:\/\/x"; allowed: an http\(s\) URL/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [ep, ep] }));
  assert.match(e.message, /endpoints\[1\] \(sales\)\.name .*endpoints\[0\] has it/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, secret: null }] }));
  assert.match(e.message, /secret .*exactly one of secret .* or secretEnv/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, secret: 'short' }] }));
  assert.match(e.message, /secret is \(hidden\); allowed: null or a string of at least 16/);
  assert.doesNotMatch(e.message, /short/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, secret: null, secretEnv: 'CRM_SECRET' }] }, {}));
  assert.match(e.message, /secretEnv is "CRM_SECRET".*it is not set/);
  e = errorOf(() => resolveWebhookOptions({ endpoints: [{ ...ep, colour: 'red' } as WebhookEndpointInput] }));
  assert.match(e.message, /endpoints\[0\] \(sales\)\.unknown option colour; known here: name, url, events/);
  e = errorOf(() => resolveWebhookOptions({ memoryWindow: 5 }));
  assert.match(e.message, /webhooks\.memoryWindow is 5; allowed: an integer in \[100,/);
  const ok = resolveWebhookOptions({ endpoints: [{ ...ep, secret: null, secretEnv: 'CRM_SECRET' }] }, { CRM_SECRET: SECRET });
  assert.equal(ok.endpoints[0].secret, SECRET);
  assert.equal(ok.endpoints[0].concurrency, 4);
  assert.ok(Object.isFrozen(ok.endpoints[0].backoff));
  // Resolved options resolve again to the same (the server may hand them over already resolved).
  assert.equal(resolveWebhookOptions(ok, { CRM_SECRET: SECRET }).endpoints[0].secret, SECRET);

  const dir = tmp();
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ webhooks: { endpoints: [ep] } }));
  e = errorOf(() => loadWebhookConfig(file));
  assert.match(e.message, /webhooks\.endpoints\[0\]\.secret is a secret and may not be in a config file.*secretEnv/);
});

test('signatures: receivers accept real deliveries and reject an altered body, a wrong secret and a replayed timestamp', async () => {
  const body = '{"id":"e1","type":"call-end"}';
  const now = 1_800_000_000;
  const header = signWebhook(body, SECRET, now);
  assert.match(header, /^t=1800000000,v1=[0-9a-f]{64}$/);
  assert.deepEqual(verifyWebhookSignature(body, header, SECRET, { nowS: now + 10 }), { ok: true, timestamp: now });
  assert.deepEqual(verifyWebhookSignature(body.replace('call-end', 'call-start'), header, SECRET, { nowS: now }), { ok: false, reason: 'signature' });
  assert.deepEqual(verifyWebhookSignature(body, header, 'another_secret_0123456789', { nowS: now }), { ok: false, reason: 'signature' });
  assert.deepEqual(verifyWebhookSignature(body, header, SECRET, { nowS: now + 301 }), { ok: false, reason: 'timestamp' });
  assert.deepEqual(verifyWebhookSignature(body, header, SECRET, { nowS: now + 3600, toleranceS: 7200 }).ok, true);
  // Changing t in the header breaks the signature: the timestamp is signed.
  assert.deepEqual(verifyWebhookSignature(body, header.replace(`t=${now}`, `t=${now + 5}`), SECRET, { nowS: now }), { ok: false, reason: 'signature' });
  assert.deepEqual(verifyWebhookSignature(body, undefined, SECRET), { ok: false, reason: 'missing' });
  assert.deepEqual(verifyWebhookSignature(body, 't=abc,v1=zz', SECRET), { ok: false, reason: 'malformed' });
  // Rotation: either of two secrets.
  assert.equal(verifyWebhookSignature(body, header, ['old_secret_0123456789', SECRET], { nowS: now }).ok, true);

  const crm = new FakeCrm(SECRET);
  await crm.start();
  const sink = await WebhookSink.open({ outboxDir: tmp(), endpoints: [endpoint(crm, { headers: { Authorization: 'Bearer crm-key' } })] });
  try {
    await sink.enqueue(markEvent('CA1', 0));
    await crm.until(() => crm.delivered().length === 1);
    const r = crm.received[0];
    assert.equal(r.signatureOk, true);
    assert.equal(r.headers['callmood-event-id'], r.id);
    assert.equal(r.headers['authorization'], 'Bearer crm-key');
    assert.equal(r.headers['content-type'], 'application/json');
    const b = JSON.parse(r.raw);
    assert.match(b.id, /^[0-9a-f-]{36}$/);
    assert.equal(b.version, 1);
    assert.equal(b.type, 'mark');
    assert.equal(b.callSid, 'CA1');
    assert.equal(b.streamSid, 'MZCA1');
    assert.equal(b.timeMs, 0);
    assert.ok(Math.abs(Date.parse(b.createdAt) - Date.now()) < 10_000);
    assert.deepEqual(b.event, markEvent('CA1', 0));
    assert.equal(verifyWebhookSignature(r.raw, r.headers['callmood-signature'], 'wrong_secret_0123456789').ok, false);
    assert.equal(verifyWebhookSignature(`${r.raw} `, r.headers['callmood-signature'], SECRET).ok, false);
  } finally {
    await sink.close();
    await crm.stop();
  }
});

test('routing: each endpoint gets its event types, and action:<kind> picks policy actions by kind', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  const sink = await WebhookSink.open({
    outboxDir: tmp(),
    endpoints: [
      { name: 'ends', url: `${crm.url}?to=ends`, events: ['call-end', 'mark'], secret: SECRET, backoff: fast },
      { name: 'flags', url: `${crm.url}?to=flags`, events: ['action:flag_customer', 'action-result:flag_customer'], secret: SECRET, backoff: fast },
      { name: 'actions', url: `${crm.url}?to=actions`, events: ['action'], secret: SECRET, backoff: fast },
    ],
  });
  try {
    const events: CallmoodEvent[] = [markEvent('CA1', 0), action('CA1', 'soften_offer', 1), action('CA1', 'flag_customer', 2), markEvent('CA1', 3)];
    events.push({ type: 'dtmf', callSid: 'CA1', streamSid: 'MZCA1', timeMs: 5, customParameters: {}, track: 'inbound', digit: '1' });
    for (const e of events) sink.enqueue(e);
    await crm.until(() => crm.delivered().length === 5);
    await new Promise((r) => setTimeout(r, 50));
    const got = (to: string) =>
      crm.received
        .filter((r) => r.path.endsWith(`to=${to}`))
        .map((r) => {
          const ev = JSON.parse(r.raw).event as CallmoodEvent;
          return ev.type === 'action' ? `action:${ev.action}` : ev.type === 'mark' ? `mark ${ev.name}` : ev.type;
        });
    assert.deepEqual(got('ends'), ['mark 0', 'mark 3']);
    assert.deepEqual(got('flags'), ['action:flag_customer']);
    assert.deepEqual(got('actions'), ['action:soften_offer', 'action:flag_customer']);
    assert.equal(crm.received.length, 5, 'the dtmf event goes nowhere');
    assert.equal(sink.stats().ends.delivered, 2);
    assert.equal(sink.stats().flags.delivered, 1);
    assert.equal(sink.stats().actions.delivered, 2);
    // The flag action went to two endpoints with one id (the idempotency key is the event's).
    const flag = crm.received.filter((r) => r.raw.includes('"action":"flag_customer"'));
    assert.equal(flag.length, 2);
    assert.equal(flag[0].id, flag[1].id);
  } finally {
    await sink.close();
    await crm.stop();
  }
});

test('a CRM that answers 503, then is down, then comes back gets every event, in order per call, with retries', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  let phase: 'busy' | 'up' = 'busy';
  crm.respond = () => (phase === 'busy' ? { status: 503 } : { status: 200, delayMs: Math.random() < 0.2 ? 5 : 0 });
  const calls = ['CA0', 'CA1', 'CA2', 'CA3', 'CA4', 'CA5'];
  const perCall = 30;
  const log = collector();
  const sink = await WebhookSink.open({ outboxDir: tmp(), endpoints: [endpoint(crm, { concurrency: 3, maxAttempts: 1000, backoff: { baseMs: 5, maxMs: 40, jitter: 0.5 } })] }, { logger: log.logger });
  const failed: number[] = [];
  sink.on('attempt-failed', (f) => failed.push(f.status ?? 0));
  try {
    // Enqueued across the three phases, interleaved between calls.
    let n = 0;
    const push = (upTo: number) => {
      for (; n < upTo; n++) for (const c of calls) sink.enqueue(markEvent(c, n));
    };
    push(10);
    await crm.until(() => crm.received.length >= 12, 5000, '503 answers');
    await crm.stop();
    push(20);
    await new Promise((r) => setTimeout(r, 150));
    phase = 'up';
    await crm.start();
    push(perCall);
    await crm.until(() => checkOrder(crm.received, calls, perCall) === null, 10_000, 'every event');
    assert.equal(checkOrder(crm.received, calls, perCall), null);
    assert.ok(crm.received.every((r) => r.signatureOk));
    assert.ok(failed.includes(503), 'saw 503s');
    assert.ok(failed.includes(0), 'saw connection errors');
    assert.ok(crm.delivered().some((r) => r.attempt > 1), 'a delivery after retries');
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_FAILING'));
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_RECOVERED'));
    assert.ok(await sink.drain(2000));
    const s = sink.stats().crm;
    assert.equal(s.delivered, calls.length * perCall);
    assert.equal(s.pending, 0);
    assert.equal(s.deadLettered, 0);
    assert.ok(s.failedAttempts >= 12);
    // Never two requests of one call at once (some answers were delayed, so overlaps had the chance).
    assert.equal(crm.overlaps, 0);
  } finally {
    await sink.close();
    await crm.stop();
  }
});

test('Retry-After is honoured, a timeout is retried, and events of one call never overlap', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  const answers: Array<() => ReturnType<FakeCrm['respond']>> = [() => ({ status: 429, headers: { 'Retry-After': '1' } }), () => 'hang', () => ({ status: 200 })];
  crm.respond = (r) => (r.callSid === 'CA1' && answers.length > 0 ? answers.shift()!() : { status: 200 });
  const sink = await WebhookSink.open({ outboxDir: tmp(), endpoints: [endpoint(crm, { timeoutMs: 200, backoff: { baseMs: 10, maxMs: 20, jitter: 0 } })] });
  sink.on('attempt-failed', () => undefined);
  try {
    const t0 = Date.now();
    sink.enqueue(markEvent('CA1', 0));
    sink.enqueue(markEvent('CA1', 1));
    sink.enqueue(markEvent('CA2', 0));
    await crm.until(() => crm.delivered().filter((r) => r.callSid === 'CA1').length === 2, 6000, 'CA1 delivered');
    const ca1 = crm.received.filter((r) => r.callSid === 'CA1');
    assert.deepEqual(ca1.map((r) => [r.name, r.attempt]), [['0', 1], ['0', 2], ['0', 3], ['1', 1]]);
    assert.ok(ca1[1].atMs - ca1[0].atMs >= 950, `Retry-After 1 s waited ${ca1[1].atMs - ca1[0].atMs} ms`);
    assert.ok(ca1[2].atMs - ca1[1].atMs >= 190, 'the hung request was cut after timeoutMs');
    // CA2 did not wait for CA1's retries.
    const ca2 = crm.received.find((r) => r.callSid === 'CA2')!;
    assert.ok(ca2.atMs - t0 < 500);
    assert.equal(crm.overlaps, 0);
  } finally {
    await sink.close();
    await crm.stop();
  }
});

test('a 4xx is a permanent failure: dead letter at once, the call moves on; maxAttempts dead-letters too; retry sends them again', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = (r) => (r.callSid === 'CA1' && r.name === '1' ? { status: 422 } : r.callSid === 'CA2' ? { status: 500 } : { status: 200 });
  const dir = tmp();
  const log = collector();
  const options = { outboxDir: dir, endpoints: [endpoint(crm, { maxAttempts: 3 })] };
  const sink = await WebhookSink.open(options, { logger: log.logger });
  const dead: string[] = [];
  sink.on('dead-letter', (d) => dead.push(`${d.callSid}/${JSON.parse(JSON.stringify(d.body)).event.name}`));
  try {
    for (let n = 0; n < 3; n++) sink.enqueue(markEvent('CA1', n));
    sink.enqueue(markEvent('CA2', 0));
    sink.enqueue(markEvent('CA2', 1));
    await crm.until(() => crm.delivered().length === 2 && dead.length === 3, 5000, 'dead letters');
    assert.deepEqual(crm.received.filter((r) => r.callSid === 'CA1').map((r) => r.name), ['0', '1', '2'], '422 not retried, the call went on');
    assert.deepEqual(crm.received.filter((r) => r.callSid === 'CA2').map((r) => `${r.name}#${r.attempt}`), ['0#1', '0#2', '0#3', '1#1', '1#2', '1#3']);
    assert.deepEqual(dead.sort(), ['CA1/1', 'CA2/0', 'CA2/1']);
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_DEAD_LETTER' && /permanent: 422/.test(l.message)));
    assert.ok(await sink.drain(2000));
  } finally {
    await sink.close();
  }
  const letters = readFileSync(join(dir, 'crm', 'dead.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(letters.length, 3);
  const l422 = letters.find((l) => l.status === 422);
  assert.equal(l422.attempts, 1);
  assert.match(l422.error, /HTTP 422: refused/);
  assert.equal(l422.body.event.name, '1');
  assert.deepEqual((await webhookStatus(dir)).map((r) => [r.endpoint, r.pending, r.dead]), [['crm', 0, 3]]);

  // One by id, through the library function.
  crm.respond = () => ({ status: 200 });
  const before = crm.delivered().length;
  const one = await retryDeadLetters(options, { id: l422.id, timeoutMs: 5000 });
  assert.deepEqual([one.requeued, one.delivered, one.deadAgain, one.pending], [1, 1, 0, 0]);
  const again = crm.delivered().slice(before);
  assert.equal(again.length, 1);
  assert.equal(again[0].id, l422.id, 'the same id: receivers dedupe');
  assert.equal(again[0].signatureOk, true);
  await assert.rejects(retryDeadLetters(options, { id: 'no-such-id' }), /--id no-such-id: no dead letter/);

  // The rest through the command line, as `callmood webhooks retry --config FILE --outbox DIR`.
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({ webhooks: { endpoints: [{ name: 'crm', url: crm.url, events: ['mark'], secretEnv: 'CALLMOOD_TEST_CRM_SECRET' }] } }));
  process.env.CALLMOOD_TEST_CRM_SECRET = SECRET;
  const out: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => out.push(s) > 0) as unknown as typeof process.stdout.write;
  try {
    const program = new Command().exitOverride();
    webhooksCommand(program);
    await program.parseAsync(['node', 'callmood', 'webhooks', 'status', '--outbox', dir]);
    await program.parseAsync(['node', 'callmood', 'webhooks', 'retry', '--config', cfg, '--outbox', dir, '--timeout', '5000']);
    await program.parseAsync(['node', 'callmood', 'webhooks', 'status', '--outbox', dir, '--json']);
  } finally {
    process.stdout.write = write;
    delete process.env.CALLMOOD_TEST_CRM_SECRET;
  }
  const text = out.join('');
  assert.match(text, /crm\s+0\s+2/, text);
  assert.match(text, /webhooks retry: 2 dead letters sent again: 2 delivered, 0 dead again, 0 still pending/);
  assert.deepEqual(JSON.parse(out.at(-1)!), [{ endpoint: 'crm', pending: 0, dead: 0, torn: 0 }]);
  assert.deepEqual(crm.delivered().slice(before + 1).map((r) => `${r.callSid}/${r.name}`).sort(), ['CA2/0', 'CA2/1']);
  await crm.stop();
});

test('close() leaves pending events in the outbox; the next start sends them, in order; one outbox, one process', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = () => ({ status: 503 });
  const dir = tmp();
  // No drain on close: what is pending stays for the next start at once (the drain has its own tests).
  const options = { outboxDir: dir, drainTimeoutMs: 0, endpoints: [endpoint(crm, { backoff: { baseMs: 5000, maxMs: 5000, jitter: 0 } })] };
  const sink = await WebhookSink.open(options);
  for (let n = 0; n < 20; n++) for (const c of ['CA1', 'CA2']) sink.enqueue(markEvent(c, n));
  await crm.until(() => crm.received.length >= 2);
  assert.throws(() => new WebhookSink(options), /in use by process \d+ \(this one/);
  const t0 = Date.now();
  await sink.close();
  assert.ok(Date.now() - t0 < 1000, 'close does not wait for backoff timers');
  assert.throws(() => sink.enqueue(markEvent('CA1', 99)), /used after close/);
  assert.deepEqual((await webhookStatus(dir)).map((r) => r.pending), [40]);
  crm.respond = () => ({ status: 200 });
  const log = collector();
  const again = await WebhookSink.open(options, { logger: log.logger });
  try {
    assert.ok(await again.drain(5000));
    assert.equal(checkOrder(crm.received, ['CA1', 'CA2'], 20), null);
    assert.ok(log.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_REPLAY' && /40 undelivered/.test(l.message)));
  } finally {
    await again.close();
    await crm.stop();
  }
  assert.deepEqual((await webhookStatus(dir)).map((r) => r.pending), [0]);
});

test('a torn last line in the outbox (a crash mid-write) is skipped with a warning, and the rest is delivered', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = () => ({ status: 503 });
  const dir = tmp();
  // No drain on close: its retry is due within the drain and would only hold the test up.
  const options = { outboxDir: dir, drainTimeoutMs: 0, endpoints: [endpoint(crm, { backoff: { baseMs: 5000, maxMs: 5000, jitter: 0 } })] };
  const sink = await WebhookSink.open(options);
  for (let n = 0; n < 5; n++) await sink.enqueue(markEvent('CA1', n));
  await sink.close();
  const log = join(dir, 'crm', 'outbox.jsonl');
  const lines = readFileSync(log, 'utf8').split('\n');
  // Half of a sixth event line, as a crash between write() and its end leaves it.
  const sixth = lines[0].replace('"s":1,', '"s":6,').replace('"name":"0"', '"name":"5"');
  appendFileSync(log, sixth.slice(0, Math.floor(sixth.length / 2)));
  crm.respond = () => ({ status: 200 });
  const logged = collector();
  const again = await WebhookSink.open(options, { logger: logged.logger });
  try {
    assert.ok(await again.drain(5000));
    assert.equal(checkOrder(crm.received, ['CA1'], 5), null);
    assert.ok(logged.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_TORN_LINE' && l.level === 'warn'), JSON.stringify(logged.lines));
    // The rewrite at start dropped it: new lines do not glue onto it.
    await again.enqueue(markEvent('CA1', 5));
    assert.ok(await again.drain(5000));
    assert.equal(checkOrder(crm.received, ['CA1'], 6), null);
  } finally {
    await again.close();
    await crm.stop();
  }
  assert.deepEqual(await webhookStatus(dir), [{ endpoint: 'crm', pending: 0, dead: 0, torn: 0 }]);
});

test('a backlog larger than the memory window waits on disk, compaction keeps every undelivered event, and order holds', async (t) => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  // CA-slow is refused for a while; the others go through, so the log fills with delivered lines and gets compacted.
  let slowOpen = false;
  crm.respond = (r) => (r.callSid === 'CA-slow' && !slowOpen ? { status: 503 } : { status: 200 });
  const dir = tmp();
  const log = collector();
  const calls = ['CA-slow', 'CA1', 'CA2', 'CA3'];
  const perCall = 150;
  const options = {
    outboxDir: dir,
    memoryWindow: 100,
    compactAtBytes: 8192,
    // CA-slow's refusals are what is tested here: close() keeps them pending without a drain.
    drainTimeoutMs: 0,
    endpoints: [endpoint(crm, { concurrency: 4, maxAttempts: 1000, backoff: { baseMs: 5, maxMs: 20, jitter: 0.5 } })],
  };
  const sink = await WebhookSink.open(options, { logger: log.logger });
  let maxInMemory = 0;
  sink.on('delivered', () => (maxInMemory = Math.max(maxInMemory, sink.stats().crm.inMemory)));
  t.after(() => crm.stop());
  try {
    for (let n = 0; n < perCall; n++) {
      for (const c of calls) sink.enqueue(markEvent(c, n));
      if (n % 25 === 24) await new Promise((r) => setTimeout(r, 5));
    }
    await crm.until(() => crm.delivered().length >= 300, 10_000, 'the fast calls');
    await crm.until(() => log.lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_COMPACTED'), 5000, 'a compaction');
    // One failing call while the others go through may overfill the window, up to 10 windows.
    assert.ok(maxInMemory <= 1000, `memory stays bounded (${maxInMemory})`);
    assert.ok(sink.stats().crm.pending > 0);
  } finally {
    await sink.close();
  }
  const size = statSync(join(dir, 'crm', 'outbox.jsonl')).size;
  const pendingBefore = (await webhookStatus(dir))[0].pending;
  assert.ok(pendingBefore >= perCall - 10, `CA-slow's events are still pending (${pendingBefore})`);
  assert.ok(size < 600 * (pendingBefore + 100), `the log holds little beyond the pending events (${size} bytes)`);
  slowOpen = true;
  const again = await WebhookSink.open(options);
  try {
    assert.ok(await again.drain(10_000));
    assert.equal(checkOrder(crm.received, calls, perCall), null);
  } finally {
    await again.close();
    await crm.stop();
  }
  assert.equal(existsSync(join(dir, 'crm', 'outbox.jsonl.tmp')), false);
});

test('SIGKILL mid-delivery and a restart on the same outbox: every event arrives, in order per call', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  // After 100 deliveries the CRM stops answering, so the kill surely lands with requests in flight.
  let hold = true;
  crm.respond = () => (hold && crm.delivered().length >= 100 ? 'hang' : { status: 200, delayMs: 1 });
  const dir = tmp();
  const calls = 5;
  const perCall = 80;
  const env = { ...process.env, WEBHOOK_TEST_SECRET: SECRET };
  const child = (mode: string) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/helpers/webhook-child.ts'), mode, dir, crm.url, String(calls), String(perCall)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    return { p, exited, out: () => out, err: () => err };
  };
  const first = child('enqueue');
  try {
    await crm.until(() => first.out().includes('durable'), 30_000, `the child to enqueue: ${first.err()}`);
    await crm.until(() => crm.received.length >= 102, 30_000, 'deliveries to start');
    first.p.kill('SIGKILL');
    assert.equal(await first.exited, null);
  } finally {
    first.p.kill('SIGKILL');
  }
  const sentBefore = crm.delivered().length;
  assert.ok(sentBefore < calls * perCall, `killed mid-delivery (${sentBefore} sent)`);
  hold = false;
  const second = child('resume');
  try {
    await crm.until(() => second.out().includes('drained'), 30_000, `the restarted child to drain: ${second.err()}`);
    assert.equal(await second.exited, 0, second.err());
  } finally {
    second.p.kill('SIGKILL');
    await crm.stop();
  }
  assert.equal(checkOrder(crm.received, Array.from({ length: calls }, (_, c) => `CA${c}`), perCall), null);
  // A duplicate is always the same event under the same id.
  const byId = new Map<string, string>();
  for (const r of crm.received) {
    const key = `${r.callSid}/${r.name}`;
    assert.equal(byId.get(r.id) ?? key, key);
    byId.set(r.id, key);
  }
  assert.equal(byId.size, calls * perCall);
  assert.ok(crm.received.every((r) => r.signatureOk));
});

test("the receiver snippet of src/sinks/README.md accepts callmood's deliveries once each and rejects forged and replayed requests", async (t) => {
  const readme = readFileSync(join(root, 'src/sinks/README.md'), 'utf8');
  const snippet = /```js\n(import \{ createHmac[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(snippet, 'the snippet is in src/sinks/README.md');
  const dir = tmp();
  const file = join(dir, 'receiver.mjs');
  assert.ok(snippet.includes('.listen(3000);'));
  writeFileSync(file, snippet.replace('.listen(3000);', ".listen(0, '127.0.0.1', function () { console.log('PORT', this.address().port); });"));
  const child = spawn(process.execPath, [file], { env: { ...process.env, CALLMOOD_CRM_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const until = async (pred: () => boolean, what: string) => {
    for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(pred(), `${what}: ${out}`);
  };
  await until(() => /PORT \d+/.test(out), 'the receiver to listen');
  const port = Number(/PORT (\d+)/.exec(out)![1]);
  const url = `http://127.0.0.1:${port}/`;
  const statuses: number[] = [];
  const sink = await WebhookSink.open({ outboxDir: dir, endpoints: [{ name: 'r', url, events: ['mark'], secret: SECRET, backoff: fast, maxAttempts: 1 }] });
  sink.on('delivered', (d) => statuses.push(d.status));
  sink.on('attempt-failed', (f) => statuses.push(f.status ?? 0));
  try {
    for (let n = 0; n < 3; n++) sink.enqueue(markEvent('CA1', n));
    assert.ok(await sink.drain(5000));
  } finally {
    await sink.close();
  }
  assert.deepEqual(statuses, [204, 204, 204]);
  await until(() => out.split('\n').filter((l) => l.startsWith('event ')).length === 3, 'three events logged');
  const post = async (body: string, signature: string) => (await fetch(url, { method: 'POST', body, headers: { 'callmood-signature': signature } })).status;
  const body = JSON.stringify({ id: 'dup-1', type: 'mark', callSid: 'CA9', event: markEvent('CA9', 0) });
  const now = Math.floor(Date.now() / 1000);
  assert.equal(await post(body, signWebhook(body, SECRET, now)), 204);
  assert.equal(await post(body, signWebhook(body, SECRET, now)), 204, 'a duplicate is acknowledged');
  assert.equal(await post(body.replace('CA9', 'CA8'), signWebhook(body, SECRET, now)), 401, 'altered body');
  assert.equal(await post(body, signWebhook(body, 'wrong_secret_0123456789', now)), 401, 'wrong secret');
  assert.equal(await post(body, signWebhook(body, SECRET, now - 600)), 401, 'replayed old request');
  assert.equal(await post(body, ''), 401, 'no signature');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(out.split('\n').filter((l) => l.startsWith('event dup-1 ')).length, 1, 'the duplicate handled once');
});

test('during an outage the backlog stays on disk: memory holds one window, and all of it goes out once the CRM is back', async (t) => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  t.after(() => crm.stop());
  let down = false;
  crm.respond = () => (down ? { status: 503 } : { status: 200 });
  const calls = ['CA1', 'CA2', 'CA3', 'CA4'];
  const sink = await WebhookSink.open({ outboxDir: tmp(), memoryWindow: 100, endpoints: [endpoint(crm, { maxAttempts: 1000, backoff: { baseMs: 5, maxMs: 30, jitter: 0.5 } })] });
  let maxInMemory = 0;
  let failures = 0;
  sink.on('attempt-failed', () => {
    failures++;
    maxInMemory = Math.max(maxInMemory, sink.stats().crm.inMemory);
  });
  try {
    for (const c of calls) sink.enqueue(markEvent(c, 0));
    await crm.until(() => crm.delivered().length === 4);
    down = true;
    for (let n = 1; n < 150; n++) for (const c of calls) sink.enqueue(markEvent(c, n));
    await crm.until(() => failures >= 100, 5000, 'retries during the outage');
    assert.ok(maxInMemory <= 100, `in memory during the outage: ${maxInMemory}`);
    assert.equal(sink.stats().crm.pending, 4 * 149);
    down = false;
    assert.ok(await sink.drain(10_000));
    assert.equal(checkOrder(crm.received, calls, 150), null);
  } finally {
    await sink.close();
  }
});
