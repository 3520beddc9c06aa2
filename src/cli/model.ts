import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { featureRateOption, integer, jsonOption, jsonTarget, list, numberIn, openJsonOutput } from './args.js';
import cliProgress from 'cli-progress';
import { ARCHITECTURES, type Arch } from '../model/architectures.js';
import { DEFAULT_TRAIN_OPTIONS, evaluateModel, trainFromManifest, type CalmPolicy } from '../model/pipeline.js';
import { formatEvaluationTable } from '../model/metrics.js';
import type { ManifestFilter } from '../data/manifest.js';
import { FEATURE_CONFIGS_BY_RATE } from '../features/config.js';
import { DEFAULT_CALL_SECONDS, SPEED_RANGE } from '../data/dataset.js';
import { SUITE_NAMES, type SuiteName } from '../data/suites.js';
import { resolveModelDir } from '../config/load.js';
import { confusionMatrixSvg, trainingCurvesSvg } from '../report/plots.js';

/** `--speed-perturb 0.9,1,1.1`: the speeds, each checked here and as a set by speedCopies. */
const speedList = (v: string): number[] => {
  const speeds = list(v).map((s) => numberIn('--speed-perturb', SPEED_RANGE[0], SPEED_RANGE[1])(s));
  if (speeds.length === 0) throw new InvalidArgumentError(`--speed-perturb needs one or more speeds, e.g. 0.9,1,1.1; got '${v}'`);
  return speeds;
};

/** The shipped model, as every other command defaults to it (a relative path is found in the package if not here). */
const DEFAULT_MODEL_DIR = 'models/default';

/** Default data folder: the shared training data beside the project. */
export const DEFAULT_MANIFEST = '../shared/data/manifest.csv';


function filterOptions(cmd: Command): Command {
  return cmd
    .option('--manifest <csv>', 'manifest CSV (path,corpus,speaker,gender,label,text,intensity,duration_s)', DEFAULT_MANIFEST)
    .option('--corpus <list>', 'only these corpora (comma-separated)', list)
    .option('--speaker <list>', 'only these speakers', list)
    .option('--exclude-speaker <list>', 'leave these speakers out', list)
    .option('--label <list>', 'only these labels', list);
}

function toFilter(o: { corpus?: string[]; speaker?: string[]; excludeSpeaker?: string[]; label?: string[] }): ManifestFilter {
  const f: ManifestFilter = {};
  if (o.corpus) f.corpus = o.corpus;
  if (o.speaker) f.speaker = o.speaker;
  if (o.excludeSpeaker) f.excludeSpeaker = o.excludeSpeaker;
  if (o.label) f.label = o.label;
  return f;
}

/**
 * Progress on stderr: one bar at a time on a terminal (a new title starts a new bar, so the validation pass does not
 * reuse the training pass's total), plain lines every 10 s otherwise (CI logs, files). `log` prints a line above the
 * bar instead of gluing it to the bar's line; long details go through `log`, since a bar is cut at the terminal's
 * width.
 */
