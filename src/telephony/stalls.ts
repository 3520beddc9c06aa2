/**
 * Stall detection: a media stream whose audio has not moved on for `stallTimeoutMs` ends as `stalled` and its socket
 * closes with 1001. Audio progress counts, not message arrival: messages that move no audio on (bad, refused,
 * duplicate) keep no stream alive. A paused stream (flow control) is resumed within stallTimeoutMs / 2, so flow
 * control never stalls one. The sweep runs every stallTimeoutMs / 4 (20 ms to 1 s).
 */
import { WebSocket } from 'ws';
import type { Logger } from '../util/log.js';
import { CloseCodes } from './session.js';
import { closeSocket, identity, type Connection } from './connection.js';

export class StallWatch {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly stallTimeoutMs: number,
    private readonly conns: Iterable<Connection>,
    private readonly end: (conn: Connection) => void,
    private readonly log: Logger,
  ) {}

  /** Starts the periodic sweep (idempotent). */
  start(): void {
    if (this.timer) return;
    const period = Math.max(20, Math.min(1000, Math.floor(this.stallTimeoutMs / 4)));
    this.timer = setInterval(() => this.check(), period);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Ends every open stream whose audio has not progressed for stallTimeoutMs. */
  check(now = Date.now()): void {
    for (const c of this.conns) {
      if (c.endReason || c.session.isEnded || c.ws.readyState !== WebSocket.OPEN) continue;
      const silentMs = now - c.session.lastProgressAt;
      if (silentMs < this.stallTimeoutMs) continue;
      c.endReason = 'stalled';
      this.log('warn', 'CALLMOOD_STALLED', `no audio for ${silentMs} ms (stallTimeoutMs ${this.stallTimeoutMs}): stream ended`, { ...identity(c), silentMs });
      this.end(c);
      closeSocket(c, CloseCodes.GOING_AWAY, 'stream stalled');
    }
  }
}
