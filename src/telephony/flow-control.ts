/**
 * Flow control: Twilio sends 20 ms every 20 ms; a client sending far faster (a replay tool, a bug, an attack) would
 * otherwise queue its windows ahead of every other call. Once its audio runs more than `maxLeadMs` ahead of the wall
 * clock, its socket is paused until the clock catches up halfway (TCP pushes back on the sender meanwhile). ws still
 * hands over the rest of the read it was parsing; those messages wait in the backlog (one socket read at most) and
 * are handled on resume, so the lead is checked at every message, not per socket read.
 */
import { WebSocket } from 'ws';
import type { Connection } from './connection.js';

export interface FlowLimits {
  /** Audio may run this far ahead of the wall clock before reading pauses, ms. */
  maxLeadMs: number;
  /** A paused stream resumes within half of this, so flow control never makes a stall, ms. */
  stallTimeoutMs: number;
}

/**
 * Handles one text message of a connection, then pauses reading if its audio ran too far ahead. `handle` is the
 * message handler; `onError` gets what a backlogged message threw on resume.
 */
export class FlowControl {
  constructor(
    private readonly limits: FlowLimits,
    private readonly handle: (conn: Connection, text: string) => void,
    private readonly onError: (conn: Connection, err: unknown) => void,
  ) {}

  /** A text message arrived: handled now, or kept for the resume while the socket is paused. */
  receive(conn: Connection, text: string): void {
    if (conn.paused) conn.backlog.push(text);
    else this.process(conn, text);
  }

  private process(conn: Connection, text: string): void {
    this.handle(conn, text);
    this.throttle(conn);
  }

  private throttle(conn: Connection): void {
    const max = this.limits.maxLeadMs;
    const lead = conn.session.leadMs;
    if (conn.paused || lead <= max) return;
    conn.paused = true;
    conn.ws.pause();
    setTimeout(() => this.resume(conn), Math.min(lead - max / 2, this.limits.stallTimeoutMs / 2)).unref();
  }

  private resume(conn: Connection): void {
    conn.paused = false;
    try {
      while (conn.backlog.length > 0 && !conn.paused) this.process(conn, conn.backlog.shift()!);
    } catch (err) {
      this.onError(conn, err);
      return;
    }
    if (!conn.paused && conn.ws.readyState === WebSocket.OPEN) conn.ws.resume();
  }
}
