import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import alawmulaw from 'alawmulaw';
import {
  ALAW_TO_FLOAT,
  MULAW_TO_FLOAT,
  MulawPayloadDecoder,
  decodeAlaw,
  decodeMulaw,
  decodePcm16le,
  encodeAlaw,
  encodeMulaw,
  encodePcm16le,
} from '../src/audio/codecs.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, rng } from './helpers.js';

const { mulaw, alaw } = alawmulaw;

test('G.711 tables equal alawmulaw for all 256 codes', () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const mu = mulaw.decode(bytes);
  const a = alaw.decode(bytes);
  for (let b = 0; b < 256; b++) {
    assert.equal(MULAW_TO_FLOAT[b], mu[b] / 32768, `μ-law ${b}`);
    assert.equal(ALAW_TO_FLOAT[b], a[b] / 32768, `A-law ${b}`);
  }
  assert.deepEqual(Array.from(decodeMulaw(bytes)), Array.from(mu, (v) => v / 32768));
  assert.deepEqual(Array.from(decodeAlaw(bytes)), Array.from(a, (v) => v / 32768));
});

test('encoding every 16-bit value matches alawmulaw and round-trips within the G.711 step', () => {
  const all = new Int16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i - 32768;
  const floats = Float32Array.from(all, (v) => v / 32768);
  assert.deepEqual(encodeMulaw(floats), mulaw.encode(all));
  assert.deepEqual(encodeAlaw(floats), alaw.encode(all));
  const back = decodeMulaw(encodeMulaw(floats));
  let worstRel = 0;
  for (let i = 0; i < all.length; i++) {
    const err = Math.abs(back[i] - floats[i]);
    // μ-law's step grows with the level: at most 1/16 of the magnitude above the linear segment, 2 LSB-ish below.
    worstRel = Math.max(worstRel, err / Math.max(Math.abs(floats[i]), 256 / 32768));
  }
  assert.ok(worstRel < 0.07, `worst relative μ-law round-trip error ${worstRel}`);
  // Out-of-range floats clip instead of wrapping around.
  assert.deepEqual(Array.from(encodeMulaw(Float32Array.of(2, -2))), [mulaw.encodeSample(32767) & 0xff, mulaw.encodeSample(-32768) & 0xff]);
});

test('a real Twilio media payload decodes to the μ-law bytes it carries', () => {
  const log = readFileSync(new URL('./fixtures/twilio/twilio-connect-basic.log', import.meta.url), 'utf8');
  const payload = /payload: '([^']+)'/.exec(log)?.[1];
  assert.ok(payload, 'fixture has a payload');
  const bytes = Buffer.from(payload, 'base64');
  assert.equal(bytes.length, 160, 'Twilio sends 160 bytes = 20 ms');
  const dec = new MulawPayloadDecoder();
  const first = dec.decode(payload);
  assert.equal(first.length, 160);
  assert.deepEqual(Array.from(first), Array.from(mulaw.decode(bytes), (v) => v / 32768));
  // The view is reused: no allocation per frame.
  const again = dec.decode(payload);
  assert.equal(again.buffer, first.buffer);
});

test('bad payloads are refused with a clear error', () => {
  const dec = new MulawPayloadDecoder(320);
  assertCallmoodError(() => dec.decode(''), ErrorCodes.INVALID_AUDIO, /empty/);
  assertCallmoodError(() => dec.decode('@@@@'), ErrorCodes.INVALID_AUDIO, /not valid base64/);
  assertCallmoodError(() => dec.decode('AAA'), ErrorCodes.INVALID_AUDIO, /not valid base64/);
  assertCallmoodError(() => dec.decode(Buffer.alloc(400).toString('base64')), ErrorCodes.INVALID_AUDIO, /exceeds the limit of \d+ .*320 bytes/);
  assertCallmoodError(() => dec.decode(42 as unknown as string), ErrorCodes.INVALID_AUDIO, /not a string/);
});

test('16-bit PCM: odd byte counts are refused, values round-trip', () => {
  assertCallmoodError(() => decodePcm16le(new Uint8Array(3)), ErrorCodes.INVALID_AUDIO, /even number of bytes, got 3/);
  const x = Float32Array.of(0, 0.5, -0.5, -1, 32767 / 32768);
  assert.deepEqual(Array.from(decodePcm16le(encodePcm16le(x))), Array.from(x));
});

test('the payload decoder agrees with Node base64 + the μ-law table on valid payloads, and refuses what the strict alphabet refuses', () => {
  const strict = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const r = rng(9);
  const dec = new MulawPayloadDecoder(400);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const odd = ['=', '-', '_', ' ', '\n', 'é', '\u0100', '\uffff', '!', '\0'];
  let valid = 0;
  let invalid = 0;
  for (let k = 0; k < 3000; k++) {
    let text: string;
    if (k % 2 === 0) {
      const bytes = Uint8Array.from({ length: 1 + Math.floor(r() * 300) }, () => Math.floor(r() * 256));
      text = Buffer.from(bytes).toString('base64');
    } else {
      const len = 4 * (1 + Math.floor(r() * 40));
      text = Array.from({ length: len }, () => alphabet[Math.floor(r() * 64)]).join('');
      // Damage it: a stray character somewhere, padding in the wrong place, or a length off by one.
      const what = Math.floor(r() * 4);
      const at = Math.floor(r() * len);
      if (what === 0) text = text.slice(0, at) + odd[Math.floor(r() * odd.length)] + text.slice(at + 1);
      else if (what === 1) text = text.slice(0, at) + '=' + text.slice(at + 1);
      else if (what === 2) text = text.slice(0, -1);
      else text = text.slice(0, -3) + '===';
    }
    if (strict.test(text)) {
      valid++;
      const expected = Array.from(Buffer.from(text, 'base64'), (b) => MULAW_TO_FLOAT[b]);
      assert.deepEqual(Array.from(dec.decode(text)), expected, text);
    } else {
      invalid++;
      assertCallmoodError(() => dec.decode(text), ErrorCodes.INVALID_AUDIO, /not valid base64/);
    }
  }
  assert.ok(valid > 1000 && invalid > 1000, `${valid} valid, ${invalid} invalid`);
});
