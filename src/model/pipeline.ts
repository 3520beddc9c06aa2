/**
 * Manifest in, model or evaluation out: the steps `callmood train` and `callmood evaluate` run, as functions that
 * scripts (the model card's experiments) call too.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { readManifest, type ManifestFilter } from '../data/manifest.js';
import { DEFAULT_CALL_SECONDS, checkSpeeds, extractClipFeatures, fitGlobalStats, makeWindows, speedCopies, type AugmentOptions } from '../data/dataset.js';
import { readSuites, splitBySuites, type SuiteName } from '../data/suites.js';
import type { ClipFeatures, ClipRecord } from '../data/types.js';
import type { NormalizationSpec, WindowConfig } from '../features/types.js';
import { EMOTION_LABELS } from '../labels.js';
import { resolveFeatureConfig, type FeatureConfig } from '../features/config.js';
import { DEFAULT_SPEECH_GATE_OPTIONS } from '../features/vad.js';
import { initBackend } from './backend.js';
import type { Arch } from './architectures.js';
import { trainModel, type EpochInfo } from './train.js';
import { mulberry32 } from '../util/random.js';
import { saveModel, loadModel, type ModelMetadata } from './io.js';
import { clipProbabilities, predictWindows } from './predict.js';
import { evaluatePredictions, type EvaluationResult } from './metrics.js';

/** Licence notices per corpus, kept with every model trained on it (see the data README). */
export const CORPUS_LICENCES: Record<string, string> = {
  tess: 'TESS: Pichora-Fuller, M. K. & Dupuis, K. (2020). Toronto emotional speech set (TESS). University of Toronto, Borealis. CC BY-NC-ND 4.0 (non-commercial).',
  ravdess: 'RAVDESS: Livingstone, S. R. & Russo, F. A. (2018). The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391. CC BY-NC-SA 4.0 (non-commercial).',
  'crema-d': 'CREMA-D: Cao, H., Cooper, D. G., Keutmann, M. K., Gur, R. C., Nenkova, A. & Verma, R. (2014). CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset. IEEE Transactions on Affective Computing 5(4): 377–390. ODbL 1.0 / DbCL 1.0.',
  ased: 'ASED: Retta, E. A., Almekhlafi, E., Sutcliffe, R., Mhamed, M., Ali, H. & Feng, J. (2022). A new Amharic speech emotion dataset and classification benchmark. ACM TALLIP, doi 10.1145/3529759. No licence stated by the source: research use only (non-commercial) until one is known.',
  nemo: 'nEMO: Christop, I. (2024). nEMO: Dataset of Emotional Speech in Polish. LREC-COLING 2024. CC BY-NC-SA 4.0 (non-commercial).',
  urdu: 'URDU: Latif, S., Qayyum, A., Usman, M. & Qadir, J. (2018). Cross lingual speech emotion recognition: Urdu vs. Western languages. FIT 2018. For research purposes only (non-commercial).',
};

/** Labels outside the seven, and what training does with them. */
export type CalmPolicy = 'drop' | 'neutral';

/** Options of {@link trainFromManifest}. */
export interface TrainPipelineOptions {
  manifest: string;
  arch: Arch;
  out: string;
  channel: 'clean' | 'telephone' | 'mixed';
  normalization: 'global' | 'adaptive';
  /** Weight of the global statistics, in frames, for adaptive normalisation (300 = 3 s of speech). */
  priorFrames: number;
  filter: ManifestFilter;
  /** `speaker`: validation speakers are held out of training; `random`: clips split at random (the seed's protocol). */
  split: 'speaker' | 'random';
  /** Share of speakers (or clips, for `random`) used for validation. */
  valShare: number;
  /** What RAVDESS `calm` becomes: dropped, or taken as neutral. */
  calm: CalmPolicy;
  epochs: number;
  batchSize: number;
  learningRate: number;
  patience: number;
  seed: number;
  /**
   * Seed of the clips' channel plans (telephone or clean, gain, noise) when it should differ from `seed`: runs that
   * share it share their extracted features (and cache), so extra seeds of a recipe vary the model's initialisation,
   * window order and dropout at the cost of training alone. Default: `seed`.
   */
  dataSeed?: number;
  /** Frames between training window starts. */
  windowHop: number;
  minSpeechRatio: number;
  augment?: AugmentOptions;
  /**
   * Speed perturbation: each training clip once per speed (e.g. [0.9, 1, 1.1] triples the training data; see
   * `speedCopies`). Validation clips stay as recorded. Default: none.
   */
  speeds?: number[];
  /** SpecAugment-style masks on training windows (see TrainOptions.masking); default none. */
  masking?: { time: number; dims: number };
  feature?: Partial<FeatureConfig>;
  cacheDir?: string | null;
  workers?: number;
  /** Clips held out of training and validation for a test (only recorded in the metadata). */
  heldOutSpeakers?: string[];
  /**
   * A suites file (`models/suites.json`): its test and cross speakers are left out of everything, and its dev
   * speakers are the validation set (early stopping); `split` and `valShare` are then not used.
   */
  suites?: string;
  /** Feature extraction progress, per set (`training`, then `validation`). */
  onExtract?: (done: number, total: number, set: 'training' | 'validation') => void;
  onEpoch?: (info: EpochInfo) => void;
  log?: (msg: string) => void;
}

