/**
 * Carrying the policy's decisions out. The engine decides (pure, in call time); this runtime publishes each `action`
 * event (to the emitter, the event feed and the webhooks, like every event), performs it, and publishes its outcome
 * as an `action-result` event:
 * - `soften_offer`, `flag_customer`: the event is the message (the callbot listens on the emitter or the feed, the
 *   CRM gets the webhook); outcome `done`.
 * - `escalate`, `end_call`: through the host's CallController (the server gives, per call, Twilio's REST API,
 *   telephony/control.ts, or Telnyx Call Control, telephony/transports/telnyx-control.ts: retried; a call already
 *   over = `call-over`).
 * - `custom`: the handler registered under that name, awaited with a time limit; a throw is a `failed` outcome.
 * - dry run: nothing is performed; outcome `skipped`.
 * Performing never blocks the event path: REST calls and handlers run in the background, and `close()` waits for
 * them (bounded).
 */
import type { ActionEvent, ActionResultEvent, CallmoodEvent } from '../stream/events.js';
import type { Logger } from '../util/log.js';
import type { PolicyEngine } from './engine.js';

/** What an action-result says of a dry-run decision (live and in replays). */
export const DRY_RUN_DETAIL = 'dry run: decided, not carried out';

/** The `action-result` event of an action: its identity, the outcome, and the wall-clock time it settled. */
export function actionResult(a: ActionEvent, r: { outcome: ActionResultEvent['outcome']; attempts: number; detail: string }): ActionResultEvent {
  return {
    type: 'action-result',
    callSid: a.callSid,
    streamSid: a.streamSid,
    timeMs: a.timeMs,
    customParameters: a.customParameters,
    actionId: a.actionId,
    action: a.action,
    rule: a.rule,
    outcome: r.outcome,
    attempts: r.attempts,
    detail: r.detail,
    atMs: Date.now(),
  };
}

/** How a change to a live call ended. */
export interface ControlResult {
  outcome: Exclude<ActionResultEvent['outcome'], 'skipped'>;
  attempts: number;
  detail: string;
}

/** Where `escalate` hands the caller: a number, SIP URI or `client:` to dial, a URL to redirect to, or raw TwiML. */
export interface EscalationTarget {
  dial?: string;
  url?: string;
  twiml?: string;
  /** Said to the caller first. */
  say?: string;
}

/**
 * Changes live calls for the policy's `escalate` and `end_call`. The server gives Twilio's REST API
 * (`CallControl`); an embedding process may give its own (another carrier, a test double of its own).
 */
export interface CallController {
  /** Hands the call to a person. `accountSid` is the account the call's stream named, if any. */
  escalate(callSid: string, accountSid: string | null, target: EscalationTarget): Promise<ControlResult>;
  /** Ends the call, after a goodbye when `say` is given. */
  endCall(callSid: string, accountSid: string | null, say?: string): Promise<ControlResult>;
}

/** A custom action's handler: what the plugin API registers under a name. */
export type ActionHandler = (action: ActionEvent) => unknown | Promise<unknown>;

/** What the runtime needs from its host. */
export interface PolicyRuntimeHost {
  /** Sends an event everywhere events go. */
  publish(event: CallmoodEvent): void;
  log: Logger;
  /** Call control; null when there are no credentials for any carrier (escalate/end_call then fail with a clear detail). */
  control: CallController | null;
  /** Longest a custom handler may run, ms. */
  handlerTimeoutMs?: number;
}

/** Runs a policy over a server's events. */
export class PolicyRuntime {
  readonly engine: PolicyEngine;
  private readonly host: PolicyRuntimeHost;
  private readonly handlers = new Map<string, ActionHandler>();
  private readonly inFlight = new Set<Promise<void>>();
  /** The account each live call's stream named (call control uses it when no account is configured). */
  private readonly accounts = new Map<string, string | null>();

  constructor(engine: PolicyEngine, host: PolicyRuntimeHost) {
    this.engine = engine;
    this.host = host;
  }

  /** Registers the handler of `custom` actions named `name` (replacing any earlier one). */
  registerHandler(name: string, fn: ActionHandler): void {
    this.handlers.set(name, fn);
  }

  /** Whether escalate and end_call have a controller (for some calls at least). */
  get hasControl(): boolean {
    return this.host.control !== null;
  }

