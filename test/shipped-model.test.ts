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
 * Floors for the 24 held-out clips, clean audio, in both regimes: `clip` (every clip heard fresh, as a call's first
 * seconds) and `call` (the actor's clips heard one after another). Measured with the model shipped now
 * (`callmood evaluate --manifest test/fixtures/heldout/manifest.csv --adapt clip|call`): clip 11/24 (0.458), anger
 * AUC 0.900; call 10/24 (0.417), AUC 0.950. 7/24 sits four clips below the clip figure and three below the call
 * one, and 3 clips above chance (1/6 per label = 4/24): a retrain may vary, a broken model stops here.
 */
const FLOOR = { accuracy: 7 / 24, angerAuc: 0.8 };

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

for (const adapt of ['clip', 'call'] as const) {
  test(`the shipped model, ${adapt} regime: at least 7 of 24 clips and anger AUC ${FLOOR.angerAuc} on a never-heard caller`, async (t) => {
    const { report } = await evaluateModel({ modelDir, manifest, filter: {}, channel: 'clean', seed: 1, adapt, cacheDir: null, workers: 0 });
    t.diagnostic(`accuracy ${report.accuracy.toFixed(3)} (${Math.round(report.accuracy * report.n)}/${report.n}), balanced ${report.balancedAccuracy.toFixed(3)}, anger AUC ${report.anger.auc}`);
    assert.equal(report.regime.adapt, adapt);
    assert.equal(report.n + report.skipped, 24);
    assert.ok(report.n >= 22, `${report.skipped} clips skipped`);
    assert.deepEqual(report.speakersInTraining, []);
    assert.ok(report.accuracy * report.n >= FLOOR.accuracy * 24 - 1e-9, `accuracy ${report.accuracy}`);
    assert.ok((report.anger.auc ?? 0) >= FLOOR.angerAuc, `anger AUC ${report.anger.auc}`);
  });
}
