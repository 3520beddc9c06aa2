/**
 * Flow control on the media path: a stream sent faster than real time is paused until the wall clock catches up, so
 * it cannot queue its windows ahead of other calls; nothing of it is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createCallmood } from '../src/telephony/server.js';
import { simulateCall } from '../src/telephony/simulator.js';
import { loadChannels } from '../src/audio/load.js';
import type { CallmoodEvent } from '../src/stream/events.js';

const TOKEN = 'flow-test-token';

async function timedCall(session: { maxLeadMs: number; maxPendingWindows?: number | null }, audio: Float32Array): Promise<{ wallMs: number; events: CallmoodEvent[] }> {
  const server = createCallmood(
    { authToken: TOKEN, engine: 'in-process', session, stream: { hopMs: 250, smoothing: 0.3 } },
    { logger: () => {}, processMetrics: false, env: {} },
  );
  const events: CallmoodEvent[] = [];
  server.on('event', (e) => events.push(e));
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    const t0 = performance.now();
    await simulateCall({ callSid: 'CA' + '7'.repeat(32), audio: { inbound: audio } }, { url: `ws://127.0.0.1:${port}/media`, pace: 'fast', authToken: TOKEN });
    for (let i = 0; i < 800 && !events.some((e) => e.type === 'call-end'); i++) await new Promise((r) => setTimeout(r, 25));
    return { wallMs: performance.now() - t0, events };
  } finally {
    await server.close();
  }
}

test('a stream sent as fast as the socket takes it is held to real time plus maxLeadMs and loses nothing; without the pause the window cap skips', async () => {
  const clip = (await loadChannels(fileURLToPath(new URL('./fixtures/audio/YAF_back_angry.flac', import.meta.url)), 8000)).channels[0];
  // About 10 s of speech, sent in a burst.
  const copies = 5;
  const audio = new Float32Array(clip.length * copies);
  for (let i = 0; i < copies; i++) audio.set(clip, i * clip.length);
  const audioMs = (audio.length / 8000) * 1000;
  // The default cap of windows waiting per track (8) stays on; the reference run has neither limit.
  const held = await timedCall({ maxLeadMs: 500 }, audio);
  const free = await timedCall({ maxLeadMs: 600_000, maxPendingWindows: null }, audio);
  const capped = await timedCall({ maxLeadMs: 600_000 }, audio);
  // Paused, the server takes the burst at about real time (unpaused: in about a second). The bound leaves room for
  // timer slack on a loaded machine: runs of the whole suite measured up to 1 s of extra lead.
  assert.ok(held.wallMs >= audioMs - 500 - 1500, `throttled call took ${held.wallMs.toFixed(0)} ms for ${audioMs.toFixed(0)} ms of audio`);
  assert.ok(free.wallMs < held.wallMs, `unthrottled ${free.wallMs.toFixed(0)} ms vs throttled ${held.wallMs.toFixed(0)} ms`);
  // Same content: stream ids are random per call, latency and outcome times are wall clock, and emotion events go out when their
  // inference ends, so they are compared in call-time order.
  const strip = (es: CallmoodEvent[]) =>
    es
      .map((e) => ({ ...e, streamSid: '', ...(e.type === 'emotion' ? { latencyMs: 0 } : {}), ...(e.type === 'action-result' ? { atMs: 0 } : {}) }))
      .sort((a, b) => a.timeMs - b.timeMs || a.type.localeCompare(b.type));
  assert.deepEqual(strip(held.events), strip(free.events), 'held to real time, every window is scored as with no limits');
  assert.ok(held.events.filter((e) => e.type === 'emotion').length >= 8);
  // Without the pause the burst runs into the cap: windows are skipped, and said so, rather than queued without bound.
  const skipped = capped.events.filter((e) => e.type === 'error' && e.code === 'CALLMOOD_ERR_INFERENCE');
  assert.ok(skipped.length >= 1 && /still waiting for the model/.test((skipped[0] as { message: string }).message));
  assert.ok(capped.events.filter((e) => e.type === 'emotion').length < free.events.filter((e) => e.type === 'emotion').length);
});
