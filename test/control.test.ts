/**
 * Call control against a real HTTP server on loopback standing in for Twilio's REST API, with the real `twilio`
 * client pointed at it.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { CallControl, escalationTwiml, goodbyeTwiml } from '../src/telephony/control.js';
import { CallmoodError } from '../src/errors.js';
import { startFakeTwilioApi, twilioError } from './helpers/twilio-api.js';

const ACCOUNT = 'AC' + '0123456789abcdef'.repeat(2);
const TOKEN = 'test-auth-token-123';
const CALL = 'CA' + 'f'.repeat(32);

test('end and redirect a call: the REST request carries the account, the auth and the TwiML', async () => {
  const api = await startFakeTwilioApi();
  try {
    const control = new CallControl(TOKEN, { apiBaseUrl: api.url }, {});
    const ended = await control.update(CALL, ACCOUNT, { status: 'completed' });
    assert.deepEqual(ended, { outcome: 'done', attempts: 1, detail: 'call completed' });
    const twiml = escalationTwiml({ dial: '+15005550006', say: 'Connecting you to a colleague.' });
    const moved = await control.update(CALL, ACCOUNT, { twiml });
    assert.equal(moved.outcome, 'done');
    assert.equal(api.requests.length, 2);
    const [r1, r2] = api.requests;
    assert.equal(r1.method, 'POST');
    assert.equal(r1.path, `/2010-04-01/Accounts/${ACCOUNT}/Calls/${CALL}.json`);
    assert.equal(r1.auth, `${ACCOUNT}:${TOKEN}`);
    assert.deepEqual(r1.form, { Status: 'completed' });
    assert.equal(r2.form.Twiml, twiml);
    assert.match(r2.form.Twiml, /<Say>Connecting you to a colleague\.<\/Say><Dial>\+15005550006<\/Dial>/);
  } finally {
    await api.close();
  }
});

test('20404 means the call is already over: an outcome, not a failure, and no retry', async () => {
  const api = await startFakeTwilioApi();
  try {
    api.script.push(twilioError(404, 20404, 'The requested resource was not found'));
    const r = await new CallControl(TOKEN, { apiBaseUrl: api.url }, {}).update(CALL, ACCOUNT, { status: 'completed' });
    assert.equal(r.outcome, 'call-over');
    assert.equal(r.attempts, 1);
    assert.match(r.detail, /already over \(Twilio 20404/);
    assert.equal(api.requests.length, 1);
  } finally {
    await api.close();
  }
});

test('429 and 5xx are retried with backoff; other 4xx fail at once; retries give up after maxAttempts', async () => {
  const api = await startFakeTwilioApi();
  try {
    const control = new CallControl(TOKEN, { apiBaseUrl: api.url, baseBackoffMs: 20, maxAttempts: 4 }, {});
    api.script.push(twilioError(429, 20429, 'Too Many Requests'), twilioError(503, 20500, 'Service Unavailable'));
    const t0 = performance.now();
    const ok = await control.update(CALL, ACCOUNT, { status: 'completed' });
    assert.deepEqual([ok.outcome, ok.attempts], ['done', 3]);
    // Backoff 20 ms then 40 ms, each ±50%: at least 30 ms in all.
    assert.ok(performance.now() - t0 >= 30, 'waited between attempts');

    api.requests.length = 0;
    api.script.push(twilioError(401, 20003, 'Authenticate'));
    const denied = await control.update(CALL, ACCOUNT, { status: 'completed' });
    assert.deepEqual([denied.outcome, denied.attempts], ['failed', 1]);
    assert.match(denied.detail, /CALLMOOD_ERR_CALL_CONTROL: HTTP 401, Twilio 20003: Authenticate/);

    api.requests.length = 0;
    for (let i = 0; i < 4; i++) api.script.push(twilioError(500, 20500, 'Internal Server Error'));
    const down = await control.update(CALL, ACCOUNT, { status: 'completed' });
    assert.deepEqual([down.outcome, down.attempts], ['failed', 4]);
    assert.equal(api.requests.length, 4);
    assert.match(down.detail, /gave up after 4 attempts; last: HTTP 500/);
  } finally {
    await api.close();
  }
});

test('a dead API (connection refused) is retried then reported; bad account SIDs are clear errors', async () => {
  const api = await startFakeTwilioApi();
  const url = api.url;
  await api.close();
  const r = await new CallControl(TOKEN, { apiBaseUrl: url, baseBackoffMs: 5, maxAttempts: 2 }, {}).update(CALL, ACCOUNT, { status: 'completed' });
  assert.deepEqual([r.outcome, r.attempts], ['failed', 2]);
  assert.match(r.detail, /network: .*ECONNREFUSED/);
  assert.throws(() => new CallControl(TOKEN, { accountSid: 'XY12' }, {}), (e: unknown) => e instanceof CallmoodError && /control\.accountSid is "XY12"; allowed: null or AC followed by 32 hex digits/.test(e.message));
  assert.throws(() => new CallControl('', {}, {}), /needs the Twilio auth token/);
  const none = await new CallControl(TOKEN, { apiBaseUrl: url }, {}).update(CALL, null, { status: 'completed' });
  assert.equal(none.outcome, 'failed');
  assert.match(none.detail, /no valid account SID/);
  // TWILIO_ACCOUNT_SID from the environment wins over the stream's account.
  assert.equal(new CallControl(TOKEN, {}, { TWILIO_ACCOUNT_SID: ACCOUNT }).options.accountSid, ACCOUNT);
});

test('TwiML for escalation and goodbye is escaped and well-formed', () => {
  assert.match(escalationTwiml({ dial: 'sip:agent@example.com' }), /<Dial><Sip>sip:agent@example\.com<\/Sip><\/Dial>/);
  assert.match(escalationTwiml({ dial: 'client:desk_1' }), /<Dial><Client>desk_1<\/Client><\/Dial>/);
  assert.match(escalationTwiml({ url: 'https://example.com/agent?x=1&y=2' }), /<Redirect method="POST">https:\/\/example\.com\/agent\?x=1&amp;y=2<\/Redirect>/);
  assert.equal(escalationTwiml({ twiml: '<Response><Hangup/></Response>' }), '<Response><Hangup/></Response>');
  assert.match(goodbyeTwiml('Thanks <3 & bye'), /<Say>Thanks &lt;3 &amp; bye<\/Say><Hangup\/>/);
});
