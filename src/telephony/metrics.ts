/**
 * Prometheus metrics of one server, on its own registry (several servers in one process do not collide). Counters
 * follow the events that pass through the server, so what /metrics says is what consumers were told.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { InferenceEngine } from '../stream/batcher.js';
import type { BusStats } from '../cluster/event-bus.js';
import type { CallmoodEvent } from '../stream/events.js';
import type { WebhookDelivery } from '../sinks/webhook-sink.js';

/** A gauge read when /metrics is scraped. */
function pulledGauge(registers: Registry[], name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** Live numbers the gauges read at scrape time. */
export interface LiveCounts {
  calls: number;
  connections: number;
  feedClients: number;
  queuedWindows: number;
}

/** The server's metrics. */
export class CallmoodMetrics {
  /** The registry; `/metrics` serialises it. */
  readonly registry = new Registry();
  readonly callsTotal: Counter;
  readonly callEnds: Counter<'reason'>;
  readonly mediaMessages: Counter;
  readonly chunksDropped: Counter;
  readonly gapsFilled: Counter;
  readonly timestampJumps: Counter;
  readonly windowsScored: Counter;
  readonly inferenceLatency: Histogram;
  readonly batchSize: Histogram;
  readonly batchSeconds: Histogram;
  readonly errors: Counter<'code'>;
  readonly events: Counter<'type'>;
  readonly rejectedUpgrades: Counter<'path' | 'status'>;
  readonly webhooks: Counter<'route' | 'status'>;
  readonly feedSlowClosed: Counter;
  readonly actions: Counter<'action' | 'dry_run'>;
  readonly actionResults: Counter<'action' | 'outcome'>;

  constructor(live: () => LiveCounts, options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: (l: LiveCounts) => number) => pulledGauge(registers, name, help, () => read(live()));
    gauge('callmood_calls_live', 'Media streams with a call started and not yet ended.', (l) => l.calls);
    gauge('callmood_media_connections_live', 'Open media-stream WebSockets (including ones before start).', (l) => l.connections);
    gauge('callmood_feed_clients', 'Connected event-feed consumers.', (l) => l.feedClients);
    gauge('callmood_inference_queued_windows', 'Windows waiting for a batch.', (l) => l.queuedWindows);
    this.callsTotal = new Counter({ name: 'callmood_calls_total', help: 'Calls started (call-start events).', registers });
    this.callEnds = new Counter({ name: 'callmood_call_ends_total', help: 'Calls ended, by reason.', labelNames: ['reason'], registers });
    this.mediaMessages = new Counter({ name: 'callmood_media_messages_total', help: 'Media messages decoded.', registers });
    this.chunksDropped = new Counter({ name: 'callmood_media_chunks_dropped_total', help: 'Late or duplicate media chunks dropped.', registers });
    this.gapsFilled = new Counter({ name: 'callmood_media_gaps_filled_total', help: 'Gaps in media timestamps filled with silence.', registers });
    this.timestampJumps = new Counter({
      name: 'callmood_media_timestamp_jumps_total',
      help: 'Media chunks dropped because their timestamp jumped further ahead than the wall clock allows (maxLeadMs).',
      registers,
    });
    this.windowsScored = new Counter({ name: 'callmood_windows_scored_total', help: 'Windows scored by the model (emotion events).', registers });
    this.inferenceLatency = new Histogram({
      name: 'callmood_inference_latency_seconds',
      help: "From a window's audio arriving to its emotion event (queueing + batching + inference): the events' latencyMs.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.batchSize = new Histogram({ name: 'callmood_batch_size', help: 'Windows per inference batch.', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
    this.batchSeconds = new Histogram({
      name: 'callmood_batch_duration_seconds',
      help: 'Time the engine took per batch.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.errors = new Counter({ name: 'callmood_errors_total', help: 'Error events (protocol, media format, audio, inference), by code.', labelNames: ['code'], registers });
    this.events = new Counter({ name: 'callmood_events_total', help: 'Events emitted, by type.', labelNames: ['type'], registers });
    this.rejectedUpgrades = new Counter({
      name: 'callmood_upgrades_rejected_total',
      help: 'WebSocket upgrades refused before a socket opened (403 signature or token, 503 draining or full, …).',
      labelNames: ['path', 'status'],
      registers,
    });
    this.webhooks = new Counter({ name: 'callmood_webhook_requests_total', help: 'Webhook and HTTP requests, by route and status.', labelNames: ['route', 'status'], registers });
    this.feedSlowClosed = new Counter({ name: 'callmood_feed_slow_consumers_closed_total', help: 'Event-feed consumers closed (1013) for falling too far behind.', registers });
    this.actions = new Counter({ name: 'callmood_actions_total', help: 'Actions the dialog policy decided, by action and whether it was a dry run.', labelNames: ['action', 'dry_run'], registers });
    this.actionResults = new Counter({
      name: 'callmood_action_results_total',
      help: 'Outcomes of actions (done, call-over, failed, skipped), by action.',
      labelNames: ['action', 'outcome'],
      registers,
    });
    // The default process metrics keep their standard names (process_*, nodejs_*), which every Node dashboard
    // expects; only callmood's own metrics carry the callmood_ prefix.
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Counts the deliveries of a webhook sink: delivered, failed attempts, dead letters, and pending per endpoint. */
  watchWebhooks(sink: WebhookDelivery): void {
    const registers = [this.registry];
    const delivered = new Counter({ name: 'callmood_webhook_delivered_total', help: 'Webhook events the CRM acknowledged (2xx), by endpoint.', labelNames: ['endpoint'], registers });
    const failed = new Counter({ name: 'callmood_webhook_failed_attempts_total', help: 'Webhook delivery attempts that failed (retried or not), by endpoint.', labelNames: ['endpoint'], registers });
    const dead = new Counter({ name: 'callmood_webhook_dead_letters_total', help: 'Webhook events moved to the dead-letter file, by endpoint.', labelNames: ['endpoint'], registers });
    new Gauge({
      name: 'callmood_webhook_pending',
      help: 'Webhook events in the outbox not yet acknowledged, by endpoint.',
      labelNames: ['endpoint'],
      registers,
      collect() {
        for (const [endpoint, st] of Object.entries(sink.stats())) this.set({ endpoint }, st.pending);
      },
    });
    sink.on('delivered', (i) => delivered.inc({ endpoint: i.endpoint }));
    sink.on('attempt-failed', (i) => failed.inc({ endpoint: i.endpoint }));
    sink.on('dead-letter', (d) => dead.inc({ endpoint: d.endpoint }));
  }

  /** Many-node mode: the event bus's state, traffic, buffer and drops. */
  watchBus(bus: { stats(): BusStats }): void {
    const registers = [this.registry];
    const g = (name: string, help: string, pick: (s: BusStats) => number) => pulledGauge(registers, name, help, () => pick(bus.stats()));
    g('callmood_bus_connected', 'Whether this node reaches Redis (1) or not (0).', (s) => (s.state === 'connected' ? 1 : 0));
    g('callmood_bus_buffered_events', 'Events waiting in memory for Redis.', (s) => s.buffered);
    g('callmood_bus_nodes_live', 'Nodes beating into Redis within redis.nodeTtlMs, this one included, at its last beat (0 before it).', (s) => s.nodes ?? 0);
    const c = (name: string, help: string, pick: (s: BusStats) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(pick(bus.stats()));
        },
      });
    c('callmood_bus_published_total', 'Events this node wrote to the shared event stream.', (s) => s.published);
    c('callmood_bus_received_total', "Other nodes' events this node read from the shared event stream.", (s) => s.received);
    c('callmood_bus_calls_taken_over_total', 'Calls of dead nodes this node ended as node-lost.', (s) => s.takenOver);
    c('callmood_bus_dropped_total', 'Events dropped because Redis was unreachable and the buffer (redis.bufferMaxEvents) was full.', (s) => s.dropped);
  }

  /** Counts one event. */
  observe(e: CallmoodEvent): void {
    this.events.inc({ type: e.type });
    switch (e.type) {
      case 'call-start':
        this.callsTotal.inc();
        break;
      case 'call-end':
        this.callEnds.inc({ reason: e.reason });
        break;
      case 'emotion':
        this.windowsScored.inc();
        this.inferenceLatency.observe(e.latencyMs / 1000);
        break;
      case 'error':
        this.errors.inc({ code: e.code });
        break;
      case 'action':
        this.actions.inc({ action: e.action, dry_run: String(e.dryRun) });
        break;
      case 'action-result':
        this.actionResults.inc({ action: e.action, outcome: e.outcome });
        break;
      default:
        break;
    }
  }

  /** Wraps an engine so every batch's size and time are recorded. */
  instrument(engine: InferenceEngine): InferenceEngine {
    const m = this;
    return {
      get windowSize() {
        return engine.windowSize;
      },
      get classes() {
        return engine.classes;
      },
      async predict(x: Float32Array, n: number): Promise<Float32Array> {
        const t0 = performance.now();
        const out = await engine.predict(x, n);
        m.batchSize.observe(n);
        m.batchSeconds.observe((performance.now() - t0) / 1000);
        return out;
      },
      close: () => engine.close(),
    };
  }

  /** The Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
