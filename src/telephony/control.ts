/**
 * Call control: changing a live call through Twilio's REST API (`calls(sid).update`) with the `twilio` package —
 * redirecting it to other TwiML (a person, via `<Dial>`), or ending it. Retries what retrying can fix: 429 (rate
 * limited) and 5xx answers, timeouts and network errors, with exponential backoff and jitter (./retry.ts, shared
 * with Telnyx's controller). Error 20404 (the call is
 * already over) is an outcome, not a failure: the caller hung up first. Any other 4xx is final (a wrong SID or
 * credentials will not get better by asking again).
 */
import twilio from 'twilio';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { DEFAULT_OPTIONS, type ControlSettings } from '../config/options.js';
import type { CallController, ControlResult, EscalationTarget } from '../policy/runtime.js';
import { sleep, withRetries } from './retry.js';

type TwilioClient = ReturnType<typeof twilio>;
type VoiceResponse = InstanceType<typeof twilio.twiml.VoiceResponse>;

/** How call control reaches Twilio: the server's `control` options. */
export type CallControlOptions = ControlSettings;

/** The defaults: 5 attempts, 250 ms doubling to 8 s (rides out a blip of about 15 s), 10 s per request. */
export const DEFAULT_CALL_CONTROL: Readonly<CallControlOptions> = DEFAULT_OPTIONS.control;

/** What a change to a call does. */
export type CallUpdate = { twiml: string } | { status: 'completed' };

export type { ControlResult };

interface RestError {
  status?: number;
  code?: number | string;
  message?: string;
}

/** Twilio's error for an update to a call that is no longer in progress. */
const CALL_NOT_IN_PROGRESS = 21220;
/** Twilio's error for a call SID it does not know (or one already gone). */
const NOT_FOUND = 20404;

/** Changes live calls through Twilio's REST API; one client per account, shared by every call. */
export class CallControl implements CallController {
  readonly options: Readonly<CallControlOptions>;
  private readonly authToken: string;
  private readonly clients = new Map<string, TwilioClient>();
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(authToken: string, options: Partial<CallControlOptions> = {}, env: NodeJS.ProcessEnv = process.env) {
    const o = { ...DEFAULT_CALL_CONTROL, ...options };
    o.accountSid ??= env.TWILIO_ACCOUNT_SID && env.TWILIO_ACCOUNT_SID.length > 0 ? env.TWILIO_ACCOUNT_SID : null;
    if (o.accountSid !== null && !/^AC[0-9a-fA-F]{32}$/.test(o.accountSid)) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `option control.accountSid is ${JSON.stringify(o.accountSid)}; allowed: null or AC followed by 32 hex digits`);
    }
    if (!authToken) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'call control needs the Twilio auth token: set TWILIO_AUTH_TOKEN');
    this.options = Object.freeze(o);
    this.authToken = authToken;
    this.sleep = sleep;
  }

  private client(accountSid: string): TwilioClient {
    let c = this.clients.get(accountSid);
    if (!c) {
      c = twilio(accountSid, this.authToken, { timeout: this.options.timeoutMs });
      if (this.options.apiBaseUrl) c.api.baseUrl = this.options.apiBaseUrl;
      this.clients.set(accountSid, c);
    }
    return c;
  }

  /** Redirects the call to TwiML that dials (or redirects to) the target. */
  escalate(callSid: string, callAccountSid: string | null, target: EscalationTarget): Promise<ControlResult> {
    return this.update(callSid, callAccountSid, { twiml: escalationTwiml(target) });
  }

  /** Ends the call: a goodbye then hang up when `say` is given, else at once. */
  endCall(callSid: string, callAccountSid: string | null, say?: string): Promise<ControlResult> {
    return this.update(callSid, callAccountSid, say ? { twiml: goodbyeTwiml(say) } : { status: 'completed' });
  }

  /**
   * Applies `update` to the call, retrying where it may help. Never throws: the result says what happened.
   * `callAccountSid` is the account the call's stream named (used when no account is configured).
   */
  async update(callSid: string, callAccountSid: string | null, update: CallUpdate): Promise<ControlResult> {
    const account = this.options.accountSid ?? callAccountSid;
    if (!account || !/^AC[0-9a-fA-F]{32}$/.test(account)) {
      return { outcome: 'failed', attempts: 0, detail: `${ErrorCodes.CALL_CONTROL}: no valid account SID (set TWILIO_ACCOUNT_SID; the stream gave ${JSON.stringify(callAccountSid)})` };
    }
    return withRetries(this.options, async () => {
      try {
        await this.client(account).calls(callSid).update(update);
        return { kind: 'done', detail: 'status' in update ? 'call completed' : 'call redirected to new TwiML' };
      } catch (err) {
        const e = err as RestError;
        const code = Number(e.code);
        if (e.status === 404 || code === NOT_FOUND || code === CALL_NOT_IN_PROGRESS) {
          return { kind: 'call-over', detail: `the call is already over (Twilio ${e.code ?? e.status}: ${e.message ?? ''})`.trim() };
        }
        const detail = e.status !== undefined ? `HTTP ${e.status}${e.code !== undefined ? `, Twilio ${e.code}` : ''}: ${e.message ?? ''}` : `network: ${e.message ?? String(err)}`;
        const retryable = e.status === undefined || e.status === 429 || e.status >= 500;
        return { kind: retryable ? 'retry' : 'fail', detail };
      }
    }, this.sleep);
  }
}

/** TwiML that hands the caller to a person: an optional `<Say>`, then `<Dial>` a number, SIP URI or client, or `<Redirect>` to a URL. */
export function escalationTwiml(target: EscalationTarget): string {
  if (target.twiml !== undefined) return target.twiml;
  const r: VoiceResponse = new twilio.twiml.VoiceResponse();
  if (target.say) r.say(target.say);
  if (target.dial?.startsWith('sip')) r.dial().sip(target.dial);
  else if (target.dial?.startsWith('client:')) r.dial().client(target.dial.slice('client:'.length));
  else if (target.dial) r.dial(target.dial);
  else if (target.url) r.redirect({ method: 'POST' }, target.url);
  return r.toString();
}

/** TwiML that ends a call politely: a goodbye, then hang up. */
export function goodbyeTwiml(say: string): string {
  const r: VoiceResponse = new twilio.twiml.VoiceResponse();
  r.say(say);
  r.hangup();
  return r.toString();
}
