import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createCallmood } from '../src/telephony/server.js';
import { encodePayloads, followEvents, mediaMessageText, simulateCall } from '../src/telephony/simulator.js';
import { parseTwilioMessage } from '../src/telephony/protocol.js';
import { mulberry32 } from '../src/util/random.js';
import { loadChannels } from '../src/audio/load.js';
import type { CallmoodEvent } from '../src/stream/events.js';
import { ErrorCodes } from '../src/errors.js';

const TOKEN = 'simulate-test-token';
const FEED = 'simulate-feed-token';
const clip = fileURLToPath(new URL('./fixtures/formats/stereo_inverted.wav', import.meta.url));

test('the simulator speaks as Twilio does: a signed two-track call streams and its events come back on the feed', async () => {
  const server = createCallmood({ authToken: TOKEN, eventsToken: FEED, engine: 'in-process' }, { logger: () => {}, processMetrics: false, env: {} });
  const addr = await server.listen(0, '127.0.0.1');
  try {
    await server.ready();
    const url = `ws://127.0.0.1:${addr.port}/media`;
    const audio = await loadChannels(clip, 8000);
    const callSid = 'CA' + 'a'.repeat(32);
    const feedEvents: CallmoodEvent[] = [];
    let ended!: () => void;
    const done = new Promise<void>((r) => (ended = r));
    const feed = await followEvents(`ws://127.0.0.1:${addr.port}/events`, {
      token: FEED,
      callSid,
      onEvent: (e) => {
        feedEvents.push(e);
        if (e.type === 'call-end') ended();
      },
    });
    const sent = await simulateCall(
      { callSid, audio: { inbound: audio.channels[0], outbound: audio.channels[1] }, customParameters: { who: 'test' } },
      { url, pace: 'fast', authToken: TOKEN },
    );
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    feed.close();
    // 0.5 s at 20 ms per chunk, both tracks in each step, plus connected, start and stop.
    assert.equal(sent.chunks, 25);
    assert.equal(sent.messages, 25 * 2 + 3);
    const end = feedEvents.find((e) => e.type === 'call-end');
    assert.ok(end && end.type === 'call-end', `events: ${feedEvents.map((e) => e.type)}`);
    assert.equal(end.reason, 'stop');
    assert.equal(end.stats.mediaMessages, 50);
    assert.deepEqual(Object.keys(end.summary).sort(), ['inbound', 'outbound']);
    assert.ok(feedEvents.every((e) => e.callSid === callSid && e.customParameters.who === 'test'));
    // Frames masked with an all-zero key (the load test's cheaper sender) carry the same call.
    const zeroSid = 'CA' + 'b'.repeat(32);
    let zeroEnd: CallmoodEvent | undefined;
    let zeroEnded!: () => void;
    const zeroDone = new Promise<void>((r) => (zeroEnded = r));
    const zeroFeed = await followEvents(`ws://127.0.0.1:${addr.port}/events`, {
      token: FEED,
      callSid: zeroSid,
      onEvent: (e) => {
        if (e.type === 'call-end') {
          zeroEnd = e;
          zeroEnded();
        }
      },
    });
    const zeroSent = await simulateCall(
      { callSid: zeroSid, audio: { inbound: audio.channels[0], outbound: audio.channels[1] } },
      { url, pace: 'fast', authToken: TOKEN, zeroMask: true },
    );
    await Promise.race([zeroDone, new Promise((r) => setTimeout(r, 10_000))]);
    zeroFeed.close();
    assert.equal(zeroSent.messages, sent.messages);
    assert.ok(zeroEnd && zeroEnd.type === 'call-end' && end.type === 'call-end', 'the zero-mask call ended');
    assert.equal(zeroEnd.reason, 'stop');
    assert.equal(zeroEnd.stats.protocolErrors, 0);
    assert.equal(zeroEnd.stats.mediaMessages, 50);
    assert.equal(zeroEnd.summary.inbound?.audioMs, end.summary.inbound?.audioMs);
    assert.equal(zeroEnd.summary.inbound?.speechMs, end.summary.inbound?.speechMs);
    // Without the right token the server refuses the stream before any socket opens.
    await assert.rejects(
      simulateCall({ audio: { inbound: audio.channels[0] } }, { url, pace: 'fast', authToken: 'wrong-token-123' }),
      (e: { code?: string; message: string }) => e.code === ErrorCodes.SIGNATURE && /HTTP 403/.test(e.message),
    );
  } finally {
    await server.close();
  }
});

test('media messages are built as text byte for byte as JSON.stringify writes them, and parse back', () => {
  const r = mulberry32(3);
  const audio = Float32Array.from({ length: 8000 }, () => r() - 0.5);
  const payloads = encodePayloads(audio);
  assert.equal(payloads.length, 50);
  const sids = ['MZ' + 'f'.repeat(32), 'odd "sid" \\ é'];
  const cases: Array<[number, 'inbound' | 'outbound', number, string, string]> = [
    [1, 'inbound', 0, payloads[0], sids[0]],
    [123456, 'outbound', 49, payloads[49], sids[1]],
    [7, 'inbound', 3, 'not base64 "quoted"', sids[0]],
  ];
  for (const [seq, track, k, payload, streamSid] of cases) {
    const text = mediaMessageText(seq, track, k, payload, JSON.stringify(streamSid));
    const expected = JSON.stringify({ event: 'media', sequenceNumber: String(seq), media: { track, chunk: String(k + 1), timestamp: String(k * 20), payload }, streamSid });
    assert.equal(text, expected);
    const m = parseTwilioMessage(text);
    assert.equal(m.event, 'media');
    if (m.event === 'media') assert.equal(m.media.payload, payload);
  }
});
