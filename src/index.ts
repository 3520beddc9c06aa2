/**
 * callmood's public API: what a callbot needs to embed the live emotion stream, react to it, and replay recorded
 * calls. Training, datasets, features and other internals are in the `callmood/lab` entry point (src/lab.ts).
 *
 * @packageDocumentation
 */

/** The error class every callmood failure uses. */
export { CallmoodError } from './errors.js';
/** The stable error codes (`err.code`), and their type. */
export { ErrorCodes, type ErrorCode } from './errors.js';

/** The server: Twilio webhooks, the media WebSocket, the event feed, health and metrics; one shared model. */
export { createCallmood } from './telephony/server.js';
/** The running server, its typed events, and what it is given at run time (logger, action handlers, clock). */
export { CallmoodServer, type CallmoodEventMap, type CallmoodRuntime } from './telephony/server.js';
/** Attaching the server to your own HTTP server, and what its health and metrics endpoints report. */
export type { AttachOptions, CallmoodHandler, CallmoodHealth } from './telephony/server.js';
/** The server's Prometheus metrics. */
export type { CallmoodMetrics } from './telephony/metrics.js';
/** Logging: pass your pino (or pino-compatible) logger, or a `(level, code, message, fields)` function, as `runtime.logger`. */
export type { Logger, LoggerInput, LogLevel, LogFields, PinoLikeLogger } from './util/log.js';

/** The server's options: defaults, validation and the shape of a config file. */
export { resolveOptions, DEFAULT_OPTIONS, type CallmoodOptions, type CallmoodOptionsInput, type PolicySettings, type ControlSettings } from './config/options.js';
/** The server's option groups. */
export type { BatchSettings, FeedSettings, PathOptions, RedisSettings, SessionLimits, StreamSettings, TwimlOptions } from './config/options.js';
/** Reads a JSON config file (as `callmood serve --config` does), with errors that name the file and field. */
export { loadConfigFile } from './config/load.js';
/** The `webhooks` option group: CRM endpoints, routes, retries. */
export {
  DEFAULT_WEBHOOK_OPTIONS,
  type WebhookOptions,
  type WebhookOptionsInput,
  type WebhookEndpointOptions,
  type WebhookEndpointInput,
  type BackoffOptions,
} from './config/webhook-options.js';

/** Events: what the server emits per call and track (emotion, speech, actions, call end), and their types. */
export * from './stream/events.js';
/** The seven emotion labels, in the model's order. */
export { EMOTION_LABELS, type EmotionLabel } from './labels.js';

/** The dialog policy: rules (validated), the pure engine that decides in call time, the shipped rules. */
export {
  DEFAULT_POLICY,
  PolicyEngine,
  parsePolicy,
  loadPolicyFile,
  type PolicyEngineOptions,
  type PolicyConfig,
  type PolicyRule,
  type RuleAction,
  type RuleConditions,
} from './policy/index.js';
/** The conditions a rule can test. */
export type { EmotionCondition, TrendCondition, ParameterCondition, NegativeShareCondition } from './policy/config.js';
/** A custom action handler (`runtime.actionHandlers` or `server.onAction`): called with each decided action. */
export type { ActionHandler } from './policy/index.js';
/** What carries out the policy's `escalate` and `end_call`: give your own as `runtime.callControl` (another carrier's API). */
export type { CallController, ControlResult, EscalationTarget } from './policy/index.js';

/** On the CRM's side: the body a webhook carries, and checking its signature. */
export { verifyWebhookSignature, SIGNATURE_HEADER, EVENT_ID_HEADER, type WebhookVerification, type VerifyOptions, type WebhookBody } from './sinks/index.js';

/** Offline replay of a recording through the live emotion stream and a dry-run policy. */
export {
  replayFile,
  replayAudio,
  loadReplayModel,
  DEFAULT_REPLAY_OPTIONS,
  type ReplayOptions,
  type ReplayResult,
  type ReplayModel,
  type EventObserver,
} from './replay/index.js';
/** Replay of many files over worker threads, with reports, as `callmood replay` runs it. */
export { runReplays, type RunSettings, type RunOptions, type ReplayJob, type JobOutcome } from './replay/index.js';
/** The dry-run policy a replay runs, and which channel of a recording is the caller. */
export { policyObserver, policyObserverFactory, parseChannelSpec, DEFAULT_CHANNEL_SPEC, type ChannelMap, type Party } from './replay/index.js';

/** A Twilio-like client: stream a recording to a callmood server and follow its events. */
export { simulateCall, followEvents, type SimulatedCall, type SimulateOptions, type SimulateResult } from './telephony/simulator.js';

/** Reads WAV, FLAC, AIFF, Ogg Opus or MP3 from a path or from bytes, channels kept apart. */
export { readAudioFile, decodeAudio, openAudioFile, openAudio, audioSource, type AudioSource, type ReadOptions, type RawAudioOptions } from './audio/read.js';
/** A decoded recording: one Float32Array per channel. */
export type { DecodedAudio } from './audio/types.js';
/** Reads a file and resamples its channels to a model's feature rate. */
export { loadChannels, type LoadedChannels } from './audio/load.js';

/** The TF.js backend: tfjs-node if it loads, else wasm, else cpu. */
export { initBackend, type BackendInfo, type BackendName, type BackendOptions, type Tf } from './model/backend.js';
/** Loading a model directory and reading its metadata. */
export { loadModel, readMetadata, type ModelMetadata, type LoadedModel, type LoadOptions, type TrainingMetadata } from './model/io.js';
/** What a model's metadata says about its input (feature, window and normalisation settings). */
export type { FeatureConfig } from './features/config.js';
/** The window and normalisation settings a model carries. */
export type { WindowConfig, NormalizationSpec, FeatureStats } from './features/types.js';
/** The emotion stream of one track, fed audio, scoring windows through a shared engine (what the server runs per call). */
export { EmotionTrack, modelProfile, DEFAULT_EMOTION_STREAM_OPTIONS, type EmotionStreamOptions, type ModelProfile, type InferFn } from './stream/track.js';
/** The shared micro-batcher in front of the model. */
export { MicroBatcher, type InferenceEngine, type BatcherOptions } from './stream/batcher.js';
/** The model behind the batcher: in a worker thread, or in this thread. */
export { WorkerEngine, InProcessEngine, type WorkerEngineOptions, type EngineHealth } from './stream/engine.js';