/** Defaults for the options a user may leave out. */
export const DEFAULT_TRAIN_OPTIONS = Object.freeze({
  channel: 'mixed' as const,
  normalization: 'adaptive' as const,
  priorFrames: 300,
  split: 'speaker' as const,
  valShare: 0.12,
  calm: 'drop' as CalmPolicy,
  epochs: 30,
  batchSize: 64,
  learningRate: 1e-3,
  patience: 6,
  seed: 1,
  windowHop: 60,
  minSpeechRatio: 0.3,
});

/** Applies the calm policy: relabels or drops; other labels outside the seven are left for the window step to skip. */
export function applyCalmPolicy(clips: ClipRecord[], calm: CalmPolicy): ClipRecord[] {
  if (calm === 'neutral') return clips.map((c) => (c.label === 'calm' ? { ...c, label: 'neutral' } : c));
  return clips;
}

/** Splits clips into train and validation, by speaker (per corpus, at least one speaker each where possible) or at random. */
export function splitClips(clips: ClipRecord[], split: 'speaker' | 'random', valShare: number, seed: number): { train: ClipRecord[]; val: ClipRecord[] } {
  const rand = mulberry32(seed ^ 0x5bd1e995);
  if (split === 'random') {
    const idx = clips.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    const nVal = Math.max(1, Math.round(clips.length * valShare));
    const valSet = new Set(idx.slice(0, nVal));
    return { train: clips.filter((_, i) => !valSet.has(i)), val: clips.filter((_, i) => valSet.has(i)) };
  }
  const byCorpus = new Map<string, string[]>();
  for (const c of clips) {
    const list = byCorpus.get(c.corpus) ?? [];
    if (!list.includes(c.speaker)) list.push(c.speaker);
    byCorpus.set(c.corpus, list);
  }
  const valSpeakers = new Set<string>();
  for (const speakers of byCorpus.values()) {
    const sorted = [...speakers].sort();
    for (let i = sorted.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [sorted[i], sorted[j]] = [sorted[j], sorted[i]];
    }
    // A corpus with one or two speakers cannot spare one for validation without losing half its voices.
    const n = sorted.length >= 3 ? Math.max(1, Math.round(sorted.length * valShare)) : 0;
    for (const s of sorted.slice(0, n)) valSpeakers.add(s);
  }
  if (valSpeakers.size === 0) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      'split by speaker needs a corpus with at least 3 speakers to hold one out for validation; use --split random',
    );
  }
  return { train: clips.filter((c) => !valSpeakers.has(c.speaker)), val: clips.filter((c) => valSpeakers.has(c.speaker)) };
}

const unique = (xs: string[]) => [...new Set(xs)].sort();
const audioSeconds = (clips: ClipRecord[]) => clips.reduce((s, c) => s + c.durationS, 0);

/**
 * Trains a model from a manifest and saves it (model.json, weights.bin, metadata.json). Returns the epochs and a title
 * for their plot (`callmood train` draws training-curves.svg from them).
 */
