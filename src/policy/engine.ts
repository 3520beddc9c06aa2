/**
 * The dialog policy's decisions: rules over each call's event stream → `action` events. Pure and deterministic in
 * call time: it reads only the events (their call times, never the wall clock), so a replayed recording and the same
 * call live decide the same actions at the same call times, with the same ids. Carrying actions out (REST calls,
 * handlers) is the runtime's job (see runtime.ts).
 *
 * Per call and rule the engine keeps: how long (in speech) the emotion condition has held, whether the rule is
 * armed (hysteresis: after firing it re-arms only once its emotion falls below the release level, or its share /
 * trend condition stops holding), when it last fired (cooldown, in call time) and how often (once-per-call).
 * After an `escalate` or `end_call` the call has left the bot, so no further actions are decided for it.
 */
import type { ActionEvent, CallmoodEvent, EmotionEvent, EventBase, LabelProbabilities, Track } from '../stream/events.js';
import { NEGATIVE_LABELS, type EmotionCondition, type PolicyConfig, type PolicyRule } from './config.js';

/** Options of an engine. */
export interface PolicyEngineOptions {
  /** Report decisions as dry runs (overrides the policy file's `dryRun` when true). */
  dryRun?: boolean;
}

/** Per track: what the policy knows of its speech so far. */
interface TrackState {
  /** Call time of the last emotion event (null before the first). */
  lastTimeMs: number | null;
  /** Speech heard in scored windows, ms. */
  speechMs: number;
  /** Of that, speech in windows whose top label is negative, per rule's label set (keyed by the set's name). */
  negativeMs: Map<string, number>;
  /** The smoothed probabilities after the last emotion event (null before the first). */
  lastProbs: LabelProbabilities | null;
  /** Recent (call time, smoothed probabilities) for trend conditions, oldest first. */
  history: Array<{ timeMs: number; probs: LabelProbabilities }>;
}

interface RuleState {
  armed: boolean;
  /** Speech for which the emotion condition has held without a release. */
  heldMs: number;
  fired: number;
  lastFiredMs: number | null;
}

interface CallState {
  tracks: Map<Track, TrackState>;
  rules: Map<string, RuleState>;
  softenLevel: number;
  /** The call was escalated or ended: it has left the bot. */
  handedOff: boolean;
  seq: number;
}

const labelsOf = (l: string | string[]): string[] => (Array.isArray(l) ? l : [l]);
const sumProbs = (probs: LabelProbabilities, labels: string[]): number => labels.reduce((s, l) => s + (probs[l] ?? 0), 0);
const releaseOf = (c: EmotionCondition): number => c.releaseBelow ?? Math.max(0, c.above - 0.15);

/** The longest look-back any trend rule needs, so history stays bounded. */
function maxTrendMs(rules: readonly PolicyRule[]): number {
  return rules.reduce((m, r) => Math.max(m, r.when.trend?.withinMs ?? 0), 0);
}

/**
 * Decides actions from events. Feed every event of every call to `observe` in the order they were emitted; it returns
 * the actions the event caused (usually none). `call-end` forgets the call.
 */
export class PolicyEngine {
  readonly config: PolicyConfig;
  readonly dryRun: boolean;
  private readonly calls = new Map<string, CallState>();
  private readonly historyMs: number;

  constructor(config: PolicyConfig, opts: PolicyEngineOptions = {}) {
    this.config = config;
    this.dryRun = opts.dryRun === true || config.dryRun;
    this.historyMs = maxTrendMs(config.rules);
  }

  /** Calls the engine holds state for. */
  get liveCalls(): number {
    return this.calls.size;
  }

  /** The actions `event` causes. Never throws on a well-formed event. */
  observe(event: CallmoodEvent): ActionEvent[] {
    switch (event.type) {
      case 'call-start':
        this.state(event.callSid);
        return [];
      case 'emotion':
        return this.onEmotion(event);
      case 'dtmf':
        return this.onDtmf(event.callSid, event, event.digit);
      case 'call-end':
        this.calls.delete(event.callSid);
        return [];
      default:
        return [];
    }
  }

  private state(callSid: string): CallState {
    let s = this.calls.get(callSid);
    if (!s) {
      s = { tracks: new Map(), rules: new Map(), softenLevel: 0, handedOff: false, seq: 0 };
      for (const r of this.config.rules) s.rules.set(r.name, { armed: true, heldMs: 0, fired: 0, lastFiredMs: null });
      this.calls.set(callSid, s);
    }
    return s;
  }

