/**
 * The yardstick: held-out speakers never reach training, validation or the normalisation statistics; the
 * evaluation regimes (`call`, `clip`) normalise as a live call would; the committed suites file keeps its groups
 * apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extractClipFeatures, fitGlobalStats, makeWindows } from '../src/data/dataset.js';
import { readManifest } from '../src/data/manifest.js';
import { checkSuites, readSuites, splitBySuites, type Suites } from '../src/data/suites.js';
import type { ClipFeatures, ClipRecord } from '../src/data/types.js';
import type { WindowConfig } from '../src/features/types.js';
import { EMOTION_LABELS } from '../src/labels.js';
import { DEFAULT_FEATURE_CONFIG, NARROWBAND_FEATURE_CONFIG } from '../src/features/config.js';
import { evaluateModel, splitClips, trainFromManifest } from '../src/model/pipeline.js';
import { readMetadata } from '../src/model/io.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, assertRejectsCallmood, rng } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const MANIFEST = `${root}test/fixtures/manifests/suites-clips.csv`;
const HELD_OUT = `${root}test/fixtures/heldout/manifest.csv`;
const SHARED = `${root}../shared/data/manifest.csv`;

/** Suites over the fixture manifest: RAVDESS plays the corpus held out whole. Training keeps crema-1071 only. */
const SUITES: Suites = {
  version: 1,
  speakers: { dev: ['crema-1062', 'tess-OAF'], test: ['tess-YAF'], cross: ['ravdess-21', 'ravdess-22'] },
  crossCorpora: ['ravdess'],
};

