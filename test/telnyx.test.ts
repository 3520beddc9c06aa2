/**
 * Telnyx media streaming, the second MediaTransport: parsing from the documented example messages
 * (test/fixtures/telnyx/, sources in its README), each kind of bad message, a MediaSession driven by Telnyx messages,
 * and a real server on loopback taking a simulated Telnyx call of a committed recording (the real model, in
 * process), refusing upgrades without the stream token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { parseTelnyxMessage, telnyxIdentityHint, TELNYX_TOKEN_HEADER } from '../src/telephony/transports/telnyx.js';
import { telnyxTransport } from '../src/telephony/transports/telnyx.js';
import { MediaSession, type TrackSink } from '../src/telephony/session.js';
import { createCallmood } from '../src/telephony/server.js';
import { encodePayloads, followEvents, simulateCall } from '../src/telephony/simulator.js';
import { resolveOptions } from '../src/config/options.js';
import { loadChannels } from '../src/audio/load.js';
import { ALAW_TO_FLOAT, encodeAlaw } from '../src/audio/codecs.js';
import { ErrorCodes } from '../src/errors.js';
import type { CallmoodEvent, Track, TrackSummary } from '../src/stream/events.js';
import { assertCallmoodError, waitFor } from './helpers.js';

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`./fixtures/telnyx/${name}.json`, import.meta.url)), 'utf8');
const CALL = 'v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ';
const STREAM = '32DE0DEA-53CB-4B21-89A4-9E1819C043BC';
const TOKEN = 'telnyx-stream-token-0123';

test('the documented Telnyx messages parse to provider-neutral ones', () => {
  assert.deepEqual(parseTelnyxMessage(fixture('connected')), { event: 'connected' });
  assert.deepEqual(parseTelnyxMessage(fixture('start')), {
    event: 'start',
    sequence: 1,
    callSid: CALL,
    streamSid: STREAM,
    accountSid: '3E6F995F-85F7-4705-9741-53B116D28237',
    tracks: ['inbound'],
    tracksAnnounced: false,
    customParameters: { customer_id: 'customer_123' },
    mediaFormat: { encoding: 'mulaw', sampleRate: 8000, channels: 1 },
  });
  const legacy = parseTelnyxMessage(fixture('start-legacy'));
  assert.equal(legacy.event === 'start' && legacy.mediaFormat.encoding, 'mulaw');
  assert.deepEqual(legacy.event === 'start' && legacy.customParameters, {});
  // media.timestamp's unit is not documented: the chunk carries no timestampMs and follows its track.
  assert.deepEqual(parseTelnyxMessage(fixture('media')), { event: 'media', sequence: 4, track: 'inbound', payload: 'no+JhoaJjpzSHxAKBgYJD...IsSbjomGhoqQn1Ic' });
  assert.deepEqual(parseTelnyxMessage(fixture('stop')), { event: 'stop', sequence: 5 });
  assert.deepEqual(parseTelnyxMessage(fixture('dtmf')), { event: 'dtmf', sequence: 5, track: null, digit: '1' });
  assert.deepEqual(parseTelnyxMessage(fixture('mark')), { event: 'mark', sequence: 5, name: 'some_mark_name' });
  assert.deepEqual(parseTelnyxMessage(fixture('error')), {
    event: 'provider-error',
    sequence: undefined,
    message: 'Telnyx reported a stream error: 100002 unknown_error An unknown error occurred on the stream',
  });
  const pcma = JSON.parse(fixture('start'));
  pcma.start.media_format.encoding = 'PCMA';
  const m = parseTelnyxMessage(JSON.stringify(pcma));
  assert.equal(m.event === 'start' && m.mediaFormat.encoding, 'alaw');
});

test('bad Telnyx messages: PROTOCOL naming the field and what is allowed; other codecs: MEDIA_FORMAT naming PCMU and PCMA', () => {
  const with_ = (name: string, edit: (o: Record<string, any>) => void) => {
    const o = JSON.parse(fixture(name));
    edit(o);
    return JSON.stringify(o);
  };
  assertCallmoodError(() => parseTelnyxMessage('{not json'), ErrorCodes.PROTOCOL, /not valid JSON/);
  assertCallmoodError(() => parseTelnyxMessage('"media"'), ErrorCodes.PROTOCOL, /not a JSON object/);
  assertCallmoodError(() => parseTelnyxMessage('{"event":"clear"}'), ErrorCodes.PROTOCOL, /unknown event "clear"; expected one of connected, start, media, dtmf, mark, stop, error/);
  assertCallmoodError(() => parseTelnyxMessage(with_('start', (o) => delete o.start.call_control_id)), ErrorCodes.PROTOCOL, /invalid Telnyx 'start' message: start.call_control_id/);
  assertCallmoodError(() => parseTelnyxMessage(with_('start', (o) => delete o.stream_id)), ErrorCodes.PROTOCOL, /stream_id/);
  assertCallmoodError(() => parseTelnyxMessage(with_('start', (o) => delete o.start.media_format)), ErrorCodes.PROTOCOL, /start.media_format/);
  assertCallmoodError(() => parseTelnyxMessage(with_('media', (o) => (o.media.track = 'inbound/outbound'))), ErrorCodes.PROTOCOL, /media.track/);
  assertCallmoodError(() => parseTelnyxMessage(with_('media', (o) => delete o.media.payload)), ErrorCodes.PROTOCOL, /media.payload/);
  assertCallmoodError(() => parseTelnyxMessage(with_('media', (o) => (o.sequence_number = '-4'))), ErrorCodes.PROTOCOL, /sequence_number/);
  assertCallmoodError(() => parseTelnyxMessage(with_('media', (o) => (o.media.chunk = 'two'))), ErrorCodes.PROTOCOL, /media.chunk/);
  assertCallmoodError(() => parseTelnyxMessage(with_('dtmf', (o) => (o.dtmf.digit = '12'))), ErrorCodes.PROTOCOL, /dtmf.digit/);
  assertCallmoodError(() => parseTelnyxMessage(with_('mark', (o) => delete o.mark)), ErrorCodes.PROTOCOL, /mark/);
  for (const [encoding, rate] of [['L16', 16000], ['G722', 8000], ['OPUS', 8000], ['PCMU', 16000]] as const) {
    assertCallmoodError(
      () => parseTelnyxMessage(with_('start', (o) => (o.start.media_format = { encoding, sample_rate: rate, channels: 1 }))),
      ErrorCodes.MEDIA_FORMAT,
      new RegExp(`${encoding} ${rate} Hz × 1 is not supported; allowed: PCMU or PCMA at 8000 Hz × 1`),
    );
  }
  // A refused start still names its call for its error events; implausible ids are not taken.
  assert.deepEqual(telnyxIdentityHint(with_('start', (o) => (o.start.media_format.encoding = 'L16'))), { callSid: CALL, streamSid: STREAM, customParameters: { customer_id: 'customer_123' } });
  assert.equal(telnyxIdentityHint(with_('start', (o) => ((o.start.call_control_id = 'a b'), (o.stream_id = '<x>')))), null);
});

class Sink implements TrackSink {
  samples: number[] = [];
  ends: number[] = [];
  push(s: Float32Array, endMs: number): void {
    for (const v of s) this.samples.push(v);
    this.ends.push(endMs);
  }
  async end(): Promise<TrackSummary> {
    return { audioMs: this.samples.length / 8, speechMs: 0, emotionShare: {}, anger: { peak: 0, peakAtMs: null, durationMs: 0 }, windows: 0 };
  }
}

test('a MediaSession on Telnyx messages: ids from call_control_id and stream_id, chunks in arrival order, outbound opened by its first chunk, A-law decoded, provider errors reported', async () => {
  const events: CallmoodEvent[] = [];
  const sinks = new Map<Track, Sink>();
  const closes: number[] = [];
  const session = new MediaSession(
    {
      emit: (e) => events.push(e),
      createTrack: (t) => {
        const s = new Sink();
        sinks.set(t, s);
        return s;
      },
      close: (code) => closes.push(code),
      log: () => {},
    },
    {},
    telnyxTransport({ streamToken: TOKEN, validate: true }),
  );
  const start = JSON.parse(fixture('start'));
  start.start.media_format.encoding = 'PCMA';
  const tone = new Float32Array(160).map((_, i) => 0.5 * Math.sin(i / 5));
  const payload = encodePayloads(tone, true)[0];
  const media = (seq: number, track: Track) => JSON.stringify({ event: 'media', sequence_number: String(seq), media: { track, chunk: String(seq), timestamp: String(seq * 7), payload }, stream_id: STREAM });
  session.handleMessage(fixture('connected'));
  session.handleMessage(JSON.stringify(start));
  for (let s = 2; s <= 4; s++) session.handleMessage(media(s, 'inbound'));
  session.handleMessage(media(5, 'outbound'));
  session.handleMessage(fixture('error'));
  session.handleMessage(JSON.stringify({ ...JSON.parse(fixture('dtmf')), sequence_number: '6' }));
  session.handleMessage(JSON.stringify({ ...JSON.parse(fixture('stop')), sequence_number: '7' }));
  await new Promise((r) => setImmediate(r));
  const callStart = events[0];
  assert.equal(callStart.type, 'call-start');
  assert.equal(callStart.callSid, CALL);
  assert.equal(callStart.streamSid, STREAM);
  assert.equal(callStart.type === 'call-start' && callStart.accountSid, '3E6F995F-85F7-4705-9741-53B116D28237');
  assert.deepEqual(callStart.type === 'call-start' && callStart.tracks, ['inbound']);
  const inbound = sinks.get('inbound')!;
  assert.deepEqual(inbound.ends, [20, 40, 60], 'contiguous 20 ms chunks, whatever media.timestamp says');
  const expected = encodeAlaw(tone);
  assert.ok(inbound.samples.slice(0, 160).every((v, i) => v === ALAW_TO_FLOAT[expected[i]]), 'A-law payloads are decoded with the A-law table');
  assert.deepEqual(sinks.get('outbound')!.ends, [20], 'the outbound track opened with its first chunk');
  const error = events.find((e) => e.type === 'error');
  assert.ok(error && error.type === 'error' && /100002 unknown_error/.test(error.message) && !error.permanent, `events: ${events.map((e) => e.type)}`);
  const dtmf = events.find((e) => e.type === 'dtmf');
  assert.ok(dtmf && dtmf.type === 'dtmf' && dtmf.digit === '1' && dtmf.track === null, 'dtmf without a track');
  const end = events.find((e) => e.type === 'call-end');
  assert.ok(end && end.type === 'call-end', `events: ${events.map((e) => e.type)}`);
  assert.equal(end.reason, 'stop');
  assert.equal(end.callSid, CALL);
  assert.deepEqual(end.stats, { mediaMessages: 4, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 });
  assert.deepEqual(Object.keys(end.summary).sort(), ['inbound', 'outbound']);
  assert.deepEqual(closes, [1000]);
});

test('options: paths.telnyxMedia is off by default, needs a stream token (from CALLMOOD_TELNYX_STREAM_TOKEN) while signatures are checked, and a path of its own', () => {
  assert.equal(resolveOptions({ validateSignatures: false }, {}).paths.telnyxMedia, null);
  assertCallmoodError(() => resolveOptions({ authToken: 'twilio-token-123', paths: { telnyxMedia: '/telnyx/media' } }, {}), ErrorCodes.INVALID_OPTION, /CALLMOOD_TELNYX_STREAM_TOKEN/);
  const o = resolveOptions({ authToken: 'twilio-token-123', paths: { telnyxMedia: '/telnyx/media' } }, { CALLMOOD_TELNYX_STREAM_TOKEN: TOKEN });
  assert.equal(o.telnyxStreamToken, TOKEN);
  assertCallmoodError(() => resolveOptions({ validateSignatures: false }, { CALLMOOD_TELNYX_STREAM_TOKEN: 'short' }), ErrorCodes.INVALID_OPTION, /CALLMOOD_TELNYX_STREAM_TOKEN \(from the environment\) is 5 character/);
  assertCallmoodError(() => resolveOptions({ validateSignatures: false, paths: { telnyxMedia: '/media' } }, {}), ErrorCodes.INVALID_OPTION, /paths.telnyxMedia is "\/media", the same as paths.media/);
  assertCallmoodError(() => resolveOptions({ validateSignatures: false, paths: { telnyxMedia: 'telnyx' } }, {}), ErrorCodes.INVALID_OPTION, /paths.telnyxMedia/);
});

/** The HTTP status an upgrade got, or 101. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('error', () => resolve(0));
  });
}

test('a real server on loopback takes a simulated Telnyx call: call-start, emotion events and call-end with the Telnyx ids; upgrades without the token are refused', async () => {
  const server = createCallmood(
    { authToken: 'twilio-token-0123', eventsToken: 'feed-token-0123', telnyxStreamToken: TOKEN, paths: { telnyxMedia: '/telnyx/media' }, engine: 'in-process' },
    { logger: () => {}, processMetrics: false, env: {} },
  );
  const addr = await server.listen(0, '127.0.0.1');
  try {
    await server.ready();
    const url = `ws://127.0.0.1:${addr.port}/telnyx/media`;
    assert.equal(await upgradeStatus(url), 403, 'no token');
    assert.equal(await upgradeStatus(url, { [TELNYX_TOKEN_HEADER]: 'wrong-token-0123' }), 403, 'wrong token');
    assert.equal(await upgradeStatus(`${url}?token=wrong-token-0123`), 403, 'wrong query token');
    assert.equal(await upgradeStatus(url, { 'X-Twilio-Signature': 'x' }), 403, 'a Twilio signature is no Telnyx token');
    assert.equal(await upgradeStatus(`${url}?token=${TOKEN}`), 101, 'the token in the stream URL query');
    const audio = await loadChannels(fileURLToPath(new URL('./fixtures/audio/YAF_back_angry.flac', import.meta.url)), 8000);
    const callSid = 'v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg';
    const streamSid = '1edb94f9-7ef0-4150-b502-e0ebadfd9491';
    const events: CallmoodEvent[] = [];
    let ended!: () => void;
    const done = new Promise<void>((r) => (ended = r));
    server.on('event', (e) => {
      if (e.callSid !== callSid) return;
      events.push(e);
      if (e.type === 'call-end') ended();
    });
    // A callbot follows the Telnyx call on the feed by its call_control_id.
    const followed: CallmoodEvent[] = [];
    const feed = await followEvents(`ws://127.0.0.1:${addr.port}/events`, { token: 'feed-token-0123', callSid, onEvent: (e) => followed.push(e) });
    await assert.rejects(
      simulateCall({ callSid, streamSid, audio: { inbound: audio.channels[0] } }, { url, pace: 'fast', provider: 'telnyx' }),
      (e: { code?: string; message: string }) => e.code === ErrorCodes.SIGNATURE && /HTTP 403/.test(e.message),
    );
    const sent = await simulateCall(
      { callSid, streamSid, audio: { inbound: audio.channels[0] }, customParameters: { customer_id: 'customer_123' } },
      { url, pace: 'fast', provider: 'telnyx', streamToken: TOKEN },
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise((r) => (timer = setTimeout(r, 20_000)))]);
    clearTimeout(timer);
    assert.equal(sent.callSid, callSid);
    const types = events.map((e) => e.type);
    assert.equal(types[0], 'call-start', `events: ${types}`);
    assert.ok(types.includes('emotion'), `emotion events expected: ${types}`);
    const end = events.find((e) => e.type === 'call-end');
    assert.ok(end && end.type === 'call-end', `events: ${types}`);
    assert.equal(end.reason, 'stop');
    await waitFor(() => followed.some((e) => e.type === 'call-end'), () => `the feed's call-end (got ${followed.map((e) => e.type)})`, 10_000);
    feed.close();
    assert.deepEqual(followed.map((e) => JSON.stringify(e)), events.map((e) => JSON.stringify(e)), 'the feed, filtered by the Telnyx id, carries the call');
    assert.equal(end.stats.mediaMessages, sent.chunks);
    assert.equal(end.stats.protocolErrors, 0);
    assert.ok(events.every((e) => e.callSid === callSid && e.streamSid === streamSid && e.customParameters.customer_id === 'customer_123'), 'every event carries the Telnyx ids');
    assert.ok(!events.some((e) => e.type === 'error'), `no errors: ${JSON.stringify(events.filter((e) => e.type === 'error'))}`);
  } finally {
    await server.close();
  }
});
