/**
 * A client that floods: one stream sends a long recording as fast as the socket takes it (Twilio never sends faster
 * than real time), beside `--calls` ordinary real-time calls, against a `callmood serve` child process. Every
 * `--sample-ms` it reads the server's RSS and the windows waiting for the model; at the end it prints one JSON
 * line: the flooder's pace (× real time), peak RSS growth and queued windows, and the real-time calls' latency.
 *
 *   node --import tsx bench/flood.ts [--calls 20] [--seconds 30] [--flood-seconds 600] [--set stream.hopMs=500] [--root CHECKOUT]
 */
import type { CallmoodEvent } from '../src/stream/events.js';
import { callAudio, startBenchServer } from '../src/bench/calls.js';
import { setOption } from './options.js';
import { encodePayloads, followEvents, simulateCall } from '../src/telephony/simulator.js';

const o = { calls: 20, seconds: 30, floodSeconds: 600, sampleMs: 500, config: {} as Record<string, unknown>, root: undefined as string | undefined };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [a, v] = [argv[i], argv[i + 1]];
  if (a === '--calls') o.calls = Number(v);
  else if (a === '--seconds') o.seconds = Number(v);
  else if (a === '--flood-seconds') o.floodSeconds = Number(v);
  else if (a === '--root') o.root = v;
  else if (a === '--set') setOption(o.config, v);
  else throw new Error(`unknown option ${a}`);
}

const server = await startBenchServer({ config: { ...o.config, maxCalls: o.calls + 10 }, serverRoot: o.root });
try {
  const url = `ws://127.0.0.1:${server.port}/media`;
  const normal = encodePayloads(await callAudio(o.seconds));
  const flood = encodePayloads(await callAudio(o.floodSeconds));
  const floodSid = 'CA' + 'f'.repeat(32);
  const latencies: number[] = [];
  let floodEmotions = 0;
  let floodErrors = 0;
  let floodEnd: CallmoodEvent | null = null;
  const feed = await followEvents(`ws://127.0.0.1:${server.port}/events`, {
    token: server.eventsToken,
    onEvent: (e) => {
      if (e.callSid === floodSid) {
        if (e.type === 'emotion') floodEmotions++;
        if (e.type === 'error') floodErrors++;
        if (e.type === 'call-end') floodEnd = e;
      } else if (e.type === 'emotion') latencies.push(e.latencyMs);
    },
  });
  const rss0 = await server.metric('process_resident_memory_bytes');
  let rssPeak = rss0;
  let queuedPeak = 0;
  const sampler = setInterval(() => {
    server.metric('process_resident_memory_bytes').then((v) => (rssPeak = Math.max(rssPeak, v)), () => {});
    server.metric('callmood_inference_queued_windows').then((v) => (queuedPeak = Math.max(queuedPeak, v)), () => {});
  }, o.sampleMs);
  const t0 = performance.now();
  let floodSentMs = 0;
  const flooder = simulateCall({ callSid: floodSid, audio: {}, payloads: { inbound: flood } }, { url, pace: 'fast', authToken: server.authToken }).then(
    (r) => (floodSentMs = performance.now() - t0) && r,
  );
  const calls = Array.from({ length: o.calls }, (_, i) =>
    simulateCall({ callSid: `CA${String(i).padStart(32, '0')}`, audio: {}, payloads: { inbound: normal } }, { url, pace: 'realtime', authToken: server.authToken }),
  );
  const results = await Promise.all(calls);
  await flooder;
  for (let i = 0; i < 600 && !floodEnd; i++) await new Promise((r) => setTimeout(r, 100));
  clearInterval(sampler);
  feed.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]);
  process.stdout.write(
    `${JSON.stringify({
      config: o.config,
      calls: o.calls,
      floodAudioS: o.floodSeconds,
      floodSendS: Number((floodSentMs / 1000).toFixed(1)),
      floodPaceX: Number((o.floodSeconds / (floodSentMs / 1000)).toFixed(1)),
      floodEmotions,
      floodErrors,
      floodEnded: floodEnd !== null,
      root: o.root ?? null,
      rssGrowthMb: Number(((rssPeak - rss0) / 1e6).toFixed(1)),
      queuedWindowsPeak: queuedPeak,
      realtimeP50Ms: q(0.5),
      realtimeP99Ms: q(0.99),
      realtimeMaxSendLagMs: Math.round(Math.max(...results.map((r) => r.maxLagMs))),
    })}\n`,
  );
} finally {
  await server.stop();
}
