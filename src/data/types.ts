/**
 * Shapes of the training data path: clips from a manifest, per-clip features, and the windows a model trains on.
 * The labels are in src/labels.ts and the window and normalisation settings a model carries in
 * src/features/types.ts, so the live path does not depend on this module.
 */

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
