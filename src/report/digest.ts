/**
 * What a call's events say at a glance: per track the summary of its call-end, the anger episodes, and the policy's
 * decisions. Both the call report and the summary page across calls read it; it is small enough to pass between
 * threads.
 */
import type { ActionKind, CallmoodEvent, Track, TrackSummary } from '../stream/events.js';

/** A run of scored windows whose top label is angry (see `digestEvents`). */
export interface AngerEpisode {
  track: Track;
  /** Start of the first angry window's audio, call time ms. */
  startMs: number;
  /** End of the last angry window's audio, call time ms. */
  endMs: number;
  /** Highest angry probability of its windows. */
  peak: number;
  windows: number;
}

/** A dialog-policy decision, as the report lists it. */
export interface DigestAction {
  timeMs: number;
  action: ActionKind;
  rule: string;
  track: Track | null;
  level: number | null;
  reason: string;
  dryRun: boolean;
  /** The action-result's outcome, when one came. */
  outcome: string | null;
}

/** A call at a glance. */
export interface CallDigest {
  callSid: string;
  durationMs: number;
  tracks: Track[];
  /** The call-end summary per track (absent for a track when the call never ended). */
  summary: Partial<Record<Track, TrackSummary>>;
  episodes: AngerEpisode[];
  actions: DigestAction[];
  errors: { timeMs: number; code: string; message: string }[];
}

/**
 * Anger episodes: consecutive scored windows of a track whose top label is angry. A scored window with another
 * label ends an episode; so does a stretch longer than one window without any scored window (silence), since windows
 * overlap and a longer gap means the caller paused.
 */
export function digestEvents(events: readonly CallmoodEvent[]): CallDigest {
  const start = events.find((e) => e.type === 'call-start');
  const end = events.find((e) => e.type === 'call-end');
  const episodes: AngerEpisode[] = [];
  const open = new Map<Track, { ep: AngerEpisode; lastEnd: number }>();
  const actions: DigestAction[] = [];
  const errors: CallDigest['errors'] = [];
  for (const e of events) {
    if (e.type === 'emotion') {
      const cur = open.get(e.track);
      if (cur && (e.label !== 'angry' || e.windowStartMs > cur.lastEnd)) {
        episodes.push(cur.ep);
        open.delete(e.track);
      }
      if (e.label !== 'angry') continue;
      const now = open.get(e.track);
      const p = e.probs.angry ?? 0;
      if (now) {
        now.ep.endMs = e.timeMs;
        now.ep.peak = Math.max(now.ep.peak, p);
        now.ep.windows++;
        now.lastEnd = e.timeMs;
      } else {
        open.set(e.track, { ep: { track: e.track, startMs: e.windowStartMs, endMs: e.timeMs, peak: p, windows: 1 }, lastEnd: e.timeMs });
      }
    } else if (e.type === 'action') {
      actions.push({ timeMs: e.timeMs, action: e.action, rule: e.rule, track: e.track, level: e.level, reason: e.reason, dryRun: e.dryRun, outcome: null });
    } else if (e.type === 'action-result') {
      const a = [...actions].reverse().find((x) => x.rule === e.rule && x.action === e.action && x.outcome === null);
      if (a) a.outcome = e.outcome;
    } else if (e.type === 'error') {
      errors.push({ timeMs: e.timeMs, code: e.code, message: e.message });
    }
  }
  for (const { ep } of open.values()) episodes.push(ep);
  episodes.sort((a, b) => a.startMs - b.startMs || (a.track === 'inbound' ? -1 : 1));
  return {
    callSid: start?.callSid ?? end?.callSid ?? '',
    durationMs: end?.type === 'call-end' ? end.durationMs : Math.max(0, ...events.map((e) => e.timeMs)),
    tracks: start?.type === 'call-start' ? start.tracks : [],
    summary: end?.type === 'call-end' ? end.summary : {},
    episodes,
    actions,
    errors,
  };
}