export async function trainFromManifest(o: TrainPipelineOptions): Promise<{ metadata: ModelMetadata; history: EpochInfo[]; curvesTitle: string }> {
  const log = o.log ?? (() => {});
  if (o.speeds) checkSpeeds(o.speeds); // before any work: a bad list fails at once
  const backend = await initBackend({ log });
  const feature = resolveFeatureConfig(o.feature ?? {});
  const all = applyCalmPolicy(readManifest(o.manifest, o.filter), o.calm);
  const known = all.filter((c) => (EMOTION_LABELS as readonly string[]).includes(c.label));
  log(`${all.length} clips in the manifest after filters; ${known.length} carry one of the seven labels`);
  let heldOut = o.heldOutSpeakers ?? [];
  let split: { train: ClipRecord[]; val: ClipRecord[] };
  if (o.suites) {
    const suites = readSuites(o.suites);
    // Every suite speaker must occur in the whole manifest, so a corpus filter cannot hide a mistyped one; without a
    // filter the clips read are the whole manifest and need no second read.
    const filtered = Object.values(o.filter).some((v) => v !== undefined);
    splitBySuites(filtered ? readManifest(o.manifest) : all, suites, o.suites);
    const groups = splitBySuites(known, suites, o.suites, false);
    split = { train: groups.train, val: groups.dev };
    heldOut = unique([...heldOut, ...suites.speakers.test, ...suites.speakers.cross]);
    if (split.val.length === 0) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${o.suites}: no dev speaker's clip is left after the filters; validation needs some`);
    log(`suites ${o.suites}: ${groups.test.length + groups.cross.length} test and cross clips left out, ${groups.dev.length} dev clips for validation`);
  } else {
    split = splitClips(known, o.split, o.valShare, o.seed);
  }
  const { val } = split;
  const train = o.speeds ? speedCopies(split.train, o.speeds) : split.train;
  log(`split ${o.split}: ${split.train.length} training clips${o.speeds ? ` (${train.length} with the speed copies at ${o.speeds.join(', ')})` : ''}, ${val.length} validation clips`);
  const extract = (clips: ClipRecord[], seed: number, set: 'training' | 'validation') =>
    extractClipFeatures(clips, {
      feature,
      channel: o.channel,
      seed,
      augment: o.augment,
      cacheDir: o.cacheDir,
      workers: o.workers,
      onProgress: o.onExtract ? (done, total) => o.onExtract!(done, total, set) : undefined,
    });
  // The same seed for both splits: a clip gets the same channel plan (and cache entry) whichever split it lands in.
  const dataSeed = o.dataSeed ?? o.seed;
  const trainFeats = await extract(train, dataSeed, 'training');
  const valFeats = await extract(val, dataSeed, 'validation');
  const stats = fitGlobalStats(trainFeats);
  const normalization: NormalizationSpec =
    o.normalization === 'adaptive' ? { kind: 'adaptive', stats, priorFrames: o.priorFrames } : { kind: 'global', stats };
  const window: WindowConfig = { frames: 120, hop: o.windowHop, minSpeechRatio: o.minSpeechRatio, feature };
  const labels = [...EMOTION_LABELS];
  const tw = makeWindows(train, trainFeats, { labels, window, normalization, seed: o.seed });
  const vw = makeWindows(val, valFeats, { labels, window, normalization, seed: o.seed });
  log(`windows: ${tw.set.n} training (${tw.skipped.length} clips skipped), ${vw.set.n} validation (${vw.skipped.length} skipped)`);
  const started = Date.now();
  const result = await trainModel(backend.tf, {
    arch: o.arch,
    train: tw.set,
    val: vw.set,
    epochs: o.epochs,
    batchSize: o.batchSize,
    learningRate: o.learningRate,
    seed: o.seed,
    patience: o.patience,
    plateau: { factor: 0.5, patience: 2, minLr: 1e-5 },
    classWeights: 'balanced',
    masking: o.masking,
    onEpoch: o.onEpoch,
  });
  // The corpora whose clips shaped the weights: training and validation (early stopping), not the held-out ones.
  const corpora = unique([...split.train, ...val].map((c) => c.corpus));
  const last = result.history[result.bestEpoch - 1];
  const metadata = await saveModel(o.out, result.model, {
    arch: o.arch,
    labels,
    window,
    normalization,
    training: {
      manifest: o.manifest,
      corpora,
      speakers: { train: unique(split.train.map((c) => c.speaker)), val: unique(val.map((c) => c.speaker)), heldOut },
      ...(o.suites ? { suites: o.suites } : {}),
      clips: { train: split.train.length, val: val.length },
      windows: { train: tw.set.n, val: vw.set.n },
      channel: o.channel,
      seed: o.seed,
      ...(o.dataSeed !== undefined && o.dataSeed !== o.seed ? { dataSeed: o.dataSeed } : {}),
      epochs: result.history.length,
      bestEpoch: result.bestEpoch,
      durations: { trainAudioSeconds: audioSeconds(split.train), valAudioSeconds: audioSeconds(val), trainingSeconds: (Date.now() - started) / 1000 },
      split: o.suites ? 'suites' : o.split,
      calm: o.calm,
      filter: o.filter,
      augment: { ...o.augment, ...(o.masking ? { masking: o.masking } : {}), ...(o.speeds ? { speeds: o.speeds } : {}) },
      speechGate: DEFAULT_SPEECH_GATE_OPTIONS,
      hyperparameters: { batchSize: o.batchSize, learningRate: o.learningRate, patience: o.patience, windowHop: o.windowHop },
      backend: backend.name,
      stopReason: result.stopReason,
    },
    metrics: { validation: { windowAccuracy: last.valAcc, windowBalancedAccuracy: last.valUar, loss: last.valLoss } },
    licence: corpora.map((c) => CORPUS_LICENCES[c] ?? `${c}: see the corpus licence`).join('\n'),
  });
  result.model.dispose();
  return { metadata, history: result.history, curvesTitle: `${o.arch} on ${corpora.join(', ')} (${o.channel})` };
}

