/**
 * `callmood bench calls`: N simulated calls at real-time pace against a `callmood serve` child process on
 * loopback. The server runs in its own process so its CPU and memory are measured apart from the clients'.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../config/load.js';
import { threadCpuMs } from './threads.js';
import { benchCall } from './signal.js';
import type { CallmoodEvent } from '../stream/events.js';
import { encodePayloads, followEvents, simulateCall } from '../telephony/simulator.js';
import { TWILIO_FRAME_BYTES } from '../audio/codecs.js';
import { Redis } from 'ioredis';

/** Call time each `media` chunk carries: 160 μ-law bytes at 8 kHz. */
const CHUNK_MS = (TWILIO_FRAME_BYTES / 8000) * 1000;

/** What `benchCalls` prints. */
export interface CallsBenchResult {
  calls: number;
  seconds: number;
  /** Every call ended (reason stop) within 2 s of its last audio, and the senders kept their 20 ms schedule. */
  realtime: boolean;
  /**
   * End-to-end latency, ms: from the client sending the 20 ms chunk that holds the end of a window's audio to the
   * client receiving that window's emotion event on the /events feed. It counts everything a callbot would wait for:
   * the socket, time the audio waits in the server's receive buffer while its event loop is busy, features, the
   * batch wait, inference, and the event's way back.
   */
  p50Ms: number;
  p99Ms: number;
  /**
   * The server's own share of it (the events' latencyMs), ms: from the window being formed to its event. It leaves
   * out the time the audio waited to be read, so under load it reads lower than p99Ms.
   */
  serverP50Ms: number;
  serverP99Ms: number;
  windows: number;
  /** Server CPU ms per second of call audio (all tracks). */
  cpuMsPerCallSecond: number;
  /** Server resident memory added per live call, MB. */
  rssMbPerCall: number;
  /** Worst delay of a client's chunk behind its 20 ms schedule, ms (client side, for context). */
  maxSendLagMs: number;
  /** Worst delay from a call's stop to its call-end event, ms. */
  maxEndLagMs: number;
  /**
   * CPU ms per call-second spent by the simulated clients and the event-feed reader (this process), measured over
   * the same interval as the server's: they run on the same cores, so this is what the server did not get.
   */
  clientCpuMsPerCallSecond: number;
  /** The clients' share of all CPU used in the run (clients / (clients + server)). */
  clientCpuShare: number;
  /**
   * Of `cpuMsPerCallSecond`, the server's main thread (sockets, parsing, resampling, features, events) and its other
   * threads (the inference worker, GC helpers): the main thread is one thread, so it caps the calls first. From
   * /proc (Linux), at its 10 ms tick; NaN elsewhere.
   */
  mainThreadMsPerCallSecond: number;
  otherThreadsMsPerCallSecond: number;
  /** Servers the calls were spread over (round robin); 1 = one node without Redis. */
  nodes: number;
  /**
   * With several nodes, the feed reader is on node 0: the events of calls on other nodes came over the Redis bus.
   * End-to-end p99 of those (remote) and of node 0's own calls (local), ms; NaN with one node.
   */
  remoteP99Ms: number;
  localP99Ms: number;
  /** Events per second node 0 read from the bus over the run (the other nodes' events). */
  busEventsPerSecond: number;
  /** Redis memory added per live call at the peak (used_memory), KB; NaN without Redis. */
  redisKbPerCall: number;
}

/** What `benchCalls` runs. */
export interface CallsBenchOptions {
  calls: number;
  seconds: number;
  /** Model directory (default: the shipped model). */
  modelDir?: string;
  /** Delay between call starts, ms (default: all calls start within 2 s). */
  staggerMs?: number;
  /** Server options merged into the config the server starts with (e.g. `{ stream: { hopMs: 500 } }`). */
  config?: Record<string, unknown>;
  /** Package root whose `callmood serve` is started (default: this package); compares two builds in one run. */
  serverRoot?: string;
  /** Extra node flags for the server process (e.g. `--cpu-prof`). */
  serverNodeArgs?: string[];
  /** Servers to spread the calls over (default 1); more than one needs `redisUrl`. */
  nodes?: number;
  /** Redis the nodes share (many-node mode). */
  redisUrl?: string;
  /** Whose media-stream messages the calls send (default twilio); telnyx goes to the server's Telnyx path. */
  provider?: 'twilio' | 'telnyx';
}

/** The Telnyx path and stream token of a bench server. */
const TELNYX_PATH = '/telnyx';
const TELNYX_TOKEN = 'bench-telnyx-stream-token';

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/** `seconds` of a caller talking at 8 kHz: turns of voice with pauses (`benchCall`, one channel). */
export function callAudio(seconds: number): Float32Array {
  return benchCall(seconds, 8000, 1)[0];
}

