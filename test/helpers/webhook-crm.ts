/**
 * A CRM on loopback for the webhook tests: records every request (raw body, headers, whether its signature checks
 * out) and answers what `respond` says.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhookSignature } from '../../src/sinks/webhook-signature.js';
import type { CallmoodEvent } from '../../src/stream/events.js';

/** One request the CRM got. */
export interface Received {
  id: string;
  type: string;
  callSid: string;
  /** The event's `name` for mark events (tests number them), else ''. */
  name: string;
  attempt: number;
  /** Request path with its query. */
  path: string;
  signatureOk: boolean;
  raw: string;
  headers: http.IncomingHttpHeaders;
  status: number;
  atMs: number;
}

/** What the CRM answers; `destroy` drops the connection without an answer, `hang` never answers. */
export type Answer = { status: number; headers?: Record<string, string>; delayMs?: number } | 'destroy' | 'hang';

export class FakeCrm {
  readonly received: Received[] = [];
  private server: http.Server | null = null;
  private readonly sockets = new Set<import('node:net').Socket>();
  port = 0;
  /** Requests that arrived while another of the same call was still unanswered. */
  overlaps = 0;
  private readonly open = new Map<string, number>();
  respond: (r: Received) => Answer = () => ({ status: 200 });

  constructor(readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  /** Listens (on `port`, or a free one the first time). */
  async start(port = this.port): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: { id?: string; type?: string; callSid?: string; event?: CallmoodEvent } = {};
        try {
          body = JSON.parse(raw) as typeof body;
        } catch {
          // recorded as is; a test asserting on it fails
        }
        const rec: Received = {
          id: body.id ?? '',
          type: body.type ?? '',
          callSid: body.callSid ?? '',
          name: body.event?.type === 'mark' ? body.event.name : '',
          attempt: Number(req.headers['callmood-attempt']),
          path: req.url ?? '',
          signatureOk: verifyWebhookSignature(raw, req.headers['callmood-signature'], this.secret).ok,
          raw,
          headers: req.headers,
          status: 0,
          atMs: Date.now(),
        };
        const busy = this.open.get(rec.callSid) ?? 0;
        if (busy > 0) this.overlaps++;
        this.open.set(rec.callSid, busy + 1);
        res.on('close', () => this.open.set(rec.callSid, (this.open.get(rec.callSid) ?? 1) - 1));
        const a = this.respond(rec);
        this.received.push(rec);
        if (a === 'hang') return;
        if (a === 'destroy') {
          req.socket.destroy();
          return;
        }
        rec.status = a.status;
        const send = () => {
          res.writeHead(a.status, { 'Content-Type': 'text/plain', ...a.headers });
          res.end(a.status >= 300 ? `refused ${rec.id}` : 'ok');
        };
        if (a.delayMs) setTimeout(send, a.delayMs);
        else send();
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Stops listening and cuts every connection (the CRM goes down). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Requests answered 2xx. */
  delivered(): Received[] {
    return this.received.filter((r) => r.status >= 200 && r.status < 300);
  }

  /** Waits until `pred` holds, polling; throws after `timeoutMs`. */
  async until(pred: () => boolean, timeoutMs = 8000, what = 'condition'): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${this.received.length} requests, ${this.delivered().length} delivered`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** A numbered mark event of a call: tests check order through `name`. */
export function markEvent(callSid: string, n: number): CallmoodEvent {
  return { type: 'mark', callSid, streamSid: `MZ${callSid}`, timeMs: n * 20, customParameters: {}, name: String(n) };
}

/**
 * Checks that every (call, n) for n < perCall arrived with a 2xx, and that per call the first delivery of each
 * event came in order of n. Returns a message, or null when all is well.
 */
export function checkOrder(received: Received[], calls: string[], perCall: number): string | null {
  for (const call of calls) {
    const firsts: number[] = [];
    const seen = new Set<string>();
    for (const r of received) {
      if (r.callSid !== call || r.status < 200 || r.status >= 300 || seen.has(r.id)) continue;
      seen.add(r.id);
      firsts.push(Number(r.name));
    }
    const distinct = [...new Set(firsts)];
    if (distinct.length !== perCall) return `${call}: ${distinct.length} of ${perCall} events delivered`;
    for (let i = 1; i < firsts.length; i++) {
      if (firsts[i] < firsts[i - 1]) return `${call}: event ${firsts[i]} delivered first after ${firsts[i - 1]}`;
    }
  }
  return null;
}
