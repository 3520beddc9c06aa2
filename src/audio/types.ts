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

/** How one sample is stored. `u8` is offset binary (WAV 8-bit); `s*` are two's complement. */
export type SampleType = 'u8' | 's8' | 's16' | 's24' | 's32' | 'f32' | 'f64' | 'mulaw' | 'alaw';

/** Where a container's interleaved samples are and how they are stored; made by the WAV and AIFF parsers. */
export interface PcmLayout {
  sampleRate: number;
  channels: number;
  /** Sample frames (one sample per channel each). */
  frames: number;
  /** Byte offset of the first sample in the file. */
  offset: number;
  /** Bytes per frame. */
  blockAlign: number;
  sample: SampleType;
  bytesPerSample: number;
  littleEndian: boolean;
  /** The `DecodedAudio.encoding` label, e.g. `pcm16`. */
  encoding: string;
}
