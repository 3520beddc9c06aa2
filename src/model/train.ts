/**
 * Trains one of the {@link Arch}itectures on windows: Adam, reduce-LR-on-plateau, early stopping that restores the
 * best epoch's weights, optional balanced class weights, and a seeded batch order and dropout.
 *
 * The loop is our own rather than `model.fit`: fit needs all windows as one tensor (~25k × 120 × 40 floats =
 * 480 MB here) and has no reduce-LR-on-plateau. Each batch's tensor is built from the WindowSet's Float32Array, and
 * every tensor a step makes is disposed before the next.
 *
 * Reported losses are the data term only (class-weighted cross-entropy); the L1/L2 penalties are added to what
 * is minimised but not to what is reported, so that train and validation losses compare.
 */
import { mulberry32 } from '../util/random.js';
import type * as tfjs from '@tensorflow/tfjs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { WindowSet } from '../data/types.js';
import type { Tf } from './backend.js';
import { ARCHITECTURES, buildModel, layerSeed, type Arch } from './architectures.js';
import { predictWindows } from './predict.js';

/** Reduce-LR-on-plateau settings (Keras semantics, monitoring validation loss). */
export interface PlateauOptions {
  /** The learning rate is multiplied by this (0 < factor < 1) on a plateau. */
  factor: number;
  /** Epochs without an improvement of the validation loss before the rate is lowered. */
  patience: number;
  /** The rate is never lowered below this. */
  minLr: number;
  /** An improvement is a drop of more than this (default 1e-4, as Keras). */
  minDelta?: number;
  /** Epochs after a reduction during which no further reduction happens (default 0). */
  cooldown?: number;
}

/** What {@link trainModel} reports after each epoch. */
export interface EpochInfo {
  /** 1-based epoch number. */
  epoch: number;
  /** Epochs requested (training may stop earlier). */
  epochs: number;
  /** Mean class-weighted cross-entropy over the epoch's batches, in training mode (dropout on). */
  loss: number;
  /** Window accuracy over the epoch's batches, in training mode. */
  acc: number;
  /** Class-weighted mean cross-entropy on the validation windows (weights from the training counts). */
  valLoss: number;
  /** Window accuracy on the validation windows. */
  valAcc: number;
  /** Unweighted average recall over the classes present in the validation windows (balanced accuracy). */
  valUar: number;
  /** Learning rate used in this epoch. */
  lr: number;
  /** Wall-clock seconds of this epoch, validation included. */
  seconds: number;
  /** Estimated seconds left if all requested epochs run (early stopping may end sooner). */
  etaSeconds: number;
  /** True when this epoch is the best so far by the monitored quantity (its weights are kept). */
  best: boolean;
}

/** Options of {@link trainModel}. */
export interface TrainOptions {
  /** Architecture to build. */
  arch: Arch;
  /** Training windows. */
  train: WindowSet;
  /** Validation windows: same labels, frames and dims as `train`. Drives early stopping and the LR schedule. */
  val: WindowSet;
  /** Maximum number of epochs. */
  epochs: number;
  /** Windows per batch. */
  batchSize: number;
  /** Adam's initial learning rate. */
  learningRate: number;
  /** Seeds the initialisers, the batch order and dropout: the same seed and data give the same run. */
  seed: number;
  /**
   * Early stopping: epochs without improvement of `monitor` before training stops (integer ≥ 1, or Infinity to
   * run all epochs). Either way the returned model carries the best epoch's weights.
   */
  patience: number;
  /**
   * What early stopping watches. Default `valLoss`: it is continuous where accuracy moves in steps and stalls in
   * early epochs; it also punishes over-confidence, which matters because clip and call decisions average and
   * threshold window probabilities; and it is what the LR schedule watches, so both agree on "no progress".
   */
  monitor?: 'valLoss' | 'valAcc';
  /** Reduce-LR-on-plateau on the validation loss. */
  plateau: PlateauOptions;
  /** `balanced`: each class weighted n / (classes present × its count) in the loss; `none`: all 1. */
  classWeights: 'balanced' | 'none';
  /**
   * SpecAugment-style masks on training windows (default none): per window, one run of up to `time` frames and one
   * band of up to `dims` coefficients set to 0 (the normalised mean), widths and places drawn from the seeded
   * stream. Meant to stop the model leaning on one speaker's spectral detail.
   */
  masking?: { time: number; dims: number };
  /** Called after each epoch; may return a promise, which is awaited. */
  onEpoch?: (info: EpochInfo) => void | Promise<void>;
}

