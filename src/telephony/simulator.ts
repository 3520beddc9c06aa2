/**
 * A client that speaks as Twilio does: it streams a recording over a Media Streams WebSocket with the same
 * messages Twilio sends (connected, start, 160-byte μ-law media every 20 ms per track, stop), signs the upgrade
 * when given the auth token, and can follow the call's events on the server's event feed. `callmood simulate` and
 * `callmood bench calls` use it, so anyone can try callmood without a phone. With `provider: 'telnyx'` it sends
 * Telnyx's documented media-streaming messages instead (see transports/telnyx.ts), PCMU unless told PCMA, with the
 * stream token in the x-telnyx-streaming-auth-token header as Telnyx sends its `stream_auth_token`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import twilio from 'twilio';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { encodeAlaw, encodeMulaw, TWILIO_FRAME_BYTES } from '../audio/codecs.js';
import { TELNYX_TOKEN_HEADER } from './transports/telnyx.js';
import type { CallmoodEvent, Track } from '../stream/events.js';

/** One simulated call. */
export interface SimulatedCall {
  /** 8 kHz audio per track; `outbound` only for `<Start><Stream track="both_tracks">`-style calls. */
  audio: Partial<Record<Track, Float32Array>>;
  /**
   * The same audio already encoded by `encodePayloads` (base64 μ-law, 20 ms each), taking the place of `audio` for
   * its tracks: many calls of one recording then share one encoding.
   */
  payloads?: Partial<Record<Track, readonly string[]>>;
  callSid?: string;
  streamSid?: string;
  accountSid?: string;
  customParameters?: Record<string, string>;
  /** Key presses: each `digit` (0-9, *, #, A-D) is sent as the provider's `dtmf` message at `atMs` of call time (in order). */
  dtmf?: ReadonlyArray<{ atMs: number; digit: string }>;
}

/** How to send it. */
export interface SimulateOptions {
  /** The media WebSocket URL, e.g. ws://127.0.0.1:8080/media. */
  url: string;
  /** `realtime`: one 20 ms chunk per track every 20 ms; `fast`: as fast as the socket takes them. */
  pace: 'realtime' | 'fast';
  /** Twilio auth token: the upgrade then carries a valid X-Twilio-Signature. */
  authToken?: string;
  /** The URL Twilio would sign (the public wss URL); default `url`. */
  signedUrl?: string;
  /** Called with the wall-clock time (performance.now()) at which each 20 ms chunk's audio was sent. */
  onChunk?: (chunkIndex: number, sentAt: number, scheduledAt: number) => void;
  /** Stop after this signal aborts (the socket is closed without `stop`). */
  signal?: AbortSignal;
  /** Whose messages to send: `twilio` (default) or `telnyx`. */
  provider?: 'twilio' | 'telnyx';
  /** Telnyx: the stream token (the server's telnyxStreamToken), sent as Telnyx sends `stream_auth_token`. */
  streamToken?: string;
  /** Telnyx: the codec announced and sent, PCMU (μ-law, default) or PCMA (A-law). */
  codec?: 'PCMU' | 'PCMA';
}

/** What was sent. */
export interface SimulateResult {
  callSid: string;
  streamSid: string;
  chunks: number;
  messages: number;
  /** Largest delay of a chunk behind its schedule, ms (realtime pace only): how well the sender kept up. */
  maxLagMs: number;
}

const sid = (prefix: string) => prefix + randomBytes(16).toString('hex');

// What the connection errors a user meets mean, for one-line messages.
const NET_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be resolved now',
  ETIMEDOUT: 'no answer (timed out)',
  ECONNRESET: 'the connection was reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
};

/**
 * Opens `ws` or rejects with a one-line CallmoodError: an HTTP answer to the upgrade names its status and the server's
 * reason (403: the signature or token; 404: the path), a network error its errno and what it means.
 */
function opened(ws: WebSocket, what: string, url: string, hints: { 401?: string; 403?: string } = {}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body = (body + c).slice(0, 200)));
      const done = () => {
        req.destroy();
        const status = res.statusCode ?? 0;
        const reason = body.trim().split('\n')[0];
        const hint = status === 401 ? hints[401] : status === 403 ? hints[403] : status === 404 ? `no such path on the server: check ${url}` : status === 503 ? 'the server is full, loading its model or shutting down' : undefined;
        const code = status === 401 || status === 403 ? ErrorCodes.SIGNATURE : status === 404 ? ErrorCodes.INVALID_OPTION : ErrorCodes.PROTOCOL;
        reject(new CallmoodError(code, `${what} refused: HTTP ${status}${reason ? ` ${reason}` : ''}${hint ? ` (${hint})` : ''}`, { permanent: status !== 503 }));
      };
      res.on('end', done);
      res.on('error', done);
    });
    ws.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      const text = NET_TEXT[code] ? `${code} (${NET_TEXT[code]})` : err.message;
      reject(new CallmoodError(ErrorCodes.INVALID_OPTION, `cannot connect to ${url}: ${text}; is callmood serve running there?`, { cause: err, permanent: false }));
    });
  });
}

