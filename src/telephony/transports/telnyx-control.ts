/**
 * Call control for calls on the Telnyx media path: the policy's `escalate` and `end_call` through Telnyx Call Control
 * (API v2), with Node's fetch. A Telnyx call's `callSid` is its `call_control_id` (see ./telnyx.ts), which is what
 * every command is addressed to. As Telnyx documents them:
 *
 * - Commands are `POST https://api.telnyx.com/v2/calls/{call_control_id}/actions/{command}` with a JSON body and
 *   `Authorization: Bearer <API key>`; success is `{"data":{"result":"ok"}}`.
 *   https://developers.telnyx.com/docs/v1/call-control/sending-commands (the v2 "Sending Commands" page)
 * - `transfer` {to}: "The DID or SIP URI to dial out to" (required). Its `audio_url` is played to the transfer
 *   destination when it answers, not to the caller, so it is no place for `say`.
 *   https://developers.telnyx.com/api-reference/call-commands/transfer-call
 * - `speak` {payload, voice, language}: `payload` (text or SSML, at most 3,000 characters) and `voice` are required;
 *   speak commands queue on the call; `call.speak.ended` is sent when playback ends.
 *   https://developers.telnyx.com/api-reference/call-commands/speak-text
 * - `hangup` {}: https://developers.telnyx.com/api-reference/call-commands/hangup-call
 * - `command_id`: "Telnyx will ignore any command with the same command_id for the same call_control_id" (same
 *   page), so every command gets one id, kept across its retries: a retry after a lost answer is not done twice.
 * - Errors are `{"errors":[{code, title, detail}]}`. Code 90018 "Call has already ended" (HTTP 422) is the caller
 *   having hung up first: a `call-over` outcome, not a failure, as with Twilio's 20404. The code and status are as
 *   Telnyx answers them (seen in https://github.com/pipecat-ai/pipecat/pull/2054); Telnyx's error pages list its
 *   neighbours (https://developers.telnyx.com/api/errors/90015, "Invalid Call Control ID", which stays a failure).
 *   429, 5xx, timeouts and network errors are retried as for Twilio (../retry.ts); other 4xx are final.
 *
 * Mapping:
 * - `escalate` with `dial` (a number or SIP URI) → `transfer` {to: dial}. With `say`, a `speak` goes first: Telnyx
 *   plays it on the caller's leg while the transfer dials out. Whether a bridge that answers quickly cuts the last
 *   words is not documented.
 * - `escalate` with `url` or `twiml`, or a `client:` dial → `failed` at once: those are Twilio's (TwiML, Twilio
 *   Client), and Telnyx Call Control takes neither.
 * - `end_call` → `hangup`. With `say`: Telnyx offers no documented "hang up after speaking" on a command, and the
 *   `call.speak.ended` webhook goes to the Telnyx application's webhook URL, which callmood does not receive. So the
 *   goodbye is spoken, then the call hung up after a wait estimated from the text (`speechMs`: about 14 characters a
 *   second plus one second, at most 15 s). A long or slow voice may be cut; a short one leaves some silence.
 * - The voice is Telnyx's basic `female` voice in `en-US` (`voice` is required by `speak`).
 */
import { randomUUID } from 'node:crypto';
import { CallmoodError, ErrorCodes } from '../../errors.js';
import { DEFAULT_OPTIONS, type ControlSettings } from '../../config/options.js';
import type { CallController, ControlResult, EscalationTarget } from '../../policy/runtime.js';
import { sleep, withRetries, type AttemptOutcome } from '../retry.js';

/** Telnyx's API, before `/v2`. */
export const TELNYX_API_BASE_URL = 'https://api.telnyx.com';
/** Telnyx's error for a command to a call that has ended. */
export const TELNYX_CALL_ENDED = '90018';
/** The voice and language of `say` on Telnyx calls. */
export const TELNYX_VOICE = { voice: 'female', language: 'en-US' } as const;

/** How long `text` takes to say, estimated, ms: about 14 characters a second, plus a second, at most 15 s. */
export function speechMs(text: string): number {
  return Math.min(15_000, 1000 + Math.round((text.length / 14) * 1000));
}

interface TelnyxError {
  code?: string | number;
  title?: string;
  detail?: string;
}

