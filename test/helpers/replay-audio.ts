/**
 * Call recordings for the replay tests, made from the committed clips in test/fixtures/audio: 8 kHz μ-law as Twilio
 * stores them, or PCM at another rate, mono or dual-channel.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadChannels } from '../../src/audio/load.js';
import { decodeMulaw, encodeMulaw } from '../../src/audio/codecs.js';
import { encodeWav, type WavEncoding } from '../../src/replay/wav.js';
import type { CallmoodEvent } from '../../src/stream/events.js';

export const AUDIO = fileURLToPath(new URL('../fixtures/audio/', import.meta.url));

/**
 * A fixture clip as a phone line carries it: 8 kHz, values exactly on the μ-law grid (so a μ-law WAV holds them
 * without loss), `seconds` long (cut, or padded with silence), a whole number of 20 ms frames.
 */
export async function phoneClip(file: string, seconds?: number): Promise<Float32Array> {
  const x = (await loadChannels(join(AUDIO, file), 8000, 0)).channels[0];
  const n = Math.floor((seconds === undefined ? x.length : seconds * 8000) / 160) * 160;
  const out = new Float32Array(n);
  out.set(x.subarray(0, n));
  return decodeMulaw(encodeMulaw(out));
}

/** Writes a WAV call recording (channels in order: left = caller, right = agent) and returns its path. */
export function writeCall(dir: string, name: string, channels: Float32Array[], rate = 8000, encoding: WavEncoding = 'mulaw'): string {
  const path = join(dir, name);
  writeFileSync(path, encodeWav(channels, rate, encoding));
  return path;
}

/** An event without its wall-clock fields (latencyMs, atMs), which no two runs share. */
export function withoutWallClock(e: CallmoodEvent): Record<string, unknown> {
  const { latencyMs: _l, atMs: _a, ...rest } = e as CallmoodEvent & { latencyMs?: number; atMs?: number };
  return rest;
}

/** A track's speech and emotion events, as content: no ids, no wall clock, no track name. */
export function trackContent(events: readonly CallmoodEvent[], track: 'inbound' | 'outbound'): Record<string, unknown>[] {
  return events
    .filter((e) => (e.type === 'emotion' || e.type === 'speech-start' || e.type === 'speech-end') && e.track === track)
    .map((e) => {
      const { callSid: _c, streamSid: _s, customParameters: _p, track: _t, ...rest } = withoutWallClock(e) as Record<string, unknown>;
      return rest;
    });
}
