/**
 * The seam between a telephony provider's media-stream WebSocket and callmood: a `MediaTransport` turns the
 * provider's text messages into provider-neutral `InboundMessage`s and says whether an upgrade may become a stream.
 * MediaSession (../session.ts) runs the same state machine (tracks, gap fill, sequence checks, errors) for every
 * provider. callmood sends nothing back on a media stream today, so there are no outbound formatters: a provider
 * gains one when a feature first sends something (e.g. a `clear` on barge-in).
 */
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../../errors.js';
import type { Track } from '../../stream/events.js';
import type { Logger } from '../../util/log.js';
import type { SignatureGuard } from '../signature.js';

/** The G.711 companding of a stream's payloads; every accepted stream is 8 kHz mono. */
export type MediaEncoding = 'mulaw' | 'alaw';

/** A stream's announced media format, as accepted (a transport refuses others with MEDIA_FORMAT). */
export interface MediaFormat {
  encoding: MediaEncoding;
  sampleRate: 8000;
  channels: 1;
}

/** The provider's first message: the stream is open. */
export interface ConnectedMessage {
  event: 'connected';
}

/** The stream starts: the call's identity and its media format. */
export interface StreamStart {
  event: 'start';
  sequence?: number;
  /** The call (Twilio CallSid; Telnyx call_control_id): every event's `callSid`. */
  callSid: string;
  /** The stream (Twilio StreamSid; Telnyx stream_id): every event's `streamSid`. */
  streamSid: string;
  accountSid?: string;
  /** Tracks the stream carries. */
  tracks: Track[];
  /**
   * False when the provider's start does not list its tracks (Telnyx): `tracks` is then what is assumed at start,
   * and a media message on another track opens that track instead of being refused.
   */
  tracksAnnounced: boolean;
  customParameters: Record<string, string>;
  mediaFormat: MediaFormat;
}

/** One chunk of audio on one track. */
export interface MediaChunk {
  event: 'media';
  sequence?: number;
  track: Track;
  /**
   * Where the chunk starts in call time, ms; absent when the provider gives no timestamp in ms, and the chunk then
   * follows the track's audio so far.
   */
  timestampMs?: number;
  /** Base64 G.711 bytes in the stream's encoding. */
  payload: string;
}

export interface MarkMessage {
  event: 'mark';
  sequence?: number;
  name: string;
}

export interface DtmfMessage {
  event: 'dtmf';
  sequence?: number;
  /** The track the digit came on, null when the provider does not say. */
  track: Track | null;
  digit: string;
}

export interface StopMessage {
  event: 'stop';
  sequence?: number;
}

/** The provider reports a failure on its side of the stream; the stream goes on. */
export interface ProviderErrorMessage {
  event: 'provider-error';
  sequence?: number;
  /** What the provider said, as one line (its code, title and detail). */
  message: string;
}

/** One inbound message, validated and provider-neutral. */
export type InboundMessage = ConnectedMessage | StreamStart | MediaChunk | MarkMessage | DtmfMessage | StopMessage | ProviderErrorMessage;

/** What an upgrade check may use from the server. */
export interface UpgradeContext {
  /** The Twilio signature policy (validateSignatures, auth token, publicUrl). */
  guard: SignatureGuard;
  log: Logger;
}

/** Whether an upgrade may open a stream; `reply` is the HTTP 403 text for a refusal, `reason` the log line. */
export type UpgradeCheck = { ok: true } | { ok: false; reason: string; reply: string };

/** The call identity a message that failed validation claims, for its error events (see `identityHint`). */
export interface IdentityHint {
  callSid: string;
  streamSid: string;
  customParameters: Record<string, string>;
}

/**
 * The identity a `start` message claims, read leniently from text that failed validation (a bad media format, a
 * missing field), so its error events name the call. Only ids matching `idPattern` are taken, and string custom
 * parameters (names ≤ 128, values ≤ 1024 characters). `pick` says where the provider puts them. Null when nothing is
 * known or the text is not a `start`.
 */
export function startIdentityHint(
  text: string,
  idPattern: RegExp,
  pick: (top: Record<string, unknown>, start: Record<string, unknown>) => { callSid: unknown[]; streamSid: unknown[]; parameters: unknown },
): IdentityHint | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const top = raw as Record<string, unknown>;
  if (top.event !== 'start') return null;
  const start = typeof top.start === 'object' && top.start !== null ? (top.start as Record<string, unknown>) : {};
  const p = pick(top, start);
  const first = (vs: unknown[]) => (vs.find((v) => typeof v === 'string' && idPattern.test(v)) as string | undefined) ?? '';
  const callSid = first(p.callSid);
  const streamSid = first(p.streamSid);
  if (!callSid && !streamSid) return null;
  const customParameters: Record<string, string> = {};
  const cp = p.parameters;
  if (typeof cp === 'object' && cp !== null && !Array.isArray(cp)) {
    for (const [k, v] of Object.entries(cp)) if (typeof v === 'string' && k.length <= 128 && v.length <= 1024) customParameters[k] = v;
  }
  return { callSid, streamSid, customParameters };
}

