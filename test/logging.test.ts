/**
 * Logging: `callmood serve` writes pino JSON records (or human text with `--log-format text`) on stdout, with the
 * call's identity and the stable code as fields; the embedding API routes every record into the user's own pino.
 * Real processes, real sockets, the real simulator.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { WebSocket } from 'ws';
import { createCallmood } from '../src/telephony/server.js';
import { signUpgrade, simulateCall } from '../src/telephony/simulator.js';
import { loadChannels } from '../src/audio/load.js';
import { formatTextLine, toLogger } from '../src/util/log.js';
import { waitFor } from './helpers.js';
import { jsonListeningPort, startServe, type ServeProcess } from './helpers/serve.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const main = join(root, 'src/cli/main.ts');
const TOKEN = 'logging-test-token';
const FEED = 'logging-feed-token';
const clip = fileURLToPath(new URL('./fixtures/formats/stereo_inverted.wav', import.meta.url));

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TWILIO_AUTH_TOKEN: TOKEN, CALLMOOD_EVENTS_TOKEN: FEED };
  delete env.NODE_TEST_CONTEXT;
  return env;
}


/** Runs `callmood serve` on a free port with a light config; resolves once it logged its port. */
function serve(extra: string[], portOf: (stdout: string) => number | null): Promise<ServeProcess> {
  // The model loads before listen() resolves, so the server takes calls once the port is logged.
  return startServe({ engine: 'in-process', policy: { enabled: false } }, { TWILIO_AUTH_TOKEN: TOKEN, CALLMOOD_EVENTS_TOKEN: FEED }, extra, 60_000, portOf);
}

/** `callmood simulate` one fast call of the test clip; returns the call's callSid, read from the events it printed. */
async function simulate(port: number): Promise<string> {
  const r = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', main, 'simulate', '--url', `ws://127.0.0.1:${port}/media`, '--file', clip, '--pace', 'fast', '--json'],
    { cwd: root, env: childEnv(), timeout: 60_000 },
  );
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; callSid: string });
  const end = events.find((e) => e.type === 'call-end');
  assert.ok(end, `simulate printed no call-end: ${r.stdout}\n${r.stderr}`);
  return end.callSid;
}

type Rec = Record<string, unknown> & { level: number; msg: string; code?: string };

test('callmood serve logs pino JSON records on stdout: the listening line is one, and a call carries callSid/streamSid/code as fields', async () => {
  const s = await serve([], jsonListeningPort);
  try {
    const callSid = await simulate(s.port);
    await waitFor(() => s.stdout().includes('"CALLMOOD_CALL_END"'), 'the call-end record', 60_000);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0, s.stderr());
    const lines = s.stdout().trim().split('\n');
    // Every line on stdout is a record: nothing else is printed there.
    const recs = lines.map((l) => {
      assert.ok(l.startsWith('{'), `not a JSON record: ${l}`);
      return JSON.parse(l) as Rec;
    });
    for (const r of recs) {
      assert.equal(typeof r.level, 'number', JSON.stringify(r));
      assert.equal(typeof r.msg, 'string', JSON.stringify(r));
      assert.match(String(r.code), /^CALLMOOD_/, JSON.stringify(r));
      assert.equal(r.name, 'callmood');
    }
    const listening = recs.find((r) => r.code === 'CALLMOOD_LISTENING')!;
    assert.equal(listening.level, 30);
    assert.match(listening.msg, new RegExp(`^listening on http://127\\.0\\.0\\.1:${s.port} `));
    assert.equal(listening.url, `http://127.0.0.1:${s.port}`);
    const ofCall = recs.filter((r) => r.callSid === callSid);
    const start = ofCall.find((r) => r.code === 'CALLMOOD_CALL_START');
    const end = ofCall.find((r) => r.code === 'CALLMOOD_CALL_END');
    assert.ok(start && end, `records of ${callSid}: ${JSON.stringify(ofCall)}`);
    assert.match(String(start.streamSid), /^MZ[0-9a-f]{32}$/);
    assert.equal(end.streamSid, start.streamSid);
    assert.equal(end.reason, 'stop');
    // The identity is in the fields, not in the words.
    for (const r of recs) {
      assert.ok(!r.msg.includes(callSid) && !r.msg.includes(String(start.streamSid)), `identity inside the message: ${JSON.stringify(r)}`);
    }
    assert.ok(recs.some((r) => r.code === 'CALLMOOD_SIGNAL'), 'the signal is logged');
    assert.ok(recs.some((r) => r.code === 'CALLMOOD_CLOSED'), 'the shutdown is logged');
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('callmood serve --log-format text: one human line per record, fields as key=value', async () => {
  const s = await serve(['--log-format', 'text'], (out) => {
    const m = /^\S+ INFO CALLMOOD_LISTENING listening on http:\/\/127\.0\.0\.1:(\d+) /m.exec(out);
    return m ? Number(m[1]) : null;
  });
  try {
    const callSid = await simulate(s.port);
    await waitFor(() => s.stdout().includes('CALLMOOD_CALL_END'), 'the call-end line', 60_000);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0, s.stderr());
    const lines = s.stdout().trim().split('\n');
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) CALLMOOD_\w+ /, `not a text record: ${l}`);
    assert.match(lines.find((l) => l.includes(' CALLMOOD_LISTENING '))!, new RegExp(` port=${s.port}( |$)`));
    const start = lines.find((l) => l.includes(' CALLMOOD_CALL_START '));
    assert.ok(start, s.stdout());
    assert.match(start, new RegExp(`^\\S+ INFO CALLMOOD_CALL_START call started.* callSid=${callSid} streamSid=MZ[0-9a-f]{32}( |$)`));
    assert.match(lines.find((l) => l.includes(' CALLMOOD_CALL_END '))!, new RegExp(`call ended \\(stop\\) .* callSid=${callSid} .*reason=stop`));
    assert.match(s.stdout(), /INFO CALLMOOD_SIGNAL SIGTERM: draining/);
  } finally {
    s.child.kill('SIGKILL');
  }
});