/** A `callmood serve` child process on loopback, for the benchmarks. */
export interface BenchServer {
  /** The server's process id. */
  pid: number;
  port: number;
  /** http://127.0.0.1:port */
  base: string;
  authToken: string;
  eventsToken: string;
  /** A Prometheus value of the server's /metrics (NaN if absent). */
  metric(name: string): Promise<number>;
  /** SIGTERM, and wait for the exit (at most 10 s). */
  stop(): Promise<void>;
}

/** Starts `callmood serve` as a child process with `config` and waits until its model is loaded. */
export async function startBenchServer(opts: { config?: Record<string, unknown>; modelDir?: string; serverRoot?: string; serverNodeArgs?: string[] }): Promise<BenchServer> {
  const root = opts.serverRoot ?? packageRoot();
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-'));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify(opts.config ?? {}));
  const authToken = 'bench-auth-token';
  const eventsToken = 'bench-events-token';
  const isTs = import.meta.url.endsWith('.ts');
  const cli = join(root, isTs ? 'src/cli/main.ts' : 'dist/src/cli/main.js');
  const args = [...(opts.serverNodeArgs ?? []), ...(isTs ? ['--import', 'tsx'] : []), cli, 'serve', '--port', '0', '--host', '127.0.0.1', '--config', config];
  if (opts.modelDir) args.push('--model', opts.modelDir);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, TWILIO_AUTH_TOKEN: authToken, CALLMOOD_EVENTS_TOKEN: eventsToken, CALLMOOD_TELNYX_STREAM_TOKEN: TELNYX_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((r) => {
      if (child.exitCode !== null) return r(null);
      child.once('exit', r);
      setTimeout(r, 10_000).unref();
    });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += String(d);
        const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`server exited with code ${code}: ${stderr}`)));
      // Unref'd: a pending timer would keep the process alive for its full minute after the bench is done.
      setTimeout(() => reject(new Error(`server did not start in 60 s: ${stderr}`)), 60_000).unref();
    });
    const base = `http://127.0.0.1:${port}`;
    // Wait for the model to be loaded.
    for (let i = 0; i < 600; i++) {
      const h = (await (await fetch(`${base}/healthz`)).json().catch(() => ({}))) as { modelLoaded?: boolean };
      if (h.modelLoaded) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { pid: child.pid!, port, base, authToken, eventsToken, metric: (name) => metric(base, name), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Runs the benchmark; `modelDir` defaults to the shipped model. */
export async function benchCalls(opts: CallsBenchOptions): Promise<CallsBenchResult> {
  const n = opts.nodes ?? 1;
  if (n > 1 && !opts.redisUrl) throw new Error(`--nodes ${n} needs --redis redis://host:port: nodes share their events through Redis`);
  const telnyx = opts.provider === 'telnyx';
  const config = {
    ...opts.config,
    maxCalls: opts.calls + 10,
    ...(opts.redisUrl ? { redis: { url: opts.redisUrl } } : {}),
    ...(telnyx ? { paths: { ...(opts.config?.paths as object | undefined), telnyxMedia: TELNYX_PATH } } : {}),
  };
  const servers: BenchServer[] = [];
  const redis = opts.redisUrl ? new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 }) : null;
  const redisMemory = async () => (redis ? Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? NaN) : NaN);
  try {
    for (let i = 0; i < n; i++) servers.push(await startBenchServer({ ...opts, config }));
    const server = servers[0];
    const { port, eventsToken } = server;
    const audio = callAudio(opts.seconds);
    // Every call streams the same recording: encode it once, not once per call inside the timed run.
    const payloads = encodePayloads(audio);
    const latencies: number[] = [];
    const local: number[] = [];
    const remote: number[] = [];
    const serverLatencies: number[] = [];
    // When each call's chunks went out (performance.now()), by chunk index: an event's latency is counted from the
    // chunk that carried the last sample of its window.
    const chunkCount = payloads.length;
    const sentAt = new Map<string, Float64Array>();
    // Telnyx's call ids are call_control_ids (v3:…), Twilio's CallSids CA plus 32 hex digits.
    const callSidOf = (i: number) => `${telnyx ? 'v3:' : 'CA'}${String(i).padStart(32, '0')}`;
    const nodeOf = new Map<string, number>();
    for (let i = 0; i < opts.calls; i++) {
      sentAt.set(callSidOf(i), new Float64Array(chunkCount).fill(NaN));
      nodeOf.set(callSidOf(i), i % n);
    }
    const endAt = new Map<string, number>();
    const endReason = new Map<string, string>();
    const feed = await followEvents(`ws://127.0.0.1:${port}/events?types=emotion,call-end`, {
      token: eventsToken,
      onEvent: (e: CallmoodEvent) => {
        if (e.type === 'emotion') {
          const now = performance.now();
          serverLatencies.push(e.latencyMs);
          // The window's last sample lies in the chunk ending at or after timeMs.
          const sent = sentAt.get(e.callSid)?.[Math.min(chunkCount - 1, Math.ceil(e.timeMs / CHUNK_MS) - 1)];
          if (sent !== undefined && Number.isFinite(sent)) {
            latencies.push(now - sent);
            (nodeOf.get(e.callSid) === 0 ? local : remote).push(now - sent);
          }
        }
        else if (e.type === 'call-end') {
          endAt.set(e.callSid, performance.now());
          endReason.set(e.callSid, e.reason);
        }
      },
    });
    const sum = async (name: string) => (await Promise.all(servers.map((s) => s.metric(name)))).reduce((a, b) => a + b, 0);
    const rssBefore = await sum('process_resident_memory_bytes');
    const cpuBefore = await sum('process_cpu_seconds_total');
    const busBefore = n > 1 ? await server.metric('callmood_bus_received_total') : 0;
    const redisBefore = await redisMemory();
    const clientBefore = process.cpuUsage();
    const threadsBefore = servers.map((s) => threadCpuMs(s.pid));
    const t0 = performance.now();
    let rssPeak = rssBefore;
    let redisPeak = redisBefore;
    const sampler = setInterval(() => {
      sum('process_resident_memory_bytes').then((v) => (rssPeak = Math.max(rssPeak, v)), () => {});
      redisMemory().then((v) => (redisPeak = Math.max(redisPeak, v)), () => {});
    }, 1000);
    const stagger = opts.staggerMs ?? Math.min(20, 2000 / opts.calls);
    const results = await Promise.all(
      Array.from({ length: opts.calls }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * stagger));
        const callSid = callSidOf(i);
        const sent = sentAt.get(callSid)!;
        const target = servers[i % n];
        const r = await simulateCall(
          { callSid, audio: {}, payloads: { inbound: payloads } },
          {
            url: `ws://127.0.0.1:${target.port}${telnyx ? TELNYX_PATH : '/media'}`,
            pace: 'realtime',
            authToken: target.authToken,
            provider: opts.provider,
            streamToken: TELNYX_TOKEN,
            onChunk: (k, at) => void (sent[k] = at),
          },
        );
        return r;
      }),
    );
    // Give the last windows a moment to come back.
    for (let i = 0; i < 100 && endAt.size < opts.calls; i++) await new Promise((r) => setTimeout(r, 50));
    clearInterval(sampler);
    const elapsedS = (performance.now() - t0) / 1000;
    const cpuAfter = await sum('process_cpu_seconds_total');
    const busAfter = n > 1 ? await server.metric('callmood_bus_received_total') : 0;
    const threadsAfter = servers.map((s) => threadCpuMs(s.pid));
    const threadDelta = (k: 'main' | 'other') => threadsAfter.reduce((a, t, i) => a + t[k] - threadsBefore[i][k], 0);
    const clientUsage = process.cpuUsage(clientBefore);
    const clientCpuMs = (clientUsage.user + clientUsage.system) / 1000;
    const serverCpuMs = (cpuAfter - cpuBefore) * 1000;
    feed.close();
    // A call's last audio went out with its last chunk (never sent: counted from 0, so the lag is huge).
    const stoppedAt = (callSid: string) => {
      const at = sentAt.get(callSid)![chunkCount - 1];
      return Number.isNaN(at) ? 0 : at;
    };
    const endLags = results.map((r) => (endAt.get(r.callSid) ?? Infinity) - stoppedAt(r.callSid));
    const maxEndLagMs = Math.max(...endLags);
    const maxSendLagMs = Math.max(...results.map((r) => r.maxLagMs));
    const allStopped = results.every((r) => endReason.get(r.callSid) === 'stop');
    const callSeconds = opts.calls * opts.seconds;
    return {
      calls: opts.calls,
      seconds: opts.seconds,
      realtime: allStopped && maxEndLagMs <= 2000 && maxSendLagMs <= 200,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      serverP50Ms: quantile(serverLatencies, 0.5),
      serverP99Ms: quantile(serverLatencies, 0.99),
      windows: serverLatencies.length,
      cpuMsPerCallSecond: serverCpuMs / callSeconds,
      rssMbPerCall: (rssPeak - rssBefore) / 1e6 / opts.calls,
      maxSendLagMs,
      maxEndLagMs,
      clientCpuMsPerCallSecond: clientCpuMs / callSeconds,
      clientCpuShare: clientCpuMs / (clientCpuMs + serverCpuMs),
      mainThreadMsPerCallSecond: threadDelta('main') / callSeconds,
      otherThreadsMsPerCallSecond: threadDelta('other') / callSeconds,
      nodes: n,
      remoteP99Ms: n > 1 ? quantile(remote, 0.99) : NaN,
      localP99Ms: n > 1 ? quantile(local, 0.99) : NaN,
      busEventsPerSecond: n > 1 ? (busAfter - busBefore) / elapsedS : NaN,
      redisKbPerCall: (redisPeak - redisBefore) / 1024 / opts.calls,
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    redis?.disconnect();
  }
}
