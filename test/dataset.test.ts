import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadChannels } from '../src/audio/load.js';
import { decodeClipFeatures, encodeClipFeatures } from '../src/data/cache.js';
import { extractClipFeatures, fitGlobalStats, makeWindows, planClip, speedCopies } from '../src/data/dataset.js';
import { readManifest } from '../src/data/manifest.js';
import type { ClipFeatures, ClipRecord } from '../src/data/types.js';
import type { WindowConfig } from '../src/features/types.js';
import { EMOTION_LABELS } from '../src/labels.js';
import { DEFAULT_FEATURE_CONFIG, frameCount } from '../src/features/config.js';
import { computeFeatures } from '../src/features/mfcc.js';
import { FrameNormalizer } from '../src/features/normalize.js';
import { speechMask } from '../src/features/vad.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, assertRejectsCallmood, rng } from './helpers.js';

const MANIFEST = new URL('./fixtures/manifests/clips.csv', import.meta.url).pathname;
const cfg = DEFAULT_FEATURE_CONFIG;
const clips = readManifest(MANIFEST);

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-dataset-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const sameFeatures = (a: ClipFeatures[], b: ClipFeatures[]) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i].frames, b[i].frames);
    assert.deepEqual(a[i].features, b[i].features, `clip ${i} features`);
    assert.deepEqual(a[i].speech, b[i].speech, `clip ${i} mask`);
  }
};

test('clean extraction: decoded (Opus at 48 kHz resampled to 16 kHz), features and masks as computed directly', async () => {
  const feats = await extractClipFeatures(clips, { feature: cfg, channel: 'clean', seed: 1, cacheDir: null, workers: 0 });
  for (const [i, clip] of clips.entries()) {
    const x = (await loadChannels(clip.path, 16000, 0)).channels[0];
    const m = computeFeatures(x, cfg);
    assert.equal(feats[i].dims, 40);
    assert.equal(feats[i].frames, frameCount(cfg, x.length));
    // The manifest's duration and the decoded length agree (Opus included: 48 kHz → 16 kHz).
    assert.ok(Math.abs(feats[i].frames - frameCount(cfg, Math.round(clip.durationS * 16000))) <= 2, clip.path);
    assert.deepEqual(feats[i].features, m.data);
    assert.deepEqual(feats[i].speech, speechMask(m.data, m.frames, m.dims, cfg));
  }
});

test('telephone channel: seeded per clip, so repeatable whatever the order and the worker count; seeds differ', async () => {
  const opts = { feature: cfg, channel: 'telephone' as const, seed: 7, cacheDir: null };
  const a = await extractClipFeatures(clips, { ...opts, workers: 0 });
  const b = await extractClipFeatures(clips, { ...opts, workers: 2 });
  sameFeatures(a, b);
  const reversed = await extractClipFeatures([...clips].reverse(), { ...opts, workers: 0 });
  sameFeatures(a, reversed.reverse());
  const clean = await extractClipFeatures(clips, { ...opts, channel: 'clean', workers: 0 });
  const other = await extractClipFeatures(clips, { ...opts, seed: 8, workers: 0 });
  for (let i = 0; i < clips.length; i++) {
    assert.equal(a[i].frames, clean[i].frames);
    assert.notDeepEqual(a[i].features, clean[i].features, `clip ${i}: telephone = clean`);
    assert.notDeepEqual(a[i].features, other[i].features, `clip ${i}: seed 7 = seed 8`);
  }
  // A gain range and SNR "none" are honoured: with zero gain and no noise the seed no longer matters.
  const fixed = { feature: cfg, channel: 'telephone' as const, cacheDir: null, workers: 0, augment: { gainDb: [0, 0] as [number, number], snrDb: null } };
  sameFeatures(await extractClipFeatures(clips.slice(0, 2), { ...fixed, seed: 1 }), await extractClipFeatures(clips.slice(0, 2), { ...fixed, seed: 2 }));
});

