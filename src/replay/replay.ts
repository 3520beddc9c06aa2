/**
 * Offline replay of a recorded call through the live emotion stream: the same EmotionTrack per track, the same
 * MicroBatcher in front of the same model, the same events. What differs from a live call is only where the audio
 * comes from and how fast it goes.
 *
 * Replay = live, by construction:
 * - An 8 kHz file (μ-law, A-law or PCM) enters each track at 8 kHz, as a live call's decoded μ-law does, and the
 *   track takes it to the model's feature rate exactly as live. μ-law WAV samples are decoded by the same table as
 *   Twilio payloads (MULAW_TO_FLOAT), so an 8 kHz μ-law recording feeds the track the very samples the live call fed it.
 * - A file at another rate enters the track at its own rate, and the track's resampler takes it to the model's
 *   feature rate (one resampling, not two).
 * - Audio goes in one segment (a minute by default) at a time; EmotionTrack's output does not depend on the chunking
 *   (its resampler and features are streaming and bit-exact), so this equals Twilio's 20 ms media messages, which
 *   the call-end statistics still count.
 * - Every time in an event is call time from sample counts, never the wall clock.
 *
 * Order: events come out in call-time order (ties: call-start, speech-start, emotion, speech-end, error, call-end;
 * inbound before outbound), whatever order inference finished in. Live, an emotion event goes out after its
 * inference, so the same events may arrive interleaved differently; their content is the same.
 *
 * Determinism: a file's windows are batched by this file's own MicroBatcher, in a fixed order (per segment: the
 * inbound track's windows, then the outbound's; batches of `maxBatch`), so the batches, and so every number in the
 * events, are the same whichever worker replays the file and however many run.
 *
 * Wall-clock fields are not comparable with a live call: `latencyMs` of an emotion event is the time from the
 * window being queued to its result in this replay (large batches make it large), and `atMs` of an action-result is
 * when the replay made it.
 */
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { audioSource, openAudioFile, rawAudioSchema, DEFAULT_RAW_AUDIO, type AudioSource, type RawAudioOptions } from '../audio/read.js';
import type { DecodedAudio } from '../audio/types.js';
import { DEFAULT_OPTIONS, type StreamSettings } from '../config/options.js';
import { resolveModelDir } from '../config/load.js';
import { BufferPool, MicroBatcher, type InferenceEngine } from '../stream/batcher.js';
import { InProcessEngine } from '../stream/engine.js';
import { EmotionTrack, modelProfile, type ModelProfile } from '../stream/track.js';
import type { CallEndEvent, CallmoodEvent, EventBase, Track, TrackSummary } from '../stream/events.js';
import type { ModelMetadata } from '../model/io.js';
import { describeIssues } from '../util/issues.js';
import { resolveChannels } from './channels.js';
import { replayIds } from './ids.js';

/**
 * Sees every event of a replayed call in order and returns events to add right after it (e.g. a dialog policy's
 * `action` and `action-result` decisions). It is called once per event, in call-time order.
 */
export type EventObserver = (event: CallmoodEvent) => CallmoodEvent[];

/** How a recording is replayed. */
export interface ReplayOptions {
  /** Which channel each party is on, e.g. `caller=left,agent=right`; null = caller on channel 0, agent on channel 1 when the file has one. */
  channels: string | null;
  /** The per-track emotion stream settings, the same as the live server's `stream` options (take them from its config to hear what it would hear). */
  stream: StreamSettings;
  /** Largest inference batch. Offline every batch is full; on the wasm backend a window costs least in batches of 32–64 (larger ones spill the caches). */
  maxBatch: number;
  /** Seconds of audio pushed before the replay waits for their windows' results: bounds the memory of long recordings. */
  segmentS: number;
  /** accountSid in call-start (a recording carries none). */
  accountSid: string | null;
  /** customParameters of every event (a recording carries none). */
  customParameters: Record<string, string>;
  /** How a headerless G.711 file (`.ul`, `.al`, …) is laid out: it has no header to say. Files with a header ignore it. */
  raw: RawAudioOptions;
}