function progress() {
  const tty = process.stderr.isTTY;
  let bar: cliProgress.SingleBar | null = null;
  let title = '';
  let lastLine = 0;
  const clear = () => {
    if (bar) bar.stop();
    bar = null;
  };
  return {
    update(name: string, done: number, total: number) {
      if (!tty) {
        if (name !== title || done === total || Date.now() - lastLine > 10_000) {
          lastLine = Date.now();
          process.stderr.write(`${name} ${done}/${total}\n`);
        }
        title = name;
        return;
      }
      if (name !== title || !bar) {
        clear();
        title = name;
        bar = new cliProgress.SingleBar(
          { format: `${name} [{bar}] {value}/{total} ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, barsize: 24 },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done);
      } else bar.update(done);
      if (done === total) clear();
    },
    log(msg: string) {
      if (!bar) return void process.stderr.write(`${msg}\n`);
      // Clear the bar's line, print, and let the bar redraw itself below.
      process.stderr.write(`\r\x1b[K${msg}\n`);
      bar.render();
    },
    stop: clear,
  };
}

/** `callmood train` and `callmood evaluate`. */
export function modelCommands(program: Command): void {
  filterOptions(
    program
      .command('train')
      .description('train an emotion model from a manifest and save it (TF.js files, metadata, training curves)')
      .addOption(new Option('--arch <arch>', 'architecture (cnn-fast is the shipped one)').choices([...ARCHITECTURES]).default('cnn-fast'))
      .requiredOption('--out <dir>', 'output directory, e.g. models/mine'),
  )
    .addOption(new Option('--channel <channel>', 'training audio: clean, telephone, or mixed (80% telephone)').choices(['clean', 'telephone', 'mixed']).default(DEFAULT_TRAIN_OPTIONS.channel))
    .addOption(new Option('--normalization <kind>', 'global statistics, or adaptive per speaker/call').choices(['global', 'adaptive']).default(DEFAULT_TRAIN_OPTIONS.normalization))
    .addOption(new Option('--split <split>', 'validation split: by speaker, or random clips (the seed protocol)').choices(['speaker', 'random']).default(DEFAULT_TRAIN_OPTIONS.split))
    .addOption(new Option('--calm <policy>', "RAVDESS 'calm': drop it, or train it as neutral").choices(['drop', 'neutral']).default(DEFAULT_TRAIN_OPTIONS.calm))
    .option('--epochs <n>', 'maximum epochs', integer('--epochs', 1), DEFAULT_TRAIN_OPTIONS.epochs)
    .option('--batch-size <n>', 'windows per batch', integer('--batch-size', 1), DEFAULT_TRAIN_OPTIONS.batchSize)
    .option('--lr <rate>', "Adam's initial learning rate", numberIn('--lr', 1e-6, 1), DEFAULT_TRAIN_OPTIONS.learningRate)
    .option('--patience <n>', 'early stopping patience (epochs)', integer('--patience', 1), DEFAULT_TRAIN_OPTIONS.patience)
    .option('--seed <n>', 'seed of every random choice', integer('--seed', 0), DEFAULT_TRAIN_OPTIONS.seed)
    .option('--data-seed <n>', "seed of the clips' channel plans, if not --seed (runs sharing it share extracted features)", integer('--data-seed', 0))
    .option('--val-share <share>', 'share of speakers (or clips) for validation', numberIn('--val-share', 0.01, 0.5), DEFAULT_TRAIN_OPTIONS.valShare)
    .option('--window-hop <frames>', 'frames between training windows', integer('--window-hop', 1), DEFAULT_TRAIN_OPTIONS.windowHop)
    .option('--prior-frames <n>', 'adaptive normalisation: weight of the global statistics in frames', integer('--prior-frames', 0), DEFAULT_TRAIN_OPTIONS.priorFrames)
    .option('--speed-perturb <speeds>', 'speed perturbation: every training clip once per speed, e.g. 0.9,1,1.1 (1 = as recorded)', speedList)
    .addOption(featureRateOption("sample rate of the features: 8000 (the phone line's own) or 16000", '8000'))
    .addOption(new Option('--feature-kind <kind>', 'mfcc (40 cepstra) or logmel (the 40 log-mel energies themselves)').choices(['mfcc', 'logmel']).default('mfcc'))
    .option('--cache <dir>', 'feature cache directory', '.cache/features')
    .option('--workers <n>', 'decoding worker threads', integer('--workers', 0))
    .option('--suites <file>', 'hold out the test and cross speakers of this suites file (e.g. models/suites.json) and validate on its dev speakers')
    .action(async (o) => {
      const bars = progress();
      const { metadata, history, curvesTitle } = await trainFromManifest({
        ...DEFAULT_TRAIN_OPTIONS,
        manifest: o.manifest,
        arch: o.arch as Arch,
        out: o.out,
        channel: o.channel,
        normalization: o.normalization,
        priorFrames: o.priorFrames,
        filter: toFilter(o),
        split: o.split,
        valShare: o.valShare,
        calm: o.calm as CalmPolicy,
        epochs: o.epochs,
        batchSize: o.batchSize,
        learningRate: o.lr,
        patience: o.patience,
        seed: o.seed,
        ...(o.dataSeed !== undefined ? { dataSeed: o.dataSeed as number } : {}),
        windowHop: o.windowHop,
        ...(o.speedPerturb ? { speeds: o.speedPerturb as number[] } : {}),
        feature: { ...FEATURE_CONFIGS_BY_RATE[o.featureRate as string], kind: o.featureKind as 'mfcc' | 'logmel' },
        cacheDir: o.cache,
        workers: o.workers,
        heldOutSpeakers: o.excludeSpeaker ?? [],
        ...(o.suites ? { suites: o.suites as string } : {}),
        onExtract: (d, t, set) => bars.update(`features (${set})`, d, t),
        onEpoch: (e) => {
          bars.log(`epoch ${e.epoch}/${e.epochs}: loss ${e.loss.toFixed(3)} acc ${e.acc.toFixed(3)} val_acc ${e.valAcc.toFixed(3)} val_uar ${e.valUar.toFixed(3)} lr ${e.lr.toExponential(1)}${e.best ? ' (best so far: weights kept)' : ''}`);
          bars.update('epochs', e.epoch, e.epochs);
        },
        log: (m) => bars.log(m),
      });
      writeFileSync(join(o.out, 'training-curves.svg'), await trainingCurvesSvg(history, curvesTitle));
      bars.stop();
      const best = history[metadata.training.bestEpoch - 1];
      process.stdout.write(`saved ${o.out}: ${metadata.arch}, best epoch ${metadata.training.bestEpoch}/${history.length}, validation window accuracy ${best.valAcc.toFixed(4)}, balanced ${best.valUar.toFixed(4)}\n`);
    });

  filterOptions(
    program
      .command('evaluate')
      .description('score a model on a manifest, clip by clip: print a table; with --json FILE, write the JSON and a confusion-matrix plot beside it')
      .option('--model <dir>', 'model directory', DEFAULT_MODEL_DIR),
  )
    .addOption(new Option('--channel <channel>', 'evaluate on clean audio or through the telephone channel').choices(['clean', 'telephone']).default('clean'))
    .addOption(
      new Option('--adapt <regime>', "how long the normaliser has heard the caller: 'call' = each speaker's clips in a row, restarted after --call-seconds (a caller heard over a call); 'clip' = fresh for every clip (a call's first seconds)")
        .choices(['call', 'clip'])
        .default('call'),
    )
    .option('--call-seconds <s>', 'length of a call for --adapt call, in seconds of the speaker\'s audio', numberIn('--call-seconds', 1, 86_400), DEFAULT_CALL_SECONDS)
    .option('--suites <file>', 'suites file for --suite', 'models/suites.json')
    .addOption(new Option('--suite <name>', 'score only the speakers of this group of the suites file').choices([...SUITE_NAMES]))
    .addOption(jsonOption('the results', 'the confusion matrix goes beside a file as .confusion.svg'))
    .option('--seed <n>', 'seed (order of speakers for adaptive normalisation)', integer('--seed', 0), 1)
    .option('--cache <dir>', 'feature cache directory', '.cache/features')
    .option('--workers <n>', 'decoding worker threads', integer('--workers', 0))
    .action(async (o) => {
      // Opened before the work, so an unwritable path fails at once.
      const target = jsonTarget(o.json as string | boolean | undefined);
      const out = target ? openJsonOutput(target) : null;
      const bars = progress();
      const { report, confusionTitle } = await evaluateModel({
        modelDir: resolveModelDir(o.model as string),
        manifest: o.manifest,
        filter: toFilter(o),
        channel: o.channel,
        seed: o.seed,
        adapt: o.adapt as 'call' | 'clip',
        callSeconds: o.callSeconds as number,
        ...(o.suite ? { suite: { file: o.suites as string, name: o.suite as SuiteName } } : {}),
        cacheDir: o.cache,
        workers: o.workers,
        onExtract: (d, t) => bars.update('features', d, t),
        log: (m) => bars.log(m),
      });
      bars.stop();
      // With the JSON on stdout, stdout carries the JSON alone; the table goes to stderr.
      const table = out?.stdout ? process.stderr : process.stdout;
      table.write(`regime: adapt ${report.regime.adapt}${report.regime.callSeconds ? ` (calls of ${report.regime.callSeconds} s)` : ''}, ${report.channel} channel${report.suite ? `, suite ${report.suite.name}` : ''}\n`);
      table.write(formatEvaluationTable(report) + '\n');
      const corpora = Object.keys(report.perCorpus);
      if (corpora.length > 1) {
        for (const c of corpora) table.write(`  ${c.padEnd(10)} n ${String(report.perCorpus[c].n).padStart(5)}  accuracy ${(report.perCorpus[c].accuracy * 100).toFixed(1)}%  anger AUC ${report.perCorpus[c].anger.auc?.toFixed(3) ?? '—'}\n`);
        table.write(`  mean over corpora: accuracy ${(report.corpusMean.accuracy * 100).toFixed(1)}%, anger AUC ${report.corpusMean.angerAuc?.toFixed(3) ?? '—'}\n`);
      }
      table.write(`skipped: ${report.skipped} ${JSON.stringify(report.skippedReasons)}\n`);
      if (report.speakersInTraining.length) table.write(`warning: ${report.speakersInTraining.length} of these speakers were in the model's training set: not a figure on unseen callers\n`);
      if (out) {
        out.write(JSON.stringify(report, null, 2) + '\n');
        await out.close();
        if (!out.stdout) writeFileSync(target!.replace(/\.json$/i, '') + '.confusion.svg', await confusionMatrixSvg(report.confusion, confusionTitle));
      }
    });
}