test('disk cache: a hit gives identical arrays and is faster; a changed file or a torn entry is recomputed', () =>
  withTempDir(async (tmp) => {
    // Copies of the clips, so that touching one does not touch the repository's fixtures.
    mkdirSync(join(tmp, 'audio'));
    const local = clips.map((c) => {
      const path = join(tmp, 'audio', c.path.split('/').pop()!);
      copyFileSync(c.path, path);
      return { ...c, path };
    });
    const cacheDir = join(tmp, 'cache');
    const opts = { feature: cfg, channel: 'mixed' as const, seed: 3, cacheDir, workers: 0 };
    const progress: number[] = [];
    let t = performance.now();
    const cold = await extractClipFeatures(local, { ...opts, onProgress: (done, total) => progress.push(done / total) });
    const coldMs = performance.now() - t;
    assert.deepEqual(progress, local.map((_, i) => (i + 1) / local.length));
    const entries = () => readdirSync(cacheDir, { recursive: true }).map(String).filter((f) => f.endsWith('.cmf'));
    assert.equal(entries().length, local.length);
    t = performance.now();
    const warm = await extractClipFeatures(local, opts);
    const warmMs = performance.now() - t;
    sameFeatures(cold, warm);
    assert.ok(warmMs < coldMs / 4, `cached ${warmMs.toFixed(0)} ms vs cold ${coldMs.toFixed(0)} ms`);
    // Same features as without a cache.
    sameFeatures(await extractClipFeatures(local, { ...opts, cacheDir: null }), cold);

    // Another feature config is another entry.
    const logmel = await extractClipFeatures(local.slice(0, 1), { ...opts, feature: { ...cfg, kind: 'logmel' } });
    assert.equal(logmel[0].dims, 40);
    assert.notDeepEqual(logmel[0].features, cold[0].features);
    assert.equal(entries().length, local.length + 1);

    // Torn entries are misses: overwrite every entry with garbage, and the results are still right.
    for (const f of entries()) writeFileSync(join(cacheDir, f), 'CMF1 torn');
    sameFeatures(await extractClipFeatures(local, opts), cold);
    sameFeatures(await extractClipFeatures(local, opts), cold);
    // A file whose mtime changed is a different entry.
    const when = new Date(Date.now() - 3600_000);
    utimesSync(local[0].path, when, when);
    await extractClipFeatures(local.slice(0, 1), opts);
    assert.equal(entries().length, local.length + 2);
  }));

test('cache file format round-trips, and refuses what is not an entry', () => {
  const c: ClipFeatures = { features: Float32Array.from([1.5, -2, 3e-8, 4]), frames: 2, dims: 2, speech: Uint8Array.from([0, 1]) };
  const bytes = encodeClipFeatures(c);
  assert.equal(bytes.length, 16 + 16 + 2);
  assert.deepEqual(decodeClipFeatures(bytes), c);
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  assert.deepEqual(decodeClipFeatures(shifted.subarray(1)), c, 'unaligned buffer');
  assert.equal(decodeClipFeatures(bytes.subarray(0, bytes.length - 1)), null);
  assert.equal(decodeClipFeatures(new TextEncoder().encode('not a cache file at all')), null);
});