/** Defaults: the live server's stream settings, batches of 32 (see BatchSettings.maxBatch), 60 s segments, no account, no parameters. */
export const DEFAULT_REPLAY_OPTIONS: Readonly<ReplayOptions> = Object.freeze({
  channels: null,
  stream: DEFAULT_OPTIONS.stream,
  maxBatch: 32,
  segmentS: 60,
  accountSid: null,
  customParameters: Object.freeze({}) as Record<string, string>,
  raw: DEFAULT_RAW_AUDIO,
});

const schema = z.strictObject({
  channels: z.string().min(1).nullable(),
  stream: z.strictObject({
    hopMs: z.number().min(10).max(5000),
    smoothing: z.number().gt(0).max(1),
    minSpeechMs: z.number().min(0).max(5000),
    minSpeechRatio: z.number().min(0).max(1).nullable(),
  }),
  maxBatch: z.number().int().min(1).max(4096),
  segmentS: z.number().min(1).max(3600),
  accountSid: z.string().nullable(),
  customParameters: z.record(z.string(), z.string()),
  raw: rawAudioSchema,
});

const ALLOWED: Record<string, string> = {
  channels: "null or a spec such as 'caller=left,agent=right'",
  'stream.hopMs': 'ms in [10, 5000]',
  'stream.smoothing': '(0, 1]',
  'stream.minSpeechMs': 'ms in [0, 5000]',
  'stream.minSpeechRatio': 'null or [0, 1]',
  maxBatch: 'an integer in [1, 4096]',
  segmentS: 'seconds in [1, 3600]',
  accountSid: 'null or a string',
  customParameters: 'an object of string values',
  'raw.sampleRate': 'an integer number of Hz in [1000, 192000] (8000 on a phone line)',
  'raw.channels': 'an integer in [1, 32]',
};

/** Merges `o` over the defaults (stream field by field) and validates once; INVALID_OPTION names the field and what is allowed. */
export function resolveReplayOptions(o: Partial<Omit<ReplayOptions, 'stream' | 'raw'> & { stream: Partial<StreamSettings>; raw: Partial<RawAudioOptions> }> = {}): Readonly<ReplayOptions> {
  const merged = { ...DEFAULT_REPLAY_OPTIONS, ...o, stream: { ...DEFAULT_REPLAY_OPTIONS.stream, ...o.stream }, raw: { ...DEFAULT_REPLAY_OPTIONS.raw, ...o.raw } };
  const r = schema.safeParse(merged);
  if (!r.success) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, describeIssues(r.error, merged, schema, { noun: 'replay option', allowedAt: (p) => ALLOWED[p.join('.')] }));
  }
  return Object.freeze(r.data as ReplayOptions);
}

/** The model a replay runs: loaded once, shared by every call this thread replays. */
export interface ReplayModel {
  engine: InferenceEngine;
  profile: ModelProfile;
  metadata: ModelMetadata;
  /** The model directory, resolved. */
  dir: string;
  /** Batch buffers shared by the files replayed with this model (see REPLAY_BUFFERS); without it each file's batcher allocates its own. */
  buffers?: BufferPool;
  close(): Promise<void>;
}

/**
 * Batch buffers a replay thread keeps: the batches one 60 s segment of a dual-channel call can queue at once (at
 * most 120 windows per track at the default 500 ms hop, 240 at a 250 ms hop: up to 15 batches of 32) and one more.
 * Allocating them per file instead allocated 27 MB outside the JavaScript heap per 10-minute bench call.
 */
const REPLAY_BUFFERS = 16;

/** Loads a model directory on this thread (the replay's core: one thread, one model). */
export async function loadReplayModel(modelDir: string = DEFAULT_OPTIONS.modelDir): Promise<ReplayModel> {
  const dir = resolveModelDir(modelDir);
  const engine = await InProcessEngine.load(dir);
  const buffers = new BufferPool(REPLAY_BUFFERS);
  return { engine, profile: modelProfile(engine.metadata), metadata: engine.metadata, dir, buffers, close: () => engine.close() };
}