/** What {@link trainModel} returns. */
export interface TrainResult {
  /** The trained model, with the best epoch's weights. */
  model: tfjs.LayersModel;
  /** One entry per epoch run. */
  history: EpochInfo[];
  /** 1-based epoch whose weights the model carries. */
  bestEpoch: number;
  /** Why training ended. */
  stopReason: 'epochs' | 'early-stopping' | 'non-finite-loss';
  /** Class weights used, one per label. */
  classWeights: Float32Array;
}


/** Fisher–Yates shuffle of `a` in place with `rand` in [0, 1). */
export function shuffleInPlace(a: Int32Array, rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/**
 * Class weights from label counts. `balanced` (scikit-learn's rule): n / (P × count_c) for the P classes present,
 * 0 for absent ones, so that the mean weight over the windows is 1; `none`: all 1.
 */
export function computeClassWeights(y: Int32Array, classes: number, mode: 'balanced' | 'none'): Float32Array {
  const w = new Float32Array(classes).fill(1);
  if (mode === 'none') return w;
  const counts = new Float64Array(classes);
  for (let i = 0; i < y.length; i++) counts[y[i]]++;
  const present = counts.reduce((p, c) => p + (c > 0 ? 1 : 0), 0);
  for (let c = 0; c < classes; c++) w[c] = counts[c] > 0 ? y.length / (present * counts[c]) : 0;
  return w;
}

/** Sets the learning rate of an optimizer that has one (Adam, SGD, …); TF.js reads it at every step. */
export function setLearningRate(optimizer: tfjs.Optimizer, lr: number): void {
  const o = optimizer as unknown as { learningRate?: number };
  if (typeof o.learningRate !== 'number') {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `optimizer ${optimizer.getClassName()} has no learning rate to set`);
  }
  o.learningRate = lr;
}

/** Reads the learning rate of an optimizer that has one. */
export function getLearningRate(optimizer: tfjs.Optimizer): number {
  return (optimizer as unknown as { learningRate: number }).learningRate;
}

/**
 * Reduce-LR-on-plateau, as Keras's callback (mode `min`, absolute `minDelta`): feed it the monitored value after
 * each epoch; after `patience` epochs without an improvement of more than `minDelta` the rate is multiplied by
 * `factor`, never going below `minLr`. TF.js has no such callback; this one is pure so it can be tested alone.
 */
export class ReduceLROnPlateau {
  private best = Infinity;
  private wait = 0;
  private cooldownLeft = 0;
  private rate: number;
  private readonly opts: Required<PlateauOptions>;

  constructor(initialLr: number, opts: PlateauOptions) {
    this.rate = initialLr;
    this.opts = { minDelta: 1e-4, cooldown: 0, ...opts };
  }

  /** The current learning rate. */
  get lr(): number {
    return this.rate;
  }

  /** Takes one epoch's monitored value (lower is better) and returns the learning rate for the next epoch. */
  step(value: number): number {
    if (this.cooldownLeft > 0) {
      this.cooldownLeft--;
      this.wait = 0;
    }
    if (value < this.best - this.opts.minDelta) {
      this.best = value;
      this.wait = 0;
    } else if (this.cooldownLeft === 0) {
      this.wait++;
      if (this.wait >= this.opts.patience && this.rate > this.opts.minLr) {
        this.rate = Math.max(this.rate * this.opts.factor, this.opts.minLr);
        this.cooldownLeft = this.opts.cooldown;
        this.wait = 0;
      }
    }
    return this.rate;
  }
}

/** Cross-entropy floor, as Keras's epsilon: p is clipped to [1e-7, 1] before the log. */
const EPS = 1e-7;

/**
 * Builds `opts.arch` for the windows' shape and trains it. See {@link TrainOptions} for the schedule; the returned
 * model carries the weights of the best epoch by `opts.monitor`.
 */