test('plans: shares, ranges, independence from the path folder; bad options refused', async () => {
  const fake = (i: number, dir = '/data'): ClipRecord => ({
    path: `${dir}/clip-${i}.flac`, corpus: 'c', speaker: `s${i % 7}`, gender: '', label: 'angry', text: '', intensity: '', durationS: 1,
  });
  const plans = Array.from({ length: 2000 }, (_, i) => planClip(fake(i), 'mixed', 1));
  const tel = plans.filter((p) => p.channel === 'telephone');
  assert.ok(Math.abs(tel.length / 2000 - 0.8) < 0.03, `telephone share ${tel.length / 2000}`);
  assert.ok(tel.every((p) => p.snrDb !== null && p.snrDb >= 10 && p.snrDb <= 40 && p.gainDb >= -12 && p.gainDb <= 6));
  assert.ok(plans.filter((p) => p.channel === 'clean').every((p) => p.gainDb === 0 && p.snrDb === null));
  assert.deepEqual(planClip(fake(5, '/elsewhere'), 'mixed', 1), plans[5], 'a moved corpus draws the same');
  assert.notDeepEqual(planClip(fake(5), 'telephone', 2), planClip(fake(5), 'telephone', 1));
  // Changing the share keeps the SNRs of clips that stay on the telephone.
  const half = Array.from({ length: 200 }, (_, i) => planClip(fake(i), 'mixed', 1, { telephoneShare: 0.5 }));
  for (let i = 0; i < 200; i++) if (half[i].channel === 'telephone') assert.deepEqual(half[i], plans[i]);
  assert.equal(planClip(fake(1), 'telephone', 1, { snrDb: null }).snrDb, null);

  const base = { feature: cfg, channel: 'mixed' as const, seed: 1, cacheDir: null };
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, channel: 'radio' as 'clean' }), ErrorCodes.INVALID_OPTION, /channel is 'radio'/);
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, seed: 1.5 }), ErrorCodes.INVALID_OPTION, /seed is 1.5/);
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, augment: { gainDb: [6, -12] } }), ErrorCodes.INVALID_OPTION, /augment.gainDb/);
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, augment: { telephoneShare: 2 } }), ErrorCodes.INVALID_OPTION, /telephoneShare/);
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, augment: { snr: [1, 2] } as never }), ErrorCodes.INVALID_OPTION, /unknown field\(s\) snr/);
  await assertRejectsCallmood(extractClipFeatures(clips, { ...base, feature: { ...cfg, nMels: 0 } }), ErrorCodes.INVALID_OPTION, /nMels/);
  const gone = { ...clips[0], path: clips[0].path.replace('OAF_back_angry', 'nope') };
  await assertRejectsCallmood(extractClipFeatures([gone], { ...base, workers: 0 }), ErrorCodes.FILE_READ, /nope\.flac/);
  await assertRejectsCallmood(extractClipFeatures([gone, gone, gone], { ...base, workers: 2 }), ErrorCodes.FILE_READ, /nope\.flac/);
  await withTempDir((dir) =>
    assertRejectsCallmood(extractClipFeatures([gone], { ...base, cacheDir: dir }), ErrorCodes.FILE_READ, /nope\.flac: cannot stat/),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------------------------------

const DIMS = 40;
const window = (frames: number, hop: number, minSpeechRatio: number): WindowConfig => ({ frames, hop, minSpeechRatio, feature: cfg });
const unitStats = { mean: new Array(DIMS).fill(0), std: new Array(DIMS).fill(1), count: 1 };

/** Random features with speech in [from, to) ranges; feature value of frame t, dim 0 is t (to trace frames). */
function synthetic(frames: number, speech: [number, number][], seed = 1): ClipFeatures {
  const r = rng(seed);
  const features = Float32Array.from({ length: frames * DIMS }, (_, i) => (i % DIMS === 0 ? Math.floor(i / DIMS) : r() * 4 - 2));
  const mask = new Uint8Array(frames);
  for (const [a, b] of speech) mask.fill(1, a, b);
  return { features, frames, dims: DIMS, speech: mask };
}
const record = (speaker: string, label: string, name: string): ClipRecord => ({
  path: `/x/${name}.flac`, corpus: 'syn', speaker, gender: '', label, text: '', intensity: '', durationS: 0,
});
/** Frame index each window row came from (dim 0 holds it, with identity normalisation). */
const rowsOf = (x: Float32Array, w: number, frames: number) => Array.from({ length: frames }, (_, k) => x[(w * frames + k) * DIMS]);

test('windows: every hop, kept by speech ratio; else the window with most speech; short clips centred and padded', () => {
  const clipsSyn = [
    record('a', 'angry', 'long'), // 300 frames, speech 50–200
    record('a', 'sad', 'sparse'), // 300 frames, speech 10–40 only
    record('b', 'happy', 'short'), // 60 frames, speech 20–40
    record('b', 'calm', 'unknown'), // label not in the list
    record('b', 'fear', 'silent'), // no speech
  ];
  const featsSyn = [synthetic(300, [[50, 200]]), synthetic(300, [[10, 40]]), synthetic(60, [[20, 40]]), synthetic(200, [[0, 200]]), synthetic(200, [])];
  const norm = { kind: 'global' as const, stats: unitStats };
  const run = (ratio: number) => makeWindows(clipsSyn, featsSyn, { labels: EMOTION_LABELS, window: window(100, 50, ratio), normalization: norm });

  const { set, skipped } = run(0.6);
  assert.deepEqual(skipped.map((s) => [s.clip.path, s.reason]), [['/x/unknown.flac', 'unknown label'], ['/x/silent.flac', 'no speech']]);
  assert.equal(set.frames, 100);
  assert.equal(set.dims, DIMS);
  assert.equal(set.x.length, set.n * 100 * DIMS);
  assert.equal(set.clips, clipsSyn);
  // long: starts 0 (50 speech), 50 (100), 100 (100), 150 (50), 200 (0) → 50 and 100 at ratio 0.6.
  // sparse: none reaches 0.6: the most speech (30 frames) at starts 0–10 → the middle, 5.
  // short: centred on speech 20–40 (centre 30) → rows from frame −20, edges repeated.
  assert.deepEqual(Array.from(set.clip), [0, 0, 1, 2]);
  assert.deepEqual(Array.from(set.y), [0, 0, 5, 3]);
  assert.deepEqual(rowsOf(set.x, 0, 100), Array.from({ length: 100 }, (_, k) => 50 + k));
  assert.deepEqual(rowsOf(set.x, 1, 100), Array.from({ length: 100 }, (_, k) => 100 + k));
  assert.deepEqual(rowsOf(set.x, 2, 100), Array.from({ length: 100 }, (_, k) => 5 + k));
  assert.deepEqual(rowsOf(set.x, 3, 100), Array.from({ length: 100 }, (_, k) => Math.min(59, Math.max(0, k - 20))));
  // The padding repeats whole frames, all dims.
  const row = (w: number, k: number) => Array.from(set.x.subarray((w * 100 + k) * DIMS, (w * 100 + k + 1) * DIMS));
  assert.deepEqual(row(3, 0), row(3, 20));
  assert.deepEqual(row(3, 99), row(3, 79));
  // Ratio 0.5 keeps the half-speech windows too; ratio 0 keeps every hop.
  assert.deepEqual(Array.from(run(0.5).set.clip), [0, 0, 0, 0, 1, 2]);
  assert.deepEqual(Array.from(run(0).set.clip), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]);
});