test("createCallmood with the user's own pino logger: every record goes there, with the user's bindings and callmood's fields", async () => {
  const recs: Rec[] = [];
  const userLogger = pino({ level: 'debug' }, { write: (line: string) => void recs.push(JSON.parse(line) as Rec) }).child({ app: 'callbot' });
  const server = createCallmood({ authToken: TOKEN, engine: 'in-process', policy: { enabled: false } }, { logger: userLogger, processMetrics: false, env: {} });
  const { port } = await server.listen(0, '127.0.0.1');
  try {
    const listening = recs.find((r) => r.code === 'CALLMOOD_LISTENING');
    assert.ok(listening, JSON.stringify(recs));
    assert.equal(listening.port, port);
    assert.equal(listening.app, 'callbot');
    assert.match(listening.msg, new RegExp(`^listening on http://127\\.0\\.0\\.1:${port} `));

    const url = `ws://127.0.0.1:${port}/media`;
    const audio = await loadChannels(clip, 8000);
    const callSid = 'CA' + '1'.repeat(32);
    const ended = new Promise<void>((r) => server.on('call-end', (e) => e.callSid === callSid && r()));
    await simulateCall({ callSid, audio: { inbound: audio.channels[0] } }, { url, pace: 'fast', authToken: TOKEN });
    await ended;
    const start = recs.find((r) => r.code === 'CALLMOOD_CALL_START' && r.callSid === callSid);
    assert.ok(start, JSON.stringify(recs.map((r) => r.code)));
    assert.equal(start.level, 30);
    assert.equal(start.app, 'callbot');
    assert.match(String(start.streamSid), /^MZ/);

    // A bad chunk on a started stream: a warning with the call, the stream and the track as fields.
    const badSid = 'CA' + '2'.repeat(32);
    const ws = new WebSocket(url, { headers: { 'X-Twilio-Signature': signUpgrade(TOKEN, url) } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const streamSid = 'MZ' + '3'.repeat(32);
    ws.send(JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid, start: { streamSid, callSid: badSid, accountSid: 'AC' + '0'.repeat(32), tracks: ['inbound'], customParameters: {}, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } } }));
    ws.send(JSON.stringify({ event: 'media', sequenceNumber: '2', streamSid, media: { track: 'inbound', chunk: '1', timestamp: '0', payload: '***not base64***' } }));
    const bad = await waitFor(() => recs.find((r) => r.callSid === badSid && r.level === 40), 'the warning about the bad chunk', 10_000);
    assert.equal(bad.streamSid, streamSid);
    assert.equal(bad.track, 'inbound');
    assert.match(String(bad.code), /^CALLMOOD_ERR_/);
    assert.ok(!bad.msg.includes(badSid), bad.msg);
    ws.close();
  } finally {
    await server.close();
  }
  assert.ok(recs.some((r) => r.code === 'CALLMOOD_CLOSED'));
  // Nothing escaped to the default logger: every record is the user's (it carries the child's binding).
  assert.ok(recs.every((r) => r.app === 'callbot'));
});

test('a pino-compatible object and a function logger both work; the text form puts fields after the message', () => {
  const got: Array<[string, object, string | undefined]> = [];
  const log = toLogger({
    info: (o, m) => void got.push(['info', o, m]),
    warn: (o, m) => void got.push(['warn', o, m]),
    error: (o, m) => void got.push(['error', o, m]),
  });
  log('warn', 'CALLMOOD_X', 'hello', { callSid: 'CA1', code: 'not this one' });
  log('debug', 'CALLMOOD_Y', 'dropped: this logger has no debug');
  assert.deepEqual(got, [['warn', { code: 'CALLMOOD_X', callSid: 'CA1' }, 'hello']]);
  const fn = (): void => {};
  assert.equal(toLogger(fn), fn);
  assert.throws(() => toLogger({ info() {} } as never), /no warn\(\)/);
  assert.equal(
    formatTextLine(JSON.stringify({ level: 40, time: '2026-01-01T00:00:00.000Z', pid: 1, hostname: 'h', name: 'callmood', code: 'CALLMOOD_X', track: 'inbound', note: 'two words', msg: 'hello' })),
    '2026-01-01T00:00:00.000Z WARN CALLMOOD_X hello track=inbound note="two words"\n',
  );
});

test('the logger lives in util/log.ts: no module imports telephony/server.ts but the CLI that serves and the package index', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const src = join(root, 'src');
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const importers = files.filter((f) => /from '(\.\.?\/telephony|\.)\/server\.js'/.test(readFileSync(join(src, f), 'utf8')) && f !== 'telephony/server.ts');
  assert.deepEqual(importers.sort(), ['cli/serve.ts', 'index.ts']);
});
