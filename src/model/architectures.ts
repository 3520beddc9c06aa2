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
export type Arch = 'cnn' | 'lstm' | 'cnn-lstm' | 'cnn-fast' | 'cnn-mid';

/** The architectures, in a fixed order (for CLIs, benches and validation). */
export const ARCHITECTURES: readonly Arch[] = Object.freeze(['cnn', 'lstm', 'cnn-lstm', 'cnn-fast', 'cnn-mid'] as const);

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

/** One conv block of a {@link CnnSpec}: Conv1D (no bias) → BatchNorm → ReLU → MaxPool → Dropout. */
export interface CnnBlock {
  /** Conv filters (output channels). */
  filters: number;
  /** Conv kernel length in frames. */
  kernel: number;
  /** Conv stride in frames (default 1). A stride of 2 in the first block halves every later layer's work. */
  stride?: number;
  /** Max-pooling size after the activation (1 = none). */
  pool: number;
  /** Dropout rate after the block. */
  dropout: number;
}

/** A `cnn`: conv blocks, then GlobalAveragePooling1D, Dropout and a Dense softmax. */
export interface CnnSpec {
  blocks: CnnBlock[];
  /** Dropout before the softmax (default 0.3). */
  headDropout?: number;
}

/**
 * The shipped `cnn`. Chosen by `bench/cnn-variants.ts` (speed, untrained) and then by accuracy on held-out
 * speakers (`scripts/experiments.sh`): see models/MODEL_CARD.md.
 */
export const CNN_SPEC: CnnSpec = Object.freeze({
  blocks: [
    { filters: 64, kernel: 5, pool: 2, dropout: 0.1 },
    { filters: 96, kernel: 5, pool: 2, dropout: 0.1 },
    { filters: 128, kernel: 3, pool: 2, dropout: 0.2 },
  ],
  headDropout: 0.3,
});

/**
 * `cnn-fast`: the first conv strides by 2 and its pooling by 4, so the later blocks run on 15 and 8 steps instead of
 * 60 and 30, with fewer filters. `node --import tsx bench/cnn-variants.ts` (wasm, untrained, folded for inference):
 * 0.21 ms per window single and 0.07 batched, against 0.58 and 0.41 for `cnn`.
 */
export const CNN_FAST_SPEC: CnnSpec = Object.freeze({
  blocks: [
    { filters: 32, kernel: 5, stride: 2, pool: 4, dropout: 0.1 },
    { filters: 64, kernel: 5, pool: 2, dropout: 0.1 },
    { filters: 96, kernel: 3, pool: 1, dropout: 0.2 },
  ],
  headDropout: 0.3,
});

/**
 * `cnn-mid`: between the two. The first conv strides by 2 and pools by 2 (30 steps after it, as `cnn` after its
 * second block), with 48, 64 and 96 filters. bench/cnn-variants.ts, folded: 0.27 ms single, 0.13 batched.
 */
export const CNN_MID_SPEC: CnnSpec = Object.freeze({
  blocks: [
    { filters: 48, kernel: 5, stride: 2, pool: 2, dropout: 0.1 },
    { filters: 64, kernel: 5, pool: 2, dropout: 0.1 },
    { filters: 96, kernel: 3, pool: 1, dropout: 0.2 },
  ],
  headDropout: 0.3,
});

/**
 * Builds an uncompiled model for windows of `opts.frames` × `opts.dims` with a softmax over `opts.classes`.
 *
 * - `cnn`: {@link CNN_SPEC}: conv blocks of [Conv1D (no bias: BatchNorm follows) → BatchNorm → ReLU → MaxPool →
 *   Dropout], conv kernels with L1/L2 regularisation, then GlobalAveragePooling1D (so where the speech sits in the
 *   window does not matter), Dropout and a Dense softmax.
 * - `lstm`: LSTM(64, sequences) → LSTM(64) → Dropout → Dense softmax, as the seed.
 * - `cnn-lstm`: 2 conv blocks as in `cnn` (the two poolings make the LSTM run 4× fewer steps) → LSTM(64) →
 *   Dropout → Dense softmax.
 * - `cnn-fast`, `cnn-mid`: {@link CNN_FAST_SPEC}, {@link CNN_MID_SPEC}, built as `cnn`.
 */
