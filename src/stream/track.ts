/**
 * The emotion stream of one call track: 8 kHz audio in, events out. μ-law is decoded upstream; here the audio is
 * resampled to the model's feature rate (not at all for an 8 kHz model), turned into features frame by frame, gated
 * for speech, normalised exactly as in training, and every `hopMs` the last window (1.2 s by default) goes to the
 * shared model if it holds enough speech.
 *
 * Every time in an event comes from sample counts (frame k ends at (k·hop + winLength) / rate), never from the wall
 * clock, so the same audio gives the same events whether it arrives live in 20 ms pieces or as a whole file.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { StreamingResampler } from '../audio/resample.js';
import { StreamingFeatures } from '../features/mfcc.js';
import { SpeechGate, type SpeechGateOptions } from '../features/vad.js';
import { FrameNormalizer } from '../features/normalize.js';
import type { NormalizationSpec, WindowConfig } from '../features/types.js';
import type { CallmoodEvent, EmotionState, EventBase, LabelProbabilities, Track, TrackSummary } from './events.js';

/** What the stream needs to know about the model: from its metadata. */
export interface ModelProfile {
  labels: readonly string[];
  window: WindowConfig;
  normalization: NormalizationSpec;
  speechGate?: Partial<SpeechGateOptions>;
}

/** The profile of a saved model: what its metadata says the stream must do, gate options included. */
export function modelProfile(m: { labels: string[]; window: WindowConfig; normalization: NormalizationSpec; training?: Record<string, unknown> }): ModelProfile {
  const gate = m.training?.speechGate as Partial<SpeechGateOptions> | undefined;
  return { labels: m.labels, window: m.window, normalization: m.normalization, ...(gate ? { speechGate: gate } : {}) };
}

/** Per-track stream settings; every field optional, see `DEFAULT_EMOTION_STREAM_OPTIONS`. */
export interface EmotionStreamOptions {
  /** A window is scored every this many ms of audio (rounded to whole frames). */
  hopMs: number;
  /** Weight of each new window in the smoothed per-call state (exponential moving average), 0–1. */
  smoothing: number;
  /** A run of speech is reported (speech-start) once it lasts this long, ms. */
  minSpeechMs: number;
  /** Overrides the model's minimum share of speech frames for a window to be scored. */
  minSpeechRatio?: number;
  /**
   * Live streams: windows of this track allowed to wait for the model at once; past it a window is skipped
   * (counted, and reported once per run of skips as an `error` event). A live call has one or two in flight; only a
   * server far behind, or media sent faster than real time, reaches the cap, which then bounds the memory one call
   * can hold (8 windows at a 250 ms hop: 2 s of audio, 150 KB). Unset (the default): no cap, as offline processing
   * needs, since pushing a whole file queues all its windows at once.
   */
  maxPendingWindows?: number;
}

/** Defaults: a window every 250 ms, smoothing 0.3 (about the last 3 windows count most), speech runs ≥ 100 ms. */
export const DEFAULT_EMOTION_STREAM_OPTIONS: Readonly<EmotionStreamOptions> = Object.freeze({
  hopMs: 250,
  smoothing: 0.3,
  minSpeechMs: 100,
});

/** Checks stream options; the error names the field and the allowed range. */
export function resolveEmotionStreamOptions(o: Partial<EmotionStreamOptions> = {}): Readonly<EmotionStreamOptions> {
  const r = { ...DEFAULT_EMOTION_STREAM_OPTIONS, ...o };
  const bad = (f: string, allowed: string) =>
    new CallmoodError(ErrorCodes.INVALID_OPTION, `emotion stream: ${f} is ${String((r as Record<string, unknown>)[f])}; allowed: ${allowed}`);
  if (!(r.hopMs >= 10 && r.hopMs <= 5000)) throw bad('hopMs', 'ms in [10, 5000]');
  if (!(r.smoothing > 0 && r.smoothing <= 1)) throw bad('smoothing', '(0, 1]');
  if (!(r.minSpeechMs >= 0 && r.minSpeechMs <= 5000)) throw bad('minSpeechMs', 'ms in [0, 5000]');
  if (r.minSpeechRatio !== undefined && !(r.minSpeechRatio >= 0 && r.minSpeechRatio <= 1)) throw bad('minSpeechRatio', '[0, 1]');
  if (r.maxPendingWindows !== undefined && !(Number.isInteger(r.maxPendingWindows) && r.maxPendingWindows >= 1)) {
    throw bad('maxPendingWindows', 'an integer ≥ 1, or unset for no cap');
  }
  return Object.freeze(r);
}

/** Runs one window (frames × dims floats, copied before the promise settles) and resolves to probabilities. */
export type InferFn = (window: Float32Array) => Promise<Float32Array>;

