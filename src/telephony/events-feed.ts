/**
 * The event feed: a WebSocket (`/events`) for a callbot in another process. Every CallmoodEvent goes out as one
 * JSON text message. A consumer authenticates with a bearer token (`Authorization: Bearer …`, or `?token=` for
 * clients that cannot set headers), compared in constant time; `?callSid=CA…` narrows the feed to one call and
 * `?types=emotion,call-end` to some event types.
 *
 * Catch-up: with a `catchUp` source (many-node mode's bus), a consumer of one call first gets that call's recent
 * events (a callbot that connects a few seconds after call-start still sees call-start), then the live ones; events
 * that arrive while the catch-up is read wait for it and are not sent twice.
 *
 * Slow consumers: a socket whose unsent data passes `maxBufferedBytes` is closed with 1013 (try again later) and
 * counted, never buffered without bound and never silently thinned out — a callbot acting on a feed with holes would
 * act on a stale view of the call; a closed socket tells it plainly to reconnect.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket } from 'ws';
import { EVENT_TYPES, type CallmoodEvent } from '../stream/events.js';
import type { FeedSettings } from '../config/options.js';
import { bearerToken, tokenMatches } from './signature.js';
import type { CallmoodMetrics } from './metrics.js';
import type { Logger } from '../util/log.js';

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** Answers a WebSocket upgrade with a plain HTTP error and closes the socket: no WebSocket is ever opened. */
export function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const body = `${message}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  // If the peer never reads, do not keep the socket around.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** A call the feed can follow: a Twilio Call SID (CA + 32 hex digits) or a Telnyx call_control_id (v2:…, v3:…). */
const CALL_ID = /^(CA[0-9a-fA-F]{32}|v[0-9]{1,2}:[A-Za-z0-9_=+/-]{8,128})$/;

interface FeedClient {
  ws: WebSocket;
  callSid: string | null;
  types: Set<string> | null;
  alive: boolean;
  /** When it connected (ms since the epoch): reading the bus for it starts there. */
  since: number;
  /** Live events held while the catch-up is read (JSON texts); null once it was sent. */
  held: string[] | null;
}

/** The recent events of one call, oldest first. */
export type CatchUpSource = (callSid: string) => Promise<CallmoodEvent[]>;

/** The `/events` WebSocket server. */
export class EventsFeed {
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<FeedClient>();
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly token: string | null,
    private readonly settings: FeedSettings,
    private readonly log: Logger,
    private readonly metrics: CallmoodMetrics,
    private readonly catchUp: CatchUpSource | null = null,
  ) {
    // Consumers only listen; anything they send is small or a mistake.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
    this.heartbeat = setInterval(() => this.ping(), settings.heartbeatMs);
    this.heartbeat.unref();
  }

  /** False when no events token is configured: the feed then refuses every upgrade. */
  get enabled(): boolean {
    return this.token !== null;
  }

  /** Connected consumers. */
  get size(): number {
    return this.clients.size;
  }

  /**
   * What the consumers follow: every call (`all`, a consumer without `callSid`) and these calls, each with the time
   * its first consumer connected (ms since the epoch).
   */
  interest(): { all: number | null; calls: Map<string, number> } {
    let all: number | null = null;
    const calls = new Map<string, number>();
    for (const c of this.clients) {
      if (c.callSid === null) all = Math.min(all ?? Infinity, c.since);
      else calls.set(c.callSid, Math.min(calls.get(c.callSid) ?? Infinity, c.since));
    }
    return { all, calls };
  }

  /** Handles an upgrade on the events path: authenticate, read the filters, then open the socket. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const ip = req.socket.remoteAddress;
    if (this.closed) return rejectUpgrade(socket, 503, 'server shutting down');
    if (!this.token) return rejectUpgrade(socket, 404, 'event feed is off: set CALLMOOD_EVENTS_TOKEN on the server');
    if (!tokenMatches(bearerToken(req, url.searchParams), this.token)) {
      this.metrics.rejectedUpgrades.inc({ path: 'events', status: '401' });
      this.log('warn', 'CALLMOOD_FEED_UNAUTHORIZED', `event feed: missing or wrong bearer token from ${ip}`);
      return rejectUpgrade(socket, 401, 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer' });
    }
    const callSid = url.searchParams.get('callSid');
    if (callSid !== null && !CALL_ID.test(callSid)) {
      this.metrics.rejectedUpgrades.inc({ path: 'events', status: '400' });
      return rejectUpgrade(socket, 400, `callSid ${JSON.stringify(callSid.slice(0, 40))} is not a call id: a Twilio Call SID (CA + 32 hex digits) or a Telnyx call_control_id (v3:…)`);
    }
    let types: Set<string> | null = null;
    const typesParam = url.searchParams.get('types');
    if (typesParam !== null) {
      types = new Set(typesParam.split(',').map((t) => t.trim()).filter(Boolean));
      const unknown = [...types].filter((t) => !(EVENT_TYPES as readonly string[]).includes(t));
      if (unknown.length > 0 || types.size === 0) {
        this.metrics.rejectedUpgrades.inc({ path: 'events', status: '400' });
        return rejectUpgrade(socket, 400, `types: unknown ${unknown.join(',') || '(none given)'}; allowed: ${EVENT_TYPES.join(',')}`);
      }
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const client: FeedClient = { ws, callSid, types, alive: true, since: Date.now(), held: callSid && this.catchUp ? [] : null };
      this.clients.add(client);
      if (client.held) void this.sendCatchUp(client, callSid!);
      ws.on('pong', () => (client.alive = true));
      ws.on('error', (err) => this.log('warn', 'CALLMOOD_FEED_SOCKET', `event feed consumer ${ip}: ${err.message}`));
      ws.on('close', () => this.clients.delete(client));
      this.log('info', 'CALLMOOD_FEED_OPEN', `event feed consumer ${ip} connected${types ? ` types ${[...types].join(',')}` : ''}`, { remote: ip, ...(callSid ? { callSid } : {}) });
    });
  }

  private async sendCatchUp(c: FeedClient, callSid: string): Promise<void> {
    let past: CallmoodEvent[] = [];
    try {
      past = await this.catchUp!(callSid);
    } catch (err) {
      this.log('warn', 'CALLMOOD_FEED_CATCHUP', `event feed: no catch-up for ${callSid}: ${(err as Error).message}`, { callSid });
    }
    const held = c.held ?? [];
    c.held = null;
    if (c.ws.readyState !== WebSocket.OPEN) return;
    const sent = new Set<string>();
    for (const e of past) {
      if (c.types !== null && !c.types.has(e.type)) continue;
      const text = JSON.stringify(e);
      sent.add(text);
      c.ws.send(text);
    }
    for (const text of held) if (!sent.has(text)) c.ws.send(text);
  }

  /** Sends an event to every consumer whose filter takes it. */
  publish(e: CallmoodEvent): void {
    if (this.clients.size === 0) return;
    let text: string | null = null;
    for (const c of this.clients) {
      if (c.ws.readyState !== WebSocket.OPEN) continue;
      if (c.callSid !== null && c.callSid !== e.callSid) continue;
      if (c.types !== null && !c.types.has(e.type)) continue;
      if (c.ws.bufferedAmount > this.settings.maxBufferedBytes) {
        this.metrics.feedSlowClosed.inc();
        this.log('warn', 'CALLMOOD_FEED_SLOW', `event feed consumer ${c.ws.bufferedAmount} bytes behind (limit ${this.settings.maxBufferedBytes}): closed with 1013`);
        this.closeClient(c, 1013, 'consumer too slow; reconnect');
        continue;
      }
      text ??= JSON.stringify(e);
      if (c.held) c.held.push(text);
      else c.ws.send(text);
    }
  }

  private closeClient(c: FeedClient, code: number, reason: string): void {
    c.ws.close(code, reason);
    // A consumer too slow to take its data will not take the close frame either.
    setTimeout(() => c.ws.terminate(), 2000).unref();
  }

  private ping(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.log('warn', 'CALLMOOD_FEED_DEAD', 'event feed consumer did not answer a ping: dropped');
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        c.ws.terminate();
      }
    }
  }

  /** Closes every consumer with 1001 once what was sent to it has gone out (bounded by `timeoutMs`). */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    const closing = [...this.clients].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          c.ws.once('close', () => resolve());
          // ws sends the close frame after the data already queued, so the last events arrive first.
          c.ws.close(1001, 'server shutting down');
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closing), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    for (const c of this.clients) c.ws.terminate();
    this.wss.close();
  }
}
