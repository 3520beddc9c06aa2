/**
 * A model directory: plain TF.js layers-model files plus callmood's model card.
 *
 *   model.json     TF.js "layers-model" JSON (topology + weightsManifest), loadable by any TF.js
 *   weights.bin    the weights, float32 little-endian, in the manifest's order
 *   metadata.json  {@link ModelMetadata}: labels, window and feature config, normalisation, training data, metrics,
 *                  licence notices
 *
 * Written through our own IOHandler (`tf.io.withSaveHandler`) and read with node:fs + `tf.io.fromMemory`, so no
 * network and no tfjs-node `file://` handler is involved. Files are written to temporary names and renamed, so an
 * interrupted save never leaves a half-written file under a final name.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { NormalizationSpec, WindowConfig } from '../features/types.js';
import { DEFAULT_FEATURE_CONFIG, featureDims, resolveFeatureConfig, type FeatureConfig } from '../features/config.js';
import { initBackend } from './backend.js';
import { ARCHITECTURES, toInferenceModel, type Arch } from './architectures.js';

/** File names inside a model directory. */
export const MODEL_FILES = Object.freeze({ model: 'model.json', weights: 'weights.bin', metadata: 'metadata.json' });

/** `metadata.json`'s `format` value. */
export const METADATA_FORMAT = 'callmood-model';
/** The metadata version this code writes and reads. */
export const METADATA_VERSION = 1;

/** What the model was trained on and how: enough to reproduce the run and to judge where it may be used. */
export interface TrainingMetadata {
  /** The manifest CSV the clips came from (path as given to the trainer). */
  manifest: string;
  /** Corpora whose clips were used. */
  corpora: string[];
  /** Speakers in the training and validation windows, and speakers held out of both. */
  speakers: { train: string[]; val: string[]; heldOut: string[] };
  /** Clips per split. */
  clips: { train: number; val: number };
  /** Windows per split. */
  windows: { train: number; val: number };
  /** The channel the training audio went through, e.g. `wideband` or `telephone`. */
  channel: string;
  /** The training seed. */
  seed: number;
  /** Epochs run. */
  epochs: number;
  /** 1-based epoch whose weights were kept. */
  bestEpoch: number;
  /** Seconds of audio per split, and wall-clock seconds of training. */
  durations: { trainAudioSeconds: number; valAudioSeconds: number; trainingSeconds: number };
  /** Anything else worth keeping (hyperparameters, augmentation, backend, …). */
  [key: string]: unknown;
}

/** `metadata.json`: the model card travelling with the weights. */
export interface ModelMetadata {
  format: typeof METADATA_FORMAT;
  version: typeof METADATA_VERSION;
  /** The architecture the model was built as. */
  arch: Arch;
  /** Output labels in softmax order. */
  labels: string[];
  /** Window geometry and the feature config the model expects; its input is frames × featureDims(feature). */
  window: WindowConfig;
  /** How features are normalised before the model. */
  normalization: NormalizationSpec;
  /** The data and run the model came from. */
  training: TrainingMetadata;
  /** Evaluation results (free-form: per-split, per-corpus, clip- and window-level). */
  metrics: Record<string, unknown>;
  /** Licence notices of the corpora whose data shaped the weights. */
  licence: string;
  /** ISO 8601 time the model was saved. */
  createdAt: string;
}

/** What {@link saveModel} takes: the metadata without the fields it fills in itself. */
export type ModelMetadataInput = Omit<ModelMetadata, 'format' | 'version' | 'createdAt'> & { createdAt?: string };

const count = z.number().int().nonnegative();
const stringList = z.array(z.string());
const statsSchema = z.object({ mean: z.array(z.number()), std: z.array(z.number().positive()), count });

