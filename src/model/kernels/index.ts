/**
 * Kernels callmood adds to the TF.js wasm backend so that its models train there.
 *
 * Found by running one `model.fit` batch on wasm (TF.js 4.22) for Conv1D + BatchNormalization + MaxPooling1D +
 * Dropout + Dense with L1/L2 regularisers, softmax, categorical cross-entropy and Adam; for two stacked LSTMs; for
 * GlobalAveragePooling1D; and for Conv1D + LSTM: the only kernel missing is `Conv2DBackpropFilter` (conv1d's
 * filter gradient; tfjs issue #8474).
 */
import type * as tfjs from '@tensorflow/tfjs';
import { createConv2DBackpropFilterKernel } from './conv2d-backprop-filter.js';

/** Names of the kernels callmood provides for the wasm backend. */
export const WASM_KERNEL_NAMES = ['Conv2DBackpropFilter'] as const;

/**
 * Registers callmood's wasm kernels with `tf`'s kernel registry, skipping any kernel the wasm backend already has
 * (a later TF.js may ship its own). Idempotent. Returns the names registered by this call.
 */
export function registerWasmKernels(tf: typeof tfjs): string[] {
  const added: string[] = [];
  const factories: Record<(typeof WASM_KERNEL_NAMES)[number], (t: typeof tfjs) => tfjs.KernelFunc> = {
    Conv2DBackpropFilter: createConv2DBackpropFilterKernel,
  };
  for (const name of WASM_KERNEL_NAMES) {
    if (tf.getKernel(name, 'wasm') !== undefined) continue;
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: factories[name](tf) });
    added.push(name);
  }
  return added;
}

export { conv2dBackpropFilter, type ConvGeometry } from './conv2d-backprop-filter.js';
