/**
 * G.711 (μ-law, A-law) and 16-bit PCM conversions. The tables are built once from `alawmulaw`, the reference
 * implementation, so a live call decodes its 160-byte frames with one table look-up per sample and no allocation.
 */
import alawmulaw from 'alawmulaw';
import { CallmoodError, ErrorCodes } from '../errors.js';

const { mulaw, alaw } = alawmulaw;

function decodeTable(decodeSample: (b: number) => number): Float32Array {
  const table = new Float32Array(256);
  // + 0 turns the -0 that alawmulaw returns for one μ-law code into 0.
  for (let b = 0; b < 256; b++) table[b] = decodeSample(b) / 32768 + 0;
  return table;
}

/** μ-law byte → float sample in [-1, 1] (G.711 value / 32768). */
export const MULAW_TO_FLOAT: Float32Array = decodeTable(mulaw.decodeSample);
/** A-law byte → float sample in [-1, 1] (G.711 value / 32768). */
export const ALAW_TO_FLOAT: Float32Array = decodeTable(alaw.decodeSample);

let mulawEncodeTable: Uint8Array | undefined;
let alawEncodeTable: Uint8Array | undefined;

function encodeTable(encodeSample: (s: number) => number): Uint8Array {
  // One entry per 16-bit value: 64 KiB, built on first use, so encoding is a clamp, a round and a look-up.
  const table = new Uint8Array(65536);
  for (let s = -32768; s < 32768; s++) table[s + 32768] = encodeSample(s) & 0xff;
  return table;
}

function toInt16Index(v: number): number {
  const s = Math.round(v * 32768);
  return (s < -32768 ? -32768 : s > 32767 ? 32767 : s) + 32768;
}

/** Decodes G.711 bytes through a 256-entry table into `out` (which must be at least as long) from `offset`. */
export function decodeG711Into(bytes: Uint8Array, table: Float32Array, out: Float32Array, offset = 0): void {
  if (out.length - offset < bytes.length) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `output has room for ${out.length - offset} samples, ${bytes.length} are needed`,
    );
  }
  for (let i = 0; i < bytes.length; i++) out[offset + i] = table[bytes[i]];
}

/** μ-law bytes → new Float32Array. */
export function decodeMulaw(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  decodeG711Into(bytes, MULAW_TO_FLOAT, out);
  return out;
}

/** A-law bytes → new Float32Array. */
export function decodeAlaw(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  decodeG711Into(bytes, ALAW_TO_FLOAT, out);
  return out;
}

/** Float samples (clipped to [-1, 1)) → μ-law bytes, written into `out` if given. */
export function encodeMulaw(samples: Float32Array, out: Uint8Array = new Uint8Array(samples.length)): Uint8Array {
  const table = (mulawEncodeTable ??= encodeTable(mulaw.encodeSample));
  for (let i = 0; i < samples.length; i++) out[i] = table[toInt16Index(samples[i])];
  return out;
}

/** Float samples (clipped to [-1, 1)) → A-law bytes, written into `out` if given. */
export function encodeAlaw(samples: Float32Array, out: Uint8Array = new Uint8Array(samples.length)): Uint8Array {
  const table = (alawEncodeTable ??= encodeTable(alaw.encodeSample));
  for (let i = 0; i < samples.length; i++) out[i] = table[toInt16Index(samples[i])];
  return out;
}

/** Little-endian signed 16-bit PCM bytes → floats in [-1, 1). An odd byte count is an error, never truncated. */
export function decodePcm16le(bytes: Uint8Array): Float32Array {
  if (bytes.length % 2 !== 0) {
    throw new CallmoodError(
      ErrorCodes.INVALID_AUDIO,
      `16-bit PCM needs an even number of bytes, got ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return out;
}

/** Floats (clipped to [-1, 1)) → little-endian signed 16-bit PCM bytes. */
export function encodePcm16le(samples: Float32Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(2 * i, toInt16Index(samples[i]) - 32768, true);
  return out;
}

/** Twilio sends 20 ms of 8 kHz μ-law per `media` message: 160 bytes. */
export const TWILIO_FRAME_BYTES = 160;

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes base64 μ-law payloads (Twilio `media.payload`) without allocating: the bytes land in a scratch buffer
 * and the samples in a reused Float32Array. Node's base64 decoder silently skips bad characters, so the payload is
 * checked first: garbage must be an error, not quiet noise in the caller's audio.
 */
export class MulawPayloadDecoder {
  private readonly bytes: Buffer;
  private readonly samples: Float32Array;

  /** `maxBytes`: the largest payload accepted (decoded bytes); Twilio sends 160. */
  constructor(readonly maxBytes = 8 * TWILIO_FRAME_BYTES) {
    this.bytes = Buffer.allocUnsafe(maxBytes);
    this.samples = new Float32Array(maxBytes);
  }

  /** Returns a view of the decoded samples, valid until the next call. */
  decode(payload: string): Float32Array {
    if (typeof payload !== 'string' || payload.length === 0) {
      throw new CallmoodError(ErrorCodes.INVALID_AUDIO, 'media payload is empty or not a string; expected base64 μ-law');
    }
    const maxChars = Math.ceil(this.maxBytes / 3) * 4;
    if (payload.length > maxChars) {
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        `media payload of ${payload.length} base64 characters exceeds the limit of ${maxChars} (${this.maxBytes} bytes)`,
      );
    }
    if (!BASE64_RE.test(payload)) {
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        'media payload is not valid base64 (allowed: A-Z a-z 0-9 + /, length a multiple of 4, = padding)',
      );
    }
    const n = this.bytes.write(payload, 0, 'base64');
    const out = this.samples.subarray(0, n);
    for (let i = 0; i < n; i++) out[i] = MULAW_TO_FLOAT[this.bytes[i]];
    return out;
  }
}
