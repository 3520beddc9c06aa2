/**
 * Events are typed, tagged data: a discriminated union on `type`, with times in call time (ms since the stream
 * started, from Twilio's media timestamps, so they do not depend on when the server got round to them), and the
 * call and track they belong to. Errors travel as events too.
 */

/** Which party: Twilio's `inbound` track is the caller, `outbound` the bot or agent. */
export type Track = 'inbound' | 'outbound';

/** Fields every event carries. */
export interface EventBase {
  callSid: string;
  streamSid: string;
  /** Call time in ms since the stream started. */
  timeMs: number;
  /** `<Parameter>` values from the TwiML, as Twilio passed them in `start.customParameters`. */
  customParameters: Record<string, string>;
}

/** Probabilities per label (sum 1). */
export type LabelProbabilities = Record<string, number>;

/** The per-call smoothed emotion state of one track. */
export interface EmotionState {
  /** Exponentially smoothed probabilities over the speech windows so far. */
  probs: LabelProbabilities;
  /** Label with the highest smoothed probability. */
  label: string;
  /** Smoothed probability of that label. */
  confidence: number;
}

/** A stream started: the call is live. */
export interface CallStartEvent extends EventBase {
  type: 'call-start';
  accountSid: string | null;
  tracks: Track[];
}

/** The voice-activity gate found the start of speech on a track (timeMs = first speech frame). */
export interface SpeechStartEvent extends EventBase {
  type: 'speech-start';
  track: Track;
}

/** Speech ended on a track (timeMs = end of the last speech frame). */
export interface SpeechEndEvent extends EventBase {
  type: 'speech-end';
  track: Track;
  durationMs: number;
}

/** One window's emotion, for a window with enough speech. timeMs = end of the window's audio. */
export interface EmotionEvent extends EventBase {
  type: 'emotion';
  track: Track;
  /** Start of the window's audio, call time. */
  windowStartMs: number;
  /** Share of the window's frames that were speech. */
  speechRatio: number;
  probs: LabelProbabilities;
  /** Label with the highest probability in this window. */
  label: string;
  confidence: number;
  /** The smoothed state of this track after this window. */
  state: EmotionState;
  /** Milliseconds from the end of the window's audio arriving to this event (queueing + inference). */
  latencyMs: number;
}

/** A DTMF key press. */
export interface DtmfEvent extends EventBase {
  type: 'dtmf';
  track: Track | null;
  digit: string;
}

/** A `mark` came back: audio the bot sent has been played up to this name. */
export interface MarkEvent extends EventBase {
  type: 'mark';
  name: string;
}

/** What a call was like, per track. */
export interface TrackSummary {
  /** Milliseconds of audio received. */
  audioMs: number;
  /** Milliseconds of speech (frames the gate marked as speech). */
  speechMs: number;
  /** Share of speech time per top emotion (windows' labels weighted by their speech), 0–1. */
  emotionShare: LabelProbabilities;
  anger: {
    /** Highest angry probability of any window, 0 when none. */
    peak: number;
    /** Call time of that window's end, null when none. */
    peakAtMs: number | null;
    /** Milliseconds of speech in windows whose top label was angry. */
    durationMs: number;
  };
  windows: number;
}

/**
 * Why a call ended. `node-lost`: in many-node mode, the node that held the call stopped beating and another node
 * ended the call for it (see the README's "Running many nodes"); such a call-end has no summary and zero counters.
 */
export type CallEndReason = 'stop' | 'disconnected' | 'stalled' | 'error' | 'shutdown' | 'node-lost';

/** The stream ended. */
export interface CallEndEvent extends EventBase {
  type: 'call-end';
  reason: CallEndReason;
  durationMs: number;
  summary: Partial<Record<Track, TrackSummary>>;
  /** Protocol counters: media messages, gaps filled with silence (count, ms), late or duplicate chunks dropped, messages with a bad sequence number. */
  stats: { mediaMessages: number; gapsFilled: number; gapMs: number; dropped: number; protocolErrors: number; sequenceGaps: number };
  /** Reason `node-lost` only: the id of the node that held the call (as `/healthz` shows it under `redis.node`). */
  node?: string;
}

/** Something went wrong for this call; `permanent` says whether it ends the call. */
export interface ErrorEvent extends EventBase {
  type: 'error';
  code: string;
  message: string;
  permanent: boolean;
}

/** What the dialog policy can do about a call. */
export type ActionKind = 'soften_offer' | 'escalate' | 'end_call' | 'flag_customer' | 'custom';

/**
 * The dialog policy decided to act on a call. timeMs is the call time of the event that made the rule fire, so a
 * replayed recording and the live call decide at the same call times. `dryRun`: decided and reported, not carried out.
 */
export interface ActionEvent extends EventBase {
  type: 'action';
  /** Unique id of this decision; its `action-result` carries the same id. */
  actionId: string;
  action: ActionKind;
  /** The rule that fired, by its name in the policy file. */
  rule: string;
  /** The track the rule watched (null for call-wide rules such as DTMF or custom parameters). */
  track: Track | null;
  /** `soften_offer`'s level (1 = the first, gentlest step); null for other actions. */
  level: number | null;
  /** For `custom`: the handler's name; null otherwise. */
  handler: string | null;
  /** Why, in words, with the figures that made the rule fire. */
  reason: string;
  /** Those figures by name (e.g. `angryMs`, `probability`, `negativeShare`). */
  evidence: Record<string, number | string>;
  dryRun: boolean;
}

/** How an action ended: carried out, found the call already over (Twilio 20404), failed after retries, or not attempted. */
export type ActionOutcome = 'done' | 'call-over' | 'failed' | 'skipped';

/** The outcome of an action. timeMs repeats the action's call time; `atMs` is the wall-clock time it settled. */
export interface ActionResultEvent extends EventBase {
  type: 'action-result';
  actionId: string;
  action: ActionKind;
  rule: string;
  outcome: ActionOutcome;
  /** Requests made (1 when the first succeeded; 0 when skipped). */
  attempts: number;
  /** What happened, in words (the REST error code and message when it failed). */
  detail: string;
  /** Wall-clock time (ms since the epoch) when the outcome was known. */
  atMs: number;
}

/** Every event callmood emits. */
export type CallmoodEvent =
  | CallStartEvent
  | SpeechStartEvent
  | SpeechEndEvent
  | EmotionEvent
  | DtmfEvent
  | MarkEvent
  | CallEndEvent
  | ErrorEvent
  | ActionEvent
  | ActionResultEvent;

/** The event types, for filters and webhook routing. */
export const EVENT_TYPES = [
  'call-start',
  'speech-start',
  'speech-end',
  'emotion',
  'dtmf',
  'mark',
  'call-end',
  'error',
  'action',
  'action-result',
] as const;