export async function trainModel(tf: Tf, opts: TrainOptions): Promise<TrainResult> {
  validate(opts);
  const { train, val, epochs, batchSize, seed } = opts;
  const classes = train.labels.length;
  const per = train.frames * train.dims;
  const monitor = opts.monitor ?? 'valLoss';
  const weights = computeClassWeights(train.y, classes, opts.classWeights);

  const model = buildModel(tf, opts.arch, { frames: train.frames, dims: train.dims, classes, seed });
  const optimizer = tf.train.adam(opts.learningRate);
  const plateau = new ReduceLROnPlateau(opts.learningRate, opts.plateau);
  // Independent streams, each derived from the seed, for the batch order and for dropout masks.
  const orderRand = mulberry32(layerSeed(seed, 0x10000));
  const dropRand = mulberry32(layerSeed(seed, 0x10001));
  const maskRand = mulberry32(layerSeed(seed, 0x10002));
  const masking = opts.masking;
  // TF.js's Dropout reads its `seed` field on every call and seeds a fresh generator with it, so a fixed seed would
  // drop the same units on every batch: we set a new seed per batch and put the built ones back at the end.
  const dropouts = model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as { seed?: number }[];
  const builtSeeds = dropouts.map((d) => d.seed);
  // LayerVariable.read() returns the tf.Variable itself (typed as Tensor).
  const vars = model.trainableWeights.map((w) => w.read() as tfjs.Variable);

  const order = Int32Array.from({ length: train.n }, (_, i) => i);
  const history: EpochInfo[] = [];
  let best = { value: NaN, epoch: 0, weights: [] as Float32Array[] };
  let stopReason: TrainResult['stopReason'] = 'epochs';
  let sinceBest = 0;
  let spent = 0;

  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const t0 = performance.now();
      const lr = plateau.lr;
      setLearningRate(optimizer, lr);
      shuffleInPlace(order, orderRand);
      let lossSum = 0;
      let correct = 0;
      for (let start = 0; start < train.n; start += batchSize) {
        const m = Math.min(batchSize, train.n - start);
        const xb = new Float32Array(m * per); // fresh per batch: the cpu backend keeps a reference to its input array
        const yb = new Int32Array(m);
        const wb = new Float32Array(m);
        for (let j = 0; j < m; j++) {
          const i = order[start + j];
          xb.set(train.x.subarray(i * per, (i + 1) * per), j * per);
          yb[j] = train.y[i];
          wb[j] = weights[yb[j]];
          if (masking) maskWindow(xb.subarray(j * per, (j + 1) * per), train.frames, train.dims, masking, maskRand);
        }
        for (const d of dropouts) d.seed = Math.floor(dropRand() * 0x7fffffff);
        const [l, c] = step(tf, model, optimizer, vars, xb, yb, wb, [m, train.frames, train.dims], classes);
        lossSum += l * m;
        correct += c;
        // Let timers, signals and progress bars run between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const v = evaluate(tf, model, val, weights, batchSize);
      plateau.step(v.loss);

      const loss = lossSum / train.n;
      const value = monitor === 'valLoss' ? v.loss : -v.acc;
      const finite = Number.isFinite(loss) && Number.isFinite(v.loss);
      // Improvement for early stopping: the same minimum step as the LR schedule for the loss; any gain in accuracy.
      const minDelta = monitor === 'valLoss' ? (opts.plateau.minDelta ?? 1e-4) : 0;
      const improved = finite && (best.epoch === 0 || value < best.value - minDelta);
      if (improved) {
        best = { value, epoch, weights: model.weights.map((w) => (w.read().dataSync() as Float32Array).slice()) };
        sinceBest = 0;
      } else {
        sinceBest++;
      }
      const seconds = (performance.now() - t0) / 1000;
      spent += seconds;
      const info: EpochInfo = {
        epoch, epochs, loss, acc: correct / train.n, valLoss: v.loss, valAcc: v.acc, valUar: v.uar, lr, seconds,
        etaSeconds: (spent / epoch) * (epochs - epoch), best: improved,
      };
      history.push(info);
      await opts.onEpoch?.(info);
      if (!finite) {
        stopReason = 'non-finite-loss';
        break;
      }
      if (epoch < epochs && sinceBest >= opts.patience) {
        stopReason = 'early-stopping';
        break;
      }
    }
  } catch (e) {
    optimizer.dispose();
    model.dispose();
    throw e;
  } finally {
    dropouts.forEach((d, i) => (d.seed = builtSeeds[i]));
  }
  optimizer.dispose();

  if (best.epoch === 0) {
    model.dispose();
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'training diverged: the loss was not finite in the first epoch (lower the learning rate?)');
  }
  if (best.epoch !== history.length) {
    model.weights.forEach((w, i) => {
      const t = tf.tensor(best.weights[i], w.shape as number[]);
      w.write(t);
      t.dispose(); // the variable holds its own reference to the data
    });
  }
  return { model, history, bestEpoch: best.epoch, stopReason, classWeights: weights };
}