/** A count as the providers send it: digits in a string, or a non-negative integer. `toCount` is the same rule by hand. */
export const numeric = z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).transform(Number);

/** A number as the providers send it, in a string or not (a media format's rate and channels). */
export const numberLike = z.union([z.number(), z.string()]).transform(Number);

/** A DTMF digit, as both providers send it. */
export const dtmfDigit = z.string().regex(/^[0-9*#A-D]$/);

/** A `media` message's inner object, the same for both providers; whether `timestamp` is required is theirs. */
export function mediaBody<T extends z.ZodType>(timestamp: T) {
  return z.object({ track: z.enum(['inbound', 'outbound']), chunk: numeric.optional(), timestamp, payload: z.string() });
}

/** A media format's three fields under the provider's names for them. */
export function mediaFormatBody<R extends string>(rate: R) {
  return z.object({ encoding: z.string(), [rate]: numberLike, channels: numberLike } as { encoding: z.ZodString; channels: typeof numberLike } & Record<R, typeof numberLike>);
}

/** `numeric`'s rule without zod, for the media fast path: the count, or undefined when `v` is not one. */
function toCount(v: unknown): number | undefined {
  if (typeof v === 'string') return /^\d+$/.test(v) ? Number(v) : undefined;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** Parses one text message as a JSON object. Throws PROTOCOL (bad JSON, not an object). */
export function parseJsonObject(text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CallmoodError(ErrorCodes.PROTOCOL, `message is not valid JSON (${text.length} bytes, starts ${JSON.stringify(text.slice(0, 40))})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CallmoodError(ErrorCodes.PROTOCOL, 'message is not a JSON object');
  return raw as Record<string, unknown>;
}

/**
 * Validates a parsed message by the schema of its `event`. Throws PROTOCOL naming an unknown event and the ones
 * allowed, or each field that is wrong (`invalid ${what}'event' message: path: issue`).
 */
export function validateEvent<S extends Record<string, z.ZodTypeAny>>(raw: Record<string, unknown>, schemas: S, what = ''): z.output<S[keyof S]> {
  const event = raw.event;
  if (typeof event !== 'string' || !(event in schemas)) {
    throw new CallmoodError(ErrorCodes.PROTOCOL, `unknown event ${JSON.stringify(event)}; expected one of ${Object.keys(schemas).join(', ')}`);
  }
  const parsed = schemas[event as keyof S].safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new CallmoodError(ErrorCodes.PROTOCOL, `invalid ${what}'${event}' message: ${issues}`);
  }
  return parsed.data;
}

/** Where a provider puts a `media` message's envelope fields, and whether its timestamp is in ms and required. */
export interface MediaKeys {
  sequence: string;
  stream: string;
  /** True: `media.timestamp` is required and is the chunk's `timestampMs`; false: it is optional and not used. */
  timed: boolean;
}

/**
 * `media` is 50 messages a second per track on every call: checked by hand, field by field, with the rules of the
 * provider's schema (track inbound|outbound, payload a string, counts as `numeric`, the stream id a string), and
 * turned straight into a MediaChunk. Anything unusual returns null and goes through the schema, which then says
 * exactly what is wrong.
 */
export function fastMediaChunk(raw: Record<string, unknown>, keys: MediaKeys): MediaChunk | null {
  const m = raw.media as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null) return null;
  const track = m.track;
  if (track !== 'inbound' && track !== 'outbound') return null;
  const payload = m.payload;
  if (typeof payload !== 'string') return null;
  const timestamp = m.timestamp === undefined ? undefined : toCount(m.timestamp);
  if (timestamp === undefined && (keys.timed || m.timestamp !== undefined)) return null;
  if (m.chunk !== undefined && toCount(m.chunk) === undefined) return null;
  const seq = raw[keys.sequence];
  const sequence = seq === undefined ? undefined : toCount(seq);
  if (seq !== undefined && sequence === undefined) return null;
  const stream = raw[keys.stream];
  if (stream !== undefined && typeof stream !== 'string') return null;
  return keys.timed ? { event: 'media', sequence, track, timestampMs: timestamp, payload } : { event: 'media', sequence, track, payload };
}

/** One provider's media-stream protocol. */
export interface MediaTransport {
  /** Short name for logs and options, e.g. `twilio`. */
  readonly name: string;
  /** The protocol as people know it, for messages, e.g. `Twilio Media Streams`. */
  readonly label: string;
  /** Parses one text message. Throws CallmoodError PROTOCOL (saying what was wrong and what is allowed) or MEDIA_FORMAT. */
  parse(text: string): InboundMessage;
  /** The identity a `start` that failed validation claims, read leniently; null when nothing plausible is there. */
  identityHint(text: string): IdentityHint | null;
  /** Checks a WebSocket upgrade on this provider's media path. */
  checkUpgrade(req: IncomingMessage, ctx: UpgradeContext): UpgradeCheck;
}
