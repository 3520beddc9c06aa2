/**
 * The live server, as a composition root: Twilio media streams in, emotion events out. One shared, loaded model (in a worker thread by
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
import { CallmoodError, ErrorCodes } from '../errors.js';
import { resolveOptions, type CallmoodOptions, type CallmoodOptionsInput } from '../config/options.js';
import { resolveModelDir, resolvePackagePath } from '../config/load.js';
import { MicroBatcher } from '../stream/batcher.js';
import { InProcessEngine, WorkerEngine, type EngineHealth } from '../stream/engine.js';
import { modelProfile, type ModelProfile } from '../stream/track.js';
import type { CallmoodEvent } from '../stream/events.js';
import { DEFAULT_POLICY, PolicyEngine, PolicyRuntime, loadPolicyFile, type ActionHandler, type CallController, type PolicyConfig } from '../policy/index.js';
import { CallControl } from './control.js';
import { TelnyxCallControl } from './transports/telnyx-control.js';
import { RoutingCallController } from './call-routing.js';
import type { EndpointStats } from '../sinks/webhooks.js';
import { createWebhookSink, type WebhookDelivery } from '../sinks/webhook-sink.js';
import { SignatureGuard } from './signature.js';
import { EventsFeed, rejectUpgrade } from './events-feed.js';
import { CallmoodMetrics } from './metrics.js';
import { createLogger, toLogger, type Logger, type LoggerInput } from '../util/log.js';
import { createFanout } from './fanout.js';
import { MediaSockets } from './media-sockets.js';
import { telnyxTransport } from './transports/telnyx.js';
import type { MediaTransport } from './transports/types.js';
import { HttpRoutes, pathnameOf, type CallmoodHandler } from './routes.js';
import { RedisEventBus, type BusStats } from '../cluster/event-bus.js';

export type { CallmoodHandler };

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
  /**
   * What carries out `escalate` and `end_call` for every call. Default: per call, by the path it came over — Twilio's
   * REST API (`CallControl`, with an auth token) or Telnyx Call Control (`TelnyxCallControl`, with TELNYX_API_KEY).
   */
  callControl?: CallController;
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
  policy: {
    rules: number;
    dryRun: boolean;
    pendingActions: number;
    /** Some controller exists (escalate and end_call can be carried out on some calls). */
    callControl: boolean;
    /** Whose calls can be changed: `twilio` and/or `telnyx`, or `custom` for the embedder's `runtime.callControl`. */
    callControlBy: Array<'twilio' | 'telnyx' | 'custom'>;
  } | null;
  /** Many-node mode's event bus (state `connected`, `down` …, buffered and dropped events); null without Redis. A node whose Redis is down stays `ok`: its calls go on. */
  redis: BusStats | null;
}

/**
 * The server (see the module comment): the composition root. It builds the parts and wires them —
 * `MediaSockets` (./media-sockets.ts: upgrade, sessions, ./flow-control.ts, ./stalls.ts), `HttpRoutes`
 * (./routes.ts), the event fan-out (./fanout.ts), the `/events` feed, the policy, the webhooks and the model — and
 * owns the lifecycle: `ready()` loads the model, `listen()` or `attach()` serves, `close()` drains.
 */
