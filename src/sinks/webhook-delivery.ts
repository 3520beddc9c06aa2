/**
 * What every webhook sink shares, whatever keeps its outbox (a folder: webhooks.ts; Redis: redis-webhooks.ts): the
 * delivery body, one signed HTTP attempt with its timeout, the classification of its result (delivered, retried with
 * backoff and Retry-After, or dead), the dead-letter record, the failing/recovered logs, and the types the sinks emit.
 * A sink keeps only its own bookkeeping: where an event waits, when it is acknowledged, what may be sent next.
 */
import http from 'node:http';
import https from 'node:https';
import type { CallmoodEvent } from '../stream/events.js';
import type { Logger, LoggerInput } from '../util/log.js';
import type { WebhookEndpointOptions } from '../config/webhook-options.js';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signWebhook } from './webhook-signature.js';
import type { DeadLetter } from './outbox.js';

/** The JSON body of every delivery. */
export interface WebhookBody {
  /** Unique id of this event (a UUID made when it was enqueued): the idempotency key; the same for every endpoint and every attempt. */
  id: string;
  /** Version of this body's shape. */
  version: 1;
  /** The event's type, e.g. `call-end` or `action`. */
  type: CallmoodEvent['type'];
  callSid: string;
  streamSid: string;
  /** Call time of the event, ms since the stream started. */
  timeMs: number;
  /** Wall time it was enqueued, ISO 8601 UTC. */
  createdAt: string;
  /** The event itself, as on the event feed. */
  event: CallmoodEvent;
}

/** A delivery acknowledged with a 2xx. */
export interface DeliveredInfo {
  endpoint: string;
  id: string;
  callSid: string;
  type: string;
  status: number;
  attempts: number;
  /** From enqueue to the acknowledgement, ms. */
  latencyMs: number;
}

/** An attempt that failed. */
export interface AttemptFailedInfo {
  endpoint: string;
  id: string;
  callSid: string;
  attempt: number;
  /** HTTP status, or null without a response. */
  status: number | null;
  error: string;
  /** Not retried (4xx other than 408/429, or 3xx). */
  permanent: boolean;
  /** Wait before the next attempt, ms; null when none follows. */
  retryInMs: number | null;
}

/** What a sink emits, for metrics. */
export interface WebhookSinkEvents {
  delivered: (info: DeliveredInfo) => void;
  'attempt-failed': (info: AttemptFailedInfo) => void;
  'dead-letter': (letter: DeadLetter) => void;
}

/** Counters of one endpoint (monotonic since start, but `pending`, `inMemory` and `inFlight`, which are gauges). */
export interface EndpointStats {
  enqueued: number;
  delivered: number;
  failedAttempts: number;
  deadLettered: number;
  pending: number;
  inMemory: number;
  inFlight: number;
}

/** Runtime dependencies of a sink. */
export interface WebhookSinkRuntime {
  /** Where log records go: a pino (or pino-compatible) logger, or a `(level, code, message, fields)` function (default: none). */
  logger?: LoggerInput;
  /** Environment the `secretEnv` secrets are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** One event on its way to one endpoint, as both sinks hold it. */
export interface Deliverable {
  /** The event id (the idempotency key), shared by every endpoint the event goes to. */
  id: string;
  callSid: string;
  type: string;
  /** The JSON body POSTed, exactly. */
  body: string;
  /** Wall time it was first enqueued, ms since the epoch. */
  createdAtMs: number;
  /** Attempts made by this process. */
  attempts: number;
  /** Wall time of the first attempt, ms; 0 before. */
  firstAttemptAt: number;
}

/** An endpoint's HTTP side: options, URL, keep-alive agent, requests in flight and its run of failures. */
export class HttpEndpoint {
  readonly url: URL;
  readonly agent: http.Agent;
  readonly inFlight = new Set<http.ClientRequest>();
  /** Failed attempts since the last success (the first one of a run is logged, and the recovery). */
  failStreak = 0;
  /** Wall time of the last 2xx, 0 before. */
  lastSuccessAt = 0;

  constructor(readonly o: WebhookEndpointOptions) {
    this.url = new URL(o.url);
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  }

