/**
 * The live server: Twilio media streams in, emotion events out. One shared, loaded model (in a worker thread by
 * default) and one micro-batcher serve every call; each WebSocket gets a cheap MediaSession and each of its tracks an
 * EmotionTrack. Events go to this emitter (on `'event'` and on their `type`), to the `/events` feed and to the
 * metrics.
 *
 * Isolation: every socket, message and request handler is wrapped, so one broken call never harms another; what
 * goes wrong becomes an `error` event and a log line with a stable code. Time limits: a stream whose audio has not
 * moved on for `stallTimeoutMs` (whatever else it sends) ends as `stalled` (1001); a socket dropped without `stop`
 * ends as `disconnected`; messages over `maxMessageBytes` close the socket with 1009 (ws's maxPayload). One call has
 * one stream: a second stream claiming a call that is live here is refused (1008) and the first goes on.
 *
 * `close()` drains: no new streams or webhooks (503), every live call ends with reason `shutdown` (its call-end
 * carries the summary), the feed gets those events before it closes, the batcher runs what is queued and the worker
 * stops, and the remaining sockets close with 1001.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'eventemitter3';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { resolveOptions, type CallmoodOptions, type CallmoodOptionsInput } from '../config/options.js';
import { resolveModelDir, resolvePackagePath } from '../config/load.js';
import { MicroBatcher } from '../stream/batcher.js';
import { InProcessEngine, WorkerEngine, type EngineHealth } from '../stream/engine.js';
import { EmotionTrack, modelProfile, type ModelProfile } from '../stream/track.js';
import type { CallEndReason, CallmoodEvent, EventBase, Track } from '../stream/events.js';
import { DEFAULT_POLICY, PolicyEngine, PolicyRuntime, loadPolicyFile, type ActionHandler, type PolicyConfig } from '../policy/index.js';
import { CallControl } from './control.js';
import { WebhookSink, type EndpointStats } from '../sinks/webhooks.js';
import { MediaSession, CloseCodes } from './session.js';
import { SignatureGuard, publicBaseUrl, type WebhookParams } from './signature.js';
import { EventsFeed, rejectUpgrade } from './events-feed.js';
import { CallmoodMetrics } from './metrics.js';
import { createLogger, toLogger, withFields, type Logger, type LoggerInput } from '../util/log.js';
import { HttpError, buildTwiml, describeStreamStatus, formParams, readForm, send } from './twiml.js';

/** Events by name: `'event'` carries every event, and each type has its own name. */
export type CallmoodEventMap = { event: [CallmoodEvent] } & { [K in CallmoodEvent['type']]: [Extract<CallmoodEvent, { type: K }>] };

/** Not-options: what the embedding process provides. */
export interface CallmoodRuntime {
  /**
   * Where log records go: your pino logger (or any with pino's `info/warn/error/debug(obj, msg)`), which gets
   * `{ code, callSid?, streamSid?, track?, … }` and the message; or a function `(level, code, message, fields)`.
   * Default: callmood's own pino logger, JSON lines on stdout.
   */
  logger?: LoggerInput;
  /** Environment the secrets are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Register Node's process metrics (CPU, memory, event loop lag) on /metrics too (default true). */
  processMetrics?: boolean;
  /** Handlers of the policy's `custom` actions, by the name rules give in `do.handler` (more with `onAction`). */
  actionHandlers?: Record<string, ActionHandler>;
  /** A policy given in code instead of `options.policy.file` (validated with parsePolicy first). */
  policy?: PolicyConfig;
}

/** What `attach` may do beyond the WebSocket paths. */
export interface AttachOptions {
  /** Also answer the webhook routes on this server's `request` event (use when nothing else serves HTTP on it). */
  requests?: boolean;
  /** Refuse upgrades on other paths with 404 (use when nothing else on this server takes WebSockets). */
  rejectOtherUpgrades?: boolean;
}

