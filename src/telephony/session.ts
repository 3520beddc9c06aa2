/**
 * One media stream (one WebSocket): the protocol state machine, the same for every provider; the provider's
 * MediaTransport (./transports/) parses its messages (Twilio by default). It validates each message, keeps the call's
 * tracks apart, turns `media` payloads into 8 kHz audio per track, fills gaps in the media timestamps with silence
 * and drops late or duplicate chunks (counting both), and reports everything as events. It never throws: a bad
 * message becomes an `error` event and a counter, so one broken call cannot harm another, and only what makes the
 * stream unusable (a wrong media format, too many errors) ends it.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { ALAW_TO_FLOAT, MulawPayloadDecoder, TWILIO_FRAME_BYTES } from '../audio/codecs.js';
import type { CallEndReason, CallmoodEvent, EventBase, Track, TrackSummary } from '../stream/events.js';
import type { Logger } from '../util/log.js';
import { twilioTransport } from './transports/twilio.js';
import type { InboundMessage, MediaTransport, StreamStart } from './transports/types.js';

/** What the session feeds each track's audio to: the per-track emotion stream. */
export interface TrackSink {
  /** 8 kHz samples (a view: copy to keep) that end at call time `endMs`. */
  push(samples: Float32Array, endMs: number): void;
  /** The stream ended: finish pending work and return the track's summary. */
  end(): Promise<TrackSummary>;
}

/** Everything the session needs from its owner. */
export interface SessionHooks {
  emit(event: CallmoodEvent): void;
  /** Creates the emotion stream of one track once `start` arrives; `base` gives it the call's identity. */
  createTrack(track: Track, base: () => Omit<EventBase, 'timeMs'>): TrackSink;
  /** Close the socket with a WebSocket close code and reason. */
  close(code: number, reason: string): void;
  /** A log record with a stable code; the call's identity (callSid, streamSid, track) travels in `fields`. */
  log: Logger;
  /**
   * Asked when a valid `start` arrives: a reason to refuse this stream (e.g. its call already has a live stream on
   * this server), or null to accept it. Without it every start is accepted.
   */
  admit?(callSid: string, streamSid: string): string | null;
  /** The wall clock, ms (default Date.now; tests pass their own). */
  now?(): number;
}

/** Session limits. */
export interface SessionOptions {
  /** Largest decoded media payload accepted, bytes (Twilio sends 160 = 20 ms). */
  maxPayloadBytes: number;
  /** Longest gap in media timestamps filled with silence, ms; a longer jump is counted and not filled. */
  maxGapFillMs: number;
  /** After this many protocol errors the stream is closed (1008). */
  maxProtocolErrors: number;
  /**
   * How far a stream's audio may run ahead of the wall clock, ms (the server pauses a faster stream there). A
   * timestamp jump beyond `maxGapFillMs` is believed only if it keeps the audio within this lead; else the chunk is
   * dropped as an error and call time stays where it was.
   */
  maxLeadMs: number;
}

/** Defaults: payloads up to 1 s, gaps filled up to 10 s, 100 protocol errors tolerated, 2 s of lead (the server's). */
export const DEFAULT_SESSION_OPTIONS: Readonly<SessionOptions> = Object.freeze({
  maxPayloadBytes: 50 * TWILIO_FRAME_BYTES,
  maxGapFillMs: 10_000,
  maxProtocolErrors: 100,
  maxLeadMs: 2000,
});

/** WebSocket close codes used (RFC 6455 §7.4.1). */
export const CloseCodes = { NORMAL: 1000, GOING_AWAY: 1001, UNSUPPORTED_DATA: 1003, POLICY: 1008, TOO_BIG: 1009 } as const;

interface TrackState {
  sink: TrackSink;
  /** Call time (ms) up to which this track has audio. */
  endMs: number;
  started: boolean;
}