/** Zeroes one run of ≤ `m.time` frames and one band of ≤ `m.dims` coefficients of a frames × dims window. */
export function maskWindow(w: Float32Array, frames: number, dims: number, m: { time: number; dims: number }, rand: () => number): void {
  const t = Math.floor(rand() * (Math.min(m.time, frames) + 1));
  const t0 = Math.floor(rand() * (frames - t + 1));
  for (let f = t0; f < t0 + t; f++) w.fill(0, f * dims, (f + 1) * dims);
  const d = Math.floor(rand() * (Math.min(m.dims, dims) + 1));
  const d0 = Math.floor(rand() * (dims - d + 1));
  if (d > 0) for (let f = 0; f < frames; f++) w.fill(0, f * dims + d0, f * dims + d0 + d);
}

/** One Adam step on one batch; returns [mean weighted cross-entropy, correct windows]. */
function step(
  tf: Tf, model: tfjs.LayersModel, optimizer: tfjs.Optimizer, vars: tfjs.Variable[],
  xb: Float32Array, yb: Int32Array, wb: Float32Array, shape: [number, number, number], classes: number,
): [number, number] {
  let dataLoss: tfjs.Scalar | undefined;
  let correct: tfjs.Scalar | undefined;
  try {
    tf.tidy(() => {
      const x = tf.tensor3d(xb, shape);
      const y = tf.tensor1d(yb, 'int32');
      const w = tf.tensor1d(wb);
      const oneHot = tf.oneHot(y, classes);
      optimizer.minimize(() => {
        const p = model.apply(x, { training: true }) as tfjs.Tensor2D;
        const py = tf.sum(tf.mul(p, oneHot), 1);
        const ce = tf.neg(tf.log(tf.clipByValue(py, EPS, 1)));
        const data = tf.mean(tf.mul(ce, w)) as tfjs.Scalar;
        dataLoss = tf.keep(data);
        correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(p, 1), y), 'float32')) as tfjs.Scalar);
        let total: tfjs.Scalar = data;
        for (const r of model.calculateLosses()) total = tf.add(total, r);
        return total;
      }, false, vars);
    });
    return [dataLoss!.dataSync()[0], correct!.dataSync()[0]];
  } finally {
    dataLoss?.dispose();
    correct?.dispose();
  }
}

/** Validation metrics from batched inference: class-weighted cross-entropy, accuracy, UAR. */
function evaluate(tf: Tf, model: tfjs.LayersModel, set: WindowSet, weights: Float32Array, batchSize: number): { loss: number; acc: number; uar: number } {
  const classes = weights.length;
  const probs = predictWindows(tf, model, set, Math.max(batchSize, 256));
  let wl = 0;
  let ws = 0;
  let l = 0;
  let correct = 0;
  const hits = new Float64Array(classes);
  const counts = new Float64Array(classes);
  for (let i = 0; i < set.n; i++) {
    const row = i * classes;
    const yi = set.y[i];
    const ce = -Math.log(Math.min(1, Math.max(EPS, probs[row + yi])));
    wl += weights[yi] * ce;
    ws += weights[yi];
    l += ce;
    let arg = 0;
    for (let k = 1; k < classes; k++) if (probs[row + k] > probs[row + arg]) arg = k;
    counts[yi]++;
    if (arg === yi) {
      correct++;
      hits[yi]++;
    }
  }
  let recall = 0;
  let present = 0;
  for (let k = 0; k < classes; k++) {
    if (counts[k] > 0) {
      recall += hits[k] / counts[k];
      present++;
    }
  }
  // If every validation class has weight 0 (absent from training), fall back to the unweighted mean.
  return { loss: ws > 0 ? wl / ws : l / set.n, acc: correct / set.n, uar: recall / present };
}