/** The per-track emotion stream. */
export class EmotionTrack {
  /** Null when the input is already at the features' rate (an 8 kHz model on a phone line). */
  private readonly resampler: StreamingResampler | null;
  private readonly features: StreamingFeatures;
  private readonly gate: SpeechGate;
  private readonly normalizer: FrameNormalizer;
  private readonly frames: number;
  private readonly dims: number;
  /** Normalised frames, a ring of `frames` rows; and the speech flag of each. */
  private readonly ring: Float32Array;
  private readonly speechRing: Uint8Array;
  private readonly window: Float32Array;
  private readonly hopFrames: number;
  private readonly minSpeechRatio: number;
  private readonly frameMs: number;
  private readonly winMs: number;
  private framesSeen = 0;
  private speechInRing = 0;
  private lastScoredFrame = -1;
  /** Current speech run: first frame index, or -1. */
  private runStart = -1;
  private runReported = false;
  private readonly minRunFrames: number;
  private readonly smoothing: number;
  private chain: Promise<void> = Promise.resolve();
  private state: EmotionState | null = null;
  private readonly summary: TrackSummary;
  private audioSamples = 0;
  private closed = false;
  private readonly maxPending: number;
  private pending = 0;
  private skipping = false;
  /** Windows skipped because `maxPendingWindows` were already waiting for the model. */
  skippedWindows = 0;

  constructor(
    private readonly profile: ModelProfile,
    private readonly infer: InferFn,
    private readonly emit: (e: CallmoodEvent) => void,
    private readonly base: () => Omit<EventBase, 'timeMs'>,
    readonly track: Track,
    options: Partial<EmotionStreamOptions> = {},
    /** Input sample rate: 8000 for Twilio; replay passes a file's rate. */
    readonly inputRate = 8000,
  ) {
    const o = resolveEmotionStreamOptions(options);
    const fc = profile.window.feature;
    this.features = new StreamingFeatures(fc);
    this.resampler = inputRate === this.features.config.sampleRate ? null : new StreamingResampler(inputRate, this.features.config.sampleRate);
    this.gate = new SpeechGate(fc, profile.speechGate ?? {});
    this.dims = this.features.dims;
    this.normalizer = new FrameNormalizer(profile.normalization, this.dims);
    this.frames = profile.window.frames;
    this.ring = new Float32Array(this.frames * this.dims);
    this.speechRing = new Uint8Array(this.frames);
    this.window = new Float32Array(this.frames * this.dims);
    const rate = this.features.config.sampleRate;
    this.frameMs = (this.features.config.hop / rate) * 1000;
    this.winMs = (this.features.config.winLength / rate) * 1000;
    this.hopFrames = Math.max(1, Math.round(o.hopMs / this.frameMs));
    this.minSpeechRatio = o.minSpeechRatio ?? profile.window.minSpeechRatio;
    this.minRunFrames = Math.max(1, Math.round(o.minSpeechMs / this.frameMs));
    this.smoothing = o.smoothing;
    this.maxPending = o.maxPendingWindows ?? Infinity;
    this.summary = {
      audioMs: 0,
      speechMs: 0,
      emotionShare: Object.fromEntries(profile.labels.map((l) => [l, 0])),
      anger: { peak: 0, peakAtMs: null, durationMs: 0 },
      windows: 0,
    };
  }

  /** End time (ms) of frame k's audio. */
  private frameEndMs(k: number): number {
    return k * this.frameMs + this.winMs;
  }