test('windows from the committed clips: counts and shapes; global stats give mean 0, std 1 over speech frames', async () => {
  const feats = await extractClipFeatures(clips, { feature: cfg, channel: 'telephone', seed: 5, cacheDir: null, workers: 0 });
  const stats = fitGlobalStats(feats);
  const speechFrames = feats.reduce((s, f) => s + f.speech.reduce((a, b) => a + b, 0), 0);
  assert.equal(stats.count, speechFrames);
  const w = window(120, 30, 0.5);
  const { set, skipped } = makeWindows(clips, feats, { labels: EMOTION_LABELS, window: w, normalization: { kind: 'global', stats } });
  assert.equal(skipped.length, 0);
  // Expected count per clip, from the masks alone.
  let expected = 0;
  for (const f of feats) {
    if (f.frames < 120) {
      expected += 1;
      continue;
    }
    let k = 0;
    for (let s = 0; s + 120 <= f.frames; s += 30) if (f.speech.subarray(s, s + 120).reduce((a, b) => a + b, 0) >= 60) k++;
    expected += Math.max(k, 1);
  }
  assert.equal(set.n, expected);
  assert.equal(set.x.length, set.n * 120 * 40);
  for (let i = 0; i < set.n; i++) assert.equal(EMOTION_LABELS[set.y[i]], clips[set.clip[i]].label);

  // One-frame windows of speech only are exactly the normalised speech frames: their mean is 0 and std 1.
  const frames = makeWindows(clips, feats, { labels: EMOTION_LABELS, window: window(1, 1, 1), normalization: { kind: 'global', stats } }).set;
  assert.equal(frames.n, speechFrames);
  for (let d = 0; d < 40; d++) {
    let s = 0, s2 = 0;
    for (let i = 0; i < frames.n; i++) {
      const v = frames.x[i * 40 + d];
      s += v;
      s2 += v * v;
    }
    const mean = s / frames.n;
    assert.ok(Math.abs(mean) < 1e-4, `dim ${d}: mean ${mean}`);
    assert.ok(Math.abs(Math.sqrt(s2 / frames.n - mean * mean) - 1) < 1e-4, `dim ${d}: std`);
  }
  assertCallmoodError(() => fitGlobalStats([]), ErrorCodes.EMPTY_AUDIO);
  assertCallmoodError(() => fitGlobalStats([synthetic(10, [])]), ErrorCodes.EMPTY_AUDIO, /none of the 1 clips/);
});

