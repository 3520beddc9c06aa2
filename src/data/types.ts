/**
 * Shared shapes of the training data path: clips from a manifest, per-clip features, and the windows a model
 * trains on and the live stream feeds it.
 */
import type { FeatureConfig } from '../features/config.js';

/** The model's labels: the seed's seven, in this order (softmax index = position). */
export const EMOTION_LABELS = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'] as const;
/** One of the seven emotion labels. */
export type EmotionLabel = (typeof EMOTION_LABELS)[number];

/** One row of a manifest CSV (`path,corpus,speaker,gender,label,text,intensity,duration_s`). */
export interface ClipRecord {
  /** Absolute path of the audio file (the CSV holds it relative to the CSV's folder). */
  path: string;
  corpus: string;
  speaker: string;
  gender: string;
  /** The corpus label as written (may be one the model does not know, e.g. `calm`). */
  label: string;
  text: string;
  intensity: string;
  durationS: number;
  /**
   * A training copy played at this speed (speed perturbation, see `speedCopies`): tempo and pitch scaled together,
   * as if the recording ran `speed` times faster. Absent or 1: as recorded.
   */
  speed?: number;
}

/** Features of one clip, frame by frame, with the voice-activity decision per frame. */
export interface ClipFeatures {
  /** frames × dims, row-major, not normalised. */
  features: Float32Array;
  frames: number;
  dims: number;
  /** 1 where the frame is speech, per the SpeechGate. */
  speech: Uint8Array;
}

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

/** Windows ready for the model: n × frames × dims, row-major, normalised. */
export interface WindowSet {
  x: Float32Array;
  n: number;
  frames: number;
  dims: number;
  /** Label index per window (into `labels`). */
  y: Int32Array;
  labels: readonly string[];
  /** Clip index per window (into `clips`), to average window predictions per clip. */
  clip: Int32Array;
  clips: ClipRecord[];
}

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
