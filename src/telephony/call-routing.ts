/**
 * Which carrier changes a call: a call that came over the Telnyx media path is Telnyx's (its callSid is a
 * call_control_id), any other is Twilio's. The media path tells the router each call's transport at its `start`
 * (before the call-start event goes out, so an action decided at once still routes) and at its end; the entry is
 * kept `graceMs` after the call-end, for actions decided at call-end or still retrying.
 */
import { ErrorCodes } from '../errors.js';
import type { CallController, ControlResult, EscalationTarget } from '../policy/runtime.js';

/** The carriers a server may control calls on. */
export type ControlProvider = 'twilio' | 'telnyx';

/** What each carrier needs before its controller exists, for the failure detail. */
const MISSING: Record<ControlProvider, string> = {
  twilio: 'call control is off for Twilio calls: no Twilio auth token (set TWILIO_AUTH_TOKEN)',
  telnyx: 'call control is off for Telnyx calls: no Telnyx API key (set TELNYX_API_KEY)',
};

/** Routes escalate and end_call to the controller of the carrier each call came over. */
export class RoutingCallController implements CallController {
  private readonly calls = new Map<string, { provider: ControlProvider; timer: NodeJS.Timeout | null }>();

  constructor(
    private readonly controllers: Readonly<Record<ControlProvider, CallController | null>>,
    private readonly graceMs = 60_000,
  ) {}

  /** The carriers that have a controller. */
  get providers(): ControlProvider[] {
    return (Object.keys(this.controllers) as ControlProvider[]).filter((p) => this.controllers[p] !== null);
  }

  /** Calls known now (live, or ended within the grace period). */
  get size(): number {
    return this.calls.size;
  }

  /** A call started on `transport` (a MediaTransport's name); transports other than telnyx are Twilio's. */
  callStarted(callSid: string, transport: string): void {
    const prev = this.calls.get(callSid);
    if (prev?.timer) clearTimeout(prev.timer);
    this.calls.set(callSid, { provider: transport === 'telnyx' ? 'telnyx' : 'twilio', timer: null });
  }

  /** A call ended: its route is forgotten after the grace period. */
  callEnded(callSid: string): void {
    const entry = this.calls.get(callSid);
    if (!entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (this.calls.get(callSid) === entry) this.calls.delete(callSid);
    }, this.graceMs);
    entry.timer.unref();
  }

  /** The carrier of a call: Telnyx if it came over the Telnyx path, else Twilio. */
  providerOf(callSid: string): ControlProvider {
    return this.calls.get(callSid)?.provider ?? 'twilio';
  }

  escalate(callSid: string, accountSid: string | null, target: EscalationTarget): Promise<ControlResult> {
    const c = this.controllers[this.providerOf(callSid)];
    return c ? c.escalate(callSid, accountSid, target) : Promise.resolve(this.off(callSid));
  }

  endCall(callSid: string, accountSid: string | null, say?: string): Promise<ControlResult> {
    const c = this.controllers[this.providerOf(callSid)];
    return c ? c.endCall(callSid, accountSid, say) : Promise.resolve(this.off(callSid));
  }

  /** Forgets every call and stops the timers. */
  close(): void {
    for (const e of this.calls.values()) if (e.timer) clearTimeout(e.timer);
    this.calls.clear();
  }

  private off(callSid: string): ControlResult {
    return { outcome: 'failed', attempts: 0, detail: `${ErrorCodes.CALL_CONTROL}: ${MISSING[this.providerOf(callSid)]}` };
  }
}
