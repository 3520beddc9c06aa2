/**
 * MediaSession unit tests: driven with message strings shaped like the real Twilio log
 * (test/fixtures/twilio/twilio-connect-basic.log: every number a string), with recording sinks in place of the
 * emotion stream.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MediaSession, type SessionHooks, type TrackSink } from '../src/telephony/session.js';
import { ErrorCodes } from '../src/errors.js';
import { encodeMulaw } from '../src/audio/codecs.js';
import type { CallmoodEvent, Track, TrackSummary } from '../src/stream/events.js';

const CALL = 'CA3c95a2a6bba5fde93a5dea01e388e8fb';
const STREAM = 'MZ9e7ee906377b408fa852eebfb834422a';

/** The real 160-byte payload from the log. */
const REAL_PAYLOAD = /payload: '([A-Za-z0-9+/=]+)'/.exec(
  readFileSync(fileURLToPath(new URL('./fixtures/twilio/twilio-connect-basic.log', import.meta.url)), 'utf8'),
)![1];

class RecordingSink implements TrackSink {
  samples = 0;
  /** Pushes as [sample count, endMs, first sample]. */
  pushes: Array<[number, number, number]> = [];
  ended = 0;
  constructor(readonly track: Track, private readonly failEnd = false) {}
  push(s: Float32Array, endMs: number): void {
    this.samples += s.length;
    this.pushes.push([s.length, endMs, s[0]]);
  }
  async end(): Promise<TrackSummary> {
    this.ended++;
    if (this.failEnd) throw new Error('sink broke');
    return { audioMs: this.samples / 8, speechMs: 0, emotionShare: {}, anger: { peak: 0, peakAtMs: null, durationMs: 0 }, windows: 0 };
  }
}

