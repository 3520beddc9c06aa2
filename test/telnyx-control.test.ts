/**
 * Call control on Telnyx calls: TelnyxCallControl against a loopback stand-in for Telnyx's Call Control API (request
 * shapes, retries, 90018 as call-over, what Telnyx cannot do), its options, the per-call routing, and a real server
 * taking a Telnyx call and a Twilio call at once, each escalated by a key press through its own carrier's API.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TelnyxCallControl, TELNYX_CALL_ENDED, speechMs } from '../src/telephony/transports/telnyx-control.js';
import { RoutingCallController } from '../src/telephony/call-routing.js';
import { createCallmood } from '../src/telephony/server.js';
import { simulateCall } from '../src/telephony/simulator.js';
import { resolveOptions } from '../src/config/options.js';
import { loadConfigFile } from '../src/config/load.js';
import { loadChannels } from '../src/audio/load.js';
import { parsePolicy } from '../src/policy/index.js';
import { ErrorCodes } from '../src/errors.js';
import type { CallController, ControlResult } from '../src/policy/runtime.js';
import type { ActionResultEvent, CallmoodEvent } from '../src/stream/events.js';
import { startFakeTelnyxApi, telnyxError, type FakeTelnyxApi } from './helpers/telnyx-api.js';
import { startFakeTwilioApi } from './helpers/twilio-api.js';
import { assertCallmoodError } from './helpers.js';

const KEY = 'KEY0123456789ABCDEF_telnyx';
const CALL = 'v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function withApi(fn: (api: FakeTelnyxApi, control: TelnyxCallControl) => Promise<void>): Promise<void> {
  const api = await startFakeTelnyxApi();
  try {
    await fn(api, new TelnyxCallControl(KEY, { telnyxApiBaseUrl: api.url, baseBackoffMs: 5, maxBackoffMs: 20, maxAttempts: 3, timeoutMs: 2000 }));
  } finally {
    await api.close();
  }
}

test('transfer and hangup: POST /v2/calls/{call_control_id}/actions/…, the API key as bearer, a JSON body with a command_id', async () => {
  await withApi(async (api, control) => {
    const r = await control.escalate(CALL, null, { dial: '+15551234567' });
    assert.deepEqual(r, { outcome: 'done', attempts: 1, detail: 'call transferred (Telnyx transfer)' });
    const h = await control.endCall(CALL, null);
    assert.equal(h.outcome, 'done', h.detail);
    assert.equal(api.requests.length, 2);
    const [transfer, hangup] = api.requests;
    assert.equal(transfer.method, 'POST');
    assert.equal(transfer.path, `/v2/calls/${CALL}/actions/transfer`, 'the v3: id keeps its colon');
    assert.equal(transfer.bearer, KEY);
    assert.equal(transfer.contentType, 'application/json');
    assert.equal(transfer.body.to, '+15551234567');
    assert.match(String(transfer.body.command_id), UUID);
    assert.deepEqual(Object.keys(transfer.body).sort(), ['command_id', 'to']);
    assert.equal(hangup.path, `/v2/calls/${CALL}/actions/hangup`);
    assert.equal(hangup.bearer, KEY);
    assert.deepEqual(Object.keys(hangup.body), ['command_id']);
    assert.notEqual(hangup.body.command_id, transfer.body.command_id, 'each command has its own id');

    // A SIP URI is a transfer target too; `say` is spoken first, on the caller's leg.
    api.requests.length = 0;
    const s = await control.escalate(CALL, null, { dial: 'sip:agent@pbx.example.com', say: 'One moment.' });
    assert.equal(s.outcome, 'done', s.detail);
    assert.equal(s.attempts, 2);
    assert.deepEqual(api.requests.map((q) => q.path.split('/').pop()), ['speak', 'transfer']);
    assert.deepEqual({ ...api.requests[0].body, command_id: 'x' }, { payload: 'One moment.', voice: 'female', language: 'en-US', command_id: 'x' });
    assert.equal(api.requests[1].body.to, 'sip:agent@pbx.example.com');
  });
});

test('end_call with a goodbye: speak, then hang up after the estimated length of the words', async () => {
  await withApi(async (api, control) => {
    const say = 'Goodbye.';
    const r = await control.endCall(CALL, null, say);
    assert.equal(r.outcome, 'done', r.detail);
    assert.match(r.detail, new RegExp(`goodbye spoken, ${speechMs(say)} ms allowed for it; call hung up`));
    assert.deepEqual(api.requests.map((q) => q.path.split('/').pop()), ['speak', 'hangup']);
    assert.equal(api.requests[0].body.payload, say);
    const gap = api.requests[1].atMs - api.requests[0].atMs;
    assert.ok(gap >= speechMs(say) - 20, `hung up ${gap} ms after speaking, expected about ${speechMs(say)}`);
    assert.ok(speechMs('x'.repeat(3000)) === 15_000, 'the wait is bounded');
  });
});

test('503 then success: retried under the same command_id; other 4xx fail at once; retries give up after maxAttempts', async () => {
  await withApi(async (api, control) => {
    api.script.push(telnyxError(503, '10001', 'Service unavailable', 'try again'));
    const r = await control.escalate(CALL, null, { dial: '+15551234567' });
    assert.equal(r.outcome, 'done', r.detail);
    assert.equal(r.attempts, 2);
    assert.equal(api.requests.length, 2);
    assert.equal(api.requests[0].body.command_id, api.requests[1].body.command_id, 'a retry is the same command to Telnyx');

    api.requests.length = 0;
    api.script.push(telnyxError(401, '10009', 'Authentication failed', 'The API key is wrong'));
    const bad = await control.endCall(CALL, null);
    assert.equal(bad.outcome, 'failed');
    assert.equal(bad.attempts, 1);
    assert.match(bad.detail, new RegExp(`^${ErrorCodes.CALL_CONTROL}: Telnyx hangup: HTTP 401: 10009 Authentication failed`));

    api.requests.length = 0;
    api.script.push({ status: 429, body: {} }, { status: 500, body: {} }, { status: 502, body: {} });
    const gaveUp = await control.endCall(CALL, null);
    assert.equal(gaveUp.outcome, 'failed');
    assert.equal(gaveUp.attempts, 3);
    assert.match(gaveUp.detail, /gave up after 3 attempts; last: Telnyx hangup: HTTP 502/);
    assert.equal(api.requests.length, 3);
  });
  // Nothing listening: network errors are retried, then reported.
  const gone = await startFakeTelnyxApi();
  await gone.close();
  const dead = new TelnyxCallControl(KEY, { telnyxApiBaseUrl: gone.url, baseBackoffMs: 1, maxAttempts: 2 });
  const r = await dead.endCall(CALL, null);
  assert.equal(r.outcome, 'failed');
  assert.equal(r.attempts, 2);
  assert.match(r.detail, /network: ECONNREFUSED/);
});

test(`${TELNYX_CALL_ENDED} "Call has already ended" is call-over: an outcome, not a failure, and no retry`, async () => {
  await withApi(async (api, control) => {
    api.script.push(telnyxError(422, TELNYX_CALL_ENDED, 'Call has already ended', "This call is no longer active and can't receive commands."));
    const r = await control.escalate(CALL, null, { dial: '+15551234567', say: 'One moment.' });
    assert.equal(r.outcome, 'call-over');
    assert.equal(r.attempts, 1);
    assert.match(r.detail, /already over \(Telnyx 90018 Call has already ended/);
    assert.equal(api.requests.length, 1, 'the transfer is not tried after the speak found the call over');
  });
});

test('escalate to a TwiML URL, raw TwiML or a Twilio Client: refused on Telnyx with what is allowed, and no request', async () => {
  await withApi(async (api, control) => {
    for (const target of [{ url: 'https://example.com/agent.xml' }, { twiml: '<Response><Dial>+1555</Dial></Response>' }, { dial: 'client:alice' }]) {
      const r = await control.escalate(CALL, null, target);
      assert.equal(r.outcome, 'failed');
      assert.equal(r.attempts, 0);
      assert.match(r.detail, /is not possible on a Telnyx call; allowed on Telnyx: "dial" with a number \(\+E\.164\) or a SIP URI/, r.detail);
    }
    assert.equal(api.requests.length, 0);
  });
  assert.throws(() => new TelnyxCallControl(''), /needs an API key: set TELNYX_API_KEY/);
});

test('options: the API key comes from TELNYX_API_KEY (named in its error), never a config file; control.telnyxApiBaseUrl is null or an http(s) URL', () => {
  const base = { validateSignatures: false } as const;
  assert.equal(resolveOptions(base, {}).telnyxApiKey, null);
  assert.equal(resolveOptions(base, {}).control.telnyxApiBaseUrl, null);
  assert.equal(resolveOptions(base, { TELNYX_API_KEY: KEY }).telnyxApiKey, KEY);
  assertCallmoodError(() => resolveOptions(base, { TELNYX_API_KEY: 'short' }), ErrorCodes.INVALID_OPTION, /TELNYX_API_KEY \(from the environment\) is 5 character\(s\) long; allowed: at least 8 characters/);
  assert.equal(resolveOptions({ ...base, control: { telnyxApiBaseUrl: 'http://127.0.0.1:9' } }, {}).control.telnyxApiBaseUrl, 'http://127.0.0.1:9');
  assertCallmoodError(() => resolveOptions({ ...base, control: { telnyxApiBaseUrl: 'api.telnyx.com' } }, {}), ErrorCodes.INVALID_OPTION, /control\.telnyxApiBaseUrl .*allowed: null \(Telnyx's own\) or an http\(s\) URL/);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-telnyx-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ telnyxApiKey: KEY }));
  assertCallmoodError(() => loadConfigFile(join(dir, 'c.json')), ErrorCodes.INVALID_OPTION, /telnyxApiKey is a secret .* set TELNYX_API_KEY/);
});

test('routing: a call seen on the Telnyx path goes to Telnyx until a grace period after its end; others go to Twilio; a missing carrier is a clear failure', async () => {
  const seen: string[] = [];
  const fake = (name: string): CallController => ({
    escalate: async (sid) => (seen.push(`${name} escalate ${sid}`), { outcome: 'done', attempts: 1, detail: name }),
    endCall: async (sid) => (seen.push(`${name} end ${sid}`), { outcome: 'done', attempts: 1, detail: name }),
  });
  const router = new RoutingCallController({ twilio: fake('twilio'), telnyx: fake('telnyx') }, 50);
  assert.deepEqual(router.providers, ['twilio', 'telnyx']);
  router.callStarted(CALL, 'telnyx');
  router.callStarted('CA1', 'twilio');
  await router.escalate(CALL, null, { dial: '+1' });
  await router.endCall('CA1', null);
  await router.endCall('CA-unknown', null);
  router.callEnded(CALL);
  await router.endCall(CALL, null);
  assert.deepEqual(seen, [`telnyx escalate ${CALL}`, 'twilio end CA1', 'twilio end CA-unknown', `telnyx end ${CALL}`]);
  const until = Date.now() + 2000;
  while (router.providerOf(CALL) === 'telnyx' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(router.providerOf(CALL), 'twilio', 'forgotten after the grace period');
  assert.equal(router.size, 1);
  router.close();

  const noTelnyx = new RoutingCallController({ twilio: fake('twilio'), telnyx: null });
  noTelnyx.callStarted(CALL, 'telnyx');
  const r: ControlResult = await noTelnyx.endCall(CALL, null);
  assert.deepEqual(r, { outcome: 'failed', attempts: 0, detail: `${ErrorCodes.CALL_CONTROL}: call control is off for Telnyx calls: no Telnyx API key (set TELNYX_API_KEY)` });
  noTelnyx.close();
});

test('a real server: a key press on a Telnyx call transfers it through the Telnyx API while a Twilio call at the same time is redirected through the Twilio API', async () => {
  const TOKEN = 'twilio-token-0123';
  const STREAM_TOKEN = 'telnyx-stream-token-0123';
  const ACCOUNT = 'AC' + '1'.repeat(32);
  const [twilioApi, telnyxApi] = await Promise.all([startFakeTwilioApi(), startFakeTelnyxApi()]);
  const policy = parsePolicy({ rules: [{ name: 'agent-on-zero', when: { dtmf: ['0'] }, do: { action: 'escalate', dial: '+15551234567' } }] });
  const server = createCallmood(
    {
      authToken: TOKEN,
      telnyxStreamToken: STREAM_TOKEN,
      paths: { telnyxMedia: '/telnyx/media' },
      engine: 'in-process',
      control: { accountSid: ACCOUNT, apiBaseUrl: twilioApi.url, telnyxApiBaseUrl: telnyxApi.url, baseBackoffMs: 10 },
    },
    { logger: () => {}, processMetrics: false, env: { TELNYX_API_KEY: KEY }, policy },
  );
  const events: CallmoodEvent[] = [];
  server.on('event', (e) => events.push(e));
  try {
    const addr = await server.listen(0, '127.0.0.1');
    assert.deepEqual(server.health().policy?.callControlBy, ['twilio', 'telnyx']);
    const audio = (await loadChannels(fileURLToPath(new URL('./fixtures/audio/YAF_back_neutral.flac', import.meta.url)), 8000)).channels[0];
    const twilioSid = 'CA' + 'e'.repeat(32);
    const keys = [{ atMs: 200, digit: '0' }];
    await Promise.all([
      simulateCall({ callSid: CALL, audio: { inbound: audio }, dtmf: keys }, { url: `ws://127.0.0.1:${addr.port}/telnyx/media`, pace: 'fast', provider: 'telnyx', streamToken: STREAM_TOKEN }),
      simulateCall({ callSid: twilioSid, audio: { inbound: audio }, dtmf: keys }, { url: `ws://127.0.0.1:${addr.port}/media`, pace: 'fast', authToken: TOKEN }),
    ]);
    const result = (sid: string) => events.find((e): e is ActionResultEvent => e.type === 'action-result' && e.callSid === sid);
    const until = Date.now() + 15_000;
    while ((!result(CALL) || !result(twilioSid)) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const types = (sid: string) => events.filter((e) => e.callSid === sid).map((e) => e.type).join(',');
    assert.ok(result(CALL), `Telnyx call: an action-result; events: ${types(CALL)}`);
    assert.ok(result(twilioSid), `Twilio call: an action-result; events: ${types(twilioSid)}`);
    assert.equal(result(CALL)!.outcome, 'done', result(CALL)!.detail);
    assert.equal(result(CALL)!.detail, 'call transferred (Telnyx transfer)');
    assert.equal(result(twilioSid)!.outcome, 'done', result(twilioSid)!.detail);
    assert.equal(telnyxApi.requests.length, 1);
    assert.equal(telnyxApi.requests[0].path, `/v2/calls/${CALL}/actions/transfer`);
    assert.equal(telnyxApi.requests[0].bearer, KEY);
    assert.equal(telnyxApi.requests[0].body.to, '+15551234567');
    assert.equal(twilioApi.requests.length, 1);
    assert.equal(twilioApi.requests[0].path, `/2010-04-01/Accounts/${ACCOUNT}/Calls/${twilioSid}.json`);
    assert.match(twilioApi.requests[0].form.Twiml, /<Dial>\+15551234567<\/Dial>/);
  } finally {
    await server.close();
    await Promise.all([twilioApi.close(), telnyxApi.close()]);
  }
});