/** What a replay produced. */
export interface ReplayResult {
  /** The name the ids derive from (path relative to the replayed folder, or the file's base name). */
  name: string;
  callSid: string;
  streamSid: string;
  /** The recording as read. */
  source: { container: string; encoding: string; sampleRate: number; channels: number; durationS: number };
  /** The file channel each track was read from. */
  channels: Partial<Record<Track, number>>;
  /** Every event, in call-time order, the observer's right after their cause. */
  events: CallmoodEvent[];
  /** The call-end event (also the last of the stream's own events). */
  callEnd: CallEndEvent;
  /** Windows scored, batches run, and ms spent inside the model: wall clock, and CPU of this process (for the benchmark). */
  stats: { windows: number; batches: number; inferenceMs: number; inferenceCpuMs: number };
}

const ORDER: Record<CallmoodEvent['type'], number> = {
  'call-start': 0,
  'speech-start': 1,
  emotion: 2,
  'speech-end': 3,
  dtmf: 4,
  mark: 5,
  error: 6,
  action: 7,
  'action-result': 8,
  'call-end': 9,
};
const TRACK_ORDER = (e: CallmoodEvent) => ('track' in e && e.track === 'outbound' ? 1 : 0);

/** call-start first and call-end last, as live; the last frames complete against silence and may end past the audio. */
const AT = (e: CallmoodEvent) => (e.type === 'call-start' ? -Infinity : e.type === 'call-end' ? Infinity : e.timeMs);

/** Orders events by call time, then by type (see the module comment), then inbound before outbound. Stable. */
export function sortEvents(events: CallmoodEvent[]): CallmoodEvent[] {
  return events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => AT(a.e) - AT(b.e) || ORDER[a.e.type] - ORDER[b.e.type] || TRACK_ORDER(a.e) - TRACK_ORDER(b.e) || a.i - b.i)
    .map((x) => x.e);
}

/**
 * Replays a recording, decoded or opened (see the module comment). `name` gives the call's ids; `observe` may add
 * events.
 */
