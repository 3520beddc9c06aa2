/** A decoded recording: one Float32Array per channel, samples in [-1, 1], channels kept apart. */
export interface DecodedAudio {
  /** Samples per second of every channel. */
  sampleRate: number;
  /** One array per channel, all the same length; for stereo call recordings usually caller and agent. */
  channels: Float32Array[];
  /** Container the bytes were in; `raw` for headerless G.711. */
  container: 'wav' | 'flac' | 'aiff' | 'ogg-opus' | 'mp3' | 'raw';
  /** Sample encoding inside the container, e.g. `pcm16`, `pcm24`, `float32`, `mulaw`, `alaw`, `opus`, `mp3`. */
  encoding: string;
  /** Length in seconds. */
  durationS: number;
}
