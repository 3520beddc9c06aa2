/**
 * A minimal WAV writer for recordings as telephony systems store them: 8-bit μ-law (format 7, what Twilio records
 * and streams) or 16-bit PCM, one or more channels. The benchmark and the tests make call recordings with it.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { encodeMulaw, encodePcm16le } from '../audio/codecs.js';

/** WAV sample encodings this writer makes. */
export type WavEncoding = 'mulaw' | 'pcm16';

/** Interleaves `channels` (all the same length) into a WAV file's bytes. */
export function encodeWav(channels: Float32Array[], sampleRate: number, encoding: WavEncoding): Uint8Array {
  const n = channels[0]?.length ?? 0;
  if (channels.length === 0 || channels.some((c) => c.length !== n)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `encodeWav: needs at least one channel, all of the same length (got ${channels.map((c) => c.length).join(', ') || 'none'})`);
  }
  if (!(Number.isInteger(sampleRate) && sampleRate > 0)) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `encodeWav: sampleRate is ${sampleRate}; allowed: a positive integer`);
  const bytesPer = encoding === 'mulaw' ? 1 : 2;
  const k = channels.length;
  const coded = channels.map((c) => (encoding === 'mulaw' ? encodeMulaw(c) : encodePcm16le(c)));
  const dataBytes = n * k * bytesPer;
  // μ-law needs the 18-byte fmt chunk (cbSize) and a fact chunk, as the WAV spec asks of non-PCM formats.
  const fmtSize = encoding === 'mulaw' ? 18 : 16;
  const factSize = encoding === 'mulaw' ? 12 : 0;
  const out = new Uint8Array(12 + 8 + fmtSize + factSize + 8 + dataBytes + (dataBytes % 2));
  const v = new DataView(out.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  v.setUint32(4, out.length - 8, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  v.setUint32(16, fmtSize, true);
  v.setUint16(20, encoding === 'mulaw' ? 7 : 1, true);
  v.setUint16(22, k, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * k * bytesPer, true);
  v.setUint16(32, k * bytesPer, true);
  v.setUint16(34, bytesPer * 8, true);
  let at = 36;
  if (encoding === 'mulaw') {
    v.setUint16(at, 0, true);
    at += 2;
    ascii(at, 'fact');
    v.setUint32(at + 4, 4, true);
    v.setUint32(at + 8, n, true);
    at += 12;
  }
  ascii(at, 'data');
  v.setUint32(at + 4, dataBytes, true);
  at += 8;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      const src = coded[c];
      if (bytesPer === 1) out[at++] = src[i];
      else {
        out[at++] = src[2 * i];
        out[at++] = src[2 * i + 1];
      }
    }
  }
  return out;
}
