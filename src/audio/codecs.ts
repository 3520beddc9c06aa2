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

/** Base64 alphabet value of each ASCII code (standard alphabet only: Node would also take '-' and '_'), −1 if none. */
const BASE64_VALUE: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  return t;
})();
const PAD = 61; // '='

const notBase64 = () =>
  new CallmoodError(ErrorCodes.INVALID_AUDIO, 'media payload is not valid base64 (allowed: A-Z a-z 0-9 + /, length a multiple of 4, = padding)');

/**
 * Decodes base64 μ-law payloads (Twilio `media.payload`) without allocating: one pass checks each character,
 * assembles the bytes and looks each one up in the μ-law table, into a reused Float32Array (it replaced a regular
 * expression, Buffer.write and a table loop: bench/media-path.ts). Node's own base64 decoder silently skips bad
 * characters; here garbage is an error, not quiet noise in the caller's audio.
 */
export class MulawPayloadDecoder {
  private readonly samples: Float32Array;

  /**
   * `maxBytes`: the largest payload accepted (decoded bytes); Twilio sends 160. `table` decodes each byte
   * (MULAW_TO_FLOAT, or ALAW_TO_FLOAT for A-law streams) and `codec` names it in errors.
   */
  constructor(
    readonly maxBytes = 8 * TWILIO_FRAME_BYTES,
    private readonly table: Float32Array = MULAW_TO_FLOAT,
    private readonly codec = 'μ-law',
  ) {
    this.samples = new Float32Array(maxBytes);
  }

  /** Returns a view of the decoded samples, valid until the next call. */
  decode(payload: string): Float32Array {
    if (typeof payload !== 'string' || payload.length === 0) {
      throw new CallmoodError(ErrorCodes.INVALID_AUDIO, `media payload is empty or not a string; expected base64 ${this.codec}`);
    }
    const len = payload.length;
    const maxChars = Math.ceil(this.maxBytes / 3) * 4;
    if (len > maxChars) {
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        `media payload of ${len} base64 characters exceeds the limit of ${maxChars} (${this.maxBytes} bytes)`,
      );
    }
    if ((len & 3) !== 0) throw notBase64();
    const pads = payload.charCodeAt(len - 1) !== PAD ? 0 : payload.charCodeAt(len - 2) === PAD ? 2 : 1;
    const n = (len / 4) * 3 - pads;
    if (n > this.maxBytes) {
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        `media payload of ${len} base64 characters (${n} bytes) exceeds the limit of ${this.maxBytes} bytes`,
      );
    }
    const out = this.samples;
    const table = this.table;
    const full = len - (pads > 0 ? 4 : 0);
    let o = 0;
    let bad = 0;
    for (let i = 0; i < full; i += 4) {
      const c0 = payload.charCodeAt(i);
      const c1 = payload.charCodeAt(i + 1);
      const c2 = payload.charCodeAt(i + 2);
      const c3 = payload.charCodeAt(i + 3);
      // Codes over 127 index past the table (undefined | 0 = 0): caught by the range check.
      bad |= c0 | c1 | c2 | c3;
      const v0 = BASE64_VALUE[c0 & 127];
      const v1 = BASE64_VALUE[c1 & 127];
      const v2 = BASE64_VALUE[c2 & 127];
      const v3 = BASE64_VALUE[c3 & 127];
      bad |= (v0 | v1 | v2 | v3) & 0x80;
      const w = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
      out[o] = table[(w >> 16) & 255];
      out[o + 1] = table[(w >> 8) & 255];
      out[o + 2] = table[w & 255];
      o += 3;
    }
    if (pads > 0) {
      // The last group: XX== (one byte) or XXX= (two).
      const v0 = BASE64_VALUE[payload.charCodeAt(full) & 127];
      const v1 = BASE64_VALUE[payload.charCodeAt(full + 1) & 127];
      const c2 = payload.charCodeAt(full + 2);
      const v2 = pads === 1 ? BASE64_VALUE[c2 & 127] : 0;
      bad |= payload.charCodeAt(full) | payload.charCodeAt(full + 1) | (pads === 1 ? c2 : 0);
      bad |= (v0 | v1 | v2) & 0x80;
      const w = (v0 << 18) | (v1 << 12) | (v2 << 6);
      out[o++] = table[(w >> 16) & 255];
      if (pads === 1) out[o++] = table[(w >> 8) & 255];
    }
    // A character code of 128 or more sets a bit above 127; a character outside the alphabet, the sign bit of its value.
    if ((bad & ~127) !== 0) throw notBase64();
    return out.subarray(0, n);
  }
}
