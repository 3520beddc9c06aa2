/**
 * Signatures: the URL Twilio signed is rebuilt right (publicUrl behind a proxy, else Host + X-Forwarded-Proto; the
 * ws(s) form for the media upgrade), signatures made by twilio.getExpectedTwilioSignature pass and altered or missing
 * ones fail, the dev switch warns on every request, and the feed token compares in constant time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import twilio from 'twilio';
import {
  SignatureGuard,
  bearerToken,
  publicBaseUrl,
  publicRequestUrl,
  tokenMatches,
  verifyTwilioSignature,
} from '../src/telephony/signature.js';

const TOKEN = 'test-auth-token-0123456789';

function req(url: string, headers: Record<string, string> = {}, encrypted = false): IncomingMessage {
  return { url, method: 'POST', headers, socket: { encrypted, remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
}

test('the public URL: publicUrl wins (proxies), else Host + X-Forwarded-Proto, else the socket', () => {
  const r = req('/twiml?x=1', { host: '10.0.0.5:8080', 'x-forwarded-proto': 'https' });
  assert.equal(publicRequestUrl(r, 'https://calls.example.com', 'http'), 'https://calls.example.com/twiml?x=1');
  assert.equal(publicRequestUrl(r, 'https://calls.example.com/', 'ws'), 'wss://calls.example.com/twiml?x=1');
  assert.equal(publicRequestUrl(r, 'https://example.com/callmood', 'http'), 'https://example.com/callmood/twiml?x=1');
  assert.equal(publicRequestUrl(r, null, 'http'), 'https://10.0.0.5:8080/twiml?x=1');
  assert.equal(publicRequestUrl(r, null, 'ws'), 'wss://10.0.0.5:8080/twiml?x=1');
  // A chain of proxies: the first hop is the one the client (Twilio) used.
  assert.equal(publicRequestUrl(req('/media', { host: 'h', 'x-forwarded-proto': 'https, http' }), null, 'ws'), 'wss://h/media');
  assert.equal(publicRequestUrl(req('/media', { host: 'h', 'x-forwarded-proto': 'wss' }), null, 'ws'), 'wss://h/media');
  assert.equal(publicRequestUrl(req('/media', { host: 'h' }), null, 'ws'), 'ws://h/media');
  assert.equal(publicRequestUrl(req('/media', { host: 'h' }, true), null, 'http'), 'https://h/media');
  assert.equal(publicRequestUrl(req('/media'), null, 'ws'), null, 'no Host and no publicUrl: unknown');
  assert.equal(publicBaseUrl(req('/twiml', { host: 'h:1', 'x-forwarded-proto': 'https' }), null), 'https://h:1');
  assert.equal(publicBaseUrl(req('/twiml', { host: 'h:1' }), 'https://calls.example.com/'), 'https://calls.example.com');
});

test('webhook signatures made by twilio.getExpectedTwilioSignature pass; altered, missing or mis-keyed ones fail', () => {
  const url = 'https://calls.example.com/twiml';
  const params = { CallSid: 'CA3c95a2a6bba5fde93a5dea01e388e8fb', From: '+15551230000', To: '+15559870000' };
  const sig = twilio.getExpectedTwilioSignature(TOKEN, url, params);
  const r = (s?: string) => req('/twiml', s ? { host: 'internal:8080', 'x-twilio-signature': s } : { host: 'internal:8080' });
  assert.deepEqual(verifyTwilioSignature(r(sig), TOKEN, url, params), { ok: true });
  // Twilio's servers sometimes sign with the default port spelled out; both forms are accepted.
  assert.deepEqual(verifyTwilioSignature(r(twilio.getExpectedTwilioSignature(TOKEN, 'https://calls.example.com:443/twiml', params)), TOKEN, url, params), { ok: true });
  const bad = [
    verifyTwilioSignature(r(sig), TOKEN, url, { ...params, From: '+15550000000' }),
    verifyTwilioSignature(r(sig), TOKEN, url, { ...params, Extra: '1' }),
    verifyTwilioSignature(r(sig), TOKEN, 'https://calls.example.com/twiml2', params),
    verifyTwilioSignature(r(sig), 'another-token-000000', url, params),
    verifyTwilioSignature(r(sig.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))), TOKEN, url, params),
    verifyTwilioSignature(r(), TOKEN, url, params),
    verifyTwilioSignature(r(sig), TOKEN, null, params),
  ];
  for (const b of bad) assert.equal(b.ok, false);
  assert.match((bad[5] as { reason: string }).reason, /no X-Twilio-Signature/);
  assert.match((bad[6] as { reason: string }).reason, /cannot be rebuilt/);
});

test('the media upgrade is signed over the wss URL with no parameters', () => {
  const logs: string[] = [];
  const guard = new SignatureGuard({ validateSignatures: true, authToken: TOKEN, publicUrl: 'https://calls.example.com' }, (_l, code) => logs.push(code));
  const sig = twilio.getExpectedTwilioSignature(TOKEN, 'wss://calls.example.com/media', {});
  assert.deepEqual(guard.check(req('/media', { host: 'x', 'x-twilio-signature': sig }), 'ws'), { ok: true });
  // The https form of the same URL is a different string: it must not pass for the upgrade.
  const httpsSig = twilio.getExpectedTwilioSignature(TOKEN, 'https://calls.example.com/media', {});
  assert.equal(guard.check(req('/media', { host: 'x', 'x-twilio-signature': httpsSig }), 'ws').ok, false);
  assert.equal(guard.check(req('/media', { host: 'x' }), 'ws').ok, false);
  assert.deepEqual(logs, [], 'the guard decides; the server logs refusals');
});

test('validateSignatures: false accepts anything and warns on every request', () => {
  const logs: Array<[string, string, string]> = [];
  const guard = new SignatureGuard({ validateSignatures: false, authToken: null, publicUrl: null }, (l, code, m) => logs.push([l, code, m]));
  assert.equal(guard.enabled, false);
  assert.deepEqual(guard.check(req('/twiml?secret=1', {}), 'http', {}), { ok: true });
  assert.deepEqual(guard.check(req('/media', {}), 'ws'), { ok: true });
  assert.equal(logs.length, 2);
  for (const [level, code, message] of logs) {
    assert.equal(level, 'warn');
    assert.equal(code, 'CALLMOOD_SIGNATURES_OFF');
    assert.match(message, /NOT checked/);
    assert.doesNotMatch(message, /secret/, 'query strings are not logged');
  }
});

test('bearer tokens: header or ?token=, compared in constant time', () => {
  const q = (s: string) => new URLSearchParams(s);
  assert.equal(bearerToken(req('/events', { authorization: 'Bearer abc.def' }), q('')), 'abc.def');
  assert.equal(bearerToken(req('/events', { authorization: 'bearer  abc ' }), q('')), 'abc');
  assert.equal(bearerToken(req('/events', { authorization: 'Basic abc' }), q('token=x')), null, 'a non-bearer Authorization is not mixed with ?token=');
  assert.equal(bearerToken(req('/events'), q('token=t%20k')), 't k');
  assert.equal(bearerToken(req('/events'), q('')), null);
  assert.equal(tokenMatches('feed-token-1', 'feed-token-1'), true);
  assert.equal(tokenMatches('feed-token-2', 'feed-token-1'), false);
  assert.equal(tokenMatches('feed-token-1-longer', 'feed-token-1'), false);
  assert.equal(tokenMatches('', 'feed-token-1'), false);
  assert.equal(tokenMatches(null, 'feed-token-1'), false);
});