test('adaptive windows equal a FrameNormalizer per speaker driven by hand', () => {
  const recs = [record('a', 'angry', 'a1'), record('b', 'sad', 'b1'), record('a', 'happy', 'a2'), record('b', 'fear', 'b2'), record('a', 'calm', 'a3')];
  const feats = [synthetic(150, [[10, 140]], 1), synthetic(130, [[0, 60], [80, 130]], 2), synthetic(200, [[30, 180]], 3), synthetic(90, [[5, 85]], 4), synthetic(150, [[0, 150]], 5)];
  const spec = { kind: 'adaptive' as const, stats: { mean: new Array(DIMS).fill(0.5), std: new Array(DIMS).fill(2), count: 100 }, priorFrames: 50 };
  const w = window(60, 20, 0.5);
  const { set, skipped } = makeWindows(recs, feats, { labels: EMOTION_LABELS, window: w, normalization: spec, order: 'as-given' });
  assert.deepEqual(skipped.map((s) => s.reason), ['unknown label']);

  // By hand: one normaliser per speaker, clips in the given order, the unknown-label clip not heard.
  const byHand: number[] = [];
  const norms = new Map<string, FrameNormalizer>();
  for (const [i, rec] of recs.entries()) {
    if (rec.label === 'calm') continue;
    const norm = norms.get(rec.speaker) ?? norms.set(rec.speaker, new FrameNormalizer(spec)).get(rec.speaker)!;
    const f = feats[i];
    const z = new Float32Array(f.frames * DIMS);
    for (let t = 0; t < f.frames; t++) {
      norm.normalize(f.features, z, t * DIMS, t * DIMS);
      if (f.speech[t]) norm.observe(f.features, t * DIMS);
    }
    for (let s = 0; s + 60 <= f.frames; s += 20) {
      if (f.speech.subarray(s, s + 60).reduce((a, b) => a + b, 0) >= 30) byHand.push(...z.subarray(s * DIMS, (s + 60) * DIMS));
    }
  }
  assert.deepEqual(set.x, Float32Array.from(byHand));

  // The second clip of a speaker is normalised with what the first taught: not the same as on its own.
  const alone = makeWindows([recs[2]], [feats[2]], { labels: EMOTION_LABELS, window: w, normalization: spec }).set;
  const firstOfA2 = Array.from(set.clip).indexOf(2);
  assert.notDeepEqual(set.x.subarray(firstOfA2 * 60 * DIMS, (firstOfA2 + 1) * 60 * DIMS), alone.x.subarray(0, 60 * DIMS));
});

test('by-speaker-shuffled: speakers contiguous, seeded, independent of the input order', () => {
  const recs: ClipRecord[] = [];
  const feats: ClipFeatures[] = [];
  for (let i = 0; i < 24; i++) {
    recs.push(record(`s${i % 3}`, EMOTION_LABELS[i % 7], `c${i}`));
    feats.push(synthetic(80, [[0, 80]], i));
  }
  const spec = { kind: 'adaptive' as const, stats: unitStats, priorFrames: 10 };
  const run = (r: ClipRecord[], f: ClipFeatures[], seed: number) =>
    makeWindows(r, f, { labels: EMOTION_LABELS, window: window(100, 50, 0.5), normalization: spec, seed }).set;
  const a = run(recs, feats, 1);
  const names = (s: typeof a) => Array.from(s.clip, (c) => s.clips[c].path);
  const speakers = Array.from(a.clip, (c) => recs[c].speaker);
  assert.deepEqual(speakers, [...new Array(8).fill('s0'), ...new Array(8).fill('s1'), ...new Array(8).fill('s2')]);
  assert.notDeepEqual(names(a), recs.map((r) => r.path), 'shuffled');
  assert.deepEqual(names(run(recs, feats, 1)), names(a), 'repeatable');
  assert.notDeepEqual(names(run(recs, feats, 2)), names(a), 'seeded');
  // Give the clips in another order (speakers first seen in the same order): same sequence, same numbers.
  const perm = [0, 3, 6, 9, 12, 15, 18, 21, 1, 4, 7, 10, 13, 16, 19, 22, 2, 5, 8, 11, 14, 17, 20, 23].reverse();
  const perm2 = [...perm.filter((i) => i % 3 === 0), ...perm.filter((i) => i % 3 === 1), ...perm.filter((i) => i % 3 === 2)];
  const b = run(perm2.map((i) => recs[i]), perm2.map((i) => feats[i]), 1);
  assert.deepEqual(names(b), names(a));
  assert.deepEqual(b.x, a.x);
});