function tempDir(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-holdout-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('suites: groups that meet, unknown groups and wrong shapes are refused with what is allowed', () => {
  assert.deepEqual(checkSuites(SUITES), SUITES);
  assertCallmoodError(
    () => checkSuites({ ...SUITES, speakers: { ...SUITES.speakers, test: ['tess-YAF', 'crema-1062'] } }),
    ErrorCodes.INVALID_OPTION,
    /speaker 'crema-1062' is in both 'dev' and 'test'; the groups must never meet/,
  );
  assertCallmoodError(() => checkSuites({ ...SUITES, version: 2 }), ErrorCodes.INVALID_OPTION, /version is 2; allowed: 1/);
  assertCallmoodError(() => checkSuites({ ...SUITES, speakers: { ...SUITES.speakers, val: [] } }), ErrorCodes.INVALID_OPTION, /unknown group\(s\) val/);
  assertCallmoodError(() => checkSuites({ ...SUITES, speakers: { dev: 'x', test: [], cross: [] } }), ErrorCodes.INVALID_OPTION, /speakers\.dev must be a list/);
});

test('suites split a manifest: every clip in exactly one group; typos and half-held corpora are refused', () => {
  const clips = readManifest(MANIFEST);
  const g = splitBySuites(clips, SUITES);
  assert.equal(g.train.length + g.dev.length + g.test.length + g.cross.length, clips.length);
  assert.deepEqual([...new Set(g.train.map((c) => c.speaker))], ['crema-1071']);
  assert.deepEqual([...new Set(g.dev.map((c) => c.speaker))].sort(), ['crema-1062', 'tess-OAF']);
  assert.ok(g.cross.every((c) => c.corpus === 'ravdess') && g.cross.length === 3, 'the three RAVDESS clips are the cross group');
  // A mistyped held-out speaker would silently train on the real one: refused.
  assertCallmoodError(
    () => splitBySuites(clips, { ...SUITES, speakers: { ...SUITES.speakers, test: ['tess-YAFF'] } }),
    ErrorCodes.INVALID_OPTION,
    /test speaker\(s\) tess-YAFF do not occur in the manifest/,
  );
  // A cross corpus must be held out whole.
  assertCallmoodError(
    () => splitBySuites(clips, { ...SUITES, speakers: { ...SUITES.speakers, cross: ['ravdess-21'] } }),
    ErrorCodes.INVALID_OPTION,
    /speaker 'ravdess-22' of cross corpus 'ravdess' is not in the cross group/,
  );
});

test('splitClips by speaker: no speaker on both sides; every corpus with 3+ speakers gives one to validation', () => {
  const clips: ClipRecord[] = [];
  for (const [corpus, n] of [['a', 10], ['b', 3], ['c', 2]] as const) {
    for (let s = 0; s < n; s++) for (let k = 0; k < 4; k++) clips.push({ path: `/${corpus}/${s}/${k}`, corpus, speaker: `${corpus}-${s}`, gender: '', label: 'angry', text: '', intensity: '', durationS: 1 });
  }
  for (const seed of [1, 2, 3]) {
    const { train, val } = splitClips(clips, 'speaker', 0.2, seed);
    const tr = new Set(train.map((c) => c.speaker));
    const va = new Set(val.map((c) => c.speaker));
    assert.equal(train.length + val.length, clips.length);
    assert.ok([...va].every((s) => !tr.has(s)), `seed ${seed}: a speaker on both sides`);
    assert.equal([...va].filter((s) => s.startsWith('a-')).length, 2);
    assert.equal([...va].filter((s) => s.startsWith('b-')).length, 1);
    assert.equal([...va].filter((s) => s.startsWith('c-')).length, 0, 'a two-speaker corpus keeps both for training');
  }
});

test('training with suites: test and cross speakers reach neither training, validation nor the normalisation statistics', async () => {
  const t = tempDir();
  try {
    const out = join(t.dir, 'model');
    const suitesFile = join(t.dir, 'suites.json');
    writeFileSync(suitesFile, JSON.stringify(SUITES));
    const seed = 3;
    const options = (outDir: string): Parameters<typeof trainFromManifest>[0] => ({
      manifest: MANIFEST,
      arch: 'cnn-fast',
      out: outDir,
      channel: 'telephone',
      normalization: 'adaptive',
      priorFrames: 300,
      filter: {},
      split: 'speaker',
      valShare: 0.12,
      calm: 'drop',
      epochs: 1,
      batchSize: 8,
      learningRate: 1e-3,
      patience: 1,
      seed,
      windowHop: 90,
      minSpeechRatio: 0.3,
      feature: NARROWBAND_FEATURE_CONFIG,
      cacheDir: null,
      workers: 0,
      suites: suitesFile,
    });
    const { metadata } = await trainFromManifest(options(out));
    const sp = metadata.training.speakers;
    assert.deepEqual(sp.train, ['crema-1071']);
    assert.deepEqual(sp.val, ['crema-1062', 'tess-OAF']);
    assert.deepEqual(sp.heldOut, ['ravdess-21', 'ravdess-22', 'tess-YAF']);
    assert.equal(metadata.training.split, 'suites');
    // The corpora (and licence notices) are those of the clips that shaped the weights, not of the held-out ones.
    assert.deepEqual(metadata.training.corpora, ['crema-d', 'tess']);
    assert.doesNotMatch(metadata.licence, /RAVDESS/);
    assert.equal((await readMetadata(out)).training.suites, suitesFile);

    // The statistics are those of the training speaker's clips alone, extracted as training extracts them.
    const all = readManifest(MANIFEST);
    const extract = (clips: ClipRecord[]) => extractClipFeatures(clips, { feature: NARROWBAND_FEATURE_CONFIG, channel: 'telephone', seed, cacheDir: null, workers: 0 });
    const trainOnly = fitGlobalStats(await extract(all.filter((c) => c.speaker === 'crema-1071')));
    const everyone = fitGlobalStats(await extract(all));
    const stats = metadata.normalization.stats;
    assert.equal(stats.count, trainOnly.count);
    for (let d = 0; d < stats.mean.length; d++) {
      assert.ok(Math.abs(stats.mean[d] - trainOnly.mean[d]) < 1e-6, `mean[${d}]`);
      assert.ok(Math.abs(stats.std[d] - trainOnly.std[d]) < 1e-6, `std[${d}]`);
    }
    assert.notEqual(everyone.count, trainOnly.count, 'the check can tell the two apart');

    // A suites file that names a speaker the manifest lacks stops training before any work.
    writeFileSync(suitesFile, JSON.stringify({ ...SUITES, speakers: { ...SUITES.speakers, test: ['tess-YAFF'] } }));
    await assertRejectsCallmood(
      trainFromManifest(options(join(t.dir, 'm2'))),
      ErrorCodes.INVALID_OPTION,
      /tess-YAFF do not occur/,
    );
    assert.ok(!existsSync(join(t.dir, 'm2')), 'nothing written');
  } finally {
    t.done();
  }
});

// Synthetic clips for the regimes: 40 dims at 16 kHz features, 10 ms a frame.
const DIMS = 40;
const W: WindowConfig = { frames: 50, hop: 50, minSpeechRatio: 0.5, feature: DEFAULT_FEATURE_CONFIG };
function synthetic(frames: number, seed: number, level: number): ClipFeatures {
  const r = rng(seed);
  return { features: Float32Array.from({ length: frames * DIMS }, () => level + r() * 2 - 1), frames, dims: DIMS, speech: new Uint8Array(frames).fill(1) };
}
const rec = (speaker: string, name: string): ClipRecord => ({ path: `/x/${name}`, corpus: 'syn', speaker, gender: '', label: 'angry', text: '', intensity: '', durationS: 1.5 });

test('regimes: clip = a fresh normaliser per clip; call = per speaker, restarted after callSeconds of audio', () => {
  // Three 1.5 s clips of one speaker, each at another level, so what a normaliser has heard shows in its output.
  const clips = [rec('a', 'a1'), rec('a', 'a2'), rec('a', 'a3')];
  const feats = [synthetic(150, 1, 0), synthetic(150, 2, 3), synthetic(150, 3, -2)];
  const spec = { kind: 'adaptive' as const, stats: { mean: new Array(DIMS).fill(0), std: new Array(DIMS).fill(1), count: 1 }, priorFrames: 30 };
  const run = (adapt?: Parameters<typeof makeWindows>[2]['adapt']) =>
    makeWindows(clips, feats, { labels: EMOTION_LABELS, window: W, normalization: spec, order: 'as-given', ...(adapt ? { adapt } : {}) }).set;
  const alone = (i: number) => makeWindows([clips[i]], [feats[i]], { labels: EMOTION_LABELS, window: W, normalization: spec }).set.x;
  const per = 3 * W.frames * DIMS; // three windows per clip
  const clipPart = (x: Float32Array, i: number) => x.subarray(i * per, (i + 1) * per);

  const speaker = run();
  const clip = run({ mode: 'clip' });
  const call3 = run({ mode: 'call', callSeconds: 3 });
  const callLong = run({ mode: 'call', callSeconds: 1000 });
  for (let i = 0; i < 3; i++) assert.deepEqual(clipPart(clip.x, i), alone(i), `clip regime, clip ${i}: as if alone`);
  assert.deepEqual(callLong.x, speaker.x, 'a call longer than all the audio = one normaliser per speaker');
  // 3 s = the first two clips: the second is heard after the first, the third starts a new call.
  assert.deepEqual(clipPart(call3.x, 1), clipPart(speaker.x, 1));
  assert.notDeepEqual(clipPart(call3.x, 1), alone(1));
  assert.deepEqual(clipPart(call3.x, 2), alone(2));
  assert.notDeepEqual(clipPart(speaker.x, 2), alone(2));
  assertCallmoodError(() => run({ mode: 'call', callSeconds: 0 }), ErrorCodes.INVALID_OPTION, /adapt\.callSeconds is 0; allowed: a number > 0/);
  assertCallmoodError(() => run({ mode: 'session' } as never), ErrorCodes.INVALID_OPTION, /adapt\.mode is 'session'; allowed: 'speaker', 'call' or 'clip'/);
});

test('evaluate: the report says its regime, scores per corpus, and names scored speakers the model trained on', async () => {
  const modelDir = `${root}models/default`;
  const call = (await evaluateModel({ modelDir, manifest: HELD_OUT, filter: {}, channel: 'clean', seed: 1, cacheDir: null, workers: 0 })).report;
  const clip = (await evaluateModel({ modelDir, manifest: HELD_OUT, filter: {}, channel: 'clean', seed: 1, adapt: 'clip', cacheDir: null, workers: 0 })).report;
  assert.deepEqual(call.regime, { adapt: 'call', callSeconds: 180 });
  assert.deepEqual(clip.regime, { adapt: 'clip', callSeconds: null });
  assert.deepEqual(Object.keys(call.perCorpus), ['crema-d']);
  assert.equal(call.perCorpus['crema-d'].accuracy, call.accuracy);
  assert.equal(call.corpusMean.accuracy, call.accuracy);
  assert.deepEqual(call.speakersInTraining, []);
  // The regimes see the same clips but normalise them differently.
  assert.equal(call.n, clip.n);
  assert.notDeepEqual(call.confusion.matrix, clip.confusion.matrix, 'what the normaliser heard before changes the answers');
  const md = await readMetadata(modelDir);
  const heard = readManifest(`${root}test/fixtures/manifests/clips.csv`).filter((c) => md.training.speakers.train.includes(c.speaker));
  assert.ok(heard.length > 0, 'some fixture clips come from training speakers');
  const leak = (await evaluateModel({ modelDir, manifest: `${root}test/fixtures/manifests/clips.csv`, filter: {}, channel: 'clean', seed: 1, adapt: 'clip', cacheDir: null, workers: 0 })).report;
  assert.deepEqual(leak.speakersInTraining, [...new Set(heard.map((c) => c.speaker))].sort());
  assert.deepEqual(Object.keys(leak.perCorpus).sort(), ['crema-d', 'ravdess', 'tess']);
  const mean = Object.values(leak.perCorpus).reduce((s, r) => s + r.accuracy, 0) / 3;
  assert.ok(Math.abs(leak.corpusMean.accuracy - mean) < 1e-12, `corpus mean ${leak.corpusMean.accuracy} vs ${mean}`);
});

test('the committed suites file: groups apart, URDU held out whole, every speaker in the shared manifest', { skip: existsSync(SHARED) ? false : 'no ../shared/data here' }, () => {
  const suites = readSuites(`${root}models/suites.json`);
  const g = splitBySuites(readManifest(SHARED), suites);
  assert.deepEqual(suites.crossCorpora, ['urdu']);
  assert.equal(g.cross.length, 400);
  assert.ok(suites.speakers.test.includes('crema-1071'), 'the floor-test clips are a test speaker');
  const corpora = (xs: ClipRecord[]) => [...new Set(xs.map((c) => c.corpus))].sort();
  // Held-out speakers from every corpus that is trained on, for choosing and for the card.
  assert.deepEqual(corpora(g.dev), ['ased', 'crema-d', 'nemo', 'ravdess', 'tess']);
  assert.deepEqual(corpora(g.test), ['ased', 'crema-d', 'nemo', 'ravdess', 'tess']);
  assert.deepEqual(corpora(g.train), ['ased', 'crema-d', 'nemo', 'ravdess']);
  assert.match(JSON.parse(readFileSync(`${root}models/suites.json`, 'utf8')).rule, /before any run/);
});
