/**
 * Defects of the media path found from outside (issue 16), each against the real server on loopback with real
 * WebSocket clients speaking as Twilio does (numbers as strings, 160-byte μ-law payloads): a bogus media timestamp,
 * a stream that sends no audio, binary frames, two streams of one call, a bad `start`, the shutdown log.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import twilio from 'twilio';
import { WebSocket } from 'ws';
import { createCallmood, type CallmoodServer } from '../src/telephony/server.js';
import { ErrorCodes } from '../src/errors.js';
import type { CallEndEvent, CallmoodEvent } from '../src/stream/events.js';
import { waitFor } from './helpers.js';

const TOKEN = 'defects-test-token-0123456789';
const STALL_MS = 1000;
// μ-law 0xff is silence: the model has nothing to say, and the tests are about the protocol.
const SILENCE = Buffer.alloc(160, 0xff).toString('base64');

let server: CallmoodServer;
let port: number;
const events: CallmoodEvent[] = [];
const logs: Array<{ level: string; code: string; message: string }> = [];

before(async () => {
  server = createCallmood(
    { authToken: TOKEN, engine: 'in-process', stallTimeoutMs: STALL_MS, policy: { enabled: false } },
    { logger: (level, code, message) => logs.push({ level, code, message }), processMetrics: false, env: {} },
  );
  server.on('event', (e) => events.push(e));
  port = (await server.listen(0, '127.0.0.1')).port;
});

after(async () => {
  await server.close();
});

let sids = 0;
const newCallSid = () => `CA${(0xd0000 + ++sids).toString(16).padStart(32, '0')}`;

/** A Twilio-like media stream client. */
class Client {
  seq = 1;
  readonly closed: Promise<{ code: number; reason: string; atMs: number }>;
  readonly streamSid: string;
  constructor(readonly ws: WebSocket, readonly callSid: string) {
    this.streamSid = `MZ${callSid.slice(2)}-${sids}`;
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), atMs: Date.now() })));
    ws.on('error', () => {});
  }

  static async open(callSid = newCallSid()): Promise<Client> {
    const url = `ws://127.0.0.1:${port}/media`;
    const ws = new WebSocket(url, { headers: { 'X-Twilio-Signature': twilio.getExpectedTwilioSignature(TOKEN, url, {}) } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Client(ws, callSid);
  }

  send(o: object): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(o));
  }

  start(mediaFormat: object = { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 }): void {
    this.send({
      event: 'start',
      sequenceNumber: String(this.seq++),
      start: { accountSid: 'AC' + '1'.repeat(32), streamSid: this.streamSid, callSid: this.callSid, tracks: ['inbound'], mediaFormat, customParameters: { test: 'defects' } },
      streamSid: this.streamSid,
    });
  }

  media(timestamp: number): void {
    this.send({ event: 'media', sequenceNumber: String(this.seq++), media: { track: 'inbound', chunk: String(this.seq), timestamp: String(timestamp), payload: SILENCE }, streamSid: this.streamSid });
  }

  mark(name: string): void {
    this.send({ event: 'mark', sequenceNumber: String(this.seq++), streamSid: this.streamSid, mark: { name } });
  }

  stop(): void {
    this.send({ event: 'stop', sequenceNumber: String(this.seq++), streamSid: this.streamSid, stop: { accountSid: 'AC' + '1'.repeat(32), callSid: this.callSid } });
  }
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const callEnd = (callSid: string) => events.find((e): e is CallEndEvent => e.type === 'call-end' && e.callSid === callSid);
const errorsOf = (callSid: string) => events.filter((e): e is Extract<CallmoodEvent, { type: 'error' }> => e.type === 'error' && e.callSid === callSid);
const metric = async (name: string) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
};

test('one chunk stamped 1e20 ms or 5,000 s: an error event and a metric, the call keeps its clock, stop closes the socket at once', async () => {
  let jumps = 0;
  for (const bogus of ['100000000000000000000', '5000000']) {
    const c = await Client.open();
    c.start();
    // Half a second of audio at 4x real time (within maxLeadMs), the bogus chunk, then the rest as Twilio goes on.
    let t = 0;
    for (; t < 500; t += 20) {
      c.media(t);
      await sleep(5);
    }
    c.send({ event: 'media', sequenceNumber: String(c.seq++), media: { track: 'inbound', chunk: '99', timestamp: bogus, payload: SILENCE }, streamSid: c.streamSid });
    for (; t < 1000; t += 20) {
      c.media(t);
      await sleep(5);
    }
    const stopAt = Date.now();
    c.stop();
    const closed = await Promise.race([c.closed, sleep(3000).then(() => null)]);
    assert.ok(closed, `${bogus}: the socket is still open 3 s after stop`);
    assert.equal(closed.code, 1000);
    assert.ok(closed.atMs - stopAt < 1500, `${bogus}: closed ${closed.atMs - stopAt} ms after stop`);
    const end = await waitFor(() => callEnd(c.callSid), 'call-end');
    assert.equal(end.reason, 'stop');
    assert.equal(end.durationMs, 1000, `${bogus}: call time stays with the audio`);
    const errs = errorsOf(c.callSid);
    assert.equal(errs.length, 1);
    assert.equal(errs[0].code, ErrorCodes.PROTOCOL);
    assert.match(errs[0].message, new RegExp(`media timestamp ${bogus} .*ahead of the wall clock.*dropped`));
    assert.equal(await metric('callmood_media_timestamp_jumps_total'), ++jumps);
    const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { liveCalls: number; connections: number };
    assert.equal(health.liveCalls, 0);
  }
  await waitFor(() => server.connections === 0, 'every media socket gone');
});