  /** Adds audio at the input rate. `endMs` is accepted for the TrackSink interface; times come from sample counts. */
  push(samples: Float32Array, _endMs?: number): void {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, `emotion stream of track ${this.track} used after end()`);
    this.audioSamples += samples.length;
    const x = this.resampler ? this.resampler.push(samples) : samples;
    if (x.length > 0) this.features.push(x, this.onFrame);
  }

  private readonly onFrame = (frame: Float32Array, k: number): void => {
    const isSpeech = this.gate.push(frame);
    const slot = k % this.frames;
    if (this.framesSeen >= this.frames) this.speechInRing -= this.speechRing[slot];
    this.normalizer.process(frame, isSpeech, this.ring, 0, slot * this.dims);
    this.speechRing[slot] = isSpeech ? 1 : 0;
    this.speechInRing += this.speechRing[slot];
    this.framesSeen = k + 1;
    if (isSpeech) this.summary.speechMs += this.frameMs;
    this.trackSpeechRuns(k, isSpeech);
    if (this.framesSeen >= this.frames && (k + 1 - this.frames) % this.hopFrames === 0) this.scoreWindow(k);
  };

  private trackSpeechRuns(k: number, isSpeech: boolean): void {
    if (isSpeech) {
      if (this.runStart < 0) {
        this.runStart = k;
        this.runReported = false;
      }
      if (!this.runReported && k - this.runStart + 1 >= this.minRunFrames) {
        this.runReported = true;
        // Speech starts where the first speech frame's hop begins.
        const b = this.base();
        this.emit({ callSid: b.callSid, streamSid: b.streamSid, customParameters: b.customParameters, timeMs: this.runStart * this.frameMs, type: 'speech-start', track: this.track });
      }
    } else if (this.runStart >= 0) {
      if (this.runReported) {
        const startMs = this.runStart * this.frameMs;
        const endMs = this.frameEndMs(k - 1);
        const b = this.base();
        this.emit({ callSid: b.callSid, streamSid: b.streamSid, customParameters: b.customParameters, timeMs: endMs, type: 'speech-end', track: this.track, durationMs: endMs - startMs });
      }
      this.runStart = -1;
    }
  }

  private scoreWindow(k: number): void {
    const ratio = this.speechInRing / this.frames;
    if (ratio < this.minSpeechRatio) return;
    // Copy the ring into time order: oldest frame first.
    const first = (k + 1) % this.frames;
    const d = this.dims;
    this.window.set(this.ring.subarray(first * d), 0);
    this.window.set(this.ring.subarray(0, first * d), (this.frames - first) * d);
    // Speech frames new since the previous scored window: what this window adds to the call's speech time.
    const newFrom = Math.max(k - this.frames + 1, this.lastScoredFrame + 1);
    let newSpeech = 0;
    for (let j = newFrom; j <= k; j++) newSpeech += this.speechRing[j % this.frames];
    this.lastScoredFrame = k;
    const timeMs = this.frameEndMs(k);
    const windowStartMs = (k - this.frames + 1) * this.frameMs;
    if (this.pending >= this.maxPending) {
      this.skippedWindows++;
      if (!this.skipping) {
        this.skipping = true;
        const message = `window ending at ${timeMs} ms not scored: ${this.pending} windows of this track are still waiting for the model (the server is behind, or media arrives faster than real time); skipping until they drain`;
        this.emit({ ...this.base(), timeMs, type: 'error', code: ErrorCodes.INFERENCE, message, permanent: false });
      }
      return;
    }
    this.skipping = false;
    this.pending++;
    const queuedAt = performance.now();
    const result = this.infer(this.window).finally(() => this.pending--);
    this.chain = this.chain.then(() =>
      result.then(
        (probs) => this.onProbabilities(probs, timeMs, windowStartMs, ratio, newSpeech * this.frameMs, queuedAt),
        (err: unknown) => {
          const e = err as CallmoodError;
          this.emit({ ...this.base(), timeMs, type: 'error', code: e.code ?? ErrorCodes.INFERENCE, message: `inference failed: ${e.message}`, permanent: false });
        },
      ),
    );
  }

  private onProbabilities(p: Float32Array, timeMs: number, windowStartMs: number, speechRatio: number, newSpeechMs: number, queuedAt: number): void {
    const labels = this.profile.labels;
    const probs: LabelProbabilities = {};
    let top = 0;
    for (let i = 0; i < labels.length; i++) {
      probs[labels[i]] = p[i];
      if (p[i] > p[top]) top = i;
    }
    const a = this.smoothing;
    const smoothed: LabelProbabilities = {};
    let sTop = labels[0];
    for (const l of labels) {
      smoothed[l] = this.state ? (1 - a) * this.state.probs[l] + a * probs[l] : probs[l];
      if (smoothed[l] > smoothed[sTop]) sTop = l;
    }
    this.state = { probs: smoothed, label: sTop, confidence: smoothed[sTop] };
    const s = this.summary;
    s.windows++;
    s.emotionShare[labels[top]] += newSpeechMs;
    const angry = probs.angry ?? 0;
    if (angry > s.anger.peak) {
      s.anger.peak = angry;
      s.anger.peakAtMs = timeMs;
    }
    if (labels[top] === 'angry') s.anger.durationMs += newSpeechMs;
    // Events are built field by field, never by spreading the base into a literal with more fields: V8 then grows
    // the object one property at a time, which allocated 3.1 KB per event against 0.2 KB written out (measured in
    // Node 20); the fields keep the order the spread gave.
    const b = this.base();
    this.emit({
      callSid: b.callSid,
      streamSid: b.streamSid,
      customParameters: b.customParameters,
      timeMs,
      type: 'emotion',
      track: this.track,
      windowStartMs,
      speechRatio,
      probs,
      label: labels[top],
      confidence: p[top],
      state: this.state,
      latencyMs: performance.now() - queuedAt,
    });
  }

  /** Ends the track: flushes the audio (the last frames complete against silence), waits for pending windows. */
  async end(): Promise<TrackSummary> {
    if (!this.closed) {
      this.closed = true;
      const tail = this.resampler?.flush();
      if (tail && tail.length > 0) this.features.push(tail, this.onFrame);
      this.features.flush(this.onFrame);
      if (this.runStart >= 0) this.trackSpeechRuns(this.framesSeen, false);
    }
    await this.chain;
    const s = this.summary;
    s.audioMs = (this.audioSamples / this.inputRate) * 1000;
    const total = Object.values(s.emotionShare).reduce((a, b) => a + b, 0);
    const share: LabelProbabilities = {};
    for (const [l, ms] of Object.entries(s.emotionShare)) share[l] = total > 0 ? ms / total : 0;
    return { ...s, emotionShare: share, anger: { ...s.anger } };
  }
}
