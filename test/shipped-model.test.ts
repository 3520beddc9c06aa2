/**
 * The shipped model must work on a caller it never heard: CREMA-D actor 1071 is left out of its training, and 24 of
 * that actor's clips are committed under test/fixtures/heldout. A broken or badly trained model cannot ship past
 * these floors. The floors sit below the figures measured when the model was trained (models/MODEL_CARD.md) and
 * well above chance (1/6 of these clips per label: 16.7%; anger AUC 0.5).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { evaluateModel } from '../src/model/pipeline.js';
import { readMetadata } from '../src/model/io.js';
import { NARROWBAND_FEATURE_CONFIG, featureConfigKey, resolveFeatureConfig } from '../src/features/config.js';
import { EMOTION_LABELS } from '../src/data/types.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const modelDir = `${root}models/default`;
const manifest = `${root}test/fixtures/heldout/manifest.csv`;

/**
 * Floors for the 24 held-out clips, clean audio. Measured: the cnn-fast model on 8 kHz features with speed copies
 * shipped now, accuracy 0.417 (10/24) and anger AUC 0.950 (on all 82 clips of the actor: 42.7% against 40.2% for
 * the model before it); without speed copies, 0.458 and 0.938; that recipe on 16 kHz features, 0.500 and 0.975; the
 * cnn before them, 0.375 and 0.925. The floors let a retrain vary but stop a broken model.
 */
const FLOOR = { accuracy: 0.35, angerAuc: 0.8 };

test('the shipped model is small, knows the seven labels, and never heard the held-out caller', async () => {
  const md = await readMetadata(modelDir);
  assert.deepEqual(md.labels, [...EMOTION_LABELS]);
  // Features at the phone line's own 8 kHz (the model card's decision).
  assert.equal(featureConfigKey(resolveFeatureConfig(md.window.feature)), featureConfigKey(NARROWBAND_FEATURE_CONFIG));
  assert.ok(md.training.speakers.heldOut.includes('crema-1071'), 'crema-1071 is held out');
  assert.ok(!md.training.speakers.train.includes('crema-1071') && !md.training.speakers.val.includes('crema-1071'));
  const bytes = statSync(`${modelDir}/weights.bin`).size + statSync(`${modelDir}/model.json`).size;
  assert.ok(bytes <= 5 * 1024 * 1024, `model files ${bytes} bytes`);
  assert.match(md.licence, /non-commercial/);
});

test(`the shipped model scores at least ${FLOOR.accuracy * 100}% and anger AUC ${FLOOR.angerAuc} on 24 clips of a never-heard caller`, async (t) => {
  const { report } = await evaluateModel({ modelDir, manifest, filter: {}, channel: 'clean', seed: 1, cacheDir: null, workers: 0 });
  t.diagnostic(`accuracy ${report.accuracy.toFixed(3)}, balanced ${report.balancedAccuracy.toFixed(3)}, anger AUC ${report.anger.auc}`);
  assert.equal(report.n + report.skipped, 24);
  assert.ok(report.n >= 22, `${report.skipped} clips skipped`);
  assert.ok(report.accuracy >= FLOOR.accuracy, `accuracy ${report.accuracy}`);
  assert.ok((report.anger.auc ?? 0) >= FLOOR.angerAuc, `anger AUC ${report.anger.auc}`);
});
