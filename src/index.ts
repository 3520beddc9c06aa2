/**
 * callmood's public API: what a callbot or a training script needs, and nothing else.
 */

/** The error class every callmood failure uses, and its stable codes. */
export { CallmoodError, ErrorCodes, type ErrorCode } from './errors.js';

/** A decoded recording with its channels kept apart. */
export type { DecodedAudio } from './audio/types.js';
/** Read WAV, FLAC, AIFF, Ogg Opus or MP3 from a path or from bytes. */
export { readAudioFile, decodeAudio, openAudioFile, openAudio, audioSource, type AudioSource } from './audio/read.js';
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
  NARROWBAND_FEATURE_CONFIG,
  resolveFeatureConfig,
  featureConfigKey,
  featureDims,
  frameCount,
  type FeatureConfig,
} from './features/config.js';
/** The one MFCC / log-mel implementation: streaming, with batch as a whole clip pushed at once. */
export { StreamingFeatures, computeFeatures, type FeatureMatrix, type FrameCallback } from './features/mfcc.js';

/** Voice-activity gate over feature frames, shared by training and the live stream. */
export { SpeechGate, speechMask, DEFAULT_SPEECH_GATE_OPTIONS, type SpeechGateOptions } from './features/vad.js';
/** Global and per-call adaptive normalisation of feature frames. */
export { FrameNormalizer, Welford } from './features/normalize.js';

/** The seven labels, and the shapes of clips, windows and normalisation. */
export { EMOTION_LABELS, type EmotionLabel } from './labels.js';
export type { FeatureStats, NormalizationSpec, WindowConfig } from './features/types.js';
export type { ClipRecord, ClipFeatures, WindowSet } from './data/types.js';
/** Labelled corpora: manifests, features per clip (cached, augmented), windows. */
export { readManifest, type ManifestFilter } from './data/manifest.js';
export { extractClipFeatures, fitGlobalStats, makeWindows, type AugmentOptions } from './data/dataset.js';

/** The TF.js backend: tfjs-node if it loads, else wasm, else cpu. */
export { initBackend, type BackendInfo, type BackendName } from './model/backend.js';
/** Models: architectures, saving and loading a model directory with its metadata, prediction. */
export { buildModel, ARCHITECTURES, type Arch } from './model/architectures.js';
export { loadModel, saveModel, readMetadata, type ModelMetadata, type LoadedModel } from './model/io.js';
export { predictWindows, clipProbabilities } from './model/predict.js';
export { trainModel, type EpochInfo, type TrainOptions } from './model/train.js';
/** Training and evaluation from a manifest, as `callmood train` / `callmood evaluate` run them. */
export { trainFromManifest, evaluateModel, type EvaluationReport } from './model/pipeline.js';
/** Metrics: accuracy, balanced accuracy, per class, confusion, anger AUC and recall at 5% false positives. */
export { evaluatePredictions, formatEvaluationTable, type EvaluationResult } from './model/metrics.js';

/** Events, the per-track emotion stream, the shared micro-batched model. */
export * from './stream/events.js';
export { EmotionTrack, modelProfile, DEFAULT_EMOTION_STREAM_OPTIONS, type EmotionStreamOptions, type ModelProfile } from './stream/track.js';
export { MicroBatcher, type InferenceEngine, type BatcherOptions } from './stream/batcher.js';
export { WorkerEngine, InProcessEngine } from './stream/engine.js';
/** Twilio Media Streams: message parsing and the per-stream session. */
export { parseTwilioMessage, type TwilioMessage } from './telephony/protocol.js';
export { MediaSession, type SessionOptions, type TrackSink } from './telephony/session.js';
/** The server: Twilio webhooks, the media WebSocket, the event feed, health and metrics; one shared model. */
export { createCallmood, CallmoodServer, type CallmoodEventMap, type CallmoodRuntime } from './telephony/server.js';
/** Logging: pass your pino (or pino-compatible) logger, or a `(level, code, message, fields)` function, as `runtime.logger`. */
export type { Logger, LoggerInput, LogLevel, LogFields, PinoLikeLogger } from './util/log.js';
export { resolveOptions, DEFAULT_OPTIONS, type CallmoodOptions, type CallmoodOptionsInput, type PolicySettings, type ControlSettings } from './config/options.js';
/** The dialog policy: rules (validated), the pure engine that decides in call time, the runtime that acts; the shipped rules. */
export {
  DEFAULT_POLICY,
  PolicyEngine,
  PolicyRuntime,
  parsePolicy,
  loadPolicyFile,
  type PolicyConfig,
  type PolicyRule,
  type RuleAction,
  type RuleConditions,
  type ActionHandler,
} from './policy/index.js';
/** Call control through Twilio's REST API (escalate, end the call), with retries; 20404 = the call is already over. */
export { CallControl, escalationTwiml, goodbyeTwiml, type CallUpdate, type ControlResult } from './telephony/control.js';
export { loadConfigFile } from './config/load.js';
/** A Twilio-like client: stream a recording to a callmood server and follow its events. */
export { simulateCall, followEvents, type SimulatedCall } from './telephony/simulator.js';
/** CRM webhooks: durable outbox, signed at-least-once delivery in order per call, dead letters; the receiver's signature check. */
export * from './sinks/index.js';
/** Offline replay of recorded calls through the live emotion stream and a dry-run policy; folders over worker threads. */
export * from './replay/index.js';