  private track(s: CallState, t: Track): TrackState {
    let ts = s.tracks.get(t);
    if (!ts) {
      ts = { lastTimeMs: null, lastProbs: null, speechMs: 0, negativeMs: new Map(), history: [] };
      s.tracks.set(t, ts);
    }
    return ts;
  }

  private onEmotion(e: EmotionEvent): ActionEvent[] {
    const s = this.state(e.callSid);
    const ts = this.track(s, e.track);
    // The audio this window added that no earlier scored window covered, times its share of speech.
    const windowMs = e.timeMs - e.windowStartMs;
    const newMs = ts.lastTimeMs === null ? windowMs : Math.min(windowMs, Math.max(0, e.timeMs - ts.lastTimeMs));
    const speechMs = newMs * e.speechRatio;
    ts.lastTimeMs = e.timeMs;
    ts.lastProbs = e.state.probs;
    ts.speechMs += speechMs;
    for (const r of this.config.rules) {
      const ns = r.when.negativeShare;
      if (r.when.track !== e.track || !ns) continue;
      const key = (ns.labels ?? NEGATIVE_LABELS).join(',');
      if (!ts.negativeMs.has(key)) ts.negativeMs.set(key, 0);
      if ((ns.labels ?? NEGATIVE_LABELS).includes(e.label)) ts.negativeMs.set(key, ts.negativeMs.get(key)! + speechMs);
    }
    if (this.historyMs > 0) {
      ts.history.push({ timeMs: e.timeMs, probs: e.state.probs });
      while (ts.history.length > 1 && ts.history[0].timeMs < e.timeMs - this.historyMs) ts.history.shift();
    }

    const out: ActionEvent[] = [];
    for (const r of this.config.rules) {
      if (r.when.track !== e.track) continue;
      const rs = s.rules.get(r.name)!;
      const holds = this.stateConditions(r, rs, ts, e.state.probs, speechMs);
      // A DTMF rule fires on the key press, not on emotion; its state conditions are checked then.
      if (r.when.dtmf) continue;
      if (!holds) continue;
      const a = this.fire(s, r, rs, e, e.track, holds);
      if (a) out.push(a);
    }
    return out;
  }

  /**
   * Updates the rule's held time and arming from this emotion window and says whether its emotion, trend and share
   * conditions hold now (the evidence, or null).
   */
  private stateConditions(r: PolicyRule, rs: RuleState, ts: TrackState, probs: LabelProbabilities, speechMs: number): Record<string, number | string> | null {
    const w = r.when;
    const evidence: Record<string, number | string> = {};
    let ok = true;
    let released = true;
    if (w.emotion) {
      const p = sumProbs(probs, labelsOf(w.emotion.label));
      if (p >= w.emotion.above) rs.heldMs += speechMs;
      else if (p < releaseOf(w.emotion)) rs.heldMs = 0;
      released &&= p < releaseOf(w.emotion);
      ok &&= p >= w.emotion.above && rs.heldMs >= w.emotion.forMs;
      evidence.probability = round(p);
      evidence.heldSpeechMs = Math.round(rs.heldMs);
    }
    if (w.trend) {
      const labels = labelsOf(w.trend.label);
      const now = sumProbs(probs, labels);
      let low = now;
      for (const h of ts.history) if (h.timeMs >= (ts.lastTimeMs ?? 0) - w.trend.withinMs) low = Math.min(low, sumProbs(h.probs, labels));
      const rise = now - low;
      released &&= rise < w.trend.rise;
      ok &&= rise >= w.trend.rise;
      evidence.rise = round(rise);
    }
    if (w.negativeShare) {
      const key = (w.negativeShare.labels ?? NEGATIVE_LABELS).join(',');
      const share = ts.speechMs > 0 ? (ts.negativeMs.get(key) ?? 0) / ts.speechMs : 0;
      const enough = ts.speechMs >= w.negativeShare.minSpeechMs;
      released &&= !(enough && share >= w.negativeShare.above);
      ok &&= enough && share >= w.negativeShare.above;
      evidence.negativeShare = round(share);
      evidence.speechMs = Math.round(ts.speechMs);
    }
    // Hysteresis: a rule that fired re-arms only once every one of its state conditions has let go.
    if (!rs.armed && released && (w.emotion || w.trend || w.negativeShare)) rs.armed = true;
    return ok ? evidence : null;
  }

