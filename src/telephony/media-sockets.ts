/**
 * The media path: a provider's WebSocket upgrade (its MediaTransport's check, capacity, drain), one MediaSession per
 * socket (parsing with that transport: Twilio on `paths.media`, Telnyx on `paths.telnyxMedia`) and one
 * EmotionTrack per track, flow control (./flow-control.ts) and stalls (./stalls.ts). One broken socket never harms
 * another: every handler is wrapped, and what goes wrong becomes an `error` event and a log line with a stable code.
 * One call has one stream: a second stream claiming a call that is live here is refused (1008) and the first goes on.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { ErrorCodes, type CallmoodError } from '../errors.js';
import type { CallmoodOptions } from '../config/options.js';
import type { MicroBatcher } from '../stream/batcher.js';
import { EmotionTrack, type ModelProfile } from '../stream/track.js';
import type { CallEndReason, CallmoodEvent, Track } from '../stream/events.js';
import { withFields, type Logger } from '../util/log.js';
import { MediaSession, CloseCodes } from './session.js';
import type { SignatureGuard } from './signature.js';
import { twilioTransport } from './transports/twilio.js';
import type { MediaTransport } from './transports/types.js';
import { rejectUpgrade } from './events-feed.js';
import type { CallmoodMetrics } from './metrics.js';
import { closeSocket, identity, type Connection } from './connection.js';
import { FlowControl } from './flow-control.js';
import { StallWatch } from './stalls.js';

/** What the media path needs from the server around it. */
export interface MediaHost {
  readonly options: Readonly<CallmoodOptions>;
  readonly log: Logger;
  readonly metrics: CallmoodMetrics;
  readonly guard: SignatureGuard;
  /** Sends an event everywhere (listeners, feed, webhooks, policy). */
  publish(e: CallmoodEvent): void;
  /** The loaded model, or null before loading. */
  model(): { profile: ModelProfile; batcher: MicroBatcher } | null;
  /** The server is draining: new streams get 503. */
  readonly draining: boolean;
  /**
   * A call started (before its call-start goes out) or ended on a transport (its `name`): call control uses it to
   * pick the carrier that changes the call.
   */
  callTransport?(callSid: string, transport: string, phase: 'start' | 'end'): void;
}

export class MediaSockets {
  private readonly conns = new Set<Connection>();
  private readonly wss: WebSocketServer;
  private readonly flow: FlowControl;
  readonly stalls: StallWatch;