/** Signs a WebSocket upgrade as Twilio does: HMAC-SHA1 of the URL with no parameters, keyed by the auth token. */
export function signUpgrade(authToken: string, url: string): string {
  return twilio.getExpectedTwilioSignature(authToken, url, {});
}

/**
 * Audio as Twilio's media payloads: 160-byte μ-law chunks (20 ms), base64; a short last chunk padded with silence.
 * `alaw`: A-law bytes instead (Telnyx PCMA).
 */
export function encodePayloads(audio: Float32Array, alaw = false): string[] {
  const bytes = alaw ? encodeAlaw(audio) : encodeMulaw(audio);
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += TWILIO_FRAME_BYTES) {
    // A short last chunk is padded with silence (μ-law 0xff, A-law 0xd5).
    const chunk = Buffer.alloc(TWILIO_FRAME_BYTES, alaw ? 0xd5 : 0xff);
    chunk.set(bytes.subarray(i, i + TWILIO_FRAME_BYTES));
    out.push(chunk.toString('base64'));
  }
  return out;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A `media` message as text, byte for byte what JSON.stringify gives for Twilio's field order (event,
 * sequenceNumber, media {track, chunk, timestamp, payload}, streamSid), built by concatenation: at hundreds of
 * simulated calls the clients share the server's cores, and stringifying an object per message was a tenth of
 * their time. `quotedSid` is JSON.stringify(streamSid); a payload that is not plain base64 is escaped.
 */
export function mediaMessageText(seq: number, track: Track, k: number, payload: string, quotedSid: string): string {
  const p = BASE64.test(payload) ? `"${payload}"` : JSON.stringify(payload);
  return `{"event":"media","sequenceNumber":"${seq}","media":{"track":"${track}","chunk":"${k + 1}","timestamp":"${k * 20}","payload":${p}},"streamSid":${quotedSid}}`;
}

/**
 * A Telnyx `media` message as text (its documented field order: event, sequence_number, media {track, chunk,
 * timestamp, payload}, stream_id); `quotedId` is JSON.stringify(stream_id).
 */
export function telnyxMediaText(seq: number, track: Track, k: number, payload: string, quotedId: string): string {
  const p = BASE64.test(payload) ? `"${payload}"` : JSON.stringify(payload);
  return `{"event":"media","sequence_number":"${seq}","media":{"track":"${track}","chunk":"${k + 1}","timestamp":"${k * 20}","payload":${p}},"stream_id":${quotedId}}`;
}

/** One provider's messages, as the simulator sends them. */
interface Wire {
  headers: Record<string, string>;
  refusedHint: string;
  connected(): object;
  start(seq: number, tracks: Track[]): object;
  media(seq: number, track: Track, k: number, payload: string): string;
  dtmf(seq: number, digit: string): object;
  stop(seq: number): object;
}