const metadataSchema = z.object({
  format: z.literal(METADATA_FORMAT),
  version: z.literal(METADATA_VERSION),
  arch: z.enum(ARCHITECTURES as [Arch, ...Arch[]]),
  labels: z.array(z.string().min(1)).min(2).refine((l) => new Set(l).size === l.length, 'labels must be unique'),
  window: z.object({
    frames: z.number().int().positive(),
    hop: z.number().int().positive(),
    minSpeechRatio: z.number().min(0).max(1),
    feature: z.record(z.string(), z.unknown()),
  }),
  normalization: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('global'), stats: statsSchema }),
    z.object({ kind: z.literal('adaptive'), stats: statsSchema, priorFrames: z.number().nonnegative() }),
  ]),
  training: z.looseObject({
    manifest: z.string(),
    corpora: stringList,
    speakers: z.object({ train: stringList, val: stringList, heldOut: stringList }),
    clips: z.object({ train: count, val: count }),
    windows: z.object({ train: count, val: count }),
    channel: z.string(),
    seed: z.number().int(),
    epochs: count,
    bestEpoch: count,
    durations: z.object({ trainAudioSeconds: z.number().nonnegative(), valAudioSeconds: z.number().nonnegative(), trainingSeconds: z.number().nonnegative() }),
  }),
  metrics: z.record(z.string(), z.unknown()),
  licence: z.string().min(1),
  createdAt: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date-time'),
});

function corrupt(file: string, msg: string, cause?: unknown): CallmoodError {
  return new CallmoodError(ErrorCodes.CORRUPT_FILE, `${file}: ${msg}`, { cause });
}

/**
 * Validates parsed metadata; `file` names it in errors, each of which names the field. Checks the schema, the
 * feature config (complete and valid), and that the normalisation statistics have featureDims values.
 */
export function validateMetadata(value: unknown, file: string = MODEL_FILES.metadata): ModelMetadata {
  const v = value as { format?: unknown; version?: unknown } | null;
  if (typeof v === 'object' && v !== null) {
    if (v.format !== undefined && v.format !== METADATA_FORMAT) {
      throw new CallmoodError(ErrorCodes.UNSUPPORTED_FORMAT, `${file}: format is ${JSON.stringify(v.format)}, expected "${METADATA_FORMAT}"`);
    }
    if (v.version !== undefined && v.version !== METADATA_VERSION) {
      throw new CallmoodError(ErrorCodes.UNSUPPORTED_FORMAT, `${file}: version ${JSON.stringify(v.version)} is not supported (this callmood reads version ${METADATA_VERSION})`);
    }
  }
  const parsed = metadataSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw corrupt(file, `invalid metadata: ${issues}`);
  }
  const md = parsed.data;
  const missing = Object.keys(DEFAULT_FEATURE_CONFIG).filter((k) => !(k in md.window.feature));
  if (missing.length > 0) throw corrupt(file, `window.feature is missing ${missing.join(', ')}`);
  let feature: FeatureConfig;
  try {
    feature = { ...resolveFeatureConfig(md.window.feature as Partial<FeatureConfig>) };
  } catch (e) {
    throw corrupt(file, `window.feature: ${(e as Error).message}`, e);
  }
  const dims = featureDims(feature);
  for (const k of ['mean', 'std'] as const) {
    const n = md.normalization.stats[k].length;
    if (n !== dims) throw corrupt(file, `normalization.stats.${k} has ${n} values, expected ${dims} (the dims of window.feature)`);
  }
  return { ...md, window: { ...md.window, feature }, training: md.training as TrainingMetadata };
}

/** Reads and validates `metadata.json` of a model directory, without loading the model. */
export async function readMetadata(dir: string): Promise<ModelMetadata> {
  const file = path.join(dir, MODEL_FILES.metadata);
  return validateMetadata(parseJson(await readModelFile(file), file), file);
}