function validate(opts: TrainOptions): void {
  const bad = (msg: string): never => {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `train: ${msg}`);
  };
  if (!ARCHITECTURES.includes(opts.arch)) bad(`arch must be one of ${ARCHITECTURES.join(', ')}; got ${String(opts.arch)}`);
  const int = (k: 'epochs' | 'batchSize' | 'seed', min: number) => {
    const v = opts[k];
    if (!Number.isInteger(v) || v < min) bad(`${k} must be an integer ≥ ${min}; got ${String(v)}`);
  };
  int('epochs', 1);
  int('batchSize', 1);
  int('seed', -(2 ** 31));
  if (!(opts.learningRate > 0 && Number.isFinite(opts.learningRate))) bad(`learningRate must be a finite number > 0; got ${String(opts.learningRate)}`);
  if (!(opts.patience === Infinity || (Number.isInteger(opts.patience) && opts.patience >= 1))) {
    bad(`patience must be an integer ≥ 1 or Infinity; got ${String(opts.patience)}`);
  }
  if (opts.monitor !== undefined && opts.monitor !== 'valLoss' && opts.monitor !== 'valAcc') bad(`monitor must be valLoss or valAcc; got ${String(opts.monitor)}`);
  const p = opts.plateau;
  if (p === undefined || !(p.factor > 0 && p.factor < 1)) bad(`plateau.factor must be in (0, 1); got ${String(p?.factor)}`);
  if (!Number.isInteger(p.patience) || p.patience < 1) bad(`plateau.patience must be an integer ≥ 1; got ${String(p.patience)}`);
  if (!(p.minLr >= 0 && Number.isFinite(p.minLr))) bad(`plateau.minLr must be a finite number ≥ 0; got ${String(p.minLr)}`);
  if (p.minDelta !== undefined && !(p.minDelta >= 0)) bad(`plateau.minDelta must be ≥ 0; got ${String(p.minDelta)}`);
  if (p.cooldown !== undefined && !(Number.isInteger(p.cooldown) && p.cooldown >= 0)) bad(`plateau.cooldown must be an integer ≥ 0; got ${String(p.cooldown)}`);
  if (opts.masking !== undefined) {
    const { time, dims } = opts.masking;
    if (!(Number.isInteger(time) && time >= 0 && Number.isInteger(dims) && dims >= 0)) bad(`masking.time and masking.dims must be integers ≥ 0; got ${String(time)}, ${String(dims)}`);
  }
  if (opts.classWeights !== 'balanced' && opts.classWeights !== 'none') bad(`classWeights must be balanced or none; got ${String(opts.classWeights)}`);
  for (const [name, s] of [['train', opts.train], ['val', opts.val]] as const) {
    if (s.n < 1) bad(`${name} has no windows`);
    if (s.x.length !== s.n * s.frames * s.dims) bad(`${name}.x has ${s.x.length} values, expected n × frames × dims = ${s.n * s.frames * s.dims}`);
    if (s.y.length !== s.n) bad(`${name}.y has ${s.y.length} labels, expected ${s.n}`);
    for (let i = 0; i < s.n; i++) {
      if (!(s.y[i] >= 0 && s.y[i] < opts.train.labels.length)) bad(`${name}.y[${i}] = ${s.y[i]} is not a label index in [0, ${opts.train.labels.length})`);
    }
  }
  const { train, val } = opts;
  if (val.frames !== train.frames || val.dims !== train.dims) bad(`val windows are ${val.frames} × ${val.dims}, train windows ${train.frames} × ${train.dims}`);
  if (val.labels.length !== train.labels.length || val.labels.some((l, i) => l !== train.labels[i])) {
    bad(`val labels [${val.labels.join(', ')}] differ from train labels [${train.labels.join(', ')}]`);
  }
}