export class CallmoodServer extends EventEmitter<CallmoodEventMap> {
  /** The validated options in force. */
  readonly options: Readonly<CallmoodOptions>;
  /** Prometheus metrics (`/metrics` serves them). */
  readonly metrics: CallmoodMetrics;
  /** The dialog policy over this server's events (null when `policy.enabled` is false). */
  readonly policy: PolicyRuntime | null;
  /** CRM webhook delivery (durable outbox on disk, or in Redis in many-node mode); with no endpoints configured it does nothing. */
  readonly webhooks: WebhookDelivery;
  /** The webhook routes as a node request listener, mountable in an existing app (see CallmoodHandler). */
  readonly handler: CallmoodHandler;
  /** Many-node mode's shared event bus (null without `redis.url`). */
  readonly bus: RedisEventBus | null;
  private readonly log: Logger;
  private readonly feed: EventsFeed;
  private readonly media: MediaSockets;
  /** Telnyx's media protocol, on `paths.telnyxMedia` when that is set. */
  private readonly telnyx: MediaTransport;
  private readonly routes: HttpRoutes;
  private readonly publish: (e: CallmoodEvent) => void;
  private readonly attached: { server: http.Server; listeners: Array<[string, (...a: any[]) => void]> }[] = [];
  private readonly startedAt = Date.now();
  private loading: Promise<void> | null = null;
  private engine: WorkerEngine | InProcessEngine | null = null;
  private loaded: { profile: ModelProfile; batcher: MicroBatcher } | null = null;
  private ownServer: http.Server | null = null;
  private closing: Promise<void> | null = null;
  /** Per-call choice of carrier for escalate/end_call; null when the embedder gave `runtime.callControl` or the policy is off. */
  private router: RoutingCallController | null = null;

  constructor(options: CallmoodOptionsInput = {}, runtime: CallmoodRuntime = {}) {
    super();
    const o = resolveOptions(options, runtime.env ?? process.env);
    this.options = o;
    const log = toLogger(runtime.logger ?? createLogger());
    this.log = log;
    this.metrics = new CallmoodMetrics(
      () => ({ calls: this.media.liveCalls, connections: this.media.size, feedClients: this.feed.size, queuedWindows: this.loaded?.batcher.queued ?? 0 }),
      { defaultMetrics: runtime.processMetrics ?? true },
    );
    const guard = new SignatureGuard(o, log);
    const redisUrl = o.redis.url;
    this.bus = redisUrl ? new RedisEventBus({ ...o.redis, url: redisUrl }, log) : null;
    this.feed = new EventsFeed(o.eventsToken, o.feed, log, this.metrics, this.bus ? (callSid) => this.bus!.catchUp(callSid) : null);
    if (this.bus) {
      // Other nodes' events reach this node's feed consumers; the embedding API fires only where the call lives.
      this.bus.on('remote', (e) => this.feed.publish(e));
      // The node reads from Redis only what its consumers follow.
      this.bus.setInterest(() => this.feed.interest());
      // A dead node's calls, ended here as node-lost: through this node's fan-out, like its own calls' events.
      this.bus.on('lost', (events) => {
        for (const e of events) this.publish(e);
      });
      this.metrics.watchBus(this.bus);
    }
    if (!o.validateSignatures) {
      log('warn', 'CALLMOOD_SIGNATURES_OFF', 'validateSignatures is false: X-Twilio-Signature is NOT checked; anyone who can reach this server can send audio and fetch TwiML. Development only.');
    }
    if (!this.feed.enabled) log('info', 'CALLMOOD_FEED_OFF', `event feed ${o.paths.events} is off: no CALLMOOD_EVENTS_TOKEN`);
    this.policy = this.createPolicy(runtime);
    // In many-node mode the outbox lives in Redis and every node delivers a share of it (src/sinks/README.md).
    this.webhooks = createWebhookSink(o.webhooks, o.webhooks.endpoints.length > 0 ? o.redis : null, { logger: log, env: runtime.env ?? process.env, nodeId: this.bus?.node });
    this.metrics.watchWebhooks(this.webhooks);
    for (const ep of o.webhooks.endpoints) log('info', 'CALLMOOD_WEBHOOKS', `webhook ${ep.name} → ${new URL(ep.url).origin}: ${ep.events.join(', ')}`);
    this.publish = createFanout({
      log,
      metrics: this.metrics,
      emit: (name, e) => (this.emit as (n: string, e: CallmoodEvent) => boolean)(name, e),
      feed: this.feed,
      bus: this.bus,
      webhooks: o.webhooks.endpoints.length > 0 ? this.webhooks : null,
      policy: this.policy,
    });
    const server = this;
    const host = {
      options: o,
      log,
      metrics: this.metrics,
      guard,
      publish: (e: CallmoodEvent) => this.publish(e),
      model: () => this.loaded,
      health: () => this.health(),
      callTransport: (callSid: string, transport: string, phase: 'start' | 'end') => {
        if (phase === 'start') this.router?.callStarted(callSid, transport);
        else this.router?.callEnded(callSid);
      },
      get modelLoaded() {
        return server.loaded !== null;
      },
      get draining() {
        return server.closing !== null;
      },
    };
    this.media = new MediaSockets(host);
    this.telnyx = telnyxTransport({ streamToken: o.telnyxStreamToken, validate: o.validateSignatures });
    if (o.paths.telnyxMedia !== null) log('info', 'CALLMOOD_TELNYX', `Telnyx media streams on ${o.paths.telnyxMedia}`);
    this.routes = new HttpRoutes(host);
    this.handler = this.routes.handler;
  }