/** Options of {@link evaluateModel}. */
export interface EvaluatePipelineOptions {
  modelDir: string;
  manifest: string;
  filter: ManifestFilter;
  channel: 'clean' | 'telephone';
  seed: number;
  /**
   * How long the adaptive normaliser has heard the caller: `call` (default) = one normaliser per speaker, fed that
   * speaker's clips in a seeded order and restarted after `callSeconds` of audio, as a caller heard over a call;
   * `clip` = a fresh normaliser per clip, as the first seconds of a call.
   */
  adapt?: 'call' | 'clip';
  /** Length of a call for `adapt: 'call'`, in seconds of the speaker's audio (default 180). */
  callSeconds?: number;
  /** Score only the speakers of this group of a suites file (see `src/data/suites.ts`). */
  suite?: { file: string; name: SuiteName };
  cacheDir?: string | null;
  workers?: number;
  onExtract?: (done: number, total: number) => void;
  log?: (msg: string) => void;
}

/** The evaluation JSON: metrics over clips plus what was skipped. */
export interface EvaluationReport extends EvaluationResult {
  skipped: number;
  skippedReasons: Record<string, number>;
  model: string;
  channel: string;
  level: 'clip';
  /** The normalisation regime: `call` (the speaker heard for up to `callSeconds`) or `clip` (every clip fresh). */
  regime: { adapt: 'call' | 'clip'; callSeconds: number | null };
  /** The suite scored, if one was named. */
  suite: { file: string; name: SuiteName } | null;
  /** Per corpus: the same metrics over that corpus's clips. */
  perCorpus: Record<string, EvaluationResult>;
  /** Unweighted mean over corpora of clip accuracy, and of anger AUC (corpora with both classes only). */
  corpusMean: { accuracy: number; angerAuc: number | null };
  /** Scored speakers the model was trained on (should be empty; a non-empty list means the figure leaks). */
  speakersInTraining: string[];
}

/**
 * Scores a model on a manifest, clip by clip: each clip's windows go through the model and their probabilities
 * are averaged, as the seed did. Labels the model does not know (e.g. `calm`, unless the model was trained to read
 * calm as neutral) and clips without a window of speech are skipped and counted.
 */
