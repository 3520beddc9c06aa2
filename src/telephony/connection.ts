/**
 * One media-stream socket as the server keeps it: the WebSocket, its MediaSession, and the little state the server
 * adds (why it is ending, whether the call-end went out, flow control's pause and backlog). Closing helpers live
 * here because the media sockets, flow control and the stall watch all close sockets the same way.
 */
import { WebSocket } from 'ws';
import type { CallEndReason, EventBase } from '../stream/events.js';
import type { MediaSession } from './session.js';

export interface Connection {
  ws: WebSocket;
  session: MediaSession;
  remote: string;
  /** Identity of the call once `start` arrived (from its call-start event). */
  base: Omit<EventBase, 'timeMs'> | null;
  /** Why the server is ending this stream, when it is the server's doing. */
  endReason: CallEndReason | null;
  callEnded: boolean;
  /** Settles once call-end went out (or at the close of a stream that never started). */
  done: Promise<void>;
  resolveDone: () => void;
  counted: { media: number; dropped: number; gaps: number; jumps: number };
  killTimer: NodeJS.Timeout | null;
  /** Reading is paused: the stream's audio ran more than maxLeadMs ahead of the wall clock. */
  paused: boolean;
  /** Messages that arrived after the pause (the rest of the socket read that was being parsed), handled on resume. */
  backlog: string[];
}

/** ws close reasons are limited to 123 bytes of UTF-8. */
export function closeReason(text: string): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= 123) return text;
  let s = buf.subarray(0, 120).toString('utf8');
  // A cut multi-byte character decodes as U+FFFD; drop it.
  s = s.replace(/\uFFFD+$/, '');
  return `${s}...`;
}

/** Starts the close handshake; a peer that does not answer it (stalled, gone) is cut after 2 s, not ws's 30 s. */
export function closeSocket(conn: Connection, code: number, reason: string): void {
  const ws = conn.ws;
  if (ws.readyState === WebSocket.CLOSED) return;
  if (ws.readyState !== WebSocket.CLOSING) {
    try {
      ws.close(code, closeReason(reason));
    } catch {
      ws.terminate();
      return;
    }
  }
  conn.killTimer ??= setTimeout(() => ws.terminate(), 2000);
  conn.killTimer.unref();
}

/** A stream's identity as log fields: callSid and streamSid once it started, else where it comes from. */
export function identity(conn: Connection): Record<string, string> {
  return conn.base ? { callSid: conn.base.callSid, streamSid: conn.base.streamSid } : { remote: conn.remote };
}
