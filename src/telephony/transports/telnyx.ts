/**
 * Telnyx media streaming over WebSockets as a MediaTransport. Shapes, as Telnyx documents them (sources in
 * test/fixtures/telnyx/README.md):
 * https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket (the AsyncAPI reference)
 * and https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming (the guide).
 *
 * - `connected` {version}; `start` {sequence_number, stream_id, start {user_id, call_control_id, call_session_id,
 *   from, to, custom_parameters, media_format {encoding, sample_rate, channels}}}; `media` {sequence_number,
 *   stream_id, media {track, chunk, timestamp, payload}}; `stop`; `dtmf` {dtmf {digit}}; `mark` {mark {name}};
 *   `error` {payload {code, title, detail}}. Numbers may arrive as strings.
 * - Identity: `call_control_id` is the call (events' `callSid`), `stream_id` the stream (`streamSid`).
 * - Media: PCMU (also named `audio/x-mulaw` in Telnyx's older examples) and PCMA at 8 kHz mono are decoded; any other
 *   codec (G722, OPUS, AMR-WB, L16) is refused with MEDIA_FORMAT.
 * - `start` does not list the tracks: `inbound` (Telnyx's default stream_track) opens at start, `outbound` with its
 *   first chunk.
 * - `media.timestamp`'s unit is not documented (the example gives "5" for chunk 2), so chunks are not placed by it:
 *   each follows its track's audio so far, and gaps in `sequence_number` are counted.
 * - The upgrade: Telnyx signs its HTTP webhooks (Ed25519, telnyx-signature-ed25519), not the media WebSocket. When the
 *   streaming command sets `stream_auth_token`, Telnyx sends it as the `x-telnyx-streaming-auth-token` header of the
 *   upgrade; a `token` query parameter in `stream_url` is taken as well. Either must equal `telnyxStreamToken`,
 *   compared in constant time.
 */
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../../errors.js';
import { tokenMatches } from '../signature.js';
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
  type MediaEncoding,
  type MediaKeys,
  type MediaTransport,
  type UpgradeCheck,
  type UpgradeContext,
} from './types.js';
const envelope = { sequence_number: numeric.optional(), stream_id: z.string().optional() };

const connected = z.object({ event: z.literal('connected'), version: z.string().optional() });

const start = z.object({
  event: z.literal('start'),
  sequence_number: numeric.optional(),
  stream_id: z.string().min(1),
  start: z.object({
    user_id: z.string().optional(),
    call_control_id: z.string().min(1),
    custom_parameters: z.record(z.string(), z.string()).optional(),
    media_format: mediaFormatBody('sample_rate'),
  }),
});

const media = z.object({ event: z.literal('media'), ...envelope, media: mediaBody(numeric.optional()) });

const dtmf = z.object({ event: z.literal('dtmf'), ...envelope, dtmf: z.object({ digit: dtmfDigit }) });
const mark = z.object({ event: z.literal('mark'), ...envelope, mark: z.object({ name: z.string() }) });
const stop = z.object({ event: z.literal('stop'), ...envelope });
const error = z.object({
  event: z.literal('error'),
  ...envelope,
  payload: z.object({ code: z.union([z.number(), z.string()]).optional(), title: z.string().optional(), detail: z.string().optional() }),
});

const schemas = { connected, start, media, dtmf, mark, stop, error } as const;

/** Telnyx's `media` envelope; its timestamp's unit is not documented, so it is checked and not used. */
const MEDIA_KEYS: MediaKeys = { sequence: 'sequence_number', stream: 'stream_id', timed: false };

/** Telnyx's encoding names callmood decodes. */
const ENCODINGS: Record<string, MediaEncoding> = { PCMU: 'mulaw', 'audio/x-mulaw': 'mulaw', PCMA: 'alaw' };

