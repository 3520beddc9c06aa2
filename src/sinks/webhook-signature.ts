/**
 * Webhook signatures: `Callmood-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
 * The timestamp is inside the signed text, so a receiver that rejects old timestamps rejects replays of captured
 * requests; within the tolerance, it dedupes by the body's `id`. Each attempt is signed afresh, so a retry after a
 * long outage still carries a current timestamp.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header carrying the signature. */
export const SIGNATURE_HEADER = 'Callmood-Signature';
/** Header carrying the event id (the body's `id`), for receivers that dedupe before parsing. */
export const EVENT_ID_HEADER = 'Callmood-Event-Id';

/** The signature header's value for `body` signed at `timestampS` (unix seconds). */
export function signWebhook(body: string | Buffer, secret: string, timestampS: number): string {
  const mac = createHmac('sha256', secret).update(`${timestampS}.`).update(body).digest('hex');
  return `t=${timestampS},v1=${mac}`;
}

/** What verifyWebhookSignature found. */
export type WebhookVerification =
  | { ok: true; /** The signed timestamp, unix seconds. */ timestamp: number }
  | { ok: false; /** Why: `missing`, `malformed`, `timestamp` (outside the tolerance: old, a replay, or a skewed clock) or `signature`. */ reason: 'missing' | 'malformed' | 'timestamp' | 'signature' };

/** Options of verifyWebhookSignature. */
export interface VerifyOptions {
  /** Largest distance between the signed timestamp and now, seconds (default 300). */
  toleranceS?: number;
  /** Now, unix seconds (default the clock); for tests. */
  nowS?: number;
}

/**
 * Checks a request's `Callmood-Signature` against its raw body (the exact bytes received, before any JSON parsing)
 * and the endpoint's secret (or several, while rotating one). Rejects a wrong or missing signature and a timestamp
 * further than `toleranceS` from now.
 */
export function verifyWebhookSignature(
  body: string | Buffer,
  header: string | string[] | undefined | null,
  secret: string | readonly string[],
  options: VerifyOptions = {},
): WebhookVerification {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return { ok: false, reason: 'missing' };
  let t: number | null = null;
  const given: Buffer[] = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) given.push(Buffer.from(v, 'hex'));
  }
  if (t === null || given.length === 0) return { ok: false, reason: 'malformed' };
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceS ?? 300)) return { ok: false, reason: 'timestamp' };
  for (const s of typeof secret === 'string' ? [secret] : secret) {
    const expected = createHmac('sha256', s).update(`${t}.`).update(body).digest();
    if (given.some((g) => timingSafeEqual(g, expected))) return { ok: true, timestamp: t };
  }
  return { ok: false, reason: 'signature' };
}