function twilioWire(call: SimulatedCall, opts: SimulateOptions, callSid: string, streamSid: string): Wire {
  const quotedSid = JSON.stringify(streamSid);
  const accountSid = call.accountSid ?? 'AC' + '0'.repeat(32);
  const headers: Record<string, string> = {};
  if (opts.authToken) headers['X-Twilio-Signature'] = signUpgrade(opts.authToken, opts.signedUrl ?? opts.url);
  return {
    headers,
    refusedHint: opts.authToken ? 'the X-Twilio-Signature did not check out: is the auth token the server\'s?' : 'no X-Twilio-Signature: give the Twilio auth token',
    connected: () => ({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
    start: (seq, tracks) => ({
      event: 'start',
      sequenceNumber: String(seq),
      start: {
        accountSid,
        streamSid,
        callSid,
        tracks,
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        customParameters: call.customParameters ?? {},
      },
      streamSid,
    }),
    media: (seq, track, k, payload) => mediaMessageText(seq, track, k, payload, quotedSid),
    dtmf: (seq, digit) => ({ event: 'dtmf', streamSid, sequenceNumber: String(seq), dtmf: { track: 'inbound_track', digit } }),
    stop: (seq) => ({ event: 'stop', sequenceNumber: String(seq), stop: { accountSid, callSid }, streamSid }),
  };
}

function telnyxWire(call: SimulatedCall, opts: SimulateOptions, callControlId: string, streamId: string): Wire {
  const quotedId = JSON.stringify(streamId);
  const userId = call.accountSid ?? randomUUID();
  const headers: Record<string, string> = {};
  if (opts.streamToken) headers[TELNYX_TOKEN_HEADER] = opts.streamToken;
  return {
    headers,
    refusedHint: opts.streamToken ? 'the stream token is not the server\'s telnyxStreamToken' : 'no stream token: give the server\'s telnyxStreamToken',
    connected: () => ({ event: 'connected', version: '1.0.0' }),
    start: (seq) => ({
      event: 'start',
      sequence_number: String(seq),
      start: {
        user_id: userId,
        call_control_id: callControlId,
        call_session_id: randomUUID(),
        from: '+13122010094',
        to: '+13122123456',
        custom_parameters: call.customParameters ?? {},
        media_format: { encoding: opts.codec ?? 'PCMU', sample_rate: 8000, channels: 1 },
      },
      stream_id: streamId,
    }),
    media: (seq, track, k, payload) => telnyxMediaText(seq, track, k, payload, quotedId),
    dtmf: (seq, digit) => ({ event: 'dtmf', stream_id: streamId, occurred_at: new Date().toISOString(), sequence_number: String(seq), dtmf: { digit } }),
    stop: (seq) => ({ event: 'stop', sequence_number: String(seq), stop: { user_id: userId, call_control_id: callControlId }, stream_id: streamId }),
  };
}

/** Streams one call; resolves when `stop` has been sent and the server closed the socket (or after 5 s). */
export async function simulateCall(call: SimulatedCall, opts: SimulateOptions): Promise<SimulateResult> {
  const tracks = (['inbound', 'outbound'] as Track[]).filter((t) => call.payloads?.[t] || call.audio[t]);
  if (tracks.length === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, 'a simulated call needs audio on at least one track');
  const telnyx = opts.provider === 'telnyx';
  // Telnyx ids: a call_control_id like v3:…, a UUID stream_id.
  const callSid = call.callSid ?? (telnyx ? `v3:${randomBytes(30).toString('base64url')}` : sid('CA'));
  const streamSid = call.streamSid ?? (telnyx ? randomUUID() : sid('MZ'));
  const alaw = telnyx && opts.codec === 'PCMA';
  const chunks = Object.fromEntries(tracks.map((t) => [t, call.payloads?.[t] ?? encodePayloads(call.audio[t]!, alaw)])) as Record<Track, readonly string[]>;
  const total = Math.max(...tracks.map((t) => chunks[t].length));
  const wire = telnyx ? telnyxWire(call, opts, callSid, streamSid) : twilioWire(call, opts, callSid, streamSid);
  // Frames are masked with a random key per frame, as Twilio (any WebSocket client, RFC 6455 §5.3) masks them: the
  // server's cost of unmasking is part of what a load test measures (ws skips unmasking for an all-zero key).
  const ws = new WebSocket(opts.url, { headers: wire.headers });
  ws.on('error', () => {}); // after the open, a reset only ends the call early: the close below settles it
  await opened(ws, 'media stream', opts.url, { 403: wire.refusedHint });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  let seq = 0;
  let messages = 0;
  const send = (m: object) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(m));
    messages++;
  };
  send(wire.connected());
  send(wire.start(++seq, tracks));
  const t0 = performance.now();
  let maxLagMs = 0;
  let sent = 0;
  const keys = [...(call.dtmf ?? [])].sort((a, b) => a.atMs - b.atMs);
  let nextKey = 0;
  for (let k = 0; k < total; k++) {
    if (opts.signal?.aborted || ws.readyState !== WebSocket.OPEN) break;
    const scheduled = t0 + k * 20;
    if (opts.pace === 'realtime') {
      const wait = scheduled - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      maxLagMs = Math.max(maxLagMs, performance.now() - scheduled);
    } else if (ws.bufferedAmount > 1 << 20) {
      // Fast pace still respects the socket: wait for the buffer to drain.
      while (ws.bufferedAmount > 1 << 18) await new Promise((r) => setTimeout(r, 1));
    }
    while (nextKey < keys.length && keys[nextKey].atMs <= k * 20) send(wire.dtmf(++seq, keys[nextKey++].digit));
    for (const t of tracks) {
      const payload = chunks[t][k];
      if (payload === undefined) continue;
      if (ws.readyState !== WebSocket.OPEN) break;
      ws.send(wire.media(++seq, t, k, payload));
      messages++;
    }
    sent++;
    opts.onChunk?.(k, performance.now(), scheduled);
  }
  if (opts.signal?.aborted) {
    ws.terminate();
  } else {
    while (nextKey < keys.length) send(wire.dtmf(++seq, keys[nextKey++].digit));
    send(wire.stop(++seq));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
    ws.close();
  }
  return { callSid, streamSid, chunks: sent, messages, maxLagMs };
}

/** Subscribes to a server's event feed (optionally for one call); resolves once the feed is open. */
export async function followEvents(
  url: string,
  opts: { token?: string; callSid?: string; onEvent: (e: CallmoodEvent) => void },
): Promise<{ close: () => void }> {
  const u = new URL(url);
  if (opts.callSid) u.searchParams.set('callSid', opts.callSid);
  const headers: Record<string, string> = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
  const ws = new WebSocket(u, { headers });
  ws.on('error', () => {});
  // Listening before the open: a server's first messages (a catch-up) can come in the same read as its handshake,
  // and ws emits them at once, before code after the `await` below would run.
  ws.on('message', (data) => opts.onEvent(JSON.parse(String(data)) as CallmoodEvent));
  await opened(ws, 'event feed', url, { 401: opts.token ? 'the events token is not the server\'s' : 'the feed needs the events token' });
  return { close: () => ws.close() };
}

/** The event-feed URL beside a media URL: same host, path `/events` unless given. */
export function eventsUrlFor(mediaUrl: string, path = '/events'): string {
  const u = new URL(mediaUrl);
  u.pathname = path;
  u.search = '';
  return u.toString();
}
