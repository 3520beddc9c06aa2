/**
 * The three model architectures, grown from the seed paper's (Conv1D with BatchNorm, dropout and L1/L2; two
 * stacked LSTMs; Conv1D + LSTM), over windows of `frames` × `dims` features: time is the sequence axis and the
 * coefficients are the channels.
 *
 * Every layer gets its own initialiser seed derived from `opts.seed`, and every Dropout layer its own seed too, so
 * that a build repeats exactly. (TF.js's Dropout passes a fixed seed to the same RNG on every call, which would
 * drop the same units on every batch; the trainer therefore re-seeds Dropout layers per batch from its own seeded
 * stream, see `train.ts`.)
 */
import type * as tfjs from '@tensorflow/tfjs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { Tf } from './backend.js';

/** A model architecture callmood can build. */
export type Arch = 'cnn' | 'lstm' | 'cnn-lstm';

/** The architectures, in a fixed order (for CLIs, benches and validation). */
export const ARCHITECTURES: readonly Arch[] = Object.freeze(['cnn', 'lstm', 'cnn-lstm'] as const);

/** What {@link buildModel} needs. */
export interface BuildOptions {
  /** Frames per window (120 = 1.2 s at a 10 ms hop). */
  frames: number;
  /** Feature values per frame (40 MFCC). */
  dims: number;
  /** Output classes (softmax width). */
  classes: number;
  /** Seed from which each layer's initialiser and dropout seeds are derived. */
  seed: number;
}

/**
 * Float32 weight budget per architecture. The shipped model must stay ≤ 5 MB; each candidate is held to ~1.5 MB
 * so that any of them can ship with room to spare.
 */
export const MAX_WEIGHT_BYTES = 1.5 * 1024 * 1024;

/** Regularisation of conv kernels: the seed's L1/L2 pair, small enough not to dominate the loss early on. */
const L1 = 1e-5;
const L2 = 1e-4;