/** Changes live Telnyx calls through Call Control; one instance serves every call. */
export class TelnyxCallControl implements CallController {
  readonly options: Readonly<ControlSettings>;
  private readonly apiKey: string;
  private readonly base: string;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(apiKey: string, options: Partial<ControlSettings> = {}) {
    if (!apiKey) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'Telnyx call control needs an API key: set TELNYX_API_KEY');
    this.options = Object.freeze({ ...DEFAULT_OPTIONS.control, ...options });
    this.apiKey = apiKey;
    this.base = (this.options.telnyxApiBaseUrl ?? TELNYX_API_BASE_URL).replace(/\/+$/, '');
    this.sleep = sleep;
  }

  /** Transfers the call to `dial` (after `say`, if given). `url`, `twiml` and `client:` targets cannot be done on Telnyx. */
  async escalate(callSid: string, _accountSid: string | null, target: EscalationTarget): Promise<ControlResult> {
    if (!target.dial || target.dial.startsWith('client:')) {
      const what = target.dial ? `dial ${JSON.stringify(target.dial)} (a Twilio Client)` : target.url !== undefined ? '"url" (a TwiML URL)' : '"twiml"';
      return {
        outcome: 'failed',
        attempts: 0,
        detail: `${ErrorCodes.CALL_CONTROL}: escalate with ${what} is not possible on a Telnyx call; allowed on Telnyx: "dial" with a number (+E.164) or a SIP URI, and an optional "say"`,
      };
    }
    let spoken: ControlResult | null = null;
    if (target.say) {
      spoken = await this.command(callSid, 'speak', { payload: target.say, ...TELNYX_VOICE });
      if (spoken.outcome !== 'done') return spoken;
    }
    const r = await this.command(callSid, 'transfer', { to: target.dial });
    return spoken ? { ...r, attempts: spoken.attempts + r.attempts, detail: `message spoken; ${r.detail}` } : r;
  }

  /** Hangs up; with `say`, speaks it first and hangs up after its estimated length (see the module comment). */
  async endCall(callSid: string, _accountSid: string | null, say?: string): Promise<ControlResult> {
    if (!say) return this.command(callSid, 'hangup', {});
    const spoken = await this.command(callSid, 'speak', { payload: say, ...TELNYX_VOICE });
    if (spoken.outcome !== 'done') return spoken;
    const wait = speechMs(say);
    await this.sleep(wait);
    const r = await this.command(callSid, 'hangup', {});
    return { ...r, attempts: spoken.attempts + r.attempts, detail: `goodbye spoken, ${wait} ms allowed for it; ${r.detail}` };
  }

  /** Sends one command, retrying where it may help, under one command_id. Never throws. */
  async command(callControlId: string, name: 'transfer' | 'speak' | 'hangup', body: Record<string, unknown>): Promise<ControlResult> {
    // A path segment keeps what RFC 3986 allows in one (`v3:…` ids keep their colon), as Telnyx's own SDK sends them.
    const url = `${this.base}/v2/calls/${callControlId.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@]+/g, encodeURIComponent)}/actions/${name}`;
    const payload = JSON.stringify({ ...body, command_id: randomUUID() });
    return withRetries(
      this.options,
      async (): Promise<AttemptOutcome> => {
        let res: Response;
        try {
          res = await fetch(url, {
            method: 'POST',
            headers: { authorization: `Bearer ${this.apiKey}`, 'content-type': 'application/json', accept: 'application/json' },
            body: payload,
            signal: AbortSignal.timeout(this.options.timeoutMs),
          });
        } catch (err) {
          // fetch says "fetch failed"; what failed (ECONNREFUSED, ENOTFOUND, …) is its cause.
          const e = err as Error & { cause?: { code?: string; message?: string } };
          const why = e.name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
          return { kind: 'retry', detail: `network: ${why}` };
        }
        const text = await res.text().catch(() => '');
        if (res.ok) return { kind: 'done', detail: DONE[name] };
        const errors = parseErrors(text);
        const said = errors.map((e) => [e.code, e.title, e.detail].filter(Boolean).join(' ')).join('; ') || text.slice(0, 200);
        if (errors.some((e) => String(e.code) === TELNYX_CALL_ENDED)) return { kind: 'call-over', detail: `the call is already over (Telnyx ${said})` };
        const retryable = res.status === 429 || res.status >= 500;
        return { kind: retryable ? 'retry' : 'fail', detail: `Telnyx ${name}: HTTP ${res.status}${said ? `: ${said}` : ''}` };
      },
      this.sleep,
    );
  }
}

const DONE = { transfer: 'call transferred (Telnyx transfer)', speak: 'spoken (Telnyx speak)', hangup: 'call hung up (Telnyx hangup)' } as const;

function parseErrors(text: string): TelnyxError[] {
  try {
    const j = JSON.parse(text) as { errors?: unknown };
    return Array.isArray(j.errors) ? (j.errors.filter((e) => e && typeof e === 'object') as TelnyxError[]) : [];
  } catch {
    return [];
  }
}
