/**
 * Batched inference over windows, and window probabilities averaged per clip.
 *
 * Each batch's tensor is made from a view of the caller's Float32Array, so memory stays at one batch of inputs and
 * outputs whatever the number of windows; every tensor is disposed before the next batch.
 */
import type * as tfjs from '@tensorflow/tfjs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { WindowSet } from '../data/types.js';
import type { Tf } from './backend.js';

/** Windows to run a model on: n × frames × dims, row-major (a {@link WindowSet} is one). */
export interface WindowBatch {
  x: Float32Array;
  n: number;
  frames: number;
  dims: number;
}

/** Checks that `set` is self-consistent and fits `model`'s input [null, frames, dims]; returns the class count. */
export function checkWindowsFit(model: tfjs.LayersModel, set: WindowBatch, what = 'windows'): number {
  const { n, frames, dims } = set;
  if (!Number.isInteger(n) || n < 0 || !Number.isInteger(frames) || frames < 1 || !Number.isInteger(dims) || dims < 1) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: n, frames and dims must be integers (n ≥ 0, others ≥ 1); got n=${n}, frames=${frames}, dims=${dims}`);
  }
  if (set.x.length !== n * frames * dims) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: x has ${set.x.length} values, expected n × frames × dims = ${n} × ${frames} × ${dims} = ${n * frames * dims}`);
  }
  const inShape = model.inputs[0].shape;
  if (inShape.length !== 3 || inShape[1] !== frames || inShape[2] !== dims) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: windows of ${frames} × ${dims} do not fit the model's input shape [${fmtShape(inShape)}]`);
  }
  const outShape = model.outputs[0].shape;
  const classes = outShape[outShape.length - 1];
  if (outShape.length !== 2 || classes == null) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: the model's output shape [${fmtShape(outShape)}] is not [batch, classes]`);
  }
  return classes;
}

/**
 * Runs `model` on every window of `set`, `batchSize` windows at a time, in inference mode (dropout off, BatchNorm
 * on its moving statistics). Returns n × classes probabilities, row-major.
 */
export function predictWindows(tf: Tf, model: tfjs.LayersModel, set: WindowSet | WindowBatch, batchSize = 256): Float32Array {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `batchSize must be an integer ≥ 1; got ${String(batchSize)}`);
  }
  const classes = checkWindowsFit(model, set);
  const { n, frames, dims } = set;
  const per = frames * dims;
  const out = new Float32Array(n * classes);
  for (let start = 0; start < n; start += batchSize) {
    const m = Math.min(batchSize, n - start);
    tf.tidy(() => {
      const x = tf.tensor3d(set.x.subarray(start * per, (start + m) * per), [m, frames, dims]);
      out.set((model.predict(x) as tfjs.Tensor).dataSync() as Float32Array, start * classes);
    });
  }
  return out;
}

/** Mean window probabilities of one clip. */
export interface ClipProbabilities {
  /** Clip index (into the set's `clips`). */
  clip: number;
  /** Mean of its windows' probabilities, one per class. */
  probs: Float32Array;
  /** Number of windows averaged. */
  windows: number;
}

/**
 * Averages window probabilities per clip: `probs` is n × classes as {@link predictWindows} returns for `set`.
 * Returns one entry per clip that has windows, in ascending clip index.
 */
export function clipProbabilities(set: Pick<WindowSet, 'n' | 'clip'>, probs: Float32Array): ClipProbabilities[] {
  const { n } = set;
  if (set.clip.length !== n) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `clip has ${set.clip.length} entries, expected one per window (${n})`);
  }
  if (n === 0) return [];
  const classes = probs.length / n;
  if (!Number.isInteger(classes) || classes < 1) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `probs has ${probs.length} values, not a multiple of the ${n} windows`);
  }
  const sums = new Map<number, { probs: Float64Array; windows: number }>();
  for (let i = 0; i < n; i++) {
    const c = set.clip[i];
    let s = sums.get(c);
    if (s === undefined) {
      s = { probs: new Float64Array(classes), windows: 0 };
      sums.set(c, s);
    }
    for (let k = 0; k < classes; k++) s.probs[k] += probs[i * classes + k];
    s.windows++;
  }
  return [...sums.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([clip, s]) => ({ clip, probs: Float32Array.from(s.probs, (v) => v / s.windows), windows: s.windows }));
}

/** A shape as TF.js prints it, with `null` for the batch dimension (Array.join would print nothing). */
function fmtShape(shape: readonly (number | null)[]): string {
  return shape.map((d) => (d === null ? 'null' : String(d))).join(', ');
}
