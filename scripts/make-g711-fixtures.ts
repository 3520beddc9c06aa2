/**
 * Makes the headerless G.711 fixtures in test/fixtures/raw/ (what PBXs write: G.711 bytes and nothing else) from the
 * committed RAVDESS clips, with callmood's own resampler and codecs, so no outside tool is needed:
 * - `angry_8k.ul`, `angry_8k.al`: 03-01-05-02-01-01-21.flac (actor 21, angry, strong) at 8 kHz, μ-law and A-law;
 * - `call_dual.ulaw`: a two-channel call, channels interleaved byte by byte: the caller (left) is that angry clip,
 *   the agent (right) 03-01-01-01-01-01-21.flac (the same actor, neutral), padded with silence to the same length.
 * Deterministic: rerunning gives the same bytes (test/read.test.ts checks the files against a fresh encoding).
 *
 * Usage: node --import tsx scripts/make-g711-fixtures.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAudioFile } from '../src/audio/read.js';
import { resample } from '../src/audio/resample.js';
import { encodeAlaw, encodeMulaw } from '../src/audio/codecs.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const RATE = 8000;

/** A committed clip's first channel at 8 kHz. */
async function clip8k(name: string): Promise<Float32Array> {
  const a = await readAudioFile(join(root, 'test/fixtures/audio', name));
  return resample(a.channels[0], a.sampleRate, RATE);
}

/** The fixtures, by file name, as bytes. */
export async function makeG711Fixtures(): Promise<Record<string, Uint8Array>> {
  const angry = await clip8k('03-01-05-02-01-01-21.flac');
  const neutral = await clip8k('03-01-01-01-01-01-21.flac');
  const n = Math.max(angry.length, neutral.length);
  const pad = (x: Float32Array) => {
    const out = new Float32Array(n);
    out.set(x);
    return out;
  };
  const [left, right] = [encodeMulaw(pad(angry)), encodeMulaw(pad(neutral))];
  const dual = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) {
    dual[2 * i] = left[i];
    dual[2 * i + 1] = right[i];
  }
  return { 'angry_8k.ul': encodeMulaw(angry), 'angry_8k.al': encodeAlaw(angry), 'call_dual.ulaw': dual };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = join(root, 'test/fixtures/raw');
  mkdirSync(out, { recursive: true });
  for (const [name, bytes] of Object.entries(await makeG711Fixtures())) {
    writeFileSync(join(out, name), bytes);
    console.log(`${name}: ${bytes.length} bytes`);
  }
}
