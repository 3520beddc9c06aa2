/**
 * Twilio Media Streams messages, as the wire carries them (every number arrives as a string). Parsing validates
 * each message once, at the edge, and returns typed data or throws a CallmoodError with a stable code saying what
 * was wrong. Shapes: https://www.twilio.com/docs/voice/media-streams/websocket-messages (and the real log in
 * test/fixtures/twilio/). `twilioTransport` is this protocol as a MediaTransport (./types.ts): the upgrade is
 * checked by its X-Twilio-Signature.
 */
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../../errors.js';
import {
  dtmfDigit,
  fastMediaChunk,
  mediaBody,
  mediaFormatBody,
  numeric,
  parseJsonObject,
  startIdentityHint,
  validateEvent,
  type IdentityHint,
  type InboundMessage,
  type MediaKeys,
  type MediaTransport,
  type UpgradeCheck,
  type UpgradeContext,
} from './types.js';

const connected = z.object({ event: z.literal('connected'), protocol: z.string().optional(), version: z.string().optional() });

const start = z.object({
  event: z.literal('start'),
  sequenceNumber: numeric.optional(),
  streamSid: z.string().min(1),
  start: z.object({
    streamSid: z.string().min(1).optional(),
    accountSid: z.string().optional(),
    callSid: z.string().min(1),
    tracks: z.array(z.enum(['inbound', 'outbound'])).min(1),
    customParameters: z.record(z.string(), z.string()).optional(),
    mediaFormat: mediaFormatBody('sampleRate'),
  }),
});

/** What every message but `connected` and `start` may carry. */
const envelope = { sequenceNumber: numeric.optional(), streamSid: z.string().optional() };

const media = z.object({ event: z.literal('media'), ...envelope, media: mediaBody(numeric) });
const dtmf = z.object({ event: z.literal('dtmf'), ...envelope, dtmf: z.object({ track: z.string().optional(), digit: dtmfDigit }) });
const mark = z.object({ event: z.literal('mark'), ...envelope, mark: z.object({ name: z.string() }) });
const stop = z.object({
  event: z.literal('stop'),
  ...envelope,
  stop: z.object({ accountSid: z.string().optional(), callSid: z.string().optional() }).optional(),
});

const schemas = { connected, start, media, dtmf, mark, stop } as const;

/** One inbound message, validated. */
export type TwilioMessage =
  | z.output<typeof connected>
  | z.output<typeof start>
  | z.output<typeof media>
  | z.output<typeof dtmf>
  | z.output<typeof mark>
  | z.output<typeof stop>;

/** The only media format Twilio streams carry, and the only one accepted. */
const TWILIO_MEDIA_FORMAT = { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } as const;

/** Parses one WebSocket text message. Throws PROTOCOL (bad JSON, unknown event, missing field) or MEDIA_FORMAT. */
export function parseTwilioMessage(text: string): TwilioMessage {
  return validateTwilio(parseJsonObject(text));
}

function validateTwilio(raw: Record<string, unknown>): TwilioMessage {
  const msg = validateEvent(raw, schemas) as TwilioMessage;
  if (msg.event === 'start') {
    const f = msg.start.mediaFormat;
    if (f.encoding !== TWILIO_MEDIA_FORMAT.encoding || f.sampleRate !== 8000 || f.channels !== 1) {
      throw new CallmoodError(
        ErrorCodes.MEDIA_FORMAT,
        `media format ${f.encoding} ${f.sampleRate} Hz × ${f.channels} is not supported; allowed: audio/x-mulaw 8000 Hz × 1`,
      );
    }
  }
  return msg;
}

const SID_HINT = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The call identity a message claims, read leniently from text that failed validation (a `start` with a bad media
 * format or a missing field): its error events then name the call instead of an empty callSid. Only plausible SIDs
 * are taken (letters, digits, `_`, `-`, at most 64), and string custom parameters. Null when nothing is known.
 */
function identityHint(text: string): IdentityHint | null {
  return startIdentityHint(text, SID_HINT, (top, start) => ({ callSid: [start.callSid], streamSid: [top.streamSid, start.streamSid], parameters: start.customParameters }));
}

/** A validated Twilio message as a provider-neutral one. */
function fromTwilio(msg: TwilioMessage): InboundMessage {
  switch (msg.event) {
    case 'connected':
      return { event: 'connected' };
    case 'start': {
      const s = msg.start;
      return {
        event: 'start',
        sequence: msg.sequenceNumber,
        callSid: s.callSid,
        streamSid: msg.streamSid,
        accountSid: s.accountSid,
        tracks: s.tracks,
        tracksAnnounced: true,
        customParameters: s.customParameters ?? {},
        mediaFormat: { encoding: 'mulaw', sampleRate: 8000, channels: 1 },
      };
    }
    case 'media':
      return { event: 'media', sequence: msg.sequenceNumber, track: msg.media.track, timestampMs: msg.media.timestamp, payload: msg.media.payload };
    case 'dtmf': {
      const t = msg.dtmf.track;
      return { event: 'dtmf', sequence: msg.sequenceNumber, track: t?.startsWith('outbound') ? 'outbound' : t ? 'inbound' : null, digit: msg.dtmf.digit };
    }
    case 'mark':
      return { event: 'mark', sequence: msg.sequenceNumber, name: msg.mark.name };
    case 'stop':
      return { event: 'stop', sequence: msg.sequenceNumber };
  }
}

const MEDIA_KEYS: MediaKeys = { sequence: 'sequenceNumber', stream: 'streamSid', timed: true };

/** Twilio Media Streams as a MediaTransport. */
export const twilioTransport: MediaTransport = {
  name: 'twilio',
  label: 'Twilio Media Streams',
  parse(text) {
    const raw = parseJsonObject(text);
    return (raw.event === 'media' && fastMediaChunk(raw, MEDIA_KEYS)) || fromTwilio(validateTwilio(raw));
  },
  identityHint,
  checkUpgrade(req: IncomingMessage, ctx: UpgradeContext): UpgradeCheck {
    const sig = ctx.guard.check(req, 'ws');
    return sig.ok ? sig : { ok: false, reason: sig.reason, reply: 'invalid X-Twilio-Signature' };
  },
};