/** A small integer hash (splitmix32-like) so that layer seeds differ a lot for neighbouring base seeds. */
function mix(a: number, b: number): number {
  let h = (Math.imul(a >>> 0, 0x9e3779b1) ^ Math.imul((b + 1) >>> 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Seed for the `index`-th seeded thing of a model built from `seed`: a non-negative int32. */
export function layerSeed(seed: number, index: number): number {
  return mix(seed, index) & 0x7fffffff;
}

/**
 * Builds an uncompiled model for windows of `opts.frames` × `opts.dims` with a softmax over `opts.classes`.
 *
 * - `cnn`: 3 × [Conv1D (no bias: BatchNorm follows) → BatchNorm → ReLU → MaxPool 2 → Dropout], conv kernels with
 *   L1/L2 regularisation, then GlobalAveragePooling1D (so where the speech sits in the window does not matter),
 *   Dropout and a Dense softmax.
 * - `lstm`: LSTM(64, sequences) → LSTM(64) → Dropout → Dense softmax, as the seed.
 * - `cnn-lstm`: 2 conv blocks as in `cnn` (the two poolings make the LSTM run 4× fewer steps) → LSTM(64) →
 *   Dropout → Dense softmax.
 */
export function buildModel(tf: Tf, arch: Arch, opts: BuildOptions): tfjs.LayersModel {
  validate(arch, opts);
  const { frames, dims, classes } = opts;
  let n = 0;
  const nextSeed = (): number => layerSeed(opts.seed, n++);
  const reg = () => tf.regularizers.l1l2({ l1: L1, l2: L2 });

  const m = tf.sequential({ name: `callmood_${arch.replace('-', '_')}` });
  let first = true;
  const input = (): { inputShape?: [number, number] } => {
    if (!first) return {};
    first = false;
    return { inputShape: [frames, dims] };
  };

  const convBlock = (i: number, filters: number, kernelSize: number, dropout: number): void => {
    m.add(tf.layers.conv1d({
      ...input(),
      name: `conv${i}`,
      filters,
      kernelSize,
      padding: 'same',
      useBias: false,
      kernelInitializer: tf.initializers.heNormal({ seed: nextSeed() }),
      kernelRegularizer: reg(),
    }));
    m.add(tf.layers.batchNormalization({ name: `bn${i}`, axis: -1 }));
    m.add(tf.layers.activation({ name: `relu${i}`, activation: 'relu' }));
    m.add(tf.layers.maxPooling1d({ name: `pool${i}`, poolSize: 2 }));
    m.add(tf.layers.dropout({ name: `drop${i}`, rate: dropout, seed: nextSeed() }));
  };
  const lstm = (i: number, units: number, returnSequences: boolean): void => {
    m.add(tf.layers.lstm({
      ...input(),
      name: `lstm${i}`,
      units,
      returnSequences,
      kernelInitializer: tf.initializers.glorotUniform({ seed: nextSeed() }),
      // Orthogonal is Keras's default for recurrent kernels, and TF.js's takes a seed.
      recurrentInitializer: tf.initializers.orthogonal({ seed: nextSeed(), gain: 1 }),
      unitForgetBias: true,
    }));
  };
  const head = (dropout: number): void => {
    m.add(tf.layers.dropout({ name: 'drop_head', rate: dropout, seed: nextSeed() }));
    m.add(tf.layers.dense({
      name: 'softmax',
      units: classes,
      activation: 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: nextSeed() }),
      kernelRegularizer: tf.regularizers.l2({ l2: L2 }),
    }));
  };

  // TF.js warns on every Orthogonal init of more than 2000 values ("Slowness may result": its QR takes ~0.1–0.3 s
  // for 64 × 256 here, once per build). Only that message is dropped, and only while building.
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith('Orthogonal initializer is being called')) return;
    warn(...args);
  };
  try {
    // In a tidy: TF.js 4.22's LSTM `unitForgetBias` initialiser leaks its 4 intermediate tensors per layer built
    // (variables survive a tidy; only such intermediates are freed).
    tf.tidy(() => addLayers());
  } finally {
    console.warn = warn;
  }
  return m;

  function addLayers(): void {
    switch (arch) {
      case 'cnn':
        convBlock(1, 64, 5, 0.1);
        convBlock(2, 96, 5, 0.1);
        convBlock(3, 128, 3, 0.2);
        m.add(tf.layers.globalAveragePooling1d({ name: 'gap' }));
        head(0.3);
        break;
      case 'lstm':
        lstm(1, 64, true);
        lstm(2, 64, false);
        head(0.3);
        break;
      case 'cnn-lstm':
        convBlock(1, 64, 5, 0.1);
        convBlock(2, 96, 5, 0.1);
        lstm(3, 64, false);
        head(0.3);
        break;
    }
  }
}

function validate(arch: Arch, opts: BuildOptions): void {
  if (!ARCHITECTURES.includes(arch)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `arch must be one of ${ARCHITECTURES.join(', ')}; got ${String(arch)}`);
  }
  // Three poolings by 2 need ≥ 8 frames for a non-empty sequence.
  const minFrames = arch === 'lstm' ? 1 : 8;
  const checks: [keyof BuildOptions, number, number][] = [
    ['frames', minFrames, 100000],
    ['dims', 1, 4096],
    ['classes', 2, 1000],
  ];
  for (const [k, lo, hi] of checks) {
    const v = opts[k];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `model ${k} must be an integer in [${lo}, ${hi}] for arch '${arch}'; got ${String(v)}`);
    }
  }
  if (!Number.isInteger(opts.seed)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `model seed must be an integer; got ${String(opts.seed)}`);
  }
}

/** Parameters of a model, all of them (trainable + BatchNorm moving statistics), as saved. */
export function paramCount(model: tfjs.LayersModel): number {
  let n = 0;
  for (const w of model.weights) n += w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
  return n;
}

/** Bytes of the model's weights as float32, i.e. the size of its weights.bin. */
export function weightBytes(model: tfjs.LayersModel): number {
  return paramCount(model) * 4;
}