  /** Cuts the requests in flight (their attempts fail with `why`). */
  cut(why: string): void {
    for (const req of this.inFlight) req.destroy(new Error(why));
  }
}

/** What one attempt came to. */
export type AttemptOutcome =
  | { kind: 'delivered'; info: DeliveredInfo }
  | { kind: 'retry'; failed: AttemptFailedInfo; retryInMs: number }
  | { kind: 'dead'; failed: AttemptFailedInfo; letter: DeadLetter };

interface PostResult {
  status: number | null;
  error: string | null;
  retryAfterMs: number | null;
}

const USER_AGENT = 'callmood-webhooks/1';
// Retry-After is honoured up to an hour: a larger value is more likely a misconfigured CRM than a plan.
const RETRY_AFTER_CAP_MS = 3_600_000;

/** The body of an event, with its id and enqueue time. */
export function webhookBody(event: CallmoodEvent, id: string, nowMs: number): string {
  return JSON.stringify({
    id,
    version: 1,
    type: event.type,
    callSid: event.callSid,
    streamSid: event.streamSid,
    timeMs: event.timeMs,
    createdAt: new Date(nowMs).toISOString(),
    event,
  } satisfies WebhookBody);
}

/**
 * One attempt: counts it on `e`, POSTs the body signed afresh, and classifies the answer. 2xx = delivered; 408, 429,
 * 5xx, network errors and timeouts are retried after an exponential backoff with jitter (at least Retry-After, capped
 * at an hour); other 4xx and 3xx are permanent, and so is the last of `maxAttempts`: a dead letter is built. Logs the
 * first failure of a run and the recovery; the caller emits, counts, and logs the dead letter once it is kept.
 */
export async function attemptDelivery(ep: HttpEndpoint, e: Deliverable, log: Logger): Promise<AttemptOutcome> {
  const name = ep.o.name;
  e.attempts++;
  if (e.firstAttemptAt === 0) e.firstAttemptAt = Date.now();
  const r = await post(ep, e);
  if (r.status !== null && r.status >= 200 && r.status < 300) {
    if (ep.failStreak > 0) {
      log('info', 'CALLMOOD_WEBHOOK_RECOVERED', `endpoint ${name} answers again after ${ep.failStreak} failed attempts`, { endpoint: name });
      ep.failStreak = 0;
    }
    ep.lastSuccessAt = Date.now();
    return { kind: 'delivered', info: { endpoint: name, id: e.id, callSid: e.callSid, type: e.type, status: r.status, attempts: e.attempts, latencyMs: Date.now() - e.createdAtMs } };
  }
  const status = r.status;
  const error = r.error ?? `HTTP ${status}`;
  const permanent = status !== null && status < 500 && status !== 408 && status !== 429;
  const dead = permanent || e.attempts >= ep.o.maxAttempts;
  let retryInMs: number | null = null;
  if (!dead) {
    const b = ep.o.backoff;
    const base = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(e.attempts - 1, 40));
    retryInMs = Math.round(base * (1 - b.jitter * Math.random()));
    if (r.retryAfterMs !== null) retryInMs = Math.max(retryInMs, Math.min(r.retryAfterMs, RETRY_AFTER_CAP_MS));
  }
  if (ep.failStreak++ === 0) {
    log('warn', 'CALLMOOD_WEBHOOK_FAILING', `endpoint ${name}: ${error}${dead ? '' : `; retrying in ${retryInMs} ms`}`, { endpoint: name, id: e.id, callSid: e.callSid, status });
  }
  const failed: AttemptFailedInfo = { endpoint: name, id: e.id, callSid: e.callSid, attempt: e.attempts, status, error, permanent, retryInMs };
  if (!dead) return { kind: 'retry', failed, retryInMs: retryInMs! };
  const letter: DeadLetter = {
    id: e.id,
    endpoint: name,
    url: ep.o.url,
    callSid: e.callSid,
    type: e.type,
    attempts: e.attempts,
    firstAttemptAt: new Date(e.firstAttemptAt).toISOString(),
    deadAt: new Date().toISOString(),
    status,
    error: permanent ? `${error} (permanent: ${status} is not retried)` : error,
    body: JSON.parse(e.body) as Record<string, unknown>,
  };
  return { kind: 'dead', failed, letter };
}

/** Waits for a new sink's `ready`; closes it (no drain) and throws if that fails. */
export async function openedSink<T extends { ready: Promise<void>; close(timeoutMs?: number, drainMs?: number): Promise<void> }>(sink: T): Promise<T> {
  try {
    await sink.ready;
  } catch (err) {
    await sink.close(0, 0).catch(() => undefined);
    throw err;
  }
  return sink;
}

/** Logs a dead letter once its sink has kept it. */
export function logDeadLetter(log: Logger, letter: DeadLetter): void {
  log('warn', 'CALLMOOD_WEBHOOK_DEAD_LETTER', `endpoint ${letter.endpoint}: event ${letter.id} (${letter.type}) dead after ${letter.attempts} attempts: ${letter.error}`, {
    endpoint: letter.endpoint,
    id: letter.id,
    callSid: letter.callSid,
  });
}

function post(ep: HttpEndpoint, e: Deliverable): Promise<PostResult> {
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    const settle = (r: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ep.inFlight.delete(req);
      resolve(r);
    };
    const body = Buffer.from(e.body, 'utf8');
    const t = Math.floor(Date.now() / 1000);
    const headers: http.OutgoingHttpHeaders = {
      ...ep.o.headers,
      'Content-Type': 'application/json',
      'Content-Length': body.length,
      'User-Agent': USER_AGENT,
      [EVENT_ID_HEADER]: e.id,
      'Callmood-Event-Type': e.type,
      'Callmood-Attempt': String(e.attempts),
      [SIGNATURE_HEADER]: signWebhook(body, ep.o.secret!, t),
    };
    const mod = ep.url.protocol === 'https:' ? https : http;
    const req = mod.request(ep.url, { method: 'POST', agent: ep.agent, headers });
    ep.inFlight.add(req);
    const timer = setTimeout(() => req.destroy(new Error(`no response within ${ep.o.timeoutMs} ms`)), ep.o.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => settle({ status: null, error: err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message, retryAfterMs: null }));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      if (status >= 200 && status < 300) {
        res.resume();
        settle({ status, error: null, retryAfterMs: null });
        return;
      }
      // Keep the start of the CRM's answer for the dead letter; drain the rest so the socket can be reused.
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (text.length < 300) text += chunk;
      });
      const done = () => settle({ status, error: `HTTP ${status}${text ? `: ${text.slice(0, 300).replace(/\s+/g, ' ').trim()}` : ''}`, retryAfterMs });
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    req.end(body);
  });
}

/** Retry-After as delay-seconds or an HTTP date, in ms from now; null when absent or unreadable. */
export function parseRetryAfter(v: string | undefined): number | null {
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}
