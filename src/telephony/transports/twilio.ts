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
import { startIdentityHint, type InboundMessage, type MediaTransport, type UpgradeCheck, type UpgradeContext } from './types.js';

const numeric = z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).transform(Number);

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
    mediaFormat: z.object({
      encoding: z.string(),
      sampleRate: z.union([z.number(), z.string()]).transform(Number),
      channels: z.union([z.number(), z.string()]).transform(Number),
    }),
  }),
});

const media = z.object({
  event: z.literal('media'),
  sequenceNumber: numeric.optional(),
  streamSid: z.string().optional(),
  media: z.object({
    track: z.enum(['inbound', 'outbound']),
    chunk: numeric.optional(),
    timestamp: numeric,
    payload: z.string(),
  }),
});

const dtmf = z.object({
  event: z.literal('dtmf'),
  sequenceNumber: numeric.optional(),
  streamSid: z.string().optional(),
  dtmf: z.object({ track: z.string().optional(), digit: z.string().regex(/^[0-9*#A-D]$/) }),
});

const mark = z.object({
  event: z.literal('mark'),
  sequenceNumber: numeric.optional(),
  streamSid: z.string().optional(),
  mark: z.object({ name: z.string() }),
});

const stop = z.object({
  event: z.literal('stop'),
  sequenceNumber: numeric.optional(),
  streamSid: z.string().optional(),
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

/** The `start` message. */
export type StartMessage = z.output<typeof start>;
/** A `media` message. */
export type MediaMessage = z.output<typeof media>;

/** The only media format Twilio streams carry, and the only one accepted. */
export const TWILIO_MEDIA_FORMAT = { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } as const;

const toCount = (v: unknown): number | undefined => {
  if (typeof v === 'string') return /^\d+$/.test(v) ? Number(v) : undefined;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
};

/**
 * `media` is 50 messages a second per track on every call: checked by hand, field by field, with the same rules as
 * the schema. Anything unusual returns null and goes through the schema, which then says exactly what is wrong.
 */
function fastMedia(raw: Record<string, unknown>): MediaMessage | null {
  const m = raw.media as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null) return null;
  if (m.track !== 'inbound' && m.track !== 'outbound') return null;
  if (typeof m.payload !== 'string') return null;
  const timestamp = toCount(m.timestamp);
  if (timestamp === undefined) return null;
  const chunk = m.chunk === undefined ? undefined : toCount(m.chunk);
  if (m.chunk !== undefined && chunk === undefined) return null;
  const sequenceNumber = raw.sequenceNumber === undefined ? undefined : toCount(raw.sequenceNumber);
  if (raw.sequenceNumber !== undefined && sequenceNumber === undefined) return null;
  if (raw.streamSid !== undefined && typeof raw.streamSid !== 'string') return null;
  return {
    event: 'media',
    sequenceNumber,
    streamSid: raw.streamSid as string | undefined,
    media: { track: m.track, chunk, timestamp, payload: m.payload },
  };
}

/** Parses one WebSocket text message. Throws PROTOCOL (bad JSON, unknown event, missing field) or MEDIA_FORMAT. */
export function parseTwilioMessage(text: string): TwilioMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CallmoodError(ErrorCodes.PROTOCOL, `message is not valid JSON (${text.length} bytes, starts ${JSON.stringify(text.slice(0, 40))})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CallmoodError(ErrorCodes.PROTOCOL, 'message is not a JSON object');
  }
  const event = (raw as { event?: unknown }).event;
  if (event === 'media') {
    const fast = fastMedia(raw as Record<string, unknown>);
    if (fast) return fast;
  }
  if (typeof event !== 'string' || !(event in schemas)) {
    throw new CallmoodError(
      ErrorCodes.PROTOCOL,
      `unknown event ${JSON.stringify(event)}; expected one of ${Object.keys(schemas).join(', ')}`,
    );
  }
  const parsed = schemas[event as keyof typeof schemas].safeParse(raw);
  if (!parsed.success) {
    const what = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new CallmoodError(ErrorCodes.PROTOCOL, `invalid '${event}' message: ${what}`);
  }
  const msg = parsed.data as TwilioMessage;
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
export function identityHint(text: string): { callSid: string; streamSid: string; customParameters: Record<string, string> } | null {
  return startIdentityHint(text, SID_HINT, (top, start) => ({ callSid: [start.callSid], streamSid: [top.streamSid, start.streamSid], parameters: start.customParameters }));
}

/** A validated Twilio message as a provider-neutral one. */
export function fromTwilio(msg: TwilioMessage): InboundMessage {
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

/** Twilio Media Streams as a MediaTransport. */
export const twilioTransport: MediaTransport = {
  name: 'twilio',
  label: 'Twilio Media Streams',
  parse: (text) => fromTwilio(parseTwilioMessage(text)),
  identityHint,
  checkUpgrade(req: IncomingMessage, ctx: UpgradeContext): UpgradeCheck {
    const sig = ctx.guard.check(req, 'ws');
    return sig.ok ? sig : { ok: false, reason: sig.reason, reply: 'invalid X-Twilio-Signature' };
  },
};