/** One media stream's protocol state. */
export class MediaSession {
  private readonly opts: SessionOptions;
  private decoder: MulawPayloadDecoder;
  private readonly silence: Float32Array;
  private start: StreamStart | null = null;
  private tracks = new Map<Track, TrackState>();
  private lastSequence = -1;
  private ended = false;
  /** Counters reported in call-end. */
  readonly stats = { mediaMessages: 0, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 };
  /** Media chunks dropped for a timestamp jump the wall clock cannot explain (also counted in `protocolErrors`). */
  timestampJumps = 0;
  /** Wall-clock ms of the last message of any kind. */
  lastMessageAt: number;
  /**
   * Wall-clock ms of the last audio progress: the stream opening, `start`, or a media chunk that moved call time on.
   * Stall detection reads this, not `lastMessageAt`: a client sending only messages that carry no audio (bad ones,
   * refused ones, duplicates) would otherwise keep its stream, and a `maxCalls` slot, forever.
   */
  lastProgressAt: number;
  /** Wall-clock ms at which call time 0 fell, from the first media chunk (its timestamp back from its arrival). */
  private wallOrigin = -1;
  /** Wall-clock ms `start` arrived; -1 before. */
  private startedAt = -1;
  /** Identity claimed by a `start` that was not accepted: error events carry what is known of the call. */
  private known: Omit<EventBase, 'timeMs'> | null = null;
  private readonly now: () => number;

  constructor(
    private readonly hooks: SessionHooks,
    options: Partial<SessionOptions> = {},
    private readonly transport: MediaTransport = twilioTransport,
  ) {
    this.opts = { ...DEFAULT_SESSION_OPTIONS, ...options };
    this.now = hooks.now ?? Date.now;
    this.lastMessageAt = this.lastProgressAt = this.now();
    this.decoder = new MulawPayloadDecoder(this.opts.maxPayloadBytes);
    // μ-law silence decodes to 0; gaps are filled in 20 ms pieces from this buffer.
    this.silence = new Float32Array(TWILIO_FRAME_BYTES);
  }

  /** The call this stream belongs to, once `start` has arrived. */
  get callSid(): string | null {
    return this.start?.callSid ?? null;
  }

  /**
   * How far this stream's audio runs ahead of the wall clock, ms: call time received minus the time since call time
   * 0. Twilio sends in real time, so a live stream stays near 0 (negative when it arrives late). A client sending
   * faster than real time makes it grow: the owner can pause reading the socket until it is back near 0, so one
   * flooding stream cannot take the event loop from every other call.
   */
  get leadMs(): number {
    return this.wallOrigin < 0 ? 0 : this.callTimeMs() - (this.now() - this.wallOrigin);
  }

  /** The call's identity as far as it is known: from `start`, else from a `start` that was refused, else empty. */
  get identity(): Omit<EventBase, 'timeMs'> {
    const { timeMs: _t, ...rest } = this.base(0);
    return rest;
  }

  /** True after call-end was emitted. */
  get isEnded(): boolean {
    return this.ended;
  }

  private base(timeMs: number): EventBase {
    if (!this.start && this.known) return { ...this.known, customParameters: { ...this.known.customParameters }, timeMs };
    return {
      callSid: this.start?.callSid ?? '',
      streamSid: this.start?.streamSid ?? '',
      timeMs,
      customParameters: this.start?.customParameters ?? {},
    };
  }

  private callTimeMs(): number {
    let t = 0;
    for (const s of this.tracks.values()) t = Math.max(t, s.endMs);
    return t;
  }

  /** Handles one text message from the socket. Never throws. */
  handleMessage(text: string): void {
    this.lastMessageAt = this.now();
    if (this.ended) return;
    let msg: InboundMessage;
    try {
      msg = this.transport.parse(text);
    } catch (err) {
      const e = err as CallmoodError;
      // A bad `start` still names its call, most often: its errors say which call they are about.
      if (!this.start) this.known = this.transport.identityHint(text) ?? this.known;
      if (e.code === ErrorCodes.MEDIA_FORMAT) {
        this.fail(e, CloseCodes.UNSUPPORTED_DATA);
        return;
      }
      this.protocolError(e.code ?? ErrorCodes.PROTOCOL, e.message);
      return;
    }
    const seq = 'sequence' in msg ? msg.sequence : undefined;
    if (seq !== undefined) {
      if (this.lastSequence >= 0 && seq !== this.lastSequence + 1) this.stats.sequenceGaps++;
      this.lastSequence = Math.max(this.lastSequence, seq);
    }
    switch (msg.event) {
      case 'connected':
        return;
      case 'start':
        this.onStart(msg);
        return;
      case 'media': {
        if (!this.start) {
          this.protocolError(ErrorCodes.PROTOCOL, "'media' before 'start': the chunk is dropped");
          return;
        }
        this.onMedia(msg.track, msg.timestampMs, msg.payload);
        return;
      }
      case 'dtmf':
        if (!this.start) return this.protocolError(ErrorCodes.PROTOCOL, "'dtmf' before 'start'");
        this.hooks.emit({ ...this.base(this.callTimeMs()), type: 'dtmf', track: msg.track, digit: msg.digit });
        return;
      case 'mark':
        if (!this.start) return this.protocolError(ErrorCodes.PROTOCOL, "'mark' before 'start'");
        this.hooks.emit({ ...this.base(this.callTimeMs()), type: 'mark', name: msg.name });
        return;
      case 'provider-error':
        // The provider's own failure, not this client's: reported, not counted against maxProtocolErrors.
        this.hooks.log('warn', ErrorCodes.PROTOCOL, msg.message, this.logIdentity());
        this.hooks.emit({ ...this.base(this.callTimeMs()), type: 'error', code: ErrorCodes.PROTOCOL, message: msg.message, permanent: false });
        return;
      case 'stop':
        void this.end('stop');
        this.hooks.close(CloseCodes.NORMAL, 'stream stopped');
        return;
    }
  }

