/**
 * What a model carries about its input: how its windows were cut and how their frames are normalised. Shared by
 * training (src/data), the model's metadata (src/model) and the live stream (src/stream).
 */
import type { FeatureConfig } from './config.js';

/** Per-coefficient statistics (Welford over speech frames). */
export interface FeatureStats {
  mean: number[];
  std: number[];
  /** Frames the statistics were computed over. */
  count: number;
}

/**
 * How frames are normalised before the model, carried in the model's metadata:
 * - `global`: (x − mean) / std with the training set's statistics;
 * - `adaptive`: per call (per speaker in training), with running statistics over the speech frames heard so far,
 *   starting from the global ones weighted as `priorFrames` frames, so it works live from the first window.
 */
export type NormalizationSpec =
  | { kind: 'global'; stats: FeatureStats }
  | { kind: 'adaptive'; stats: FeatureStats; priorFrames: number };

/** What the windows were built from, kept in the model's metadata. */
export interface WindowConfig {
  /** Frames per window (120 = 1.2 s at a 10 ms hop). */
  frames: number;
  /** Frames between window starts in training (the live stream has its own hop). */
  hop: number;
  /** A window is used only if at least this share of its frames is speech. */
  minSpeechRatio: number;
  feature: FeatureConfig;
}