/** Parses one Telnyx text message into a provider-neutral one. Throws PROTOCOL or MEDIA_FORMAT. */
export function parseTelnyxMessage(text: string): InboundMessage {
  const raw = parseJsonObject(text);
  if (raw.event === 'media') {
    const fast = fastMediaChunk(raw, MEDIA_KEYS);
    if (fast) return fast;
  }
  const m = validateEvent(raw, schemas, 'Telnyx ');
  switch (m.event) {
    case 'connected':
      return { event: 'connected' };
    case 'start': {
      const f = m.start.media_format;
      const encoding = ENCODINGS[f.encoding];
      if (!encoding || f.sample_rate !== 8000 || f.channels !== 1) {
        throw new CallmoodError(
          ErrorCodes.MEDIA_FORMAT,
          `media format ${f.encoding} ${f.sample_rate} Hz × ${f.channels} is not supported; allowed: PCMU or PCMA at 8000 Hz × 1`,
        );
      }
      return {
        event: 'start',
        sequence: m.sequence_number,
        callSid: m.start.call_control_id,
        streamSid: m.stream_id,
        accountSid: m.start.user_id,
        tracks: ['inbound'],
        tracksAnnounced: false,
        customParameters: m.start.custom_parameters ?? {},
        mediaFormat: { encoding, sampleRate: 8000, channels: 1 },
      };
    }
    case 'media':
      return { event: 'media', sequence: m.sequence_number, track: m.media.track, payload: m.media.payload };
    case 'dtmf':
      return { event: 'dtmf', sequence: m.sequence_number, track: null, digit: m.dtmf.digit };
    case 'mark':
      return { event: 'mark', sequence: m.sequence_number, name: m.mark.name };
    case 'stop':
      return { event: 'stop', sequence: m.sequence_number };
    case 'error': {
      const p = m.payload;
      const said = [p.code, p.title, p.detail].filter((x) => x !== undefined && x !== '').join(' ');
      return { event: 'provider-error', sequence: m.sequence_number, message: `Telnyx reported a stream error: ${said || '(no detail)'}` };
    }
  }
}

// Telnyx call control ids look like v2:T02llQ…== or v3:MdI9…_IiE4pqg.
const ID_HINT = /^[A-Za-z0-9_:=+/-]{1,128}$/;

/** The identity a Telnyx `start` that failed validation claims (plausible ids only), or null. */
export function telnyxIdentityHint(text: string): IdentityHint | null {
  return startIdentityHint(text, ID_HINT, (top, start) => ({ callSid: [start.call_control_id], streamSid: [top.stream_id], parameters: start.custom_parameters }));
}

/** The header Telnyx sends `stream_auth_token` in. */
export const TELNYX_TOKEN_HEADER = 'x-telnyx-streaming-auth-token';

/**
 * Telnyx media streaming as a MediaTransport. `streamToken` is the shared secret the upgrade must carry; with
 * `validate` false (local development only) every upgrade is taken and that is logged each time.
 */
export function telnyxTransport(opts: { streamToken: string | null; validate: boolean }): MediaTransport {
  return {
    name: 'telnyx',
    label: 'Telnyx media streams',
    parse: parseTelnyxMessage,
    identityHint: telnyxIdentityHint,
    checkUpgrade(req: IncomingMessage, ctx: UpgradeContext): UpgradeCheck {
      if (!opts.validate) {
        ctx.log('warn', 'CALLMOOD_SIGNATURES_OFF', `Telnyx stream token NOT checked on ${req.url?.split('?')[0]} (validateSignatures: false; development only)`);
        return { ok: true };
      }
      const header = req.headers[TELNYX_TOKEN_HEADER];
      const given = (Array.isArray(header) ? header[0] : header) ?? new URL(req.url ?? '/', 'http://localhost').searchParams.get('token');
      if (!given) return { ok: false, reason: `no ${TELNYX_TOKEN_HEADER} header and no token query parameter`, reply: 'missing Telnyx stream token' };
      // resolveOptions refuses a Telnyx path without a token while validating, so `streamToken` is set here.
      if (!tokenMatches(given, opts.streamToken ?? '')) return { ok: false, reason: 'the Telnyx stream token does not match telnyxStreamToken', reply: 'invalid Telnyx stream token' };
      return { ok: true };
    },
  };
}
