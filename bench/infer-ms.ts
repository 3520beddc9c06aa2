/** What the lab's model benchmarks share: the time of one predict call. */
import type * as tfjs from '@tensorflow/tfjs';

/**
 * Mean ms per call of predicting `batch` windows of `frames` × `dims` taken in turn from `x`, tensor creation and
 * read-back included.
 */
export function inferMs(tf: typeof tfjs, model: tfjs.LayersModel, x: Float32Array, shape: { frames: number; dims: number }, batch: number, reps: number): number {
  const per = shape.frames * shape.dims;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const off = (i * batch * per) % (x.length - batch * per + 1);
    tf.tidy(() => {
      const t = tf.tensor3d(x.subarray(off, off + batch * per), [batch, shape.frames, shape.dims]);
      (model.predict(t) as tfjs.Tensor).dataSync();
    });
  }
  return (performance.now() - t0) / reps;
}