  /** Handles one binary frame from the socket: the providers send only text frames, so it is refused. Never throws. */
  handleBinary(bytes: number): void {
    this.lastMessageAt = this.now();
    if (this.ended) return;
    this.protocolError(ErrorCodes.PROTOCOL, `a binary WebSocket frame (${bytes} bytes) is refused: ${this.transport.label} send every message as JSON in a text frame`);
  }

  private onStart(msg: StreamStart): void {
    if (this.start) {
      this.protocolError(ErrorCodes.PROTOCOL, `a second 'start' (stream ${msg.streamSid}) on stream ${this.start.streamSid} is ignored`);
      return;
    }
    const refusal = this.hooks.admit?.(msg.callSid, msg.streamSid) ?? null;
    if (refusal !== null) {
      this.known = { callSid: msg.callSid, streamSid: msg.streamSid, customParameters: msg.customParameters };
      this.fail(new CallmoodError(ErrorCodes.PROTOCOL, refusal), CloseCodes.POLICY);
      return;
    }
    this.start = msg;
    this.known = null;
    this.startedAt = this.lastProgressAt = this.now();
    if (msg.mediaFormat.encoding === 'alaw') this.decoder = new MulawPayloadDecoder(this.opts.maxPayloadBytes, ALAW_TO_FLOAT, 'A-law');
    for (const track of new Set(msg.tracks)) this.openTrack(track);
    this.hooks.emit({ ...this.base(0), type: 'call-start', accountSid: msg.accountSid ?? null, tracks: [...this.tracks.keys()] });
    this.hooks.log('info', 'CALLMOOD_CALL_START', `call started, tracks ${[...this.tracks.keys()].join(',')}`, {
      callSid: msg.callSid,
      streamSid: msg.streamSid,
      tracks: [...this.tracks.keys()],
    });
  }

  private openTrack(track: Track): TrackState {
    const sink = this.hooks.createTrack(track, () => this.identity);
    const state: TrackState = { sink, endMs: 0, started: false };
    this.tracks.set(track, state);
    return state;
  }

  private onMedia(track: Track, timestampMs: number | undefined, payload: string): void {
    let state = this.tracks.get(track);
    // A provider whose start names no tracks (Telnyx) opens a track with its first chunk.
    if (!state && this.start && !this.start.tracksAnnounced) {
      state = this.openTrack(track);
      this.hooks.log('info', 'CALLMOOD_TRACK_OPEN', `track '${track}' opened by its first media chunk`, { ...this.logIdentity(), track });
    }
    if (!state) {
      this.protocolError(ErrorCodes.PROTOCOL, `media on track '${track}' which 'start' did not announce (${[...this.tracks.keys()].join(', ')})`, { track });
      return;
    }
    let samples: Float32Array;
    try {
      samples = this.decoder.decode(payload);
    } catch (err) {
      this.protocolError((err as CallmoodError).code ?? ErrorCodes.INVALID_AUDIO, (err as Error).message, { track });
      return;
    }
    this.stats.mediaMessages++;
    // Without a timestamp in ms the chunk follows the track's audio so far.
    const timestamp = timestampMs ?? (state.started ? state.endMs : 0);
    const now = this.now();
    const jump = state.started ? timestamp - state.endMs : timestamp;
    if (jump > this.opts.maxGapFillMs) {
      // Gap filling does not cover it: believe the jump only if the wall clock moved about as far (a real silence on
      // the line). Call time then runs at most maxLeadMs ahead of the wall clock, which flow control already allows.
      const origin = this.wallOrigin >= 0 ? this.wallOrigin : this.startedAt;
      const aheadMs = timestamp - (now - origin);
      if (!(aheadMs <= this.opts.maxLeadMs)) {
        this.timestampJumps++;
        this.protocolError(
          ErrorCodes.PROTOCOL,
          `media timestamp ${timestamp} on track '${track}' jumps ${jump} ms ahead, ${Math.round(aheadMs)} ms ahead of the wall clock; ` +
            `at most maxLeadMs (${this.opts.maxLeadMs} ms) ahead is believed: the chunk is dropped and call time stays at ${state.endMs} ms`,
        );
        return;
      }
    }
    if (this.wallOrigin < 0) this.wallOrigin = now - timestamp;
    const durationMs = samples.length / 8;
    if (!state.started) {
      // The first chunk sets where this track's audio begins; earlier time is silence, but not a gap in the stream
      // (Twilio's first chunk carries a timestamp above 0, e.g. 52 ms in the real log): not counted.
      state.started = true;
      if (timestamp > 0) this.fill(state, Math.min(timestamp, this.opts.maxGapFillMs), false);
      state.endMs = timestamp;
    }
    const gap = timestamp - state.endMs;
    // Timestamps are whole ms and chunks 20 ms: a mismatch under 1 ms is rounding, not a gap.
    if (gap <= -1) {
      this.stats.dropped++;
      return;
    }
    if (gap >= 1) {
      if (gap > this.opts.maxGapFillMs) {
        this.protocolError(ErrorCodes.PROTOCOL, `media timestamp jumps ${gap} ms on track '${track}'; gaps over ${this.opts.maxGapFillMs} ms are not filled`, { track });
      } else {
        this.fill(state, gap);
      }
      state.endMs = timestamp;
    }
    state.endMs += durationMs;
    this.lastProgressAt = now;
    state.sink.push(samples, state.endMs);
  }