/** A live summary for health checks. */
export interface CallmoodHealth {
  ok: boolean;
  modelLoaded: boolean;
  draining: boolean;
  liveCalls: number;
  connections: number;
  feedClients: number;
  backend: string | null;
  /** The inference worker(s): a dead worker restarts; `failed` (restarts exhausted) makes `ok` false so the process is replaced. Null in-process or before loading. */
  engine: EngineHealth | null;
  uptimeS: number;
  /** CRM webhooks per endpoint (pending = in the outbox, not yet acknowledged); empty when none are configured. */
  webhooks: Record<string, EndpointStats>;
  /** The dialog policy: null when off. */
  policy: { rules: number; dryRun: boolean; pendingActions: number; callControl: boolean } | null;
}

/** A request listener for the webhook routes: returns false (after calling `next`, if given) for other paths. */
export type CallmoodHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => boolean;

interface Connection {
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
function closeReason(text: string): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= 123) return text;
  let s = buf.subarray(0, 120).toString('utf8');
  // A cut multi-byte character decodes as U+FFFD; drop it.
  s = s.replace(/\uFFFD+$/, '');
  return `${s}...`;
}

function pathnameOf(url: string | undefined): string | null {
  try {
    return new URL(url ?? '/', 'http://localhost').pathname;
  } catch {
    return null;
  }
}

/**
 * The server (see the module comment). Create it with `createCallmood`, then `ready()` and `listen()` (standalone)
 * or `attach()` + `handler` (inside an existing http server).
 */
export class CallmoodServer extends EventEmitter<CallmoodEventMap> {
  /** The validated options in force. */
  readonly options: Readonly<CallmoodOptions>;
  /** Prometheus metrics (`/metrics` serves them). */
  readonly metrics: CallmoodMetrics;
  private readonly log: Logger;
  private readonly guard: SignatureGuard;
  private readonly feed: EventsFeed;
  private readonly wss: WebSocketServer;
  private readonly conns = new Set<Connection>();
  private readonly attached: { server: http.Server; listeners: Array<[string, (...a: any[]) => void]> }[] = [];
  private readonly startedAt = Date.now();
  private loading: Promise<void> | null = null;
  private engine: WorkerEngine | InProcessEngine | null = null;
  private batcher: MicroBatcher | null = null;
  private profile: ModelProfile | null = null;
  private sweep: NodeJS.Timeout | null = null;
  private ownServer: http.Server | null = null;
  private closing: Promise<void> | null = null;
  /** The dialog policy over this server's events (null when `policy.enabled` is false). */
  readonly policy: PolicyRuntime | null;
  /** CRM webhook delivery (durable outbox); with no endpoints configured it does nothing. */
  readonly webhooks: WebhookSink;