function harness(options = {}, failEnd: Track[] = [], clock?: { ms: number }) {
  const events: CallmoodEvent[] = [];
  const closes: Array<[number, string]> = [];
  const logs: Array<[string, string, string, Record<string, unknown>?]> = [];
  const sinks = new Map<Track, RecordingSink>();
  const hooks: SessionHooks = {
    emit: (e) => events.push(e),
    createTrack: (track) => {
      const s = new RecordingSink(track, failEnd.includes(track));
      sinks.set(track, s);
      return s;
    },
    close: (code, reason) => closes.push([code, reason]),
    log: (level, code, message, fields) => logs.push([level, code, message, fields]),
    ...(clock ? { now: () => clock.ms } : {}),
  };
  const session = new MediaSession(hooks, options);
  let seq = 1;
  const send = (o: object) => session.handleMessage(JSON.stringify(o));
  const msg = {
    connected: () => send({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
    start: (tracks: Track[] = ['inbound'], extra: Record<string, unknown> = {}) =>
      send({
        event: 'start',
        sequenceNumber: String(seq++),
        start: {
          accountSid: 'AC18fbd524d33614fba208030751dffdca',
          streamSid: STREAM,
          callSid: CALL,
          tracks,
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
          customParameters: { aCutomParameter: 'aCustomValue that was set in TwiML' },
          ...extra,
        },
        streamSid: STREAM,
      }),
    media: (timestamp: number, o: { track?: Track; payload?: string; seq?: number } = {}) =>
      send({
        event: 'media',
        sequenceNumber: String(o.seq ?? seq++),
        media: { track: o.track ?? 'inbound', chunk: String(Math.floor(timestamp / 20) + 1), timestamp: String(timestamp), payload: o.payload ?? REAL_PAYLOAD },
        streamSid: STREAM,
      }),
    stop: () => send({ event: 'stop', sequenceNumber: String(seq++), streamSid: STREAM, stop: { accountSid: 'AC18fbd524d33614fba208030751dffdca', callSid: CALL } }),
    raw: (text: string) => session.handleMessage(text),
    skipSeq: (n: number) => (seq += n),
  };
  const errors = () => events.filter((e): e is Extract<CallmoodEvent, { type: 'error' }> => e.type === 'error');
  const callEnd = () => events.find((e): e is Extract<CallmoodEvent, { type: 'call-end' }> => e.type === 'call-end');
  return { session, events, closes, logs, sinks, msg, errors, callEnd };
}

const settle = () => new Promise((r) => setImmediate(r));

test('a clean call: call-start with identity, audio in 20 ms pieces, stop → call-end and close 1000', async () => {
  const h = harness();
  h.msg.connected();
  h.msg.start();
  for (let i = 0; i < 50; i++) h.msg.media(i * 20);
  h.msg.stop();
  await settle();
  const start = h.events[0];
  assert.equal(start.type, 'call-start');
  assert.equal(start.callSid, CALL);
  assert.equal(start.streamSid, STREAM);
  assert.deepEqual(start.customParameters, { aCutomParameter: 'aCustomValue that was set in TwiML' });
  assert.deepEqual(start.type === 'call-start' && start.tracks, ['inbound']);
  const sink = h.sinks.get('inbound')!;
  assert.equal(sink.samples, 50 * 160);
  assert.deepEqual(sink.pushes.map((p) => p[1]).slice(0, 3), [20, 40, 60]);
  const end = h.callEnd()!;
  assert.equal(end.reason, 'stop');
  assert.equal(end.durationMs, 1000);
  assert.deepEqual(end.stats, { mediaMessages: 50, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 });
  assert.equal(end.summary.inbound!.audioMs, 1000);
  assert.deepEqual(h.closes, [[1000, 'stream stopped']]);
  assert.equal(h.errors().length, 0);
  assert.ok(h.logs.some(([, code]) => code === 'CALLMOOD_CALL_START'));
  assert.ok(h.logs.some(([, code]) => code === 'CALLMOOD_CALL_END'));
  assert.ok(h.session.isEnded);
});

test('the first chunk at 52 ms (as in the real log) starts the track there: silence before it, not a gap', async () => {
  const h = harness();
  h.msg.start();
  h.msg.media(52);
  h.msg.media(72);
  h.msg.stop();
  await settle();
  const sink = h.sinks.get('inbound')!;
  assert.equal(sink.samples, 52 * 8 + 2 * 160);
  assert.equal(sink.pushes[0][2], 0, 'lead-in is silence');
  assert.equal(sink.pushes.at(-1)![1], 92);
  const end = h.callEnd()!;
  assert.equal(end.durationMs, 92);
  assert.equal(end.stats.gapsFilled, 0, 'a stream starting after 0 ms is not a gap in the stream');
  assert.equal(end.stats.sequenceGaps, 0);
});

test('a gap in timestamps is filled with silence (call time advances) and counted; skipped sequence numbers are counted', async () => {
  const h = harness();
  h.msg.start();
  h.msg.media(0);
  h.msg.media(20);
  h.msg.skipSeq(3);
  h.msg.media(100); // 40, 60, 80 never came: 60 ms of silence
  h.msg.media(120);
  h.msg.stop();
  await settle();
  const sink = h.sinks.get('inbound')!;
  assert.equal(sink.samples, 4 * 160 + 60 * 8);
  assert.deepEqual(
    sink.pushes.map((p) => p[1]),
    [20, 40, 60, 80, 100, 120, 140],
  );
  const end = h.callEnd()!;
  assert.equal(end.durationMs, 140);
  assert.equal(end.stats.gapsFilled, 1);
  assert.equal(end.stats.gapMs, 60);
  assert.equal(end.stats.sequenceGaps, 1);
  assert.equal(end.stats.dropped, 0);
});

test('late, duplicate and reordered chunks are dropped and counted; time never runs backwards', async () => {
  const h = harness();
  h.msg.start();
  h.msg.media(0);
  h.msg.media(20);
  h.msg.media(20); // duplicate
  h.msg.media(60); // 40 missing → filled
  h.msg.media(40); // 40 arrives late
  h.msg.media(80);
  h.msg.stop();
  await settle();
  const sink = h.sinks.get('inbound')!;
  const ends = sink.pushes.map((p) => p[1]);
  assert.deepEqual(ends, [20, 40, 60, 80, 100]);
  const end = h.callEnd()!;
  assert.equal(end.stats.dropped, 2);
  assert.equal(end.stats.gapsFilled, 1);
  assert.equal(end.stats.mediaMessages, 6);
  assert.equal(end.durationMs, 100);
});

test('a gap longer than maxGapFillMs, as long as the wall clock moved, is reported and not filled', async () => {
  const clock = { ms: 1_000_000 };
  const h = harness({ maxGapFillMs: 100 }, [], clock);
  h.msg.start();
  h.msg.media(0);
  clock.ms += 5000;
  h.msg.media(5000);
  await h.session.end('stop');
  const [err] = h.errors();
  assert.equal(err.code, ErrorCodes.PROTOCOL);
  assert.match(err.message, /jumps 4980 ms/);
  assert.equal(h.sinks.get('inbound')!.samples, 320);
  assert.equal(h.callEnd()!.stats.gapsFilled, 0);
  assert.equal(h.callEnd()!.durationMs, 5020, 'a real silence moves call time on');
  assert.equal(h.session.timestampJumps, 0);
});

test('a timestamp jump the wall clock cannot explain (1e20 ms, 5,000 s) is an error; the chunk is dropped and the clock stays', async () => {
  for (const bogus of [1e20, 5_000_000]) {
    const clock = { ms: 1_000_000 };
    const h = harness({}, [], clock);
    h.msg.start();
    for (let t = 0; t < 1000; t += 20) {
      h.msg.media(t);
      clock.ms += 20;
    }
    h.msg.media(bogus);
    // The stream goes on where it was, as Twilio's next chunk would.
    for (let t = 1000; t < 2000; t += 20) {
      h.msg.media(t);
      clock.ms += 20;
    }
    h.msg.stop();
    await settle();
    const errs = h.errors();
    assert.equal(errs.length, 1, `${bogus}: ${errs.map((e) => e.message).join(' | ')}`);
    assert.equal(errs[0].code, ErrorCodes.PROTOCOL);
    assert.equal(errs[0].callSid, CALL);
    assert.equal(errs[0].permanent, false);
    assert.match(errs[0].message, /ahead of the wall clock.*maxLeadMs \(2000 ms\).*dropped.*call time stays at 1000 ms/);
    assert.equal(h.session.timestampJumps, 1);
    const end = h.callEnd()!;
    assert.equal(end.durationMs, 2000, `${bogus}: call time stays sane`);
    assert.equal(end.stats.protocolErrors, 1);
    assert.equal(end.stats.gapsFilled, 0);
    assert.equal(h.sinks.get('inbound')!.samples, 100 * 160, 'the bogus chunk is not audio of the call');
    assert.ok(h.session.leadMs <= 20, `lead ${h.session.leadMs}`);
  }
});

test("a first chunk stamped far beyond the time since 'start' is dropped too; a later plausible one starts the track", async () => {
  const clock = { ms: 1_000_000 };
  const h = harness({}, [], clock);
  h.msg.start();
  clock.ms += 40;
  h.msg.media(1e15);
  h.msg.media(40);
  h.msg.media(60);
  h.msg.stop();
  await settle();
  assert.equal(h.errors().length, 1);
  assert.equal(h.session.timestampJumps, 1);
  assert.equal(h.callEnd()!.durationMs, 80);
});

test('both tracks are kept apart, each with its own clock and sink', async () => {
  const h = harness();
  h.msg.start(['inbound', 'outbound']);
  const loud = Buffer.from(encodeMulaw(new Float32Array(160).fill(0.5))).toString('base64');
  for (let i = 0; i < 10; i++) {
    h.msg.media(i * 20, { track: 'inbound' });
    if (i >= 5) h.msg.media(i * 20, { track: 'outbound', payload: loud });
  }
  h.msg.stop();
  await settle();
  const inbound = h.sinks.get('inbound')!;
  const outbound = h.sinks.get('outbound')!;
  assert.equal(inbound.samples, 1600);
  assert.equal(outbound.samples, 1600, 'outbound starting at 100 ms gets 100 ms of silence first');
  assert.ok(outbound.pushes.at(-1)![2] > 0.4, 'outbound got its own audio');
  assert.ok(Math.abs(inbound.pushes.at(-1)![2]) < 0.4);
  const end = h.callEnd()!;
  assert.deepEqual(Object.keys(end.summary).sort(), ['inbound', 'outbound']);
  assert.equal(end.stats.mediaMessages, 15);
  assert.equal(end.stats.gapsFilled, 0);
});

test('media on a track start did not announce is a protocol error', async () => {
  const h = harness();
  h.msg.start(['inbound']);
  h.msg.media(0, { track: 'outbound' });
  assert.equal(h.errors()[0].code, ErrorCodes.PROTOCOL);
  assert.match(h.errors()[0].message, /track 'outbound'/);
  assert.equal(h.sinks.size, 1);
});

test('media before start: a non-permanent PROTOCOL error, logged with its code, and nothing created', async () => {
  const h = harness();
  h.msg.connected();
  h.msg.media(0);
  const [err] = h.errors();
  assert.equal(err.code, ErrorCodes.PROTOCOL);
  assert.equal(err.permanent, false);
  assert.match(err.message, /'media' before 'start'/);
  assert.equal(h.sinks.size, 0);
  assert.ok(h.logs.some(([level, code]) => level === 'warn' && code === ErrorCodes.PROTOCOL));
  assert.equal(h.session.stats.protocolErrors, 1);
  assert.equal(h.session.stats.mediaMessages, 0);
});

test('a second start is an error and changes nothing', async () => {
  const h = harness();
  h.msg.start();
  h.msg.media(0);
  h.msg.start(['inbound', 'outbound'], { callSid: 'CA00000000000000000000000000000002' });
  h.msg.media(20);
  h.msg.stop();
  await settle();
  assert.equal(h.events.filter((e) => e.type === 'call-start').length, 1);
  assert.match(h.errors()[0].message, /second 'start'/);
  assert.equal(h.sinks.size, 1);
  assert.equal(h.callEnd()!.callSid, CALL);
  assert.equal(h.callEnd()!.stats.protocolErrors, 1);
  assert.equal(h.sinks.get('inbound')!.samples, 320);
});

test('bad messages: malformed JSON, non-object, unknown event, missing field, invalid base64, too large a payload', async () => {
  const h = harness({ maxPayloadBytes: 320 });
  h.msg.start();
  h.msg.raw('{"event":"media",');
  h.msg.raw('[1,2]');
  h.msg.raw('{"event":"hello"}');
  h.msg.raw(JSON.stringify({ event: 'media', media: { track: 'inbound', payload: REAL_PAYLOAD } }));
  h.msg.media(0, { payload: 'not base64!' });
  h.msg.media(0, { payload: Buffer.alloc(480, 0xff).toString('base64') });
  h.msg.media(0);
  h.msg.stop();
  await settle();
  const errs = h.errors();
  assert.deepEqual(
    errs.map((e) => e.code),
    [ErrorCodes.PROTOCOL, ErrorCodes.PROTOCOL, ErrorCodes.PROTOCOL, ErrorCodes.PROTOCOL, ErrorCodes.INVALID_AUDIO, ErrorCodes.INVALID_AUDIO],
  );
  assert.match(errs[0].message, /not valid JSON/);
  assert.match(errs[1].message, /not a JSON object/);
  assert.match(errs[2].message, /unknown event "hello"/);
  assert.match(errs[3].message, /media\.timestamp/);
  assert.match(errs[4].message, /not valid base64/);
  assert.match(errs[5].message, /exceeds the limit/);
  assert.ok(errs.every((e) => !e.permanent && e.callSid === CALL));
  const end = h.callEnd()!;
  assert.equal(end.reason, 'stop', 'bad messages do not end the call');
  assert.equal(end.stats.protocolErrors, 6);
  assert.equal(end.stats.mediaMessages, 1);
  assert.equal(h.sinks.get('inbound')!.samples, 160);
});

test('a wrong media format is permanent: MEDIA_FORMAT, close 1003, no call', async () => {
  const h = harness();
  h.msg.start(['inbound'], { mediaFormat: { encoding: 'audio/x-l16', sampleRate: '16000', channels: '1' } });
  await settle();
  const [err] = h.errors();
  assert.equal(err.code, ErrorCodes.MEDIA_FORMAT);
  assert.equal(err.permanent, true);
  assert.match(err.message, /audio\/x-l16 16000 Hz/);
  assert.equal(h.closes[0][0], 1003);
  assert.equal(h.events.filter((e) => e.type === 'call-start' || e.type === 'call-end').length, 0);
  assert.ok(h.session.isEnded);
  h.msg.media(0);
  assert.equal(h.errors().length, 1, 'messages after the end are ignored');
});

test('too many protocol errors close the stream with 1008 and end the call as error', async () => {
  const h = harness({ maxProtocolErrors: 3 });
  h.msg.start();
  for (let i = 0; i < 5; i++) h.msg.raw('nope');
  await settle();
  assert.equal(h.session.stats.protocolErrors, 3);
  assert.deepEqual(h.closes.map((c) => c[0]), [1008]);
  assert.equal(h.callEnd()!.reason, 'error');
  assert.equal(h.errors().at(-1)!.permanent, true);
});

test('dtmf and mark become events with the call identity; dtmf tracks map to inbound/outbound', async () => {
  const h = harness();
  h.msg.start();
  h.msg.media(0);
  h.msg.raw(JSON.stringify({ event: 'dtmf', streamSid: STREAM, sequenceNumber: '3', dtmf: { track: 'inbound_track', digit: '5' } }));
  h.msg.raw(JSON.stringify({ event: 'dtmf', streamSid: STREAM, sequenceNumber: '4', dtmf: { track: 'outbound_track', digit: '#' } }));
  h.msg.raw(JSON.stringify({ event: 'mark', streamSid: STREAM, sequenceNumber: '5', mark: { name: 'Repeat message 0' } }));
  const dtmf = h.events.filter((e) => e.type === 'dtmf');
  assert.deepEqual(dtmf.map((e) => e.type === 'dtmf' && [e.digit, e.track, e.timeMs, e.callSid]), [
    ['5', 'inbound', 20, CALL],
    ['#', 'outbound', 20, CALL],
  ]);
  const mark = h.events.find((e) => e.type === 'mark');
  assert.ok(mark && mark.type === 'mark' && mark.name === 'Repeat message 0' && mark.streamSid === STREAM);
});

test('end() is idempotent; a sink that fails to end still gives call-end (without its summary) and a log line', async () => {
  const h = harness({}, ['outbound']);
  h.msg.start(['inbound', 'outbound']);
  h.msg.media(0);
  await Promise.all([h.session.end('disconnected'), h.session.end('stalled')]);
  await h.session.end('shutdown');
  const ends = h.events.filter((e) => e.type === 'call-end');
  assert.equal(ends.length, 1);
  assert.equal(h.callEnd()!.reason, 'disconnected');
  assert.deepEqual(Object.keys(h.callEnd()!.summary), ['inbound']);
  assert.ok(h.logs.some(([level, , m, f]) => level === 'error' && /sink broke/.test(m) && f?.track === 'outbound' && f.callSid === h.callEnd()!.callSid), 'the failed track is logged, its track and call as fields');
  assert.equal(h.sinks.get('inbound')!.ended, 1);
});

test('a stream that closes before start emits nothing but a log line', async () => {
  const h = harness();
  h.msg.connected();
  await h.session.end('disconnected');
  assert.deepEqual(h.events, []);
  assert.ok(h.logs.some(([, code]) => code === 'CALLMOOD_STREAM_CLOSED'));
});

test('stall detection reads audio progress: start and accepted media move lastProgressAt; bad, duplicate and bogus messages do not', async () => {
  const clock = { ms: 1_000_000 };
  const h = harness({}, [], clock);
  assert.equal(h.session.lastProgressAt, 1_000_000, 'the stream opening counts');
  clock.ms += 100;
  h.msg.start();
  assert.equal(h.session.lastProgressAt, 1_000_100);
  clock.ms += 100;
  h.msg.media(0);
  assert.equal(h.session.lastProgressAt, 1_000_200);
  clock.ms += 100;
  h.msg.raw('garbage');
  h.msg.media(0); // duplicate
  h.msg.media(1e20); // bogus jump
  h.msg.raw(JSON.stringify({ event: 'mark', mark: { name: 'x' } }));
  h.session.handleBinary(16);
  assert.equal(h.session.lastProgressAt, 1_000_200, 'nothing above moved the audio on');
  assert.equal(h.session.lastMessageAt, 1_000_300, 'though every message is seen');
  h.msg.media(20);
  assert.equal(h.session.lastProgressAt, 1_000_300);
});

test('a binary frame is a PROTOCOL error naming what is allowed; the call goes on', async () => {
  const h = harness();
  h.msg.start();
  h.session.handleBinary(320);
  h.msg.media(0);
  h.msg.stop();
  await settle();
  const [err] = h.errors();
  assert.equal(err.code, ErrorCodes.PROTOCOL);
  assert.equal(err.callSid, CALL);
  assert.match(err.message, /binary WebSocket frame \(320 bytes\) is refused.*JSON in a text frame/);
  assert.equal(h.callEnd()!.reason, 'stop');
  assert.equal(h.callEnd()!.durationMs, 20);
});

test("error events of a bad 'start' carry the callSid and streamSid it claimed", async () => {
  const h = harness();
  h.msg.start(['inbound'], { mediaFormat: { encoding: 'audio/l16', sampleRate: 16000, channels: 1 } });
  const [err] = h.errors();
  assert.equal(err.code, ErrorCodes.MEDIA_FORMAT);
  assert.equal(err.callSid, CALL);
  assert.equal(err.streamSid, STREAM);
  assert.deepEqual(err.customParameters, { aCutomParameter: 'aCustomValue that was set in TwiML' });
  const h2 = harness();
  h2.msg.start(['inbound'], { tracks: 'inbound' });
  h2.msg.media(0);
  assert.deepEqual(h2.errors().map((e) => [e.callSid, e.streamSid]), [[CALL, STREAM], [CALL, STREAM]]);
  // Nothing usable: empty, as before.
  const h3 = harness();
  h3.msg.raw('{"event":"start","start":{"callSid":"' + 'x'.repeat(500) + '"}}');
  assert.equal(h3.errors()[0].callSid, '');
});

test('a start the owner refuses (admit) is a permanent error with the claimed identity, closed 1008, no call-start or call-end', async () => {
  const events: CallmoodEvent[] = [];
  const closes: number[] = [];
  const session = new MediaSession({
    emit: (e) => events.push(e),
    createTrack: () => assert.fail('no track for a refused stream'),
    close: (code) => closes.push(code),
    log: () => {},
    admit: (callSid) => (callSid === CALL ? `call ${callSid} already has a live stream` : null),
  });
  session.handleMessage(JSON.stringify({ event: 'start', streamSid: STREAM, start: { callSid: CALL, tracks: ['inbound'], mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } } }));
  await settle();
  assert.deepEqual(events.map((e) => e.type), ['error']);
  const err = events[0] as Extract<CallmoodEvent, { type: 'error' }>;
  assert.equal(err.callSid, CALL);
  assert.equal(err.permanent, true);
  assert.match(err.message, /already has a live stream/);
  assert.deepEqual(closes, [1008]);
  assert.equal(session.callSid, null);
});

test('leadMs: a stream sent faster than real time runs ahead of the wall clock; one sent in real time does not', async () => {
  const flood = harness();
  flood.msg.start();
  assert.equal(flood.session.leadMs, 0, 'no media yet');
  // 10 s of audio in one go, as a flooding client sends it.
  for (let t = 0; t < 10_000; t += 20) flood.msg.media(t);
  const lead = flood.session.leadMs;
  assert.ok(lead > 9000 && lead <= 10_000, `lead ${lead}`);

  const live = harness();
  live.msg.start();
  const t0 = Date.now();
  // 200 ms in 20 ms chunks, each sent when its audio is complete.
  for (let t = 0; t < 200; t += 20) {
    while (Date.now() - t0 < t) await new Promise((r) => setTimeout(r, 2));
    live.msg.media(t);
  }
  assert.ok(live.session.leadMs <= 25, `live lead ${live.session.leadMs}`);
});
