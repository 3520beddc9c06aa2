/**
 * A disk cache of per-clip features and speech masks, so that decoding and featurising a corpus (minutes for the
 * shared data: Opus decodes slowly) happens once per configuration.
 *
 * One file per entry, `<dir>/<first two hex digits>/<sha-256 of the key>.cmf`:
 *   bytes 0–3   magic "CMF1"
 *   bytes 4–7   format version (uint32 LE)
 *   bytes 8–11  frames (uint32 LE)
 *   bytes 12–15 dims (uint32 LE)
 *   then frames × dims float32 LE (row-major features), then frames bytes (speech mask, 0/1).
 * An entry whose size or header does not match is a miss (and is overwritten). Writes go to a temporary file that
 * is renamed into place, so concurrent writers (worker threads, two training runs) never leave a torn entry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import type { ClipFeatures } from './types.js';

const MAGIC = 0x31464d43; // "CMF1" read as uint32 LE
const FORMAT_VERSION = 1;
const HEADER_BYTES = 16;

/** Serialises features + mask into the cache file layout. */
export function encodeClipFeatures(c: ClipFeatures): Uint8Array {
  const n = c.frames * c.dims;
  const out = new Uint8Array(HEADER_BYTES + 4 * n + c.frames);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  view.setUint32(8, c.frames, true);
  view.setUint32(12, c.dims, true);
  out.set(new Uint8Array(c.features.buffer, c.features.byteOffset, 4 * n), HEADER_BYTES);
  out.set(c.speech.subarray(0, c.frames), HEADER_BYTES + 4 * n);
  return out;
}

/** Parses a cache file; null when it is not a complete entry of this format. */
export function decodeClipFeatures(bytes: Uint8Array): ClipFeatures | null {
  if (bytes.length < HEADER_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(4, true) !== FORMAT_VERSION) return null;
  const frames = view.getUint32(8, true);
  const dims = view.getUint32(12, true);
  const n = frames * dims;
  if (bytes.length !== HEADER_BYTES + 4 * n + frames) return null;
  // Copy into fresh, aligned arrays (a file buffer's offset need not be a multiple of 4).
  const features = new Float32Array(n);
  new Uint8Array(features.buffer).set(bytes.subarray(HEADER_BYTES, HEADER_BYTES + 4 * n));
  const speech = new Uint8Array(bytes.subarray(HEADER_BYTES + 4 * n)); // a plain copy, even from a Buffer
  return { features, frames, dims, speech };
}

/** The cache key (hex sha-256) of any JSON-serialisable description of how an entry was made. */
export function cacheKey(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/** A directory of cached clip features. Big-endian hosts get a disabled cache (every get misses, put is a no-op). */
export class FeatureCache {
  readonly dir: string;
  readonly enabled: boolean;

  constructor(dir: string) {
    this.dir = dir;
    this.enabled = endianness() === 'LE';
  }

  /** Path of the entry for `key`. */
  pathFor(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.cmf`);
  }

  /** The entry, or null on a miss (absent, unreadable, torn, other format). */
  async get(key: string): Promise<ClipFeatures | null> {
    if (!this.enabled) return null;
    try {
      return decodeClipFeatures(await readFile(this.pathFor(key)));
    } catch {
      return null;
    }
  }

  /** Stores an entry atomically. Failures (read-only disk, full disk) are swallowed: the cache is an optimisation. */
  async put(key: string, value: ClipFeatures): Promise<boolean> {
    if (!this.enabled) return false;
    const path = this.pathFor(key);
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true });
      await writeFile(tmp, encodeClipFeatures(value));
      await rename(tmp, path);
      return true;
    } catch {
      await rm(tmp, { force: true }).catch(() => undefined);
      return false;
    }
  }
}
