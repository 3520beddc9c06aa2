import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTwilioMessage } from '../src/telephony/transports/twilio.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError } from './helpers.js';

const media = (over: Record<string, unknown> = {}, mediaOver: Record<string, unknown> = {}) =>
  JSON.stringify({
    event: 'media',
    sequenceNumber: '2',
    streamSid: 'MZ1',
    media: { track: 'inbound', chunk: '1', timestamp: '52', payload: 'AAAA', ...mediaOver },
    ...over,
  });

test('media messages parse to numbers, as the schema would', () => {
  assert.deepEqual(parseTwilioMessage(media()), {
    event: 'media',
    sequenceNumber: 2,
    streamSid: 'MZ1',
    media: { track: 'inbound', chunk: 1, timestamp: 52, payload: 'AAAA' },
  });
  // Numbers instead of strings, and optional fields left out, are accepted too.
  const m = parseTwilioMessage(JSON.stringify({ event: 'media', media: { track: 'outbound', timestamp: 0, payload: '' } }));
  assert.equal(m.event, 'media');
  if (m.event === 'media') assert.equal(m.media.timestamp, 0);
});

test('malformed media messages get the schema error naming the field', () => {
  assertCallmoodError(() => parseTwilioMessage(media({}, { timestamp: 'soon' })), ErrorCodes.PROTOCOL, /invalid 'media' message: media.timestamp/);
  assertCallmoodError(() => parseTwilioMessage(media({}, { track: 'both' })), ErrorCodes.PROTOCOL, /media.track/);
  assertCallmoodError(() => parseTwilioMessage(media({}, { payload: 7 })), ErrorCodes.PROTOCOL, /media.payload/);
  assertCallmoodError(() => parseTwilioMessage(media({ sequenceNumber: '-1' })), ErrorCodes.PROTOCOL, /sequenceNumber/);
  assertCallmoodError(() => parseTwilioMessage(JSON.stringify({ event: 'media' })), ErrorCodes.PROTOCOL, /media/);
});

test('other events, bad JSON and wrong media formats', () => {
  assertCallmoodError(() => parseTwilioMessage('{not json'), ErrorCodes.PROTOCOL, /not valid JSON/);
  assertCallmoodError(() => parseTwilioMessage('[1]'), ErrorCodes.PROTOCOL, /not a JSON object/);
  assertCallmoodError(() => parseTwilioMessage('{"event":"hello"}'), ErrorCodes.PROTOCOL, /unknown event "hello"; expected one of connected, start, media/);
  const start = (fmt: object) =>
    JSON.stringify({ event: 'start', streamSid: 'MZ1', start: { callSid: 'CA1', tracks: ['inbound'], mediaFormat: fmt } });
  assert.equal(parseTwilioMessage(start({ encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 })).event, 'start');
  assertCallmoodError(() => parseTwilioMessage(start({ encoding: 'audio/x-alaw', sampleRate: 8000, channels: 1 })), ErrorCodes.MEDIA_FORMAT, /allowed: audio\/x-mulaw 8000 Hz × 1/);
  assertCallmoodError(() => parseTwilioMessage(start({ encoding: 'audio/x-mulaw', sampleRate: 16000, channels: 1 })), ErrorCodes.MEDIA_FORMAT, /16000 Hz/);
});
