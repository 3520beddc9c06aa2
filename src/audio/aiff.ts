/**
 * AIFF and AIFF-C container parsing: finds the COMM and SSND chunks and says where the samples are and how they are
 * stored. Turning the bytes into floats is left to `read.ts`, which does it for WAV too.
 *
 * Sources: Apple, "Audio Interchange File Format: AIFF, version 1.3" (1989) and "AIFF-C" draft (1991); the
 * compression types are the four-character codes QuickTime and sox write.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { PcmLayout, SampleType } from './types.js';

/** What AIFF-C compression types we decode, for error messages. */
const AIFC_SUPPORTED = 'NONE/twos (big-endian PCM), sowt (little-endian PCM), raw (unsigned 8-bit), fl32/FL32, ' +
  'fl64/FL64, ulaw/ULAW, alaw/ALAW';

function corrupt(name: string, what: string): CallmoodError {
  return new CallmoodError(ErrorCodes.CORRUPT_FILE, `${name}: ${what}`);
}

function fourCC(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

/** Reads the IEEE 754 80-bit extended float AIFF stores its sample rate in (sign, 15-bit exponent, 64-bit mantissa
 * with an explicit integer bit). */
export function readExtended80(view: DataView, at: number): number {
  const signExp = view.getUint16(at, false);
  const hi = view.getUint32(at + 2, false);
  const lo = view.getUint32(at + 6, false);
  const exp = signExp & 0x7fff;
  if (exp === 0 && hi === 0 && lo === 0) return 0;
  if (exp === 0x7fff) return Number.NaN; // infinity or NaN: no valid rate
  const value = (hi * 2 ** 32 + lo) * 2 ** (exp - 16383 - 63);
  return signExp & 0x8000 ? -value : value;
}

/** Sample storage for one AIFF-C compression type and COMM sample size; null when we do not decode it. */
function sampleFormat(
  ctype: string,
  bits: number,
): { sample: SampleType; bytesPerSample: number; littleEndian: boolean; encoding: string } | null {
  const intBytes = Math.ceil(bits / 8);
  const int = (littleEndian: boolean) =>
    bits >= 1 && bits <= 32
      ? {
          sample: (['s8', 's16', 's24', 's32'] as const)[intBytes - 1],
          bytesPerSample: intBytes,
          littleEndian,
          encoding: `pcm${intBytes * 8}`,
        }
      : null;
  switch (ctype) {
    case 'NONE':
    case 'twos':
      return int(false);
    case 'sowt':
      return int(true);
    case 'raw ':
      return bits === 8 ? { sample: 'u8', bytesPerSample: 1, littleEndian: false, encoding: 'pcm8' } : null;
    case 'fl32':
    case 'FL32':
      return { sample: 'f32', bytesPerSample: 4, littleEndian: false, encoding: 'float32' };
    case 'fl64':
    case 'FL64':
      return { sample: 'f64', bytesPerSample: 8, littleEndian: false, encoding: 'float64' };
    // G.711: one byte per sample whatever COMM's sample size says (Apple writes 16, the decoded size).
    case 'ulaw':
    case 'ULAW':
      return { sample: 'mulaw', bytesPerSample: 1, littleEndian: false, encoding: 'mulaw' };
    case 'alaw':
    case 'ALAW':
      return { sample: 'alaw', bytesPerSample: 1, littleEndian: false, encoding: 'alaw' };
    default:
      return null;
  }
}

/**
 * Parses an AIFF or AIFF-C file (the caller has checked `FORM` … `AIFF`/`AIFC`) and returns where its samples are.
 * Throws CORRUPT_FILE when a chunk is cut short or COMM/SSND are missing or inconsistent, UNSUPPORTED_FORMAT for a
 * compression type or sample size we do not decode, EMPTY_AUDIO when COMM declares no sample frames.
 */
export function parseAiff(bytes: Uint8Array, name: string): PcmLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 12) throw corrupt(name, 'the AIFF header is cut short (fewer than 12 bytes)');
  const isAifc = fourCC(bytes, 8) === 'AIFC';

  let comm: { channels: number; frames: number; bits: number; rate: number; ctype: string } | undefined;
  let ssnd: { start: number; end: number } | undefined;
  let pos = 12;
  while (pos + 8 <= bytes.length && !(comm && ssnd)) {
    const id = fourCC(bytes, pos);
    const size = view.getUint32(pos + 4, false);
    const body = pos + 8;
    const end = body + size;
    if (id === 'COMM') {
      const minSize = isAifc ? 22 : 18;
      if (size < minSize) throw corrupt(name, `the AIFF COMM chunk is ${size} bytes, it needs at least ${minSize}`);
      if (end > bytes.length) throw corrupt(name, 'the AIFF COMM chunk is cut short: the file ends inside it');
      comm = {
        channels: view.getInt16(body, false),
        frames: view.getUint32(body + 2, false),
        bits: view.getInt16(body + 6, false),
        rate: readExtended80(view, body + 8),
        ctype: isAifc ? fourCC(bytes, body + 18) : 'NONE',
      };
    } else if (id === 'SSND') {
      if (size < 8) throw corrupt(name, `the AIFF SSND chunk is ${size} bytes, it needs at least 8`);
      if (end > bytes.length) {
        throw corrupt(
          name,
          `the AIFF SSND chunk declares ${size} bytes but only ${bytes.length - body} remain: the file was cut short`,
        );
      }
      const offset = view.getUint32(body, false);
      ssnd = { start: body + 8 + offset, end };
      if (ssnd.start > end) throw corrupt(name, `the AIFF SSND data offset ${offset} points past the chunk's end`);
    }
    pos = end + (size & 1); // chunks are padded to an even length
  }
  if (!comm) throw corrupt(name, 'the AIFF file has no COMM chunk (or the file ends before it)');

  const format = sampleFormat(comm.ctype, comm.bits);
  if (!format) {
    const what = isAifc
      ? `AIFF-C compression "${comm.ctype}" with ${comm.bits}-bit samples is not supported; supported: ${AIFC_SUPPORTED}`
      : `AIFF with ${comm.bits}-bit samples is not supported; supported: 8, 16, 24 and 32-bit PCM`;
    throw new CallmoodError(ErrorCodes.UNSUPPORTED_FORMAT, `${name}: ${what}`);
  }
  if (comm.channels < 1) throw corrupt(name, `the AIFF COMM chunk declares ${comm.channels} channels`);
  if (!(comm.rate > 0 && Number.isFinite(comm.rate))) {
    throw corrupt(name, `the AIFF COMM chunk declares a sample rate of ${comm.rate}`);
  }
  if (comm.frames === 0) {
    throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, `${name}: the AIFF file holds no samples (COMM declares 0 frames)`);
  }
  if (!ssnd) throw corrupt(name, 'the AIFF file has no SSND (sound data) chunk (or the file ends before it)');

  const blockAlign = comm.channels * format.bytesPerSample;
  const needed = comm.frames * blockAlign;
  const available = ssnd.end - ssnd.start;
  if (needed > available) {
    throw corrupt(
      name,
      `the AIFF COMM chunk declares ${comm.frames} frames (${needed} bytes) but the SSND chunk holds ${available} bytes`,
    );
  }
  return {
    sampleRate: comm.rate,
    channels: comm.channels,
    frames: comm.frames,
    offset: ssnd.start,
    blockAlign,
    ...format,
  };
}