  /** Loads and checks the policy at start-up, so a bad rule stops the server before any call. */
  private createPolicy(runtime: CallmoodRuntime): PolicyRuntime | null {
    const p = this.options.policy;
    if (!p.enabled) return null;
    const config = runtime.policy ?? (p.file ? loadPolicyFile(resolvePackagePath(p.file)) : DEFAULT_POLICY);
    const engine = new PolicyEngine(config, { dryRun: p.dryRun });
    const needsControl = config.rules.some((r) => r.do.action === 'escalate' || r.do.action === 'end_call');
    let control: CallController | null = runtime.callControl ?? null;
    if (!control) {
      const o = this.options;
      const twilioControl = o.authToken ? new CallControl(o.authToken, o.control, runtime.env ?? process.env) : null;
      const telnyxControl = o.telnyxApiKey ? new TelnyxCallControl(o.telnyxApiKey, o.control) : null;
      if (twilioControl || telnyxControl) {
        this.router = new RoutingCallController({ twilio: twilioControl, telnyx: telnyxControl });
        control = this.router;
      }
      if (needsControl && !engine.dryRun) {
        if (!twilioControl) {
          this.log('warn', 'CALLMOOD_CONTROL_OFF', 'the policy has escalate/end_call rules but there is no Twilio auth token: those actions will fail on Twilio calls (set TWILIO_AUTH_TOKEN)');
        }
        if (!telnyxControl && o.paths.telnyxMedia !== null) {
          this.log('warn', 'CALLMOOD_CONTROL_OFF', 'the policy has escalate/end_call rules but there is no Telnyx API key: those actions will fail on Telnyx calls (set TELNYX_API_KEY)');
        }
      }
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
    // Redis first: an unreachable one fails the start within 10 s, saying so, rather than waiting on the outbox.
    if (this.bus) {
      await this.bus.ready();
      this.log('info', 'CALLMOOD_REDIS', `many-node mode: event bus on Redis (prefix ${this.options.redis.prefix}), node ${this.bus.node}`, { node: this.bus.node });
    }
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
    this.loaded = { profile: modelProfile(m), batcher: new MicroBatcher(this.metrics.instrument(engine), this.options.batch) };
    this.media.stalls.start();
    // Alive for the other nodes from now on: a model load that held the event loop is over (not if already draining).
    if (!this.closing) this.bus?.startBeating();
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
        if (!this.handler(req, res)) this.routes.reply(res, 'other', 404, 'not found');
      };
      server.on('request', onRequest);
      listeners.push(['request', onRequest]);
    }
    this.attached.push({ server, listeners });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, rejectOthers: boolean): void {
    // A client that resets mid-handshake must not become an uncaught error.
    socket.on('error', () => {});
    const path = pathnameOf(req.url);
    try {
      if (path === this.options.paths.media) this.media.upgrade(req, socket, head);
      else if (path === this.options.paths.telnyxMedia) this.media.upgrade(req, socket, head, this.telnyx);
      else if (path === this.options.paths.events) this.feed.handleUpgrade(req, socket, head, new URL(req.url ?? '/', 'http://localhost'));
      else if (rejectOthers) rejectUpgrade(socket, 404, 'no WebSocket here');
    } catch (err) {
      this.log('error', (err as CallmoodError).code ?? 'CALLMOOD_UPGRADE_ERROR', `upgrade on ${path}: ${(err as Error).message}`);
      rejectUpgrade(socket, 500, 'internal error');
    }
  }

  /** Media streams with a call started and not yet ended. */
  get liveCalls(): number {
    return this.media.liveCalls;
  }

  /** Open media-stream sockets (including ones before `start`). */
  get connections(): number {
    return this.media.size;
  }

  /** Connected event-feed consumers. */
  get feedClients(): number {
    return this.feed.size;
  }

  /** The health summary `/healthz` serves. */
  health(): CallmoodHealth {
    const modelLoaded = this.loaded !== null;
    const engine = this.engine instanceof WorkerEngine ? this.engine.health() : null;
    return {
      ok: modelLoaded && !this.closing && (engine === null || engine.status !== 'failed'),
      modelLoaded,
      draining: this.closing !== null,
      liveCalls: this.media.liveCalls,
      connections: this.media.size,
      feedClients: this.feed.size,
      backend: this.engine instanceof WorkerEngine ? this.engine.backend : this.engine ? 'in-process' : null,
      engine,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      webhooks: this.webhooks.stats(),
      policy: this.policy
        ? {
            rules: this.policy.engine.config.rules.length,
            dryRun: this.policy.engine.dryRun,
            pendingActions: this.policy.pending,
            callControl: this.policy.hasControl,
            callControlBy: this.router ? this.router.providers : this.policy.hasControl ? ['custom'] : [],
          }
        : null,
      redis: this.bus?.stats() ?? null,
    };
  }

  /** Drains and stops (see the module comment). Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  private async drain(): Promise<void> {
    const t0 = performance.now();
    const live = this.media.liveCalls;
    this.log('info', 'CALLMOOD_DRAIN', `shutting down: ending ${live} live call(s)`);
    this.media.stalls.stop();
    // Its outbox closes before its bus: a dead node's calls are left to the nodes that stay.
    this.bus?.stopReaping();
    // Stop accepting: the own server stops listening; upgrades and webhooks on any server now get 503.
    this.ownServer?.close();
    // A model still loading must finish loading before it can be closed.
    await this.loading?.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.options.drainTimeoutMs)));
    if (!(await this.media.endAll(deadline))) {
      this.log('error', 'CALLMOOD_DRAIN_TIMEOUT', `calls did not end within ${this.options.drainTimeoutMs} ms; closing their sockets anyway`);
    }
    // Actions under way (REST calls, handlers) settle and publish their outcomes before the feed closes.
    await this.policy?.close(this.options.drainTimeoutMs);
    this.router?.close();
    // What is not delivered yet stays in the outbox for the next start; nothing is lost by stopping.
    await this.webhooks.close().catch((err: unknown) => this.log('error', 'CALLMOOD_WEBHOOKS_CLOSE', `webhooks: ${(err as Error).message}`));
    // The call-ends go to the other nodes' consumers too.
    await this.bus?.close();
    // Every call-end is queued on the feed sockets by now; their close frames follow the data.
    await this.feed.close();
    if (this.loaded) {
      if ((await Promise.race([this.loaded.batcher.close().then(() => 'ok' as const), deadline])) === 'timeout') await this.engine?.close();
    }
    clearTimeout(timer);
    await this.media.close(3000);
    for (const { server, listeners } of this.attached) for (const [name, fn] of listeners) server.off(name, fn);
    if (this.ownServer) {
      const server = this.ownServer;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    this.log('info', 'CALLMOOD_CLOSED', `shut down in ${Math.round(performance.now() - t0)} ms (${live} call(s) ended)`);
  }
}

/**
 * Creates the server: options are merged over the defaults and validated here (INVALID_OPTION names the field), and
 * with signature checks on and no Twilio auth token it refuses to start. Call `ready()` to load the model.
 */
export function createCallmood(options: CallmoodOptionsInput = {}, runtime: CallmoodRuntime = {}): CallmoodServer {
  return new CallmoodServer(options, runtime);
}