export async function evaluateModel(o: EvaluatePipelineOptions): Promise<{ report: EvaluationReport; confusionTitle: string }> {
  const log = o.log ?? (() => {});
  const backend = await initBackend({ log });
  const { model, metadata } = await loadModel(o.modelDir);
  const calm = (metadata.training.calm as CalmPolicy | undefined) ?? 'drop';
  const adapt = o.adapt ?? 'call';
  if (adapt !== 'call' && adapt !== 'clip') throw new CallmoodError(ErrorCodes.INVALID_OPTION, `adapt is '${String(adapt)}'; allowed: 'call' or 'clip'`);
  const callSeconds = o.callSeconds ?? DEFAULT_CALL_SECONDS;
  const filter: ManifestFilter = { ...o.filter };
  if (o.suite) {
    const suites = readSuites(o.suite.file);
    const members = suites.speakers[o.suite.name];
    const wanted = filter.speaker ? filter.speaker.filter((sp) => members.includes(sp)) : members;
    if (wanted.length === 0) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `none of the --speaker values is in the '${o.suite.name}' suite of ${o.suite.file}`);
    filter.speaker = wanted;
  }
  const clips = applyCalmPolicy(readManifest(o.manifest, filter), calm);
  // The telephone channel for evaluation is the plain line: no random gain or noise, so the figure is repeatable.
  const feats: ClipFeatures[] = await extractClipFeatures(clips, {
    feature: metadata.window.feature as Partial<FeatureConfig>,
    channel: o.channel,
    seed: o.seed,
    augment: { gainDb: [0, 0], snrDb: null },
    cacheDir: o.cacheDir,
    workers: o.workers,
    onProgress: o.onExtract,
  });
  const { set, skipped } = makeWindows(clips, feats, {
    labels: metadata.labels,
    window: metadata.window,
    normalization: metadata.normalization,
    seed: o.seed,
    adapt: adapt === 'clip' ? { mode: 'clip' } : { mode: 'call', callSeconds },
  });
  const probs = predictWindows(backend.tf, model, set);
  const perClip = clipProbabilities(set, probs);
  const k = metadata.labels.length;
  const flat = new Float32Array(perClip.length * k);
  const truth = new Int32Array(perClip.length);
  perClip.forEach((c, i) => {
    flat.set(c.probs, i * k);
    truth[i] = metadata.labels.indexOf(set.clips[c.clip].label);
  });
  model.dispose();
  const result = evaluatePredictions({ labels: metadata.labels, truth, probs: flat });
  const skippedReasons: Record<string, number> = {};
  for (const s of skipped) skippedReasons[s.reason] = (skippedReasons[s.reason] ?? 0) + 1;
  const perCorpus: Record<string, EvaluationResult> = {};
  const corpora = unique(perClip.map((c) => set.clips[c.clip].corpus));
  for (const corpus of corpora) {
    const rows = perClip.flatMap((c, i) => (set.clips[c.clip].corpus === corpus ? [i] : []));
    const p = new Float32Array(rows.length * k);
    rows.forEach((r, j) => p.set(flat.subarray(r * k, (r + 1) * k), j * k));
    perCorpus[corpus] = evaluatePredictions({ labels: metadata.labels, truth: rows.map((r) => truth[r]), probs: p });
  }
  const aucs = corpora.map((c) => perCorpus[c].anger.auc).filter((a): a is number => a !== null);
  const trained = new Set(metadata.training.speakers.train);
  const speakersInTraining = unique(clips.map((c) => c.speaker).filter((sp) => trained.has(sp)));
  if (speakersInTraining.length) log(`warning: ${speakersInTraining.length} scored speaker(s) are in the model's training set (${speakersInTraining.slice(0, 5).join(', ')}${speakersInTraining.length > 5 ? ', …' : ''}): these figures are not on unseen callers`);
  const report: EvaluationReport = {
    ...result,
    skipped: skipped.length,
    skippedReasons,
    model: resolve(o.modelDir),
    channel: o.channel,
    level: 'clip',
    regime: { adapt, callSeconds: adapt === 'call' ? callSeconds : null },
    suite: o.suite ?? null,
    perCorpus,
    corpusMean: {
      accuracy: corpora.reduce((s, c) => s + perCorpus[c].accuracy, 0) / Math.max(1, corpora.length),
      angerAuc: aucs.length ? aucs.reduce((a, b) => a + b, 0) / aucs.length : null,
    },
    speakersInTraining,
  };
  return { report, confusionTitle: `${metadata.arch}: ${result.n} clips, ${o.channel} channel, ${adapt} regime` };
}

/** Writes a JSON file, creating its folder. */
export function writeJson(path: string, value: unknown): void {
  mkdirSync(resolve(path, '..'), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}

