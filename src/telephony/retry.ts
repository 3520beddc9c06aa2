/**
 * The retry loop every call controller shares (Twilio's in ./control.ts, Telnyx's in ./transports/telnyx-control.ts):
 * one request per attempt, each attempt classified by the carrier's own rules as done, call over, retryable (429, 5xx,
 * timeouts, network errors) or final; retryable ones wait with exponential backoff and jitter, up to `maxAttempts`.
 */
import { ErrorCodes } from '../errors.js';
import type { ControlSettings } from '../config/options.js';
import type { ControlResult } from '../policy/runtime.js';

/** How one attempt went, as the carrier's controller reads its answer. */
export type AttemptOutcome =
  | { kind: 'done'; detail: string }
  | { kind: 'call-over'; detail: string }
  /** Worth asking again (rate limited, server error, network); `detail` says what happened. */
  | { kind: 'retry'; detail: string }
  /** Asking again will not help (a wrong id or credentials, a refused request). */
  | { kind: 'fail'; detail: string };

export type RetrySettings = Pick<ControlSettings, 'maxAttempts' | 'baseBackoffMs' | 'maxBackoffMs'>;

/** Waits `ms` (the controllers' default wait between attempts). */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs `attempt` until it is done, the call is over, it fails for good, or `maxAttempts` are spent. Never throws: a
 * throw from `attempt` counts as a retryable network error. Failures carry the CALL_CONTROL code in their detail.
 */
export async function withRetries(o: RetrySettings, attempt: (n: number) => Promise<AttemptOutcome>, wait = sleep): Promise<ControlResult> {
  let last = '';
  for (let n = 1; n <= o.maxAttempts; n++) {
    let r: AttemptOutcome;
    try {
      r = await attempt(n);
    } catch (err) {
      r = { kind: 'retry', detail: `network: ${(err as Error).message ?? String(err)}` };
    }
    if (r.kind === 'done' || r.kind === 'call-over') return { outcome: r.kind, attempts: n, detail: r.detail };
    if (r.kind === 'fail') return { outcome: 'failed', attempts: n, detail: `${ErrorCodes.CALL_CONTROL}: ${r.detail}` };
    last = r.detail;
    if (n < o.maxAttempts) await wait(backoff(n, o));
  }
  return { outcome: 'failed', attempts: o.maxAttempts, detail: `${ErrorCodes.CALL_CONTROL}: gave up after ${o.maxAttempts} attempts; last: ${last}` };
}

/** Exponential backoff with ±50% jitter (so calls failing together do not retry together). */
export function backoff(attempt: number, o: Pick<RetrySettings, 'baseBackoffMs' | 'maxBackoffMs'>): number {
  const base = Math.min(o.maxBackoffMs, o.baseBackoffMs * 2 ** (attempt - 1));
  return Math.round(base * (0.5 + Math.random()));
}
