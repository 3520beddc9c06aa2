import { CallmoodError, ErrorCodes } from '../errors.js';
import { readAudioFile, type ReadOptions } from './read.js';
import { resample } from './resample.js';
import type { DecodedAudio } from './types.js';

/** A file's channels at the rate the features need, each channel still separate. */
export interface LoadedChannels {
  source: DecodedAudio;
  sampleRate: number;
  channels: Float32Array[];
}

/**
 * Reads an audio file and resamples every channel to `sampleRate` (a no-op when the file is already at it).
 * `channel`: a 0-based channel index, or 'all'. `options.raw`: the layout of a headerless G.711 file.
 */
export async function loadChannels(path: string, sampleRate: number, channel: number | 'all' = 'all', options: ReadOptions = {}): Promise<LoadedChannels> {
  const source = await readAudioFile(path, options);
  const count = source.channels.length;
  if (channel !== 'all' && !(Number.isInteger(channel) && channel >= 0 && channel < count)) {
    throw new CallmoodError(
      ErrorCodes.UNSUPPORTED_CHANNELS,
      `${path}: channel ${channel} does not exist; the file has ${count} channel(s): 0–${count - 1} or 'all'`,
    );
  }
  const picked = channel === 'all' ? source.channels : [source.channels[channel]];
  const channels = picked.map((c) => (source.sampleRate === sampleRate ? c : resample(c, source.sampleRate, sampleRate)));
  return { source, sampleRate, channels };
}
