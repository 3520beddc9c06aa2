/**
 * EmotionTrack: the same audio gives the same events however it is chunked (20 ms as Twilio sends it, one piece as
 * replay does, odd sizes as a jittery network would), with the real model behind a MicroBatcher.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readAudioFile } from '../src/audio/read.js';
import { resample } from '../src/audio/resample.js';
import { MicroBatcher } from '../src/stream/batcher.js';
import { InProcessEngine } from '../src/stream/engine.js';
import { EmotionTrack, type ModelProfile } from '../src/stream/track.js';
import type { CallmoodEvent, TrackSummary } from '../src/stream/events.js';
import { ErrorCodes } from '../src/errors.js';
import { DEFAULT_FEATURE_CONFIG, NARROWBAND_FEATURE_CONFIG } from '../src/features/config.js';
import { assertCallmoodError, chunked, rng } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const CLIPS = ['test/fixtures/audio/YAF_back_angry.flac', 'test/fixtures/audio/03-01-05-02-01-01-21.flac', 'test/fixtures/audio/1062_DFA_ANG_XX.opus'];

let engine: InProcessEngine;
let batcher: MicroBatcher;
let profile: ModelProfile;
const audio = new Map<string, Float32Array>();

before(async () => {
  engine = await InProcessEngine.load(`${root}models/default`);
  batcher = new MicroBatcher(engine);
  const m = engine.metadata;
  profile = { labels: m.labels, window: m.window, normalization: m.normalization };
  for (const c of CLIPS) {
    const a = await readAudioFile(`${root}${c}`);
    audio.set(c, resample(a.channels[0], a.sampleRate, 8000));
  }
});

after(async () => {
  await batcher.close();
});

const base = () => ({ callSid: 'CA00000000000000000000000000000001', streamSid: 'MZ1', customParameters: { k: 'v' } });

async function run(chunks: Float32Array[], p: ModelProfile = profile): Promise<{ events: CallmoodEvent[]; summary: TrackSummary }> {
  const events: CallmoodEvent[] = [];
  const t = new EmotionTrack(p, (w) => batcher.infer(w), (e) => events.push(e), base, 'inbound');
  let endMs = 0;
  for (const c of chunks) {
    endMs += c.length / 8;
    t.push(c, endMs);
  }
  const summary = await t.end();
  return { events, summary };
}

/** Speech events are emitted as frames arrive, emotion events when inference answers: compare in call-time order. */
function ordered(events: CallmoodEvent[]): CallmoodEvent[] {
  const rank = { 'speech-start': 0, emotion: 1, 'speech-end': 2 } as Record<string, number>;
  return [...events].sort((a, b) => a.timeMs - b.timeMs || (rank[a.type] ?? 9) - (rank[b.type] ?? 9));
}

function assertSameEvents(a: CallmoodEvent[], b: CallmoodEvent[], what: string): void {
  const x = ordered(a);
  const y = ordered(b);
  assert.deepEqual(
    y.map((e) => `${e.type}@${e.timeMs}`),
    x.map((e) => `${e.type}@${e.timeMs}`),
    `${what}: event types and times`,
  );
  for (let i = 0; i < x.length; i++) {
    const p = x[i];
    const q = y[i];
    assert.equal(q.callSid, p.callSid);
    if (p.type === 'emotion' && q.type === 'emotion') {
      assert.equal(q.label, p.label, `${what}: label of window ${i}`);
      assert.equal(q.windowStartMs, p.windowStartMs);
      assert.equal(q.speechRatio, p.speechRatio);
      for (const l of profile.labels) {
        assert.ok(Math.abs(q.probs[l] - p.probs[l]) < 1e-5, `${what}: window ${i} ${l} ${q.probs[l]} vs ${p.probs[l]}`);
        assert.ok(Math.abs(q.state.probs[l] - p.state.probs[l]) < 1e-5);
      }
      assert.equal(q.state.label, p.state.label);
    }
    if (p.type === 'speech-end' && q.type === 'speech-end') assert.equal(q.durationMs, p.durationMs);
  }
}

/** The shipped model's profile with the features at the other rate: 8 kHz features take the line's audio as it is, 16 kHz ones resample it first. */
function otherRateProfile(): ModelProfile {
  const f = profile.window.feature;
  const other = f.sampleRate === 8000 ? DEFAULT_FEATURE_CONFIG : NARROWBAND_FEATURE_CONFIG;
  assert.notEqual(other.sampleRate, f.sampleRate);
  return { ...profile, window: { ...profile.window, feature: other } };
}