export async function replayAudio(
  recording: DecodedAudio | AudioSource,
  name: string,
  model: ReplayModel,
  options: Partial<ReplayOptions> = {},
  hooks: { observe?: EventObserver } = {},
): Promise<ReplayResult> {
  const o = resolveReplayOptions(options);
  const audio = 'read' in recording ? recording : audioSource(recording);
  const trackChannels = resolveChannels(o.channels ?? undefined, audio.channelCount, name);
  const { callSid, streamSid } = replayIds(name);
  const base: Omit<EventBase, 'timeMs'> = { callSid, streamSid, customParameters: { ...o.customParameters } };
  const rate = audio.sampleRate;
  const raw: CallmoodEvent[] = [];
  const emit = (e: CallmoodEvent) => raw.push(e);

  // The batcher is this call's alone (so its batches depend on this file only) over the shared engine, which it must
  // not close.
  const stats = { windows: 0, batches: 0, inferenceMs: 0, inferenceCpuMs: 0 };
  const engine = model.engine;
  const batcher = new MicroBatcher(
    {
      windowSize: engine.windowSize,
      classes: engine.classes,
      predict: async (x, n) => {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        // An in-process engine computes inside this call, so the CPU time around it is the model's.
        const pending = engine.predict(x, n);
        const c1 = process.cpuUsage(c0);
        stats.inferenceCpuMs += (c1.user + c1.system) / 1000;
        try {
          return await pending;
        } finally {
          stats.inferenceMs += performance.now() - t0;
          stats.batches++;
          stats.windows += n;
        }
      },
      close: async () => {},
    },
    { maxBatch: o.maxBatch, maxWaitMs: 0, maxInFlight: 1 },
    model.buffers,
  );
  let outstanding = 0;
  let idle: (() => void) | null = null;
  const settled = () => {
    if (--outstanding === 0 && idle) idle();
  };
  const infer = (w: Float32Array) => {
    outstanding++;
    const p = batcher.infer(w);
    p.then(settled, settled);
    return p;
  };
  const streamOptions = { ...o.stream, minSpeechRatio: o.stream.minSpeechRatio ?? undefined };
  const tracks = (['inbound', 'outbound'] as Track[])
    .filter((t) => trackChannels[t] !== undefined)
    .map((t) => ({
      track: t,
      channel: trackChannels[t]!,
      stream: new EmotionTrack(model.profile, infer, emit, () => base, t, streamOptions, rate),
    }));

  // Field order as the live session writes them, so JSON lines of a replay and of a live call line up.
  const at = (timeMs: number): EventBase => ({ callSid, streamSid, timeMs, customParameters: base.customParameters });
  emit({ ...at(0), type: 'call-start', accountSid: o.accountSid, tracks: tracks.map((t) => t.track) });
  const n = audio.frames;
  const chunk = Math.max(1, Math.round(rate / 50));
  const segment = chunk * Math.max(1, Math.round(o.segmentS * 50));
  // One buffer per channel, reused for every segment: the tracks take their samples synchronously and keep none.
  const buffers = Array.from({ length: audio.channelCount }, () => new Float32Array(Math.min(n, segment)));
  let chunks = 0;
  try {
    for (let s = 0; s < n; s += segment) {
      const end = Math.min(n, s + segment);
      audio.read(s, end, buffers);
      // A segment goes in as one piece: the stream's events do not depend on how its audio is cut (its times come
      // from sample counts; test/track.test.ts), and one push instead of 3,000 per minute saves the per-call overhead.
      for (const t of tracks) t.stream.push(buffers[t.channel].subarray(0, end - s), (end / rate) * 1000);
      chunks += tracks.length * Math.ceil((end - s) / chunk);
      if (outstanding > 0) await new Promise<void>((r) => (idle = r));
      idle = null;
    }
    const summary: Partial<Record<Track, TrackSummary>> = {};
    const ended = await Promise.all(tracks.map((t) => t.stream.end()));
    tracks.forEach((t, i) => (summary[t.track] = ended[i]));
    const durationMs = (n / rate) * 1000;
    emit({
      ...at(durationMs),
      type: 'call-end',
      reason: 'stop',
      durationMs,
      summary,
      // In replay, mediaMessages counts the 20 ms chunks fed (what Twilio would have sent); nothing is lost or late.
      stats: { mediaMessages: chunks, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 },
    });
  } finally {
    await batcher.close();
  }

  const ordered = sortEvents(raw);
  const events: CallmoodEvent[] = [];
  for (const e of ordered) {
    events.push(e);
    if (!hooks.observe) continue;
    let added: CallmoodEvent[];
    try {
      added = hooks.observe(e);
    } catch (err) {
      if (err instanceof CallmoodError) throw err;
      throw new CallmoodError(ErrorCodes.INTERNAL, `${name}: the event observer failed on ${e.type} at ${e.timeMs} ms: ${(err as Error).message}`, { cause: err });
    }
    events.push(...added);
  }
  const callEnd = ordered.find((e): e is CallEndEvent => e.type === 'call-end')!;
  return {
    name,
    callSid,
    streamSid,
    source: { container: audio.container, encoding: audio.encoding, sampleRate: rate, channels: audio.channelCount, durationS: audio.durationS },
    channels: trackChannels,
    events,
    callEnd,
    stats,
  };
}

/**
 * Opens a recording (any format readAudioFile takes; a headerless G.711 file as `options.raw` says) and replays it;
 * `name` defaults to the file's base name. WAV and AIFF PCM and G.711 are decoded a segment at a time as the replay
 * goes (see AudioSource).
 */
export async function replayFile(
  path: string,
  model: ReplayModel,
  options: Partial<ReplayOptions> = {},
  hooks: { observe?: EventObserver; name?: string } = {},
): Promise<ReplayResult> {
  const audio = await openAudioFile(path, { raw: resolveReplayOptions(options).raw });
  return replayAudio(audio, hooks.name ?? path.split(/[\\/]/).pop() ?? path, model, options, hooks);
}
