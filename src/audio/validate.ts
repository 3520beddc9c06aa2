import { CallmoodError, ErrorCodes } from '../errors.js';

/**
 * Throws INVALID_AUDIO naming the first NaN or infinite sample. A NaN that slips into the MFCC turns every later
 * frame of a stream into NaN (pre-emphasis carries it), so it is stopped at the door.
 */
export function assertFiniteSamples(samples: ArrayLike<number>, what: string): void {
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    // v - v is 0 for finite numbers and NaN for NaN and ±Infinity: one comparison per sample.
    if (v - v !== 0) {
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        `${what}: sample ${i} is ${v}; samples must be finite numbers (floats in [-1, 1])`,
      );
    }
  }
}