  constructor(private readonly host: MediaHost) {
    const o = host.options;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: o.maxMessageBytes, perMessageDeflate: false });
    this.flow = new FlowControl(
      { maxLeadMs: o.session.maxLeadMs, stallTimeoutMs: o.stallTimeoutMs },
      (conn, text) => {
        conn.session.handleMessage(text);
        this.countMedia(conn);
      },
      (conn, err) => this.internalError(conn, err),
    );
    this.stalls = new StallWatch(o.stallTimeoutMs, this.conns, (c) => void this.endConnection(c, 'stalled'), host.log);
  }

  /** Media streams with a call started and not yet ended. */
  get liveCalls(): number {
    let n = 0;
    for (const c of this.conns) if (c.base && !c.callEnded) n++;
    return n;
  }

  /** Open media-stream sockets (including ones before `start`). */
  get size(): number {
    return this.conns.size;
  }

  /** An upgrade on a media path: refused with an HTTP status, or a new stream speaking `transport`'s protocol. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, transport: MediaTransport = twilioTransport): void {
    const { options, log, metrics } = this.host;
    const refuse = (status: number, message: string) => {
      metrics.rejectedUpgrades.inc({ path: 'media', status: String(status) });
      rejectUpgrade(socket, status, message);
    };
    if (this.host.draining) return refuse(503, 'server shutting down');
    if (!this.host.model()) return refuse(503, 'model not loaded yet');
    const sig = transport.checkUpgrade(req, { guard: this.host.guard, log });
    if (!sig.ok) {
      log('warn', ErrorCodes.SIGNATURE, `media upgrade refused: ${sig.reason}`, { remote: req.socket.remoteAddress });
      return refuse(403, sig.reply);
    }
    if (this.conns.size >= options.maxCalls) {
      log('warn', 'CALLMOOD_FULL', `media upgrade refused: ${this.conns.size} streams open (maxCalls ${options.maxCalls})`, { remote: req.socket.remoteAddress });
      return refuse(503, 'too many calls');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      try {
        this.open(ws, req, transport);
      } catch (err) {
        log('error', (err as CallmoodError).code ?? 'CALLMOOD_SOCKET_ERROR', `media socket setup: ${(err as Error).message}`);
        ws.terminate();
      }
    });
  }

  /**
   * Drain: every stream ends with reason `shutdown` (its call-end carries the summary) and its socket closes with
   * 1001. Resolves when every call-end went out, or at `deadline`, whichever is first; returns whether in time.
   */
  async endAll(deadline: Promise<'timeout'>): Promise<boolean> {
    const ending = [...this.conns].map(async (c) => {
      c.endReason ??= 'shutdown';
      await this.endConnection(c, 'shutdown');
      closeSocket(c, CloseCodes.GOING_AWAY, 'server shutting down');
    });
    const inTime = (await Promise.race([Promise.all(ending), deadline])) !== 'timeout';
    for (const c of this.conns) closeSocket(c, CloseCodes.GOING_AWAY, 'server shutting down');
    return inTime;
  }

  /** Waits up to `timeoutMs` for the sockets to finish closing, then cuts the rest, and stops taking upgrades. */
  async close(timeoutMs: number): Promise<void> {
    this.stalls.stop();
    const until = Date.now() + timeoutMs;
    while (this.conns.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.conns) c.ws.terminate();
    this.wss.close();
  }

  private open(ws: WebSocket, req: IncomingMessage, transport: MediaTransport): void {
    const { options, log } = this.host;
    const model = this.host.model()!;
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const conn: Connection = {
      ws,
      session: null as unknown as MediaSession,
      remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      base: null,
      endReason: null,
      callEnded: false,
      done,
      resolveDone,
      counted: { media: 0, dropped: 0, gaps: 0, jumps: 0 },
      killTimer: null,
      paused: false,
      backlog: [],
    };
    // Every record about this stream carries its identity as fields once 'start' told it (the remote before).
    const connLog = withFields(log, () => identity(conn));
    const streamOptions = {
      ...options.stream,
      minSpeechRatio: options.stream.minSpeechRatio ?? undefined,
      maxPendingWindows: options.session.maxPendingWindows ?? undefined,
    };
    conn.session = new MediaSession(
      {
        emit: (e) => {
          if (e.type === 'call-start') {
            conn.base = { callSid: e.callSid, streamSid: e.streamSid, customParameters: e.customParameters };
            this.host.callTransport?.(e.callSid, transport.name, 'start');
          }
          if (e.type === 'call-end') conn.callEnded = true;
          this.host.publish(e);
          if (e.type === 'call-end') {
            this.host.callTransport?.(e.callSid, transport.name, 'end');
            conn.resolveDone();
          }
        },
        createTrack: (track: Track, base) =>
          new EmotionTrack(
            model.profile,
            (w) => model.batcher.infer(w),
            (e) => {
              if (e.type === 'error') log('error', e.code, e.message, { callSid: e.callSid, streamSid: e.streamSid, track });
              this.host.publish(e);
            },
            base,
            track,
            streamOptions,
          ),
        close: (code, reason) => closeSocket(conn, code, reason),
        log: connLog,
        // The policy, the feed's filter and the CRM's per-call order all key on callSid: two live streams of one
        // call would mix their events, and a second stream (a replayed signature) could steer another caller's call.
        admit: (callSid) => {
          for (const c of this.conns) {
            if (c !== conn && c.base?.callSid === callSid && !c.callEnded) {
              return `call ${callSid} already has a live stream (${c.base.streamSid}) on this server; a second stream of the same call is refused. Stream both tracks in one <Stream track="both_tracks">`;
            }
          }
          return null;
        },
      },
      options.session,
      transport,
    );
    this.conns.add(conn);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      try {
        if (isBinary) {
          // Not audio and not ordered with it: refused at once, paused or not.
          conn.session.handleBinary(Buffer.isBuffer(data) ? data.length : Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength);
          return;
        }
        const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
        this.flow.receive(conn, text);
      } catch (err) {
        this.internalError(conn, err);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports frames it cannot take (over maxPayload → 1009, bad UTF-8 → 1007, …) here, then closes.
      conn.endReason ??= 'error';
      const message = `media socket: ${err.message}${err.code ? ` (${err.code})` : ''}`;
      connLog('warn', ErrorCodes.PROTOCOL, message, { remote: conn.remote, wsCode: err.code });
      this.host.publish({ ...conn.session.identity, timeMs: 0, type: 'error', code: ErrorCodes.PROTOCOL, message, permanent: true });
    });
    ws.on('close', () => {
      if (conn.killTimer) clearTimeout(conn.killTimer);
      // What a paused stream had already sent (one socket read at most) is still its call's audio.
      if (conn.backlog.length > 0) {
        const rest = conn.backlog.splice(0);
        try {
          for (const text of rest) conn.session.handleMessage(text);
        } catch (err) {
          connLog('error', (err as CallmoodError).code ?? ErrorCodes.INTERNAL, `closing the stream: ${(err as Error).message}`, { err });
        }
      }
      void this.endConnection(conn, conn.endReason ?? 'disconnected').finally(() => this.conns.delete(conn));
    });
  }

  /** Ends a stream's call (once) and resolves when its call-end has gone out. */
  private async endConnection(conn: Connection, reason: CallEndReason): Promise<void> {
    try {
      await conn.session.end(reason);
    } catch (err) {
      this.host.log('error', (err as CallmoodError).code ?? 'CALLMOOD_END_ERROR', `ending the call: ${(err as Error).message}`, { ...identity(conn), err });
      conn.resolveDone();
    }
    // A stream that never started emits no call-end; one ended elsewhere (stop) is still finishing its tracks.
    if (!conn.base) conn.resolveDone();
    await conn.done;
  }

  private internalError(conn: Connection, err: unknown): void {
    const code = (err as CallmoodError).code ?? ErrorCodes.INTERNAL;
    const message = `internal error on ${conn.base?.callSid ?? 'a stream before start'}: ${(err as Error).message}`;
    this.host.log('error', code, `internal error: ${(err as Error).message}`, { ...identity(conn), err });
    this.host.publish({ ...conn.session.identity, timeMs: 0, type: 'error', code, message, permanent: true });
    conn.endReason ??= 'error';
    void this.endConnection(conn, 'error');
    closeSocket(conn, 1011, 'internal error');
  }

  private countMedia(conn: Connection): void {
    const { metrics } = this.host;
    const s = conn.session.stats;
    const c = conn.counted;
    if (s.mediaMessages !== c.media) metrics.mediaMessages.inc(s.mediaMessages - c.media);
    if (s.dropped !== c.dropped) metrics.chunksDropped.inc(s.dropped - c.dropped);
    if (s.gapsFilled !== c.gaps) metrics.gapsFilled.inc(s.gapsFilled - c.gaps);
    const jumps = conn.session.timestampJumps;
    if (jumps !== c.jumps) metrics.timestampJumps.inc(jumps - c.jumps);
    c.media = s.mediaMessages;
    c.dropped = s.dropped;
    c.gaps = s.gapsFilled;
    c.jumps = jumps;
  }
}
