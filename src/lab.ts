/**
 * callmood's lab entry point (`callmood/lab`): training, datasets, features, evaluation and the lower-level pieces of
 * the live path (codecs, the Twilio session, call control, the webhook sink), for scripts and experiments. Less stable
 * than the main entry point (src/index.ts), which an embedding callbot should use.
 *
 * @packageDocumentation
 */

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
/** Streaming resampler (any rate to any rate, chunked = whole) and its one-shot form. */
export { StreamingResampler, resample, resampledLength } from './audio/resample.js';
/** The telephone channel simulator used for augmentation and `--channel telephone` evaluation. */
export { telephoneChannel, DEFAULT_TELEPHONE_OPTIONS, type TelephoneOptions } from './audio/telephone.js';

/** Feature configurations: the value a model carries so serving computes exactly its training features. */
export { DEFAULT_FEATURE_CONFIG, NARROWBAND_FEATURE_CONFIG, resolveFeatureConfig, featureConfigKey, featureDims, frameCount } from './features/config.js';
/** The one MFCC / log-mel implementation: streaming, with batch as a whole clip pushed at once. */
export { StreamingFeatures, computeFeatures, type FeatureMatrix, type FrameCallback } from './features/mfcc.js';
/** Voice-activity gate over feature frames, shared by training and the live stream. */
export { SpeechGate, speechMask, DEFAULT_SPEECH_GATE_OPTIONS, type SpeechGateOptions } from './features/vad.js';
/** Global and per-call adaptive normalisation of feature frames. */
export { FrameNormalizer, Welford } from './features/normalize.js';

/** The shapes of the training data: manifest rows, per-clip features, windows. */
export type { ClipRecord, ClipFeatures, WindowSet } from './data/types.js';
/** Reading a labelled corpus's manifest. */
export { readManifest, type ManifestFilter } from './data/manifest.js';
/** Features per clip (cached, augmented), the training set's statistics, and windows. */
export { extractClipFeatures, fitGlobalStats, makeWindows, type AugmentOptions } from './data/dataset.js';

/** Model architectures. */
export { buildModel, ARCHITECTURES, type Arch } from './model/architectures.js';
/** Saving a model directory with its metadata. */
export { saveModel } from './model/io.js';
/** Prediction over a window set, and per-clip averages. */
export { predictWindows, clipProbabilities } from './model/predict.js';
/** Training on window sets. */
export { trainModel, type EpochInfo, type TrainOptions } from './model/train.js';
/** Training and evaluation from a manifest, as `callmood train` / `callmood evaluate` run them. */
export { trainFromManifest, evaluateModel, type EvaluationReport } from './model/pipeline.js';
/** Metrics: accuracy, balanced accuracy, per class, confusion, anger AUC and recall at 5% false positives. */
export { evaluatePredictions, formatEvaluationTable, type EvaluationResult } from './model/metrics.js';

/** Media-stream transports: Twilio Media Streams and Telnyx media streaming, one interface. */
export { parseTwilioMessage, twilioTransport, type TwilioMessage } from './telephony/transports/twilio.js';
export { parseTelnyxMessage, telnyxTransport } from './telephony/transports/telnyx.js';
export type { MediaTransport, InboundMessage, UpgradeCheck, UpgradeContext } from './telephony/transports/types.js';
/** The per-stream session the server runs for each call. */
export { MediaSession, type SessionOptions, type TrackSink } from './telephony/session.js';
/** Call control through Twilio's REST API (escalate, end the call), with retries; 20404 = the call is already over. */
export { CallControl, escalationTwiml, goodbyeTwiml, type CallUpdate } from './telephony/control.js';
/** Call control through Telnyx Call Control (transfer, speak, hangup), with the same retries; 90018 = the call is already over. */
export { TelnyxCallControl, speechMs } from './telephony/transports/telnyx-control.js';
/** Picks Twilio's or Telnyx's controller per call, by the media path the call came over. */
export { RoutingCallController, type ControlProvider } from './telephony/call-routing.js';
/** The runtime that carries the policy's decisions out (the server builds one per call). */
export { PolicyRuntime } from './policy/index.js';

/** Many-node mode's event bus (one Redis Stream shared by every node). */
export { RedisEventBus, makeNodeId, type BusStats, type BusState } from './cluster/event-bus.js';
/** The CRM webhook sinks: outbox on disk or in Redis, signed at-least-once delivery in order per call, dead letters. */
export { createWebhookSink, RedisWebhookSink, partitionOf, type WebhookDelivery, type RedisEndpointStats } from './sinks/index.js';
export {
  WebhookSink,
  parseRetryAfter,
  signWebhook,
  type WebhookSinkEvents,
  type WebhookSinkRuntime,
  type EndpointStats,
  type DeliveredInfo,
  type AttemptFailedInfo,
} from './sinks/index.js';
/** Webhook option validation and routing. */
export { resolveWebhookOptions, rejectWebhookSecrets, routeMatcher, DEFAULT_WEBHOOK_ENDPOINT, WEBHOOK_ROUTES, ACTION_KINDS } from './config/webhook-options.js';
/** Outbox inspection and dead-letter retry (what `callmood webhooks status | retry` run). */
export {
  loadWebhookConfig,
  webhookStatus,
  retryDeadLetters,
  readDeadLetters,
  countOutbox,
  type RetrySummary,
  type RetryOptions,
  type DeadLetter,
  type OutboxCounts,
} from './sinks/index.js';

/** Replay internals: option resolution, event order, ids, one job of a run, WAV writing, channel resolution. */
export {
  resolveReplayOptions,
  sortEvents,
  replayIds,
  runJob,
  createContext,
  encodeWav,
  resolveChannels,
  PARTY_TRACKS,
  type WavEncoding,
} from './replay/index.js';