  private onDtmf(callSid: string, e: EventBase, digit: string): ActionEvent[] {
    const s = this.state(callSid);
    const out: ActionEvent[] = [];
    for (const r of this.config.rules) {
      if (!r.when.dtmf?.includes(digit)) continue;
      const rs = s.rules.get(r.name)!;
      // A key press is its own edge: the rule is armed for every press, subject to cooldown and once.
      rs.armed = true;
      let evidence: Record<string, number | string> | null = { digit };
      if (r.when.emotion || r.when.trend || r.when.negativeShare) {
        const ts = s.tracks.get(r.when.track);
        const last = ts?.lastProbs ?? null;
        evidence = ts && last ? this.checkOnly(r, rs, ts, last) : null;
        if (evidence) evidence.digit = digit;
      }
      if (!evidence) continue;
      const a = this.fire(s, r, rs, e, null, evidence);
      if (a) out.push(a);
    }
    return out;
  }

  /** State conditions at a key press, from the last known state, without counting new speech. */
  private checkOnly(r: PolicyRule, rs: RuleState, ts: TrackState, probs: LabelProbabilities): Record<string, number | string> | null {
    const saved = { ...rs };
    const ev = this.stateConditions(r, rs, ts, probs, 0);
    Object.assign(rs, saved, { armed: true });
    return ev;
  }

  private fire(s: CallState, r: PolicyRule, rs: RuleState, e: EventBase, track: Track | null, evidence: Record<string, number | string>): ActionEvent | null {
    if (s.handedOff || !rs.armed) return null;
    if (r.once && rs.fired > 0) return null;
    if (rs.lastFiredMs !== null && e.timeMs - rs.lastFiredMs < r.cooldownMs) return null;
    if (r.when.afterMs !== undefined && e.timeMs < r.when.afterMs) return null;
    if (!parametersHold(r, e.customParameters)) return null;
    let level: number | null = null;
    if (r.do.action === 'soften_offer') {
      const max = r.do.maxLevel ?? 3;
      level = r.do.level ?? s.softenLevel + 1;
      // Nothing gentler left to offer: saying so again would only repeat the last step.
      if (r.do.level === undefined && level > max) return null;
      s.softenLevel = Math.max(s.softenLevel, level);
    }
    rs.armed = false;
    rs.fired++;
    rs.lastFiredMs = e.timeMs;
    s.seq++;
    if (r.do.action === 'escalate' || r.do.action === 'end_call') s.handedOff = !this.dryRun;
    return {
      type: 'action',
      callSid: e.callSid,
      streamSid: e.streamSid,
      timeMs: e.timeMs,
      customParameters: e.customParameters,
      actionId: `${e.callSid}:${s.seq}:${r.name}`,
      action: r.do.action,
      rule: r.name,
      track,
      level,
      handler: r.do.action === 'custom' ? r.do.handler : null,
      reason: reasonText(r, evidence),
      evidence,
      dryRun: this.dryRun,
    };
  }
}

function parametersHold(r: PolicyRule, params: Record<string, string>): boolean {
  for (const c of r.when.parameters ?? []) {
    const v = Object.hasOwn(params, c.name) ? params[c.name] : undefined;
    if (c.present !== undefined && (v !== undefined) !== c.present) return false;
    if (c.equals !== undefined && v !== c.equals) return false;
    if (c.in !== undefined && (v === undefined || !c.in.includes(v))) return false;
  }
  return true;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function reasonText(r: PolicyRule, ev: Record<string, number | string>): string {
  const w = r.when;
  const parts: string[] = [];
  if (w.emotion) parts.push(`${labelsOf(w.emotion.label).join('+')} at ${ev.probability} (≥ ${w.emotion.above}) for ${ev.heldSpeechMs} ms of speech (≥ ${w.emotion.forMs})`);
  if (w.trend) parts.push(`${labelsOf(w.trend.label).join('+')} rose by ${ev.rise} (≥ ${w.trend.rise}) within ${w.trend.withinMs} ms`);
  if (w.negativeShare) parts.push(`negative share ${ev.negativeShare} (≥ ${w.negativeShare.above}) over ${ev.speechMs} ms of speech`);
  if (ev.digit !== undefined) parts.push(`key ${ev.digit} pressed`);
  return `rule ${r.name}: ${parts.join('; ')}`;
}
