/**
 * The webhook side of a call: the TwiML that tells Twilio to stream the call here (`/twiml`), and the stream's
 * status callback (`/status`). TwiML is built with the twilio package's VoiceResponse, so every value is escaped.
 *
 * `<Connect><Stream>` is two-way and carries only the caller (`inbound`); the TwiML after it runs once the socket
 * closes. `<Start><Stream track>` is one-way and the call goes straight on with the next verbs — a `<Say>`, a
 * `<Pause>`, or a `<Redirect>` to the customer's own bot. The stream URL may not carry a query string, so values
 * travel as `<Parameter>`s and come back in `start.customParameters`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import twilio from 'twilio';
import type { TwimlOptions, TwimlVerb } from '../config/options.js';
import type { WebhookParams } from './signature.js';

type VoiceResponse = InstanceType<typeof twilio.twiml.VoiceResponse>;

/** Where the TwiML points Twilio. */
export interface TwimlUrls {
  /** The ws(s):// URL of the media path. */
  stream: string;
  /** The http(s):// URL of the status path, or null for no status callback. */
  status: string | null;
}

function addVerb(r: VoiceResponse, v: TwimlVerb): void {
  if ('say' in v) {
    const attrs: Record<string, string> = {};
    if (v.voice) attrs.voice = v.voice;
    if (v.language) attrs.language = v.language;
    r.say(attrs as Parameters<VoiceResponse['say']>[0], v.say);
  } else if ('pause' in v) r.pause({ length: v.pause });
  else if ('redirect' in v) r.redirect({ method: v.method ?? 'POST' }, v.redirect);
  else r.hangup();
}

/** The `<Parameter>`s for one call: forwarded webhook fields first, then the configured ones (which win). */
export function streamParameters(o: TwimlOptions, webhook: WebhookParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of o.forwardParams) {
    const v = webhook[name];
    if (typeof v === 'string') out[name] = v;
    else if (Array.isArray(v) && v.length > 0) out[name] = v[0];
  }
  return { ...out, ...o.parameters };
}

/** Builds the incoming-call TwiML. */
export function buildTwiml(o: TwimlOptions, urls: TwimlUrls, webhook: WebhookParams = {}): string {
  const r = new twilio.twiml.VoiceResponse();
  for (const v of o.before) addVerb(r, v);
  const attrs: Record<string, string> = { url: urls.stream };
  if (urls.status) {
    attrs.statusCallback = urls.status;
    attrs.statusCallbackMethod = 'POST';
  }
  const stream =
    o.mode === 'connect' ? r.connect().stream(attrs) : r.start().stream({ ...attrs, track: o.track } as Parameters<ReturnType<VoiceResponse['start']>['stream']>[0]);
  for (const [name, value] of Object.entries(streamParameters(o, webhook))) stream.parameter({ name, value });
  for (const v of o.after) addVerb(r, v);
  return r.toString();
}

/** An HTTP failure with its status, raised while reading a request. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Reads a form-encoded body (at most `maxBytes`) into parameters; a repeated field becomes an array. */
export async function readForm(req: IncomingMessage, maxBytes: number): Promise<WebhookParams> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxBytes) throw new HttpError(413, `body of ${declared} bytes exceeds the limit of ${maxBytes}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, `body exceeds the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new HttpError(415, `content-type ${JSON.stringify(type)}; Twilio webhooks are application/x-www-form-urlencoded`);
  }
  return formParams(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

/** URLSearchParams → parameters, a repeated name as an array. */
export function formParams(q: URLSearchParams): WebhookParams {
  const out: WebhookParams = {};
  for (const [k, v] of q) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** Sends a small response and ends it. */
export function send(res: ServerResponse, status: number, body = '', contentType = 'text/plain; charset=utf-8'): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** The stream status callback's fields worth a log line (https://www.twilio.com/docs/voice/twiml/stream#statuscallback). */
export function describeStreamStatus(p: WebhookParams): { event: string; line: string; isError: boolean; fields: Record<string, string> } {
  const one = (k: string) => {
    const v = p[k];
    return Array.isArray(v) ? v[0] : v;
  };
  const event = one('StreamEvent') ?? 'unknown';
  const err = one('StreamError');
  // The call and stream are log fields, not words of the line.
  const fields: Record<string, string> = {};
  const callSid = one('CallSid');
  const streamSid = one('StreamSid');
  if (callSid) fields.callSid = callSid;
  if (streamSid) fields.streamSid = streamSid;
  return { event, line: `stream status ${event}${err ? `; error: ${err}` : ''}`, isError: event === 'stream-error' || !!err, fields };
}