/** Checks the model's input is [null, frames, dims] and its output [null, labels]; errors name `file` and fields. */
function checkModelAgainstMetadata(model: tfjs.LayersModel, md: ModelMetadata, file: string): void {
  const dims = featureDims(md.window.feature);
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw corrupt(file, `the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; callmood models have one of each`);
  }
  const inShape = model.inputs[0].shape;
  if (inShape.length !== 3 || inShape[1] !== md.window.frames || inShape[2] !== dims) {
    throw corrupt(
      file,
      `input shape [${fmtShape(inShape)}] does not match metadata.json window.frames × feature dims = ` +
        `[null, ${md.window.frames}, ${dims}]`,
    );
  }
  const outShape = model.outputs[0].shape;
  if (outShape.length !== 2 || outShape[1] !== md.labels.length) {
    throw corrupt(file, `output shape [${fmtShape(outShape)}] does not match metadata.json labels (${md.labels.length}: ${md.labels.join(', ')})`);
  }
}

/**
 * Saves `model` and its metadata into `dir` (created if needed; existing model files are replaced). The metadata is
 * validated and checked against the model's shapes first (INVALID_OPTION if it fails), so an inconsistent directory
 * is never written. Returns the metadata as written.
 */
export async function saveModel(dir: string, model: tfjs.LayersModel, metadata: ModelMetadataInput): Promise<ModelMetadata> {
  let md: ModelMetadata;
  try {
    md = validateMetadata(
      { ...metadata, format: METADATA_FORMAT, version: METADATA_VERSION, createdAt: metadata.createdAt ?? new Date().toISOString() },
      'saveModel metadata',
    );
    checkModelAgainstMetadata(model, md, 'saveModel');
  } catch (e) {
    // The same checks as loading, but here the caller's arguments are at fault, not a file.
    if (e instanceof CallmoodError) throw new CallmoodError(ErrorCodes.INVALID_OPTION, e.message, { cause: e });
    throw e;
  }
  const { tf } = await initBackend();
  await mkdir(dir, { recursive: true });
  const handler = tf.io.withSaveHandler(async (artifacts) => {
    if (artifacts.weightSpecs === undefined || artifacts.weightData === undefined || artifacts.modelTopology === undefined) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'TF.js gave no topology or weights to save');
    }
    const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
    const modelJson: tfjs.io.ModelJSON = {
      format: artifacts.format ?? 'layers-model',
      generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
      convertedBy: artifacts.convertedBy ?? null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: [MODEL_FILES.weights], weights: artifacts.weightSpecs }],
      ...(artifacts.trainingConfig !== undefined ? { trainingConfig: artifacts.trainingConfig } : {}),
    };
    await writeAtomic(path.join(dir, MODEL_FILES.weights), weights);
    await writeAtomic(path.join(dir, MODEL_FILES.model), JSON.stringify(modelJson));
    return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
  });
  await model.save(handler);
  // Metadata last: a directory with metadata.json is complete.
  await writeAtomic(path.join(dir, MODEL_FILES.metadata), `${JSON.stringify(md, null, 2)}\n`);
  return md;
}

/** Options of {@link loadModel}. */
export interface LoadOptions {
  /**
   * Default true: a conv stack comes back folded for inference ({@link toInferenceModel}: BatchNorm folded into
   * fused conv + bias + ReLU kernels, dropout gone), the same function within float32 rounding and measurably
   * cheaper per window. False: the layers exactly as saved (to train further, or to compare bit for bit).
   */
  fold?: boolean;
}

/** A loaded model and its validated metadata. */
export interface LoadedModel {
  model: tfjs.LayersModel;
  metadata: ModelMetadata;
}