  private fill(state: TrackState, ms: number, isGap = true): void {
    let left = Math.round(ms * 8);
    if (left <= 0) return;
    if (isGap) {
      this.stats.gapsFilled++;
      this.stats.gapMs += ms;
    }
    while (left > 0) {
      const n = Math.min(left, this.silence.length);
      state.endMs += n / 8;
      state.sink.push(this.silence.subarray(0, n), state.endMs);
      left -= n;
    }
  }

  /** The call's identity as log fields: what `identity` knows (nothing before a 'start'). */
  private logIdentity(): Record<string, string> {
    const { callSid, streamSid } = this.identity;
    const fields: Record<string, string> = {};
    if (callSid) fields.callSid = callSid;
    if (streamSid) fields.streamSid = streamSid;
    return fields;
  }

  private protocolError(code: string, message: string, fields?: { track: Track }): void {
    this.stats.protocolErrors++;
    this.hooks.log('warn', code, message, { ...this.logIdentity(), ...fields });
    this.hooks.emit({ ...this.base(this.callTimeMs()), type: 'error', code, message, permanent: false });
    if (this.stats.protocolErrors >= this.opts.maxProtocolErrors) {
      this.fail(new CallmoodError(ErrorCodes.PROTOCOL, `${this.stats.protocolErrors} protocol errors on one stream; closing it`), CloseCodes.POLICY);
    }
  }

  private fail(err: CallmoodError, closeCode: number): void {
    this.hooks.log('error', err.code, err.message, this.logIdentity());
    this.hooks.emit({ ...this.base(this.callTimeMs()), type: 'error', code: err.code, message: err.message, permanent: true });
    void this.end('error');
    this.hooks.close(closeCode, err.message.slice(0, 120));
  }

  /** Ends the call once: waits for each track's pending windows, then emits call-end with the summaries. */
  async end(reason: CallEndReason): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    if (!this.start) {
      this.hooks.log('info', 'CALLMOOD_STREAM_CLOSED', `stream closed before 'start' (${reason})`);
      return;
    }
    const summary: Partial<Record<Track, TrackSummary>> = {};
    for (const [track, state] of this.tracks) {
      try {
        summary[track] = await state.sink.end();
      } catch (err) {
        this.hooks.log('error', (err as CallmoodError).code ?? ErrorCodes.INTERNAL, `ending the track: ${(err as Error).message}`, { ...this.logIdentity(), track });
      }
    }
    const durationMs = this.callTimeMs();
    this.hooks.emit({ ...this.base(durationMs), type: 'call-end', reason, durationMs, summary, stats: { ...this.stats } });
    this.hooks.log('info', 'CALLMOOD_CALL_END', `call ended (${reason}) after ${(durationMs / 1000).toFixed(1)} s`, { ...this.logIdentity(), reason, durationMs, ...this.stats });
  }
}