export function buildModel(tf: Tf, arch: Arch, opts: BuildOptions): tfjs.LayersModel {
  validate(arch, opts);
  return build(tf, arch, opts, CNN_SPECS[arch]);
}

const CNN_SPECS: Partial<Record<Arch, CnnSpec>> = { cnn: CNN_SPEC, 'cnn-fast': CNN_FAST_SPEC, 'cnn-mid': CNN_MID_SPEC };

/** Builds a `cnn` from any {@link CnnSpec} (for benches and experiments with other shapes). */
export function buildCnn(tf: Tf, spec: CnnSpec, opts: BuildOptions): tfjs.LayersModel {
  validate('cnn', opts);
  return build(tf, 'cnn', opts, spec);
}

function build(tf: Tf, arch: Arch, opts: BuildOptions, spec: CnnSpec | undefined): tfjs.LayersModel {
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

  const convBlock = (i: number, blk: CnnBlock): void => {
    m.add(tf.layers.conv1d({
      ...input(),
      name: `conv${i}`,
      filters: blk.filters,
      kernelSize: blk.kernel,
      strides: blk.stride ?? 1,
      padding: 'same',
      useBias: false,
      kernelInitializer: tf.initializers.heNormal({ seed: nextSeed() }),
      kernelRegularizer: reg(),
    }));
    m.add(tf.layers.batchNormalization({ name: `bn${i}`, axis: -1 }));
    m.add(tf.layers.activation({ name: `relu${i}`, activation: 'relu' }));
    if (blk.pool > 1) m.add(tf.layers.maxPooling1d({ name: `pool${i}`, poolSize: blk.pool }));
    m.add(tf.layers.dropout({ name: `drop${i}`, rate: blk.dropout, seed: nextSeed() }));
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
    if (spec !== undefined) {
      spec.blocks.forEach((blk, i) => convBlock(i + 1, blk));
      m.add(tf.layers.globalAveragePooling1d({ name: 'gap' }));
      head(spec.headDropout ?? 0.3);
      return;
    }
    switch (arch) {
      case 'lstm':
        lstm(1, 64, true);
        lstm(2, 64, false);
        head(0.3);
        break;
      case 'cnn-lstm':
        convBlock(1, { filters: 64, kernel: 5, pool: 2, dropout: 0.1 });
        convBlock(2, { filters: 96, kernel: 5, pool: 2, dropout: 0.1 });
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
  // Three poolings by 2 need ≥ 8 frames for a non-empty sequence; cnn-fast's stride 2, pool 4 and pool 2 need 16.
  const minFrames = arch === 'lstm' ? 1 : arch === 'cnn-fast' ? 16 : 8;
  // cnn-mid: stride 2, pool 2, pool 2 need 8, as cnn.
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

/**
 * The same function as a trained `cnn`, rebuilt for inference: each Conv1D → BatchNorm → ReLU becomes one Conv2D
 * over [frames, 1, dims] whose kernel and bias carry the BatchNorm (folded with its moving statistics), so that
 * TF.js runs conv, bias and ReLU as one fused kernel; Dropout layers go. TF.js's Conv1D layer never uses the fused
 * kernel, and on wasm every op costs a fixed overhead that dominates one-window inference.
 *
 * Returns `model` itself when it is not a plain conv stack (lstm, cnn-lstm, or any layer not listed here).
 * Outputs match the original's within float32 rounding (test/model.test.ts). The returned model is new: the
 * caller disposes both.
 */
export function toInferenceModel(tf: Tf, model: tfjs.LayersModel): tfjs.LayersModel {
  const layers = model.layers;
  const known = new Set(['Conv1D', 'BatchNormalization', 'Activation', 'MaxPooling1D', 'Dropout', 'GlobalAveragePooling1D', 'Dense', 'InputLayer']);
  if (!layers.every((l) => known.has(l.getClassName()))) return model;
  const inShape = model.inputs[0].shape;
  const frames = inShape[1];
  const dims = inShape[2];
  if (inShape.length !== 3 || frames == null || dims == null) return model;

  type Plan = { layer: tfjs.layers.Layer; weights: tfjs.Tensor[] };
  const plan: Plan[] = [];
  const owned: tfjs.Tensor[] = [];
  const m = tf.sequential({ name: `${model.name}_inference` });
  m.add(tf.layers.reshape({ name: 'to2d', targetShape: [frames, 1, dims], inputShape: [frames, dims] }));
  try {
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i];
      const cls = l.getClassName();
      const cfg = l.getConfig() as Record<string, unknown>;
      if (cls === 'Conv1D') {
        const w = l.getWeights();
        const kernel = w[0]; // [k, in, out]
        const [k, cin, cout] = kernel.shape;
        let scale: tfjs.Tensor = tf.ones([cout]);
        let bias: tfjs.Tensor = w.length > 1 ? w[1].clone() : tf.zeros([cout]);
        owned.push(scale, bias);
        // A conv with its own activation is folded only when no BatchNorm follows it.
        let activation = String(cfg.activation ?? 'linear');
        if (layers[i + 1]?.getClassName() === 'BatchNormalization') {
          if (activation !== 'linear') return disposeAnd(model);
          const bn = layers[++i];
          const bcfg = bn.getConfig() as { epsilon: number; center: boolean; scale: boolean };
          const bw = bn.getWeights();
          let j = 0;
          const gamma = bcfg.scale ? bw[j++] : tf.ones([cout]);
          const beta = bcfg.center ? bw[j++] : tf.zeros([cout]);
          const mean = bw[j++];
          const variance = bw[j++];
          const s = tf.tidy(() => tf.div(gamma, tf.sqrt(tf.add(variance, bcfg.epsilon))));
          const b = tf.tidy(() => tf.add(beta, tf.mul(tf.sub(bias, mean), s)));
          owned.push(s, b);
          scale = s;
          bias = b;
        }
        if (activation === 'linear' && layers[i + 1]?.getClassName() === 'Activation') {
          activation = String((layers[++i].getConfig() as { activation: string }).activation);
        }
        const k2 = tf.tidy(() => tf.reshape(tf.mul(kernel, scale), [k, 1, cin, cout]));
        owned.push(k2);
        const stride = (cfg.strides as number[] | number);
        const sv = Array.isArray(stride) ? stride[0] : stride;
        const conv = tf.layers.conv2d({
          name: `fused_${l.name}`,
          filters: cout,
          kernelSize: [k, 1],
          strides: [sv, 1],
          padding: cfg.padding as 'same' | 'valid',
          activation: activation as 'relu' | 'linear',
          useBias: true,
        });
        m.add(conv);
        plan.push({ layer: conv, weights: [k2, bias] });
      } else if (cls === 'MaxPooling1D') {
        const p = cfg.poolSize as number[] | number;
        const ps = Array.isArray(p) ? p[0] : p;
        const st = cfg.strides as number[] | number | null;
        const ss = st == null ? ps : Array.isArray(st) ? st[0] : st;
        m.add(tf.layers.maxPooling2d({ name: l.name, poolSize: [ps, 1], strides: [ss, 1], padding: cfg.padding as 'same' | 'valid' }));
      } else if (cls === 'GlobalAveragePooling1D') {
        m.add(tf.layers.globalAveragePooling2d({ name: l.name }));
      } else if (cls === 'Dense') {
        const d = tf.layers.dense({ name: l.name, units: cfg.units as number, activation: cfg.activation as 'softmax', useBias: cfg.useBias as boolean });
        m.add(d);
        plan.push({ layer: d, weights: l.getWeights() });
      } else if (cls === 'Activation') {
        m.add(tf.layers.activation({ name: l.name, activation: (cfg.activation as 'relu') }));
      } else if (cls === 'BatchNormalization') {
        return disposeAnd(model); // only folded after a conv
      }
      // Dropout and InputLayer: nothing at inference.
    }
    for (const p of plan) p.layer.setWeights(p.weights);
    return m;
  } finally {
    for (const t of owned) t.dispose();
  }

  function disposeAnd(orig: tfjs.LayersModel): tfjs.LayersModel {
    m.dispose();
    return orig;
  }
}