  /** Actions being performed now. */
  get pending(): number {
    return this.inFlight.size;
  }

  /** Feeds one event to the policy; publishes and performs the actions it causes. */
  observe(event: CallmoodEvent): void {
    if (event.type === 'action' || event.type === 'action-result') return;
    if (event.type === 'call-start') this.accounts.set(event.callSid, event.accountSid);
    else if (event.type === 'call-end') this.accounts.delete(event.callSid);
    let actions: ActionEvent[];
    try {
      actions = this.engine.observe(event);
    } catch (err) {
      this.host.log('error', 'CALLMOOD_POLICY_ERROR', `policy failed on ${event.type}: ${(err as Error).message}`, { callSid: event.callSid, streamSid: event.streamSid, err });
      return;
    }
    for (const a of actions) {
      const fields = { callSid: a.callSid, streamSid: a.streamSid, ...(a.track ? { track: a.track } : {}), actionId: a.actionId, action: a.action, rule: a.rule };
      this.host.log('info', 'CALLMOOD_ACTION', `${a.action}${a.dryRun ? ' (dry run)' : ''} at ${a.timeMs} ms: ${a.reason}`, { ...fields, timeMs: a.timeMs, dryRun: a.dryRun });
      this.host.publish(a);
      const p = this.perform(a)
        .catch((err: unknown): Omit<ControlResult, 'outcome'> & { outcome: ActionResultEvent['outcome'] } => ({
          outcome: 'failed',
          attempts: 0,
          detail: `internal: ${(err as Error).message}`,
        }))
        .then((r) => {
          const result = actionResult(a, r);
          const level = r.outcome === 'failed' ? 'error' : 'info';
          this.host.log(level, r.outcome === 'failed' ? 'CALLMOOD_ACTION_FAILED' : 'CALLMOOD_ACTION_RESULT', `${a.action}: ${r.outcome} (${r.detail})`, { ...fields, outcome: r.outcome });
          this.host.publish(result);
        })
        .finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async perform(a: ActionEvent): Promise<{ outcome: ActionResultEvent['outcome']; attempts: number; detail: string }> {
    if (a.dryRun) return { outcome: 'skipped', attempts: 0, detail: DRY_RUN_DETAIL };
    const rule = this.engine.config.rules.find((r) => r.name === a.rule);
    if (!rule) return { outcome: 'failed', attempts: 0, detail: `internal: no rule named ${a.rule}` };
    const spec = rule.do;
    switch (spec.action) {
      case 'soften_offer':
      case 'flag_customer':
        return { outcome: 'done', attempts: 0, detail: 'published to listeners, the event feed and webhooks' };
      case 'escalate':
      case 'end_call': {
        if (!this.host.control) return { outcome: 'failed', attempts: 0, detail: 'call control is off: no Twilio auth token and no Telnyx API key' };
        // The account is read now, before any await: the call may end while the request is under way.
        const account = this.accounts.get(a.callSid) ?? null;
        return spec.action === 'escalate' ? this.host.control.escalate(a.callSid, account, spec) : this.host.control.endCall(a.callSid, account, spec.say);
      }
      case 'custom': {
        const fn = this.handlers.get(spec.handler);
        if (!fn) return { outcome: 'failed', attempts: 0, detail: `no handler registered as '${spec.handler}'; registered: ${[...this.handlers.keys()].join(', ') || '(none)'}` };
        const limit = this.host.handlerTimeoutMs ?? 10_000;
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), limit)));
        try {
          const r = await Promise.race([Promise.resolve().then(() => fn(a)), timeout]);
          if (r === 'timeout') return { outcome: 'failed', attempts: 1, detail: `handler '${spec.handler}' did not settle within ${limit} ms` };
          return { outcome: 'done', attempts: 1, detail: `handler '${spec.handler}' done` };
        } catch (err) {
          return { outcome: 'failed', attempts: 1, detail: `handler '${spec.handler}' threw: ${(err as Error).message}` };
        } finally {
          clearTimeout(timer);
        }
      }
    }
  }

  /** Waits for actions being performed (at most `timeoutMs`); their results are published before it resolves. */
  async close(timeoutMs = 15_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    await Promise.race([Promise.allSettled([...this.inFlight]), deadline]);
    clearTimeout(timer);
  }
}
