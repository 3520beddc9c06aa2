/**
 * Offline replay of recorded calls through the live emotion stream (replay.ts), over folders and worker threads
 * (run.ts), with a dry-run dialog policy (policy.ts). Reports are in src/report/.
 */
export {
  replayFile,
  replayAudio,
  loadReplayModel,
  resolveReplayOptions,
  sortEvents,
  DEFAULT_REPLAY_OPTIONS,
  type ReplayOptions,
  type ReplayResult,
  type ReplayModel,
  type EventObserver,
} from './replay.js';
export { runReplays, runJob, createContext, type ReplayJob, type JobOutcome, type RunSettings, type RunOptions } from './run.js';
export { parseChannelSpec, resolveChannels, DEFAULT_CHANNEL_SPEC, PARTY_TRACKS, type ChannelMap, type Party } from './channels.js';
export { replayIds } from './ids.js';
export { policyObserver, policyObserverFactory } from './policy.js';
export { encodeWav, type WavEncoding } from './wav.js';