test(`a stream that sends messages but no audio (marks, bogus chunks) is ended as stalled after stallTimeoutMs (${STALL_MS} ms)`, async () => {
  const c = await Client.open();
  c.start();
  c.media(0);
  const t0 = Date.now();
  // Ten messages a second that carry no audio: before, each one kept the stream alive.
  for (let i = 0; i < 40 && c.ws.readyState === WebSocket.OPEN; i++) {
    if (i % 2) c.mark(`m${i}`);
    else c.media(9_000_000_000 + i);
    await sleep(100);
  }
  const closed = await Promise.race([c.closed, sleep(100).then(() => null)]);
  assert.ok(closed, 'the socket is still open after 4 s without audio');
  assert.equal(closed.code, 1001);
  assert.ok(closed.atMs - t0 < STALL_MS * 2 + 500, `stalled after ${closed.atMs - t0} ms`);
  const end = await waitFor(() => callEnd(c.callSid), 'call-end');
  assert.equal(end.reason, 'stalled');
  assert.ok(end.durationMs <= 20);
});

test('a binary frame is refused with a PROTOCOL error saying so; the call goes on to its stop', async () => {
  const c = await Client.open();
  c.start();
  c.media(0);
  c.ws.send(Buffer.from(JSON.stringify({ event: 'media', media: { track: 'inbound', timestamp: '20', payload: SILENCE } })), { binary: true });
  c.media(20);
  c.stop();
  assert.equal((await c.closed).code, 1000);
  const end = await waitFor(() => callEnd(c.callSid), 'call-end');
  assert.equal(end.durationMs, 40, 'the binary frame carried no audio into the call');
  const errs = errorsOf(c.callSid);
  assert.equal(errs.length, 1);
  assert.match(errs[0].message, /binary WebSocket frame \(\d+ bytes\) is refused.*text frame/);
});

test('a second stream of a live call is refused (error with its callSid, 1008); the first call goes on untouched', async () => {
  const first = await Client.open();
  first.start();
  for (let t = 0; t < 200; t += 20) first.media(t);
  await waitFor(() => events.some((e) => e.type === 'call-start' && e.callSid === first.callSid), 'first call-start');
  const second = await Client.open(first.callSid);
  second.start();
  second.media(0);
  const refused = await second.closed;
  assert.equal(refused.code, 1008);
  for (let t = 200; t < 400; t += 20) first.media(t);
  first.stop();
  assert.equal((await first.closed).code, 1000);
  const end = await waitFor(() => callEnd(first.callSid), 'call-end');
  const mine = events.filter((e) => e.callSid === first.callSid);
  assert.equal(mine.filter((e) => e.type === 'call-start').length, 1);
  assert.equal(mine.filter((e) => e.type === 'call-end').length, 1);
  assert.equal(end.streamSid, first.streamSid);
  assert.equal(end.durationMs, 400);
  assert.equal(end.stats.protocolErrors, 0);
  const errs = errorsOf(first.callSid);
  assert.equal(errs.length, 1);
  assert.equal(errs[0].streamSid, second.streamSid);
  assert.equal(errs[0].permanent, true);
  assert.match(errs[0].message, /already has a live stream .* refused.*both_tracks/);
  // Once the first call has ended, its callSid may stream again.
  const again = await Client.open(first.callSid);
  again.start();
  again.media(0);
  again.stop();
  assert.equal((await again.closed).code, 1000);
  await waitFor(() => events.filter((e) => e.type === 'call-end' && e.callSid === first.callSid).length === 2, 'the second call-end');
});

test("a bad 'start' (wrong media format): its error event carries the callSid and streamSid it claimed", async () => {
  const c = await Client.open();
  c.start({ encoding: 'audio/l16', sampleRate: 16000, channels: 1 });
  assert.equal((await c.closed).code, 1003);
  const errs = await waitFor(() => errorsOf(c.callSid).length > 0 && errorsOf(c.callSid), 'the error event');
  assert.equal(errs[0].code, ErrorCodes.MEDIA_FORMAT);
  assert.equal(errs[0].streamSid, c.streamSid);
  assert.deepEqual(errs[0].customParameters, { test: 'defects' });
  assert.equal(callEnd(c.callSid), undefined);
});

test('a clean shutdown of the worker engine logs no CALLMOOD_ERR_INFERENCE', async () => {
  const lines: Array<{ level: string; code: string; message: string }> = [];
  const s = createCallmood({ authToken: TOKEN, policy: { enabled: false } }, { logger: (level, code, message) => lines.push({ level, code, message }), processMetrics: false, env: {} });
  await s.listen(0, '127.0.0.1');
  await s.close();
  assert.ok(lines.some((l) => l.code === 'CALLMOOD_CLOSED'), 'it did shut down');
  assert.ok(lines.some((l) => l.code === 'CALLMOOD_ENGINE_HEALTH' && /closed/.test(l.message)), lines.map((l) => l.code).join(', '));
  assert.deepEqual(lines.filter((l) => l.code === ErrorCodes.INFERENCE || l.level === 'error'), []);
});