test('makeWindows refuses inconsistent inputs', () => {
  const recs = [record('a', 'angry', 'a')];
  const f = [synthetic(100, [[0, 100]])];
  const norm = { kind: 'global' as const, stats: unitStats };
  const go = (o: Partial<Parameters<typeof makeWindows>[2]>, r = recs, ff = f) =>
    () => makeWindows(r, ff, { labels: EMOTION_LABELS, window: window(50, 10, 0.5), normalization: norm, ...o });
  assertCallmoodError(go({}, recs, []), ErrorCodes.INVALID_OPTION, /1 clips but 0 feature sets/);
  assertCallmoodError(go({ labels: [] }), ErrorCodes.INVALID_OPTION, /labels/);
  assertCallmoodError(go({ labels: ['angry', 'angry'] }), ErrorCodes.INVALID_OPTION, /labels repeat/);
  assertCallmoodError(go({ window: window(0, 10, 0.5) }), ErrorCodes.INVALID_OPTION, /window.frames is 0/);
  assertCallmoodError(go({ window: window(50, 10, 1.5) }), ErrorCodes.INVALID_OPTION, /minSpeechRatio/);
  assertCallmoodError(go({ normalization: { kind: 'global', stats: { mean: [0], std: [1], count: 1 } } }), ErrorCodes.INVALID_OPTION, /1 dims; window.feature gives 40/);
  assertCallmoodError(go({ order: 'random' as 'as-given' }), ErrorCodes.INVALID_OPTION, /order is 'random'/);
  assertCallmoodError(go({}, recs, [{ ...f[0], dims: 13 }]), ErrorCodes.INVALID_OPTION, /has 13 dims/);
});

test('speed perturbation: one copy per speed, each a speaker of its own, resampled as if played that much faster', async () => {
  const speeds = [0.9, 1, 1.1];
  const copies = speedCopies(clips, speeds);
  assert.equal(copies.length, clips.length * 3);
  // Speed 1 is the clip as recorded, the same record; the others name their speed and speaker.
  for (const [i, c] of clips.entries()) {
    assert.equal(copies[clips.length + i], c);
    assert.equal(copies[i].speed, 0.9);
    assert.equal(copies[i].speaker, `${c.speaker}@sp0.9`);
    assert.equal(copies[2 * clips.length + i].speaker, `${c.speaker}@sp1.1`);
  }
  // A clip as recorded keeps its plan (and so its cache entry) whatever speeds are trained; a copy draws its own.
  assert.deepEqual(planClip(copies[clips.length], 'telephone', 3), planClip(clips[0], 'telephone', 3));
  assert.equal(planClip(copies[0], 'clean', 3).speed, 0.9);
  assert.equal('speed' in planClip(clips[0], 'clean', 3), false);

  const one = [clips[0]];
  const [slow, same, fast] = await extractClipFeatures(speedCopies(one, speeds), { feature: cfg, channel: 'clean', seed: 1, cacheDir: null, workers: 0 });
  const [plain] = await extractClipFeatures(one, { feature: cfg, channel: 'clean', seed: 1, cacheDir: null, workers: 0 });
  assert.deepEqual(same.features, plain.features);
  // Frames scale with 1 / speed (±2 for the frames that straddle the ends).
  assert.ok(Math.abs(slow.frames - plain.frames / 0.9) <= 2, `${slow.frames} frames at 0.9 against ${plain.frames}`);
  assert.ok(Math.abs(fast.frames - plain.frames / 1.1) <= 2, `${fast.frames} frames at 1.1 against ${plain.frames}`);
  // The pitch moved: the spectrum differs, not just the length.
  assert.notDeepEqual(fast.features.subarray(0, 40 * 20), plain.features.subarray(0, 40 * 20));

  for (const bad of [[], [1, 1], [0.2], [Number.NaN], [1, 1.001]]) {
    assertCallmoodError(() => speedCopies(clips, bad), ErrorCodes.INVALID_OPTION, /speeds are .*allowed: one or more different speeds in \[0\.5, 2\]/);
  }
});
