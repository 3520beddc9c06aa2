import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createCallmood } from '../src/telephony/server.js';
import { encodePayloads, followEvents, mediaMessageText, simulateCall } from '../src/telephony/simulator.js';
import { parseTwilioMessage } from '../src/telephony/transports/twilio.js';
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
    // Without the right token the server refuses the stream before any socket opens.
    await assert.rejects(
      simulateCall({ audio: { inbound: audio.channels[0] } }, { url, pace: 'fast', authToken: 'wrong-token-123' }),
      (e: { code?: string; message: string }) => e.code === ErrorCodes.SIGNATURE && /HTTP 403/.test(e.message),
    );
  } finally {
    await server.close();
  }
});

test('the simulator masks every frame with its own random key, as Twilio does (never the all-zero key ws would not unmask)', async () => {
  // A bare TCP server that accepts the upgrade (RFC 6455 §4.2.2) and reads the client's frame headers as sent.
  const masks: string[] = [];
  let bytes = Buffer.alloc(0);
  const server = net.createServer((sock) => {
    let upgraded = false;
    sock.on('data', (d: Buffer) => {
      bytes = Buffer.concat([bytes, d]);
      if (!upgraded) {
        const head = bytes.indexOf('\r\n\r\n');
        if (head < 0) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(bytes.subarray(0, head).toString())![1];
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        bytes = bytes.subarray(head + 4);
        upgraded = true;
      }
      // Frames: FIN/opcode, MASK bit + length (7, 16 or 64 bits), the 4-byte key, the payload.
      for (;;) {
        if (bytes.length < 2) return;
        let len = bytes[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (bytes.length < 4) return;
          len = bytes.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (bytes.length < 10) return;
          len = Number(bytes.readBigUInt64BE(2));
          at = 10;
        }
        if (bytes.length < at + 4 + len) return;
        assert.equal(bytes[1] & 0x80, 0x80, 'a client frame is masked');
        const opcode = bytes[0] & 0x0f;
        const mask = bytes.subarray(at, at + 4);
        const text = Buffer.from(bytes.subarray(at + 4, at + 4 + len).map((b, i) => b ^ mask[i & 3])).toString();
        bytes = bytes.subarray(at + 4 + len);
        if (opcode === 1) masks.push(mask.toString('hex'));
        // As callmood does after `stop`: the server closes.
        if (opcode === 1 && JSON.parse(text).event === 'stop') sock.write(Buffer.from([0x88, 0]));
        if (opcode === 8) sock.end();
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as net.AddressInfo;
    const audio = Float32Array.from({ length: 1600 }, (_, i) => 0.3 * Math.sin(i / 5));
    const sent = await simulateCall({ audio: { inbound: audio } }, { url: `ws://127.0.0.1:${port}/media`, pace: 'fast' });
    assert.equal(masks.length, sent.messages, 'every text frame was read');
    assert.ok(!masks.includes('00000000'), `a zero key: ${masks.join(' ')}`);
    // Random 32-bit keys: a repeat among a few dozen has a chance of about 1 in 10 million.
    assert.equal(new Set(masks).size, masks.length, `keys repeat: ${masks.join(' ')}`);
  } finally {
    server.close();
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

/** Runs `callmood simulate` from source; a run still going after `timeoutMs` is killed and reported as such. */
function simulateCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; killed: boolean; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('../src/cli/main.ts', import.meta.url)), 'simulate', '--file', clip, '--pace', 'fast', ...args],
      { env: { ...process.env, TWILIO_AUTH_TOKEN: '', CALLMOOD_EVENTS_TOKEN: '', ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, _stdout, stderr) => {
        const e = err as (Error & { code?: number; killed?: boolean }) | null;
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, killed: e?.killed ?? false, stderr, ms: Date.now() - t0 });
      },
    );
  });
}

test('callmood simulate against a dead port: one line naming the URL and ECONNREFUSED, exit 2, no stack', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const deadPort = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  for (const [args, path] of [[[], '/events'], [['--no-events'], '/media']] as const) {
    const r = await simulateCli(['--url', `ws://127.0.0.1:${deadPort}/media`, ...args]);
    assert.equal(r.killed, false, `still running after 30 s: ${r.stderr}`);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`cannot connect to ws://127\\.0\\.0\\.1:${deadPort}${path}: ECONNREFUSED \\(connection refused: nothing listens there\\)`));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('callmood simulate refused with 403 (wrong auth token): one line with the reason, and the process exits at once', async () => {
  const server = createCallmood({ authToken: TOKEN, eventsToken: FEED, engine: 'in-process', policy: { enabled: false } }, { logger: () => {}, processMetrics: false, env: {} });
  const { port } = await server.listen(0, '127.0.0.1');
  try {
    const r = await simulateCli(['--url', `ws://127.0.0.1:${port}/media`, '--auth-token', 'not-the-servers-token', '--events-token', FEED]);
    assert.equal(r.killed, false, `simulate never exited after the 403: ${r.stderr}`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /CALLMOOD_ERR_SIGNATURE: media stream refused: HTTP 403 invalid X-Twilio-Signature \(.*auth token/);
    // The feed's own refusal says what is wrong with its token.
    const f = await simulateCli(['--url', `ws://127.0.0.1:${port}/media`, '--auth-token', TOKEN, '--events-token', 'wrong-feed-token']);
    assert.equal(f.code, 2, f.stderr);
    assert.match(f.stderr, /event feed refused: HTTP 401.*events token/);
  } finally {
    await server.close();
  }
});
