/**
 * `callmood train` with SpecAugment-style window masks (TrainOptions.masking), for the model card's lever
 * experiments (scripts/experiments.sh A3). Everything else is callmood train's defaults.
 *
 *   node --import tsx scripts/train-masked.ts MANIFEST CORPUS ARCH OUT MASK_FRAMES MASK_DIMS EPOCHS PATIENCE [EXCLUDE [HOP]]
 *
 * CORPUS `all` takes every corpus; EXCLUDE is a comma-separated list of held-out speakers (`-` for none); HOP the
 * frames between training windows (default: callmood train's).
 */
import { DEFAULT_TRAIN_OPTIONS, trainFromManifest } from '../src/model/pipeline.js';
import type { Arch } from '../src/model/architectures.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { trainingCurvesSvg } from '../src/report/plots.js';

const [manifest, corpus, arch, out, time, dims, epochs, patience, exclude, hop] = process.argv.slice(2);
if (patience === undefined) {
  process.stderr.write('usage: train-masked.ts MANIFEST CORPUS ARCH OUT MASK_FRAMES MASK_DIMS EPOCHS PATIENCE [EXCLUDE [HOP]]\n');
  process.exit(2);
}
const { metadata, history, curvesTitle } = await trainFromManifest({
  ...DEFAULT_TRAIN_OPTIONS,
  manifest,
  arch: arch as Arch,
  out,
  filter: {
    ...(corpus === 'all' ? {} : { corpus: corpus.split(',') }),
    ...(exclude === undefined || exclude === '-' ? {} : { excludeSpeaker: exclude.split(',') }),
  },
  heldOutSpeakers: exclude === undefined || exclude === '-' ? [] : exclude.split(','),
  windowHop: hop === undefined ? DEFAULT_TRAIN_OPTIONS.windowHop : Number(hop),
  epochs: Number(epochs),
  patience: Number(patience),
  masking: { time: Number(time), dims: Number(dims) },
  cacheDir: '.cache/features',
  onEpoch: (e) => process.stderr.write(`epoch ${e.epoch}/${e.epochs} loss ${e.loss.toFixed(3)} val_acc ${e.valAcc.toFixed(3)} val_uar ${e.valUar.toFixed(3)}${e.best ? ' *' : ''} (${e.seconds.toFixed(0)} s)\n`),
  log: (m) => process.stderr.write(`${m}\n`),
});
writeFileSync(join(out, 'training-curves.svg'), await trainingCurvesSvg(history, curvesTitle));
process.stdout.write(`saved ${out}: best epoch ${metadata.training.bestEpoch}/${history.length}\n`);
