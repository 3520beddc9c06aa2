/**
 * Request authentication. Twilio signs every webhook and the media-stream WebSocket upgrade with
 * `X-Twilio-Signature`: HMAC-SHA1, keyed by the account's auth token, over the full URL Twilio requested plus the
 * POST parameters sorted by name (https://www.twilio.com/docs/usage/webhooks/webhooks-security). The URL must be
 * rebuilt exactly as Twilio saw it: behind a proxy that is the configured `publicUrl`, otherwise Host plus
 * X-Forwarded-Proto. The event feed uses a bearer token, compared in constant time.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createHash, timingSafeEqual } from 'node:crypto';
import twilio from 'twilio';
import type { Logger } from '../util/log.js';

/** Which kind of URL Twilio requested: an http(s) webhook, or the ws(s) media stream. */
export type UrlKind = 'http' | 'ws';

/** The public scheme of a request: the proxy's X-Forwarded-Proto (first hop) if any, else whether this socket is TLS. */
function publicScheme(req: IncomingMessage): 'http' | 'https' {
  const fwd = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(fwd) ? fwd[0] : fwd)?.split(',')[0]?.trim().toLowerCase();
  if (first === 'https' || first === 'wss') return 'https';
  if (first === 'http' || first === 'ws') return 'http';
  return (req.socket as TLSSocket).encrypted ? 'https' : 'http';
}

/**
 * The URL Twilio requested, rebuilt: `publicUrl` (if set) + the path and query as this server got them; else
 * scheme from X-Forwarded-Proto + Host. `kind: 'ws'` gives the ws:// or wss:// form Twilio signs for a stream.
 * Returns null when there is no way to know (no publicUrl and no Host header).
 */
export function publicRequestUrl(req: IncomingMessage, publicUrl: string | null, kind: UrlKind): string | null {
  const path = req.url ?? '/';
  let url: string;
  if (publicUrl) {
    url = publicUrl.replace(/\/+$/, '') + path;
  } else {
    const host = req.headers.host;
    if (!host) return null;
    url = `${publicScheme(req)}://${host}${path}`;
  }
  return kind === 'ws' ? url.replace(/^http(s?):/, 'ws$1:') : url;
}

/** The base URL Twilio should use for this server's routes (for TwiML): publicUrl, else from the webhook request. */
export function publicBaseUrl(req: IncomingMessage, publicUrl: string | null): string | null {
  if (publicUrl) return publicUrl.replace(/\/+$/, '');
  const host = req.headers.host;
  return host ? `${publicScheme(req)}://${host}` : null;
}

/** Webhook parameters: form fields, a repeated field as an array (Twilio's signature covers every value). */
export type WebhookParams = Record<string, string | string[]>;

/** Result of a signature check. */
export type SignatureResult = { ok: true } | { ok: false; reason: string };

/** Checks one request's X-Twilio-Signature against the URL and parameters. */
export function verifyTwilioSignature(req: IncomingMessage, authToken: string, url: string | null, params: WebhookParams): SignatureResult {
  const header = req.headers['x-twilio-signature'];
  const signature = Array.isArray(header) ? header[0] : header;
  if (!signature) return { ok: false, reason: 'no X-Twilio-Signature header' };
  if (!url) return { ok: false, reason: 'no Host header and no publicUrl configured: the signed URL cannot be rebuilt' };
  // validateRequest also tries the URL with and without a default port, as Twilio's own servers differ there.
  if (twilio.validateRequest(authToken, signature, url, params as Record<string, string>)) return { ok: true };
  return { ok: false, reason: `X-Twilio-Signature does not match ${url} (wrong auth token, or publicUrl / X-Forwarded-Proto not as Twilio saw the URL)` };
}

/**
 * The signature policy of a server: checks when `validateSignatures` is on, and when it is off says so, loudly, on
 * every request (a server that accepts unsigned requests lets anyone inject audio and read callers' emotions).
 */
export class SignatureGuard {
  constructor(
    private readonly opts: { validateSignatures: boolean; authToken: string | null; publicUrl: string | null },
    private readonly log: Logger,
  ) {}

  /** Whether checks are on. */
  get enabled(): boolean {
    return this.opts.validateSignatures;
  }

  /** Checks a request; `kind` says which URL form Twilio signed. */
  check(req: IncomingMessage, kind: UrlKind, params: WebhookParams = {}): SignatureResult {
    if (!this.opts.validateSignatures) {
      this.log('warn', 'CALLMOOD_SIGNATURES_OFF', `X-Twilio-Signature NOT checked on ${req.method} ${req.url?.split('?')[0]} (validateSignatures: false; development only)`);
      return { ok: true };
    }
    // resolveOptions refuses validateSignatures without a token, so this is only reached when one is set.
    return verifyTwilioSignature(req, this.opts.authToken ?? '', publicRequestUrl(req, this.opts.publicUrl, kind), params);
  }
}

/** Compares two secrets in constant time (hashing first, so their lengths leak nothing either). */
export function tokenMatches(given: string | null | undefined, expected: string): boolean {
  if (typeof given !== 'string' || given.length === 0) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The bearer token of a request: `Authorization: Bearer …`, else the `token` query parameter (for clients that cannot set headers). */
export function bearerToken(req: IncomingMessage, query: URLSearchParams): string | null {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : null;
  }
  return query.get('token');
}