  constructor(options: CallmoodOptionsInput = {}, runtime: CallmoodRuntime = {}) {
    super();
    this.options = resolveOptions(options, runtime.env ?? process.env);
    this.log = toLogger(runtime.logger ?? createLogger());
    this.metrics = new CallmoodMetrics(
      () => ({ calls: this.liveCalls, connections: this.conns.size, feedClients: this.feed.size, queuedWindows: this.batcher?.queued ?? 0 }),
      { defaultMetrics: runtime.processMetrics ?? true },
    );
    this.guard = new SignatureGuard(this.options, this.log);
    this.feed = new EventsFeed(this.options.eventsToken, this.options.feed, this.log, this.metrics);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.options.maxMessageBytes, perMessageDeflate: false });
    if (!this.options.validateSignatures) {
      this.log('warn', 'CALLMOOD_SIGNATURES_OFF', 'validateSignatures is false: X-Twilio-Signature is NOT checked; anyone who can reach this server can send audio and fetch TwiML. Development only.');
    }
    if (!this.feed.enabled) this.log('info', 'CALLMOOD_FEED_OFF', `event feed ${this.options.paths.events} is off: no CALLMOOD_EVENTS_TOKEN`);
    this.policy = this.createPolicy(runtime);
    this.webhooks = new WebhookSink(this.options.webhooks, { logger: this.log, env: runtime.env ?? process.env });
    this.metrics.watchWebhooks(this.webhooks);
    for (const ep of this.options.webhooks.endpoints) {
      this.log('info', 'CALLMOOD_WEBHOOKS', `webhook ${ep.name} → ${new URL(ep.url).origin}: ${ep.events.join(', ')}`);
    }
  }

  /** Loads and checks the policy at start-up, so a bad rule stops the server before any call. */
  private createPolicy(runtime: CallmoodRuntime): PolicyRuntime | null {
    const p = this.options.policy;
    if (!p.enabled) return null;
    const config = runtime.policy ?? (p.file ? loadPolicyFile(resolvePackagePath(p.file)) : DEFAULT_POLICY);
    const engine = new PolicyEngine(config, { dryRun: p.dryRun });
    const needsControl = config.rules.some((r) => r.do.action === 'escalate' || r.do.action === 'end_call');
    const control = this.options.authToken ? new CallControl(this.options.authToken, this.options.control, runtime.env ?? process.env) : null;
    if (needsControl && !control && !engine.dryRun) {
      this.log('warn', 'CALLMOOD_CONTROL_OFF', 'the policy has escalate/end_call rules but there is no Twilio auth token: those actions will fail (set TWILIO_AUTH_TOKEN)');
    }
    const policy = new PolicyRuntime(engine, {
      publish: (e) => this.publish(e),
      log: this.log,
      control,
      handlerTimeoutMs: p.handlerTimeoutMs,
    });
    for (const [name, fn] of Object.entries(runtime.actionHandlers ?? {})) policy.registerHandler(name, fn);
    const source = runtime.policy ? 'given in code' : (p.file ?? 'shipped config/policy.json');
    this.log('info', 'CALLMOOD_POLICY', `policy (${source}): ${config.rules.length} rule(s)${engine.dryRun ? ', DRY RUN: decides and reports, carries nothing out' : ''}`);
    return policy;
  }

  /** Registers the handler of the policy's `custom` actions named `name`; it gets the action event. */
  onAction(name: string, fn: ActionHandler): this {
    if (!this.policy) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'onAction: the policy is off (options.policy.enabled is false)');
    this.policy.registerHandler(name, fn);
    return this;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------------------------------------------

  /** Loads the model once (later calls share the same promise; a failed load may be retried). */
  ready(): Promise<void> {
    if (this.closing) return Promise.reject(new CallmoodError(ErrorCodes.CLOSED, 'callmood server used after close()'));
    this.loading ??= this.load().catch((err: unknown) => {
      this.loading = null;
      throw err;
    });
    return this.loading;
  }

  private async load(): Promise<void> {
    // Events left in the outbox by an earlier run are being sent again before the first call.
    await this.webhooks.ready;
    const dir = resolveModelDir(this.options.modelDir);
    const t0 = performance.now();
    const engine = this.options.engine === 'worker' ? await WorkerEngine.load(dir) : await InProcessEngine.load(dir);
    const m = engine.metadata;
    this.engine = engine;
    if (engine instanceof WorkerEngine) {
      engine.on('health', (h) => {
        // Closing is the engine stopping as asked (every clean shutdown), not an inference failure.
        const ok = h.healthy || h.status === 'closed';
        this.log(ok ? 'info' : 'error', ok ? 'CALLMOOD_ENGINE_HEALTH' : ErrorCodes.INFERENCE, `inference engine ${h.status}: ${h.readyWorkers}/${h.workers} worker(s) ready, ${h.restarts} restart(s)`);
      });
    }
    this.profile = modelProfile(m);
    this.batcher = new MicroBatcher(this.metrics.instrument(engine), this.options.batch);
    const period = Math.max(20, Math.min(1000, Math.floor(this.options.stallTimeoutMs / 4)));
    this.sweep = setInterval(() => this.checkStalls(), period);
    this.sweep.unref();
    const backend = engine instanceof WorkerEngine ? `worker thread, ${engine.backend}` : 'in-process';
    this.log('info', 'CALLMOOD_MODEL_LOADED', `model ${dir} (${m.arch}, ${m.labels.length} labels) loaded in ${Math.round(performance.now() - t0)} ms (${backend})`);
  }

  /** Loads the model, starts a standalone http server with every route, and resolves to its address. */
  async listen(port = 8080, host = '0.0.0.0'): Promise<AddressInfo> {
    await this.ready();
    if (this.ownServer) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'listen() was already called on this server');
    const server = http.createServer();
    this.ownServer = server;
    this.attach(server, { requests: true, rejectOtherUpgrades: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log('error', 'CALLMOOD_HTTP_SERVER', `http server: ${err.message}`));
    const addr = server.address() as AddressInfo;
    const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
    const p = this.options.paths;
    this.log('info', 'CALLMOOD_LISTENING', `listening on ${url} (TwiML ${p.twiml}, media ${p.media}, events ${p.events}, health ${p.health}, metrics ${p.metrics})`, {
      url,
      host: addr.address,
      port: addr.port,
      paths: { ...p },
    });
    return addr;
  }

  /** Handles WebSocket upgrades on the media and events paths of `server`; other upgrade paths are left alone. */
  attach(server: http.Server, opts: AttachOptions = {}): void {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const listeners: Array<[string, (...a: any[]) => void]> = [];
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head, opts.rejectOtherUpgrades ?? false);
    server.on('upgrade', onUpgrade);
    listeners.push(['upgrade', onUpgrade]);
    if (opts.requests) {
      const onRequest = (req: IncomingMessage, res: ServerResponse) => {
        if (!this.handler(req, res)) this.reply(res, 'other', 404, 'not found');
      };
      server.on('request', onRequest);
      listeners.push(['request', onRequest]);
    }
    this.attached.push({ server, listeners });
  }

  /** Media streams with a call started and not yet ended. */
  get liveCalls(): number {
    let n = 0;
    for (const c of this.conns) if (c.base && !c.callEnded) n++;
    return n;
  }

  /** Open media-stream sockets (including ones before `start`). */
  get connections(): number {
    return this.conns.size;
  }

  /** Connected event-feed consumers. */
  get feedClients(): number {
    return this.feed.size;
  }

  /** The health summary `/healthz` serves. */
  health(): CallmoodHealth {
    const modelLoaded = this.batcher !== null;
    const engine = this.engine instanceof WorkerEngine ? this.engine.health() : null;
    return {
      ok: modelLoaded && !this.closing && (engine === null || engine.status !== 'failed'),
      modelLoaded,
      draining: this.closing !== null,
      liveCalls: this.liveCalls,
      connections: this.conns.size,
      feedClients: this.feed.size,
      backend: this.engine instanceof WorkerEngine ? this.engine.backend : this.engine ? 'in-process' : null,
      engine,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      webhooks: this.webhooks.stats(),
      policy: this.policy
        ? { rules: this.policy.engine.config.rules.length, dryRun: this.policy.engine.dryRun, pendingActions: this.policy.pending, callControl: this.policy.hasControl }
        : null,
    };
  }

  /** Drains and stops (see the module comment). Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  private async drain(): Promise<void> {
    const t0 = performance.now();
    const live = this.liveCalls;
    this.log('info', 'CALLMOOD_DRAIN', `shutting down: ending ${live} live call(s)`);
    if (this.sweep) clearInterval(this.sweep);
    // Stop accepting: the own server stops listening; upgrades and webhooks on any server now get 503.
    this.ownServer?.close();
    // A model still loading must finish loading before it can be closed.
    await this.loading?.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.options.drainTimeoutMs)));
    const ending = [...this.conns].map(async (c) => {
      c.endReason ??= 'shutdown';
      await this.endConnection(c, 'shutdown');
      this.closeSocket(c, CloseCodes.GOING_AWAY, 'server shutting down');
    });
    if ((await Promise.race([Promise.all(ending), deadline])) === 'timeout') {
      this.log('error', 'CALLMOOD_DRAIN_TIMEOUT', `calls did not end within ${this.options.drainTimeoutMs} ms; closing their sockets anyway`);
    }
    for (const c of this.conns) this.closeSocket(c, CloseCodes.GOING_AWAY, 'server shutting down');
    // Actions under way (REST calls, handlers) settle and publish their outcomes before the feed closes.
    await this.policy?.close(this.options.drainTimeoutMs);
    // What is not delivered yet stays in the outbox for the next start; nothing is lost by stopping.
    await this.webhooks.close().catch((err: unknown) => this.log('error', 'CALLMOOD_WEBHOOKS_CLOSE', `webhooks: ${(err as Error).message}`));
    // Every call-end is queued on the feed sockets by now; their close frames follow the data.
    await this.feed.close();
    if (this.batcher) {
      if ((await Promise.race([this.batcher.close().then(() => 'ok' as const), deadline])) === 'timeout') await this.engine?.close();
    }
    clearTimeout(timer);
    await this.waitForSockets(3000);
    this.wss.close();
    for (const { server, listeners } of this.attached) for (const [name, fn] of listeners) server.off(name, fn);
    if (this.ownServer) {
      const server = this.ownServer;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    this.log('info', 'CALLMOOD_CLOSED', `shut down in ${Math.round(performance.now() - t0)} ms (${live} call(s) ended)`);
  }

  private async waitForSockets(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.conns.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.conns) c.ws.terminate();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------------------------------------------

  /** Sends one event everywhere; a throwing listener is logged and never stops the feed, the metrics or the call. */
  private publish(e: CallmoodEvent): void {
    try {
      this.metrics.observe(e);
    } catch (err) {
      this.log('error', 'CALLMOOD_METRICS', `metrics: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
    }
    for (const name of ['event', e.type] as const) {
      try {
        (this.emit as (n: string, e: CallmoodEvent) => boolean)(name, e);
      } catch (err) {
        this.log('error', 'CALLMOOD_LISTENER_ERROR', `a '${name}' listener threw on ${e.type}: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
      }
    }
    try {
      this.feed.publish(e);
    } catch (err) {
      this.log('error', 'CALLMOOD_FEED_ERROR', `event feed: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
    }
    // Never waits: the outbox write and the delivery happen off this path. With no endpoint there is nothing to do.
    if (this.options.webhooks.endpoints.length > 0) {
      try {
        // A failed outbox write is the sink's to log (once while the disk fails, not once per event and flush).
        void this.webhooks.enqueue(e).catch(() => undefined);
      } catch (err) {
        this.log('error', 'CALLMOOD_WEBHOOKS_ERROR', `webhooks: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
      }
    }
    // The policy sees the event after everyone else, so its actions follow the event that caused them everywhere.
    this.policy?.observe(e);
  }

  // -------------------------------------------------------------------------------------------------------------
  // WebSockets
  // -------------------------------------------------------------------------------------------------------------

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, rejectOthers: boolean): void {
    // A client that resets mid-handshake must not become an uncaught error.
    socket.on('error', () => {});
    const path = pathnameOf(req.url);
    try {
      if (path === this.options.paths.media) this.upgradeMedia(req, socket, head);
      else if (path === this.options.paths.events) this.feed.handleUpgrade(req, socket, head, new URL(req.url ?? '/', 'http://localhost'));
      else if (rejectOthers) rejectUpgrade(socket, 404, 'no WebSocket here');
    } catch (err) {
      this.log('error', (err as CallmoodError).code ?? 'CALLMOOD_UPGRADE_ERROR', `upgrade on ${path}: ${(err as Error).message}`);
      rejectUpgrade(socket, 500, 'internal error');
    }
  }

  private upgradeMedia(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, message: string) => {
      this.metrics.rejectedUpgrades.inc({ path: 'media', status: String(status) });
      rejectUpgrade(socket, status, message);
    };
    if (this.closing) return refuse(503, 'server shutting down');
    if (!this.batcher) return refuse(503, 'model not loaded yet');
    const sig = this.guard.check(req, 'ws');
    if (!sig.ok) {
      this.log('warn', ErrorCodes.SIGNATURE, `media upgrade refused: ${sig.reason}`, { remote: req.socket.remoteAddress });
      return refuse(403, 'invalid X-Twilio-Signature');
    }
    if (this.conns.size >= this.options.maxCalls) {
      this.log('warn', 'CALLMOOD_FULL', `media upgrade refused: ${this.conns.size} streams open (maxCalls ${this.options.maxCalls})`, { remote: req.socket.remoteAddress });
      return refuse(503, 'too many calls');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      try {
        this.onMediaSocket(ws, req);
      } catch (err) {
        this.log('error', (err as CallmoodError).code ?? 'CALLMOOD_SOCKET_ERROR', `media socket setup: ${(err as Error).message}`);
        ws.terminate();
      }
    });
  }

  private onMediaSocket(ws: WebSocket, req: IncomingMessage): void {
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
    const connLog = withFields(this.log, () => this.identity(conn));
    const streamOptions = {
      ...this.options.stream,
      minSpeechRatio: this.options.stream.minSpeechRatio ?? undefined,
      maxPendingWindows: this.options.session.maxPendingWindows ?? undefined,
    };
    conn.session = new MediaSession(
      {
        emit: (e) => {
          if (e.type === 'call-start') conn.base = { callSid: e.callSid, streamSid: e.streamSid, customParameters: e.customParameters };
          if (e.type === 'call-end') conn.callEnded = true;
          this.publish(e);
          if (e.type === 'call-end') conn.resolveDone();
        },
        createTrack: (track: Track, base) =>
          new EmotionTrack(
            this.profile!,
            (w) => this.batcher!.infer(w),
            (e) => {
              if (e.type === 'error') this.log('error', e.code, e.message, { callSid: e.callSid, streamSid: e.streamSid, track });
              this.publish(e);
            },
            base,
            track,
            streamOptions,
          ),
        close: (code, reason) => this.closeSocket(conn, code, reason),
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
      this.options.session,
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
        if (conn.paused) conn.backlog.push(text);
        else this.handle(conn, text);
      } catch (err) {
        this.internalError(conn, err);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports frames it cannot take (over maxPayload → 1009, bad UTF-8 → 1007, …) here, then closes.
      conn.endReason ??= 'error';
      const message = `media socket: ${err.message}${err.code ? ` (${err.code})` : ''}`;
      connLog('warn', ErrorCodes.PROTOCOL, message, { remote: conn.remote, wsCode: err.code });
      this.publish({ ...conn.session.identity, timeMs: 0, type: 'error', code: ErrorCodes.PROTOCOL, message, permanent: true });
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
      this.log('error', (err as CallmoodError).code ?? 'CALLMOOD_END_ERROR', `ending the call: ${(err as Error).message}`, { ...this.identity(conn), err });
      conn.resolveDone();
    }
    // A stream that never started emits no call-end; one ended elsewhere (stop) is still finishing its tracks.
    if (!conn.base) conn.resolveDone();
    await conn.done;
  }

  private closeSocket(conn: Connection, code: number, reason: string): void {
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
    // A peer that does not answer the close handshake (stalled, gone) is cut after a short wait, not ws's 30 s.
    conn.killTimer ??= setTimeout(() => ws.terminate(), 2000);
    conn.killTimer.unref();
  }

  /** A stream's identity as log fields: callSid and streamSid once it started, else where it comes from. */
  private identity(conn: Connection): Record<string, string> {
    return conn.base ? { callSid: conn.base.callSid, streamSid: conn.base.streamSid } : { remote: conn.remote };
  }

  private internalError(conn: Connection, err: unknown): void {
    const code = (err as CallmoodError).code ?? ErrorCodes.INTERNAL;
    const message = `internal error on ${conn.base?.callSid ?? 'a stream before start'}: ${(err as Error).message}`;
    this.log('error', code, `internal error: ${(err as Error).message}`, { ...this.identity(conn), err });
    this.publish({ ...conn.session.identity, timeMs: 0, type: 'error', code, message, permanent: true });
    conn.endReason ??= 'error';
    void this.endConnection(conn, 'error');
    this.closeSocket(conn, 1011, 'internal error');
  }

  private handle(conn: Connection, text: string): void {
    conn.session.handleMessage(text);
    this.countMedia(conn);
    this.throttle(conn);
  }

  /**
   * Flow control: Twilio sends 20 ms every 20 ms; a client sending far faster (a replay tool, a bug, an attack) would
   * otherwise queue its windows ahead of every other call. Once its audio runs more than maxLeadMs ahead of the wall
   * clock, its socket is paused until the clock catches up halfway (TCP pushes back on the sender meanwhile). ws
   * still hands over the rest of the read it was parsing; those messages wait in the backlog (one socket read at
   * most) and are handled on resume, so the lead is checked at every message, not per socket read.
   */
  private throttle(conn: Connection): void {
    const max = this.options.session.maxLeadMs;
    const lead = conn.session.leadMs;
    if (conn.paused || lead <= max) return;
    conn.paused = true;
    conn.ws.pause();
    setTimeout(() => this.resume(conn), Math.min(lead - max / 2, this.options.stallTimeoutMs / 2)).unref();
  }

  private resume(conn: Connection): void {
    conn.paused = false;
    try {
      while (conn.backlog.length > 0 && !conn.paused) this.handle(conn, conn.backlog.shift()!);
    } catch (err) {
      this.internalError(conn, err);
      return;
    }
    if (!conn.paused && conn.ws.readyState === WebSocket.OPEN) conn.ws.resume();
  }

  private countMedia(conn: Connection): void {
    const s = conn.session.stats;
    const c = conn.counted;
    if (s.mediaMessages !== c.media) this.metrics.mediaMessages.inc(s.mediaMessages - c.media);
    if (s.dropped !== c.dropped) this.metrics.chunksDropped.inc(s.dropped - c.dropped);
    if (s.gapsFilled !== c.gaps) this.metrics.gapsFilled.inc(s.gapsFilled - c.gaps);
    const jumps = conn.session.timestampJumps;
    if (jumps !== c.jumps) this.metrics.timestampJumps.inc(jumps - c.jumps);
    c.media = s.mediaMessages;
    c.dropped = s.dropped;
    c.gaps = s.gapsFilled;
    c.jumps = jumps;
  }

  private checkStalls(): void {
    const now = Date.now();
    for (const c of this.conns) {
      if (c.endReason || c.session.isEnded || c.ws.readyState !== WebSocket.OPEN) continue;
      // Audio progress, not message arrival: messages that move no audio on (bad, refused, duplicate) keep no
      // stream alive. A paused stream is resumed within stallTimeoutMs / 2, so flow control never stalls one.
      const silentMs = now - c.session.lastProgressAt;
      if (silentMs < this.options.stallTimeoutMs) continue;
      c.endReason = 'stalled';
      this.log('warn', 'CALLMOOD_STALLED', `no audio for ${silentMs} ms (stallTimeoutMs ${this.options.stallTimeoutMs}): stream ended`, { ...this.identity(c), silentMs });
      void this.endConnection(c, 'stalled');
      this.closeSocket(c, CloseCodes.GOING_AWAY, 'stream stalled');
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // HTTP routes
  // -------------------------------------------------------------------------------------------------------------

  /** The webhook routes as a node request listener, mountable in an existing app (see CallmoodHandler). */
  readonly handler: CallmoodHandler = (req, res, next) => {
    const path = pathnameOf(req.url);
    const p = this.options.paths;
    const route = path === p.twiml ? 'twiml' : path === p.status ? 'status' : path === p.health ? 'health' : path === p.metrics ? 'metrics' : null;
    if (!route) {
      next?.();
      return false;
    }
    this.route(route, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) this.log('error', (err as CallmoodError).code ?? 'CALLMOOD_HTTP_ERROR', `${req.method} ${path}: ${(err as Error).message}`);
      else this.log('warn', 'CALLMOOD_HTTP_REJECTED', `${req.method} ${path}: ${status} ${(err as Error).message}`);
      this.reply(res, route, status, status === 500 ? 'internal error' : (err as Error).message);
      // An unread body would otherwise keep the connection busy.
      if (status !== 500) req.resume();
    });
    return true;
  };

  private reply(res: ServerResponse, route: string, status: number, body: string, contentType?: string, headers: Record<string, string> = {}): void {
    this.metrics.webhooks.inc({ route, status: String(status) });
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    send(res, status, body, contentType);
  }

  private async route(route: 'twiml' | 'status' | 'health' | 'metrics', req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (route === 'health' || route === 'metrics') {
      if (method !== 'GET' && method !== 'HEAD') return this.reply(res, route, 405, 'method not allowed', undefined, { allow: 'GET, HEAD' });
      if (route === 'health') {
        const h = this.health();
        return this.reply(res, route, h.ok ? 200 : 503, JSON.stringify(h), 'application/json');
      }
      const { contentType, body } = await this.metrics.text();
      return this.reply(res, route, 200, body, contentType);
    }
    const allowed = route === 'twiml' ? ['POST', 'GET'] : ['POST'];
    if (!allowed.includes(method)) return this.reply(res, route, 405, 'method not allowed', undefined, { allow: allowed.join(', ') });
    // Twilio signs the POST fields; a GET's fields are in the (signed) URL itself.
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const signed: WebhookParams = method === 'POST' ? await readForm(req, this.options.maxBodyBytes) : {};
    const sig = this.guard.check(req, 'http', signed);
    if (!sig.ok) {
      this.log('warn', ErrorCodes.SIGNATURE, `${method} ${req.url?.split('?')[0]} refused: ${sig.reason}`, { remote: req.socket.remoteAddress });
      return this.reply(res, route, 403, 'invalid X-Twilio-Signature');
    }
    const params = method === 'POST' ? signed : formParams(query);
    if (route === 'status') {
      const s = describeStreamStatus(params);
      this.log(s.isError ? 'warn' : 'info', 'CALLMOOD_STREAM_STATUS', s.line, s.fields);
      return this.reply(res, route, 204, '');
    }
    // Twilio takes a 503 as a failed webhook and uses the number's fallback URL.
    if (this.closing) return this.reply(res, route, 503, 'server shutting down');
    if (!this.batcher) return this.reply(res, route, 503, 'model not loaded yet');
    const base = publicBaseUrl(req, this.options.publicUrl);
    if (!base) return this.reply(res, route, 400, 'no Host header and no publicUrl configured');
    const xml = buildTwiml(
      this.options.twiml,
      {
        stream: base.replace(/^http(s?):/, 'ws$1:') + this.options.paths.media,
        status: this.options.twiml.statusCallback ? base + this.options.paths.status : null,
      },
      params,
    );
    return this.reply(res, route, 200, xml, 'text/xml; charset=utf-8');
  }
}

/**
 * Creates the server: options are merged over the defaults and validated here (INVALID_OPTION names the field), and
 * with signature checks on and no Twilio auth token it refuses to start. Call `ready()` to load the model.
 */
export function createCallmood(options: CallmoodOptionsInput = {}, runtime: CallmoodRuntime = {}): CallmoodServer {
  return new CallmoodServer(options, runtime);
}