/**
 * Loads a model directory written by {@link saveModel} (or any TF.js layers model with a callmood metadata.json).
 * Throws a CallmoodError naming the file and field when a file is missing (FILE_READ), the metadata is of another
 * format or version (UNSUPPORTED_FORMAT), or anything is invalid or inconsistent (CORRUPT_FILE): metadata schema,
 * weights length vs the manifest, input shape vs window.frames × feature dims, output vs labels.
 */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const metadata = await readMetadata(dir);
  const modelFile = path.join(dir, MODEL_FILES.model);
  const json = parseJson(await readModelFile(modelFile), modelFile) as Partial<tfjs.io.ModelJSON> | null;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw corrupt(modelFile, 'not a JSON object');
  if (typeof json.modelTopology !== 'object' || json.modelTopology === null) throw corrupt(modelFile, 'modelTopology is missing');
  if (!Array.isArray(json.weightsManifest)) throw corrupt(modelFile, 'weightsManifest is missing or not an array');

  const specs: tfjs.io.WeightsManifestEntry[] = [];
  const buffers: Uint8Array[] = [];
  for (const [g, group] of json.weightsManifest.entries()) {
    if (!Array.isArray(group?.paths) || !Array.isArray(group?.weights)) throw corrupt(modelFile, `weightsManifest[${g}] needs paths and weights arrays`);
    for (const p of group.paths) {
      // Shards must sit in the directory itself: a manifest must not make us read elsewhere.
      if (typeof p !== 'string' || p === '' || p !== path.basename(p) || p === '.' || p === '..') {
        throw corrupt(modelFile, `weightsManifest[${g}].paths: ${JSON.stringify(p)} is not a file name in the model directory`);
      }
      buffers.push(await readModelFile(path.join(dir, p)));
    }
    specs.push(...group.weights);
  }
  let expected = 0;
  for (const [i, s] of specs.entries()) expected += specBytes(s, modelFile, i);
  const total = buffers.reduce((n, b) => n + b.byteLength, 0);
  const weightsName = json.weightsManifest.flatMap((g) => g.paths).join(' + ');
  if (total !== expected) {
    throw corrupt(path.join(dir, weightsName), `${total} bytes, but ${MODEL_FILES.model}'s weightsManifest describes ${expected} bytes (${specs.length} weights)`);
  }
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const b of buffers) {
    weightData.set(b, off);
    off += b.byteLength;
  }

  const { tf } = await initBackend();
  let model: tfjs.LayersModel;
  try {
    model = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: specs,
        weightData: weightData.buffer,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy ?? undefined,
        trainingConfig: json.trainingConfig,
      }),
    );
  } catch (e) {
    throw corrupt(modelFile, `TF.js could not build the model: ${(e as Error).message}`, e);
  }
  try {
    checkModelAgainstMetadata(model, metadata, `${modelFile} vs ${path.join(dir, MODEL_FILES.metadata)}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  if (opts.fold === false) return { model, metadata };
  const folded = toInferenceModel(tf, model);
  if (folded !== model) model.dispose();
  return { model: folded, metadata };
}

/** Bytes one manifest entry takes in the weights file (quantised weights are stored at their quantised width). */
function specBytes(s: tfjs.io.WeightsManifestEntry, file: string, i: number): number {
  if (!Array.isArray(s?.shape) || !s.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw corrupt(file, `weightsManifest weight ${i} (${String(s?.name)}): shape must be an array of non-negative integers`);
  }
  const size = s.shape.reduce((a, b) => a * b, 1);
  const q = s.quantization?.dtype;
  const width = q !== undefined ? ({ uint8: 1, uint16: 2, float16: 2 } as Record<string, number>)[q] : ({ float32: 4, int32: 4, bool: 1 } as Record<string, number>)[s.dtype];
  if (width === undefined) throw corrupt(file, `weightsManifest weight ${i} (${s.name}): dtype ${q ?? s.dtype} is not supported`);
  return size * width;
}

async function readModelFile(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'missing' : code === 'EISDIR' ? 'a directory, not a file' : `unreadable (${(e as Error).message})`;
    // A missing or mis-typed file stays so; other read errors (EMFILE, EIO) may pass.
    throw new CallmoodError(ErrorCodes.FILE_READ, `${file}: ${why}`, { cause: e, permanent: code === 'ENOENT' || code === 'EISDIR' });
  }
}

function parseJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw corrupt(file, `not valid JSON (${(e as Error).message})`, e);
  }
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

/** A shape as TF.js prints it, with `null` for the batch dimension (Array.join would print nothing). */
function fmtShape(shape: readonly (number | null)[]): string {
  return shape.map((d) => (d === null ? 'null' : String(d))).join(', ');
}
