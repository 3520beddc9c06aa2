/**
 * callmood's public API: what a callbot or a training script needs, and nothing else.
 */

/** The error class every callmood failure uses, and its stable codes. */
export { CallmoodError, ErrorCodes, type ErrorCode } from './errors.js';

/** A decoded recording with its channels kept apart. */
export type { DecodedAudio } from './audio/types.js';
/** Read WAV, FLAC, AIFF, Ogg Opus or MP3 from a path or from bytes. */
export { readAudioFile, decodeAudio } from './audio/read.js';
/** Read a file and resample its channels to the feature rate. */
export { loadChannels, type LoadedChannels } from './audio/load.js';
/** Streaming resampler (any rate to any rate, chunked = whole) and its one-shot form. */
export { StreamingResampler, resample, resampledLength } from './audio/resample.js';
/** G.711 and PCM conversions, and the allocation-free decoder for Twilio's base64 μ-law payloads. */
export {
  MulawPayloadDecoder,
  decodeMulaw,
  decodeAlaw,
  encodeMulaw,
  encodeAlaw,
  decodePcm16le,
  encodePcm16le,
  TWILIO_FRAME_BYTES,
} from './audio/codecs.js';
/** The telephone channel simulator used for augmentation and `--channel telephone` evaluation. */
export { telephoneChannel, DEFAULT_TELEPHONE_OPTIONS, type TelephoneOptions } from './audio/telephone.js';

/** Feature configuration: the value a model carries so serving computes exactly its training features. */
export {
  DEFAULT_FEATURE_CONFIG,
  resolveFeatureConfig,
  featureConfigKey,
  featureDims,
  frameCount,
  type FeatureConfig,
} from './features/config.js';
/** The one MFCC / log-mel implementation: streaming, with batch as a whole clip pushed at once. */
export { StreamingFeatures, computeFeatures, type FeatureMatrix, type FrameCallback } from './features/mfcc.js';