const cases = [...CLIPS.map((clip) => ({ clip, other: false })), { clip: CLIPS[1], other: true }];
for (const { clip, other: otherRate } of cases) {
  const label = otherRate ? ' (features at the other rate)' : '';
  test(`${clip.split('/').pop()}${label}: 20 ms chunks, one piece and odd chunk sizes give the same events`, async () => {
    const x = audio.get(clip)!;
    const p = otherRate ? otherRateProfile() : profile;
    const whole = await run([x], p);
    const twenty = await run(chunked(x, () => 160), p);
    const r = rng(7);
    const odd = await run(chunked(x, () => 1 + r() * 997), p);
    const tiny = await run(chunked(x, () => 1 + r() * 13), p);

    const emotions = whole.events.filter((e) => e.type === 'emotion');
    assert.ok(emotions.length >= 2, `a ${x.length / 8000} s clip gives several scored windows, got ${emotions.length}`);
    assert.ok(whole.events.some((e) => e.type === 'speech-start'));
    assert.ok(whole.events.some((e) => e.type === 'speech-end'));
    for (const e of whole.events) {
      assert.equal(e.callSid, base().callSid);
      assert.deepEqual(e.customParameters, { k: 'v' });
      if ('track' in e) assert.equal(e.track, 'inbound');
    }

    assertSameEvents(whole.events, twenty.events, '20 ms chunks');
    assertSameEvents(whole.events, odd.events, 'odd chunks');
    assertSameEvents(whole.events, tiny.events, '1–13 sample chunks');
    for (const other of [twenty, odd, tiny]) {
      assert.equal(other.summary.windows, whole.summary.windows);
      assert.equal(other.summary.speechMs, whole.summary.speechMs);
      assert.ok(Math.abs(other.summary.audioMs - whole.summary.audioMs) < 1e-9);
      assert.equal(other.summary.anger.peakAtMs, whole.summary.anger.peakAtMs);
      assert.ok(Math.abs(other.summary.anger.peak - whole.summary.anger.peak) < 1e-5);
      for (const l of profile.labels) assert.ok(Math.abs(other.summary.emotionShare[l] - whole.summary.emotionShare[l]) < 1e-9);
    }
    // Times come from sample counts: the clip's length, not the wall clock.
    assert.ok(Math.abs(whole.summary.audioMs - (x.length / 8000) * 1000) < 1e-6);
    const lastEnd = Math.max(...whole.events.map((e) => e.timeMs));
    assert.ok(lastEnd <= whole.summary.audioMs + 30, `last event at ${lastEnd} ms of ${whole.summary.audioMs} ms`);
  });
}

test('a track is a stream: end() twice gives the same summary, push after end() is CLOSED', async () => {
  const x = audio.get(CLIPS[0])!;
  const t = new EmotionTrack(profile, (w) => batcher.infer(w), () => {}, base, 'outbound');
  t.push(x.subarray(0, 8000));
  const a = await t.end();
  const b = await t.end();
  assert.deepEqual(b, a);
  assertCallmoodError(() => t.push(x.subarray(0, 160)), ErrorCodes.CLOSED, /outbound/);
});

test('silence scores no window and reports no speech', async () => {
  const { events, summary } = await run(chunked(new Float32Array(8000 * 3), () => 160));
  assert.deepEqual(events, []);
  assert.equal(summary.windows, 0);
  assert.equal(summary.speechMs, 0);
  assert.equal(summary.anger.peakAtMs, null);
  assert.ok(Object.values(summary.emotionShare).every((v) => v === 0));
});

test('maxPendingWindows: a live track holds at most that many windows for the model, skips and reports the rest once', async () => {
  const clip = audio.get(CLIPS[0])!;
  const events: CallmoodEvent[] = [];
  const held: Array<() => void> = [];
  let calls = 0;
  // A model that answers only when released: the track is as far behind as a stalled server would leave it.
  const slowInfer = (w: Float32Array) => {
    calls++;
    const copy = w.slice();
    return new Promise<Float32Array>((resolve) => held.push(() => resolve(batcher.infer(copy) as unknown as Float32Array)));
  };
  const t = new EmotionTrack(profile, slowInfer, (e) => events.push(e), base, 'inbound', { maxPendingWindows: 2 });
  for (let rep = 0; rep < 2; rep++) for (let i = 0; i < clip.length; i += 160) t.push(clip.subarray(i, i + 160));
  assert.equal(calls, 2, 'only two windows went to the model');
  assert.ok(t.skippedWindows >= 4, `skipped ${t.skippedWindows}`);
  const skips = events.filter((e) => e.type === 'error');
  assert.equal(skips.length, 1, 'one error for the run of skips');
  assert.equal(skips[0].type === 'error' && skips[0].code, ErrorCodes.INFERENCE);
  assert.equal(skips[0].type === 'error' && skips[0].permanent, false);
  assert.match(skips[0].type === 'error' ? skips[0].message : '', /still waiting for the model/);
  // Once the model catches up, the next windows are scored again.
  for (const release of held.splice(0)) release();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(events.filter((e) => e.type === 'emotion').length, 2);
  const before = calls;
  for (let i = 0; i < clip.length; i += 160) {
    t.push(clip.subarray(i, i + 160));
    for (const release of held.splice(0)) release();
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(calls > before, 'scoring resumed');
  for (const release of held.splice(0)) release();
  const summary = await t.end();
  assert.equal(summary.windows, events.filter((e) => e.type === 'emotion').length);
});

test('maxPendingWindows is checked: 0 is refused, unset means no cap (a whole clip queues all its windows)', async () => {
  assertCallmoodError(() => new EmotionTrack(profile, (w) => batcher.infer(w), () => {}, base, 'inbound', { maxPendingWindows: 0 }), ErrorCodes.INVALID_OPTION, /maxPendingWindows/);
  const { events } = await run([audio.get(CLIPS[0])!]);
  assert.equal(events.filter((e) => e.type === 'error').length, 0);
});
