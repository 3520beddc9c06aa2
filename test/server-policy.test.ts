/**
 * The policy on live calls: real audio streamed as Twilio would to a real server on loopback; the policy's actions
 * reach a loopback stand-in for Twilio's REST API through the real `twilio` client, and custom handlers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createCallmood, type CallmoodServer } from '../src/telephony/server.js';
import { simulateCall } from '../src/telephony/simulator.js';
import { loadChannels } from '../src/audio/load.js';
import { parsePolicy } from '../src/policy/index.js';
import type { ActionEvent, ActionResultEvent, CallmoodEvent } from '../src/stream/events.js';
import { startFakeTwilioApi, twilioError, type FakeTwilioApi } from './helpers/twilio-api.js';
import { FakeCrm } from './helpers/webhook-crm.js';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TOKEN = 'policy-test-token';
const ACCOUNT = 'AC' + '1'.repeat(32);
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/audio/${name}`, import.meta.url));

/** Several clips of one emotion back to back, 8 kHz, as one caller's speech. */
async function speech(names: string[]): Promise<Float32Array> {
  const parts = await Promise.all(names.map(async (n) => (await loadChannels(fixture(n), 8000)).channels[0]));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const ANGRY = ['YAF_back_angry.flac', 'OAF_back_angry.flac', 'YAF_back_angry.flac', 'OAF_back_angry.flac'];
const NEUTRAL = ['YAF_back_neutral.flac', 'YAF_back_neutral.flac', 'YAF_back_neutral.flac', 'YAF_back_neutral.flac'];

const POLICY = parsePolicy({
  rules: [
    { name: 'note-anger', when: { emotion: { label: 'angry', above: 0.5, forMs: 500 } }, do: { action: 'custom', handler: 'note' }, once: true },
    { name: 'agent', when: { emotion: { label: 'angry', above: 0.5, forMs: 1500 } }, do: { action: 'escalate', dial: '+15005550006', say: 'One moment.' } },
  ],
});

async function withServer(api: FakeTwilioApi, dryRun: boolean, fn: (server: CallmoodServer, url: string, events: CallmoodEvent[], noted: ActionEvent[]) => Promise<void>): Promise<void> {
  const noted: ActionEvent[] = [];
  const server = createCallmood(
    { authToken: TOKEN, engine: 'in-process', control: { accountSid: ACCOUNT, apiBaseUrl: api.url, baseBackoffMs: 10 }, policy: { dryRun } },
    { logger: () => {}, processMetrics: false, env: {}, policy: POLICY, actionHandlers: { note: (a) => void noted.push(a) } },
  );
  const events: CallmoodEvent[] = [];
  server.on('event', (e) => events.push(e));
  const addr = await server.listen(0, '127.0.0.1');
  try {
    await fn(server, `ws://127.0.0.1:${addr.port}/media`, events, noted);
  } finally {
    await server.close();
  }
}

/** Streams a call and waits until its call-end and every action's result are out. */
async function call(url: string, callSid: string, audio: Float32Array, events: CallmoodEvent[]): Promise<CallmoodEvent[]> {
  await simulateCall({ callSid, audio: { inbound: audio } }, { url, pace: 'fast', authToken: TOKEN });
  const until = Date.now() + 15_000;
  const mine = () => events.filter((e) => e.callSid === callSid);
  const settled = () => {
    const m = mine();
    const actions = m.filter((e) => e.type === 'action').length;
    return m.some((e) => e.type === 'call-end') && m.filter((e) => e.type === 'action-result').length === actions;
  };
  while (!settled() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return mine();
}

test('an angry caller is handed to a person: the escalate action reaches the REST API, the custom handler runs, outcomes are events', async () => {
  const api = await startFakeTwilioApi();
  const [angry, neutral] = await Promise.all([speech(ANGRY), speech(NEUTRAL)]);
  try {
    await withServer(api, false, async (server, url, events, noted) => {
      const sid = 'CA' + 'a'.repeat(32);
      const got = await call(url, sid, angry, events);
      const actions = got.filter((e): e is ActionEvent => e.type === 'action');
      assert.deepEqual(actions.map((a) => a.action), ['custom', 'escalate'], `emotions: ${got.filter((e) => e.type === 'emotion').map((e) => (e as { label: string }).label).join(',')}`);
      const esc = actions[1];
      assert.equal(esc.rule, 'agent');
      assert.equal(esc.dryRun, false);
      // The action follows the emotion event that completed the rule, at the same call time.
      const i = got.indexOf(esc);
      assert.equal(got[i - 1].type, 'emotion');
      assert.equal(got[i - 1].timeMs, esc.timeMs);
      const results = got.filter((e): e is ActionResultEvent => e.type === 'action-result');
      assert.deepEqual(results.map((r) => [r.action, r.outcome]).sort(), [['custom', 'done'], ['escalate', 'done']]);
      assert.equal(noted.length, 1);
      assert.equal(noted[0].actionId, actions[0].actionId);
      assert.equal(api.requests.length, 1);
      assert.equal(api.requests[0].path, `/2010-04-01/Accounts/${ACCOUNT}/Calls/${sid}.json`);
      assert.match(api.requests[0].form.Twiml, /<Say>One moment\.<\/Say><Dial>\+15005550006<\/Dial>/);
      const metrics = (await server.metrics.text()).body;
      assert.match(metrics, /callmood_actions_total\{action="escalate",dry_run="false"\} 1/);
      assert.match(metrics, /callmood_action_results_total\{action="escalate",outcome="done"\} 1/);
      assert.equal(server.health().policy?.rules, 2);

      // A calm caller: no action at all.
      const calm = await call(url, 'CA' + 'b'.repeat(32), neutral, events);
      assert.deepEqual(calm.filter((e) => e.type === 'action'), []);

      // The caller hung up before the redirect: Twilio answers 20404, an outcome and no retry.
      api.script.push(twilioError(404, 20404, 'The requested resource was not found'));
      const late = await call(url, 'CA' + 'c'.repeat(32), angry, events);
      const r = late.find((e): e is ActionResultEvent => e.type === 'action-result' && e.action === 'escalate');
      assert.equal(r?.outcome, 'call-over');
      assert.equal(r?.attempts, 1);
    });
  } finally {
    await api.close();
  }
});

test('dry run: the same decisions are reported, nothing is carried out', async () => {
  const api = await startFakeTwilioApi();
  const angry = await speech(ANGRY);
  try {
    await withServer(api, true, async (server, url, events, noted) => {
      const got = await call(url, 'CA' + 'd'.repeat(32), angry, events);
      const actions = got.filter((e): e is ActionEvent => e.type === 'action');
      assert.deepEqual(actions.map((a) => a.action), ['custom', 'escalate']);
      assert.ok(actions.every((a) => a.dryRun));
      assert.deepEqual(got.filter((e) => e.type === 'action-result').map((e) => (e as ActionResultEvent).outcome), ['skipped', 'skipped']);
      assert.equal(api.requests.length, 0);
      assert.equal(noted.length, 0);
      assert.equal(server.health().policy?.dryRun, true);
    });
  } finally {
    await api.close();
  }
});

test('the CRM gets the call and the policy decisions as signed webhooks; a CRM that hangs slows no call and loses nothing', async () => {
  const angry = await speech(ANGRY);
  const secret = 'crm-secret-for-tests-0123';
  const crm = new FakeCrm(secret);
  await crm.start();
  // First the CRM hangs on every request: the call must go on at full speed regardless.
  crm.respond = () => 'hang';
  const outboxDir = mkdtempSync(join(tmpdir(), 'callmood-outbox-'));
  const webhooks = {
    outboxDir,
    endpoints: [{ name: 'crm', url: crm.url, events: ['call-start', 'call-end', 'action', 'action-result'], secretEnv: 'CRM_SECRET', timeoutMs: 500, backoff: { baseMs: 50, maxMs: 200 } }],
  };
  const api = await startFakeTwilioApi();
  const options = { authToken: TOKEN, engine: 'in-process' as const, webhooks, control: { accountSid: ACCOUNT, apiBaseUrl: api.url } };
  const runtime = { logger: () => {}, processMetrics: false, env: { CRM_SECRET: secret }, policy: POLICY, actionHandlers: { note: () => {} } };
  const sid = 'CA' + 'e'.repeat(32);
  let server = createCallmood(options, runtime);
  const events: CallmoodEvent[] = [];
  server.on('event', (e) => events.push(e));
  try {
    let addr = await server.listen(0, '127.0.0.1');
    const got = await call(`ws://127.0.0.1:${addr.port}/media`, sid, angry, events);
    const emotions = got.filter((e) => e.type === 'emotion');
    // The whole call, its actions and their outcomes went through while the CRM had acknowledged nothing.
    assert.ok(emotions.length > 10 && got.some((e) => e.type === 'call-end'), 'the call ran to its end');
    assert.ok(got.some((e) => e.type === 'action-result' && e.action === 'escalate' && e.outcome === 'done'));
    const expected = got.filter((e) => ['call-start', 'call-end', 'action', 'action-result'].includes(e.type)).length;
    assert.ok(expected >= 4);
    assert.ok(crm.delivered().length === 0);
    // Stop the server while the CRM still hangs: the events stay in the outbox.
    await server.close();
    assert.ok(readdirSync(outboxDir).length > 0, 'the outbox holds the undelivered events');

    // The CRM recovers; a new server on the same outbox delivers everything, in order, signed.
    crm.respond = () => ({ status: 200 });
    server = createCallmood(options, runtime);
    addr = await server.listen(0, '127.0.0.1');
    await crm.until(() => new Set(crm.delivered().map((r) => r.id)).size >= expected, 15_000, 'every event delivered after the restart');
    const firsts: string[] = [];
    const seen = new Set<string>();
    for (const r of crm.delivered()) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      firsts.push(r.type);
    }
    assert.equal(firsts.length, expected);
    assert.equal(firsts[0], 'call-start');
    assert.equal(firsts.at(-1) === 'call-end' || firsts.at(-1) === 'action-result', true);
    assert.deepEqual(firsts.filter((t) => t !== 'action-result'), got.filter((e) => ['call-start', 'call-end', 'action'].includes(e.type)).map((e) => e.type), 'in order per call');
    assert.ok(crm.received.every((r) => r.signatureOk), 'every request is signed with the endpoint secret');
    // The CRM records a delivery when it answers; the sink counts it once it has read that answer.
    for (let i = 0; i < 200 && server.health().webhooks.crm.pending > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const health = server.health();
    assert.equal(health.webhooks.crm.pending, 0);
    assert.match((await server.metrics.text()).body, /callmood_webhook_delivered_total\{endpoint="crm"\} [1-9]/);
  } finally {
    await server.close();
    await crm.stop();
    await api.close();
  }
});
