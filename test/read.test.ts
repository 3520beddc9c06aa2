/**
 * readAudioFile / decodeAudio on real files: test/fixtures/formats/ (made by scripts/make-format-fixtures.sh from
 * test/fixtures/audio/03-01-05-02-01-01-21.flac). Decoded samples are compared with the 16-bit original with tolerances
 * that fit each format; the lossy numbers in comments are what these fixtures measured.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import alawmulaw from 'alawmulaw';
import { readAudioFile, decodeAudio, openAudioFile, openAudio } from '../src/audio/read.js';
import { readdirSync } from 'node:fs';
import { encodeWav } from '../src/replay/wav.js';
import { CallmoodError, ErrorCodes, type ErrorCode } from '../src/errors.js';
import type { DecodedAudio } from '../src/audio/types.js';

const FORMATS = fileURLToPath(new URL('./fixtures/formats/', import.meta.url));
const ORIGINAL = fileURLToPath(new URL('./fixtures/audio/03-01-05-02-01-01-21.flac', import.meta.url));
const fixture = (name: string) => join(FORMATS, name);
const read = (name: string) => readAudioFile(fixture(name));

/** The cut all fixtures are made from: 1.0 s .. 1.5 s of the clip, 16 kHz. */
const CUT_START = 16000;
const CUT_FRAMES = 8000;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Correlation and SNR (dB) of `y` against `ref`, with y delayed by `lag` samples; only the overlap counts. */
function compare(ref: Float32Array, y: Float32Array, lag = 0): { corr: number; snrDb: number } {
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    const j = i + lag;
    if (j < 0 || j >= y.length) continue;
    sxy += ref[i] * y[j];
    sxx += ref[i] ** 2;
    syy += y[j] ** 2;
    err += (ref[i] - y[j]) ** 2;
  }
  return { corr: sxy / Math.sqrt(sxx * syy), snrDb: 10 * Math.log10(sxx / err) };
}

/** The lag in [-maxLag, maxLag] with the highest correlation, and the numbers there. */
function align(ref: Float32Array, y: Float32Array, maxLag: number): { lag: number; corr: number; snrDb: number } {
  let best = { lag: 0, ...compare(ref, y, 0) };
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    const c = compare(ref, y, lag);
    if (c.corr > best.corr) best = { lag, ...c };
  }
  return best;
}

/** Linear interpolation to `factor` times the rate: a crude reference for resampled files, good to ~16 dB SNR. */
function upsampleLinear(x: Float32Array, factor: number): Float32Array {
  const y = new Float32Array(Math.round(x.length * factor));
  for (let j = 0; j < y.length; j++) {
    const t = j / factor;
    const i = Math.floor(t);
    const frac = t - i;
    y[j] = x[i] * (1 - frac) + (i + 1 < x.length ? x[i + 1] : 0) * frac;
  }
  return y;
}

function assertShape(a: DecodedAudio, expected: Partial<DecodedAudio> & { frames: number; channelCount: number }) {
  const { frames, channelCount, ...fields } = expected;
  for (const [k, v] of Object.entries(fields)) assert.equal(a[k as keyof DecodedAudio], v, k);
  assert.equal(a.channels.length, channelCount, 'channel count');
  for (const ch of a.channels) assert.equal(ch.length, frames, 'frames per channel');
  assert.ok(Math.abs(a.durationS - frames / a.sampleRate) < 1e-9, 'durationS');
}

/** The bytes of a WAV's data chunk (the fixtures' headers are simple: walk the chunks). */
function wavData(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 12; pos + 8 <= bytes.length; ) {
    const id = String.fromCharCode(...bytes.subarray(pos, pos + 4));
    const size = view.getUint32(pos + 4, true);
    if (id === 'data') return bytes.subarray(pos + 8, pos + 8 + size);
    pos += 8 + size + (size % 2);
  }
  throw new Error('no data chunk');
}

let ref: Float32Array; // the 16-bit cut, decoded from flac16.flac

before(async () => {
  ref = (await read('flac16.flac')).channels[0];
});

describe('reference', () => {
  it('flac16.flac is exactly the 0.5 s cut of the committed clip', async () => {
    const original = await readAudioFile(ORIGINAL);
    assertShape(original, { container: 'flac', encoding: 'flac16', sampleRate: 16000, frames: 69937, channelCount: 1 });
    assert.equal(maxAbsDiff(ref, original.channels[0].subarray(CUT_START, CUT_START + CUT_FRAMES)), 0);
  });

  it('FLAC (wasm decoder) and WAV (own parser) agree exactly, on the int / 32768 scale', async () => {
    const wav = (await read('pcm16.wav')).channels[0];
    assert.equal(maxAbsDiff(ref, wav), 0);
    for (const v of ref) assert.equal(Number.isInteger(v * 32768), true);
  });
});

describe('lossless formats decode exactly', () => {
  const exact: [file: string, container: DecodedAudio['container'], encoding: string, frames?: number][] = [
    ['pcm16.wav', 'wav', 'pcm16'],
    ['pcm24.wav', 'wav', 'pcm24'],
    ['pcm32.wav', 'wav', 'pcm32'],
    ['ext_pcm24.wav', 'wav', 'pcm24'],
    ['float32.wav', 'wav', 'float32'],
    ['float64_short.wav', 'wav', 'float64', 4000],
    ['rf64_pcm16.wav', 'wav', 'pcm16', 4000],
    ['aiff16.aiff', 'aiff', 'pcm16'],
    ['aifc_none.aifc', 'aiff', 'pcm16'],
    ['aifc_sowt.aifc', 'aiff', 'pcm16'],
    ['aifc_fl32.aifc', 'aiff', 'float32'],
  ];
  for (const [file, container, encoding, frames = CUT_FRAMES] of exact) {
    it(`${file}: ${container} ${encoding}`, async () => {
      const a = await read(file);
      assertShape(a, { container, encoding, sampleRate: 16000, frames, channelCount: 1 });
      assert.equal(maxAbsDiff(a.channels[0], ref.subarray(0, frames)), 0);
    });
  }

  it('ext_pcm24.wav really is WAVE_FORMAT_EXTENSIBLE and pcm24.wav is not', async () => {
    const tag = async (f: string) => (await readFile(fixture(f))).readUInt16LE(20);
    assert.equal(await tag('ext_pcm24.wav'), 0xfffe);
    assert.equal(await tag('pcm24.wav'), 1);
  });

  it('pcm8.wav (unsigned 8-bit): within half an 8-bit step (1/256) of the 16-bit original', async () => {
    const a = await read('pcm8.wav');
    assertShape(a, { container: 'wav', encoding: 'pcm8', sampleRate: 16000, frames: CUT_FRAMES, channelCount: 1 });
    assert.ok(maxAbsDiff(a.channels[0], ref) <= 1 / 256); // measured: exactly 1/256
  });
});

describe('stereo keeps channels apart', () => {
  it('stereo_inverted.wav: left is the clip, right is the clip inverted', async () => {
    const a = await read('stereo_inverted.wav');
    assertShape(a, { container: 'wav', encoding: 'pcm16', sampleRate: 16000, frames: CUT_FRAMES, channelCount: 2 });
    const [left, right] = a.channels;
    assert.equal(maxAbsDiff(left, ref), 0);
    for (let i = 0; i < right.length; i++) assert.equal(right[i], -left[i] || 0, `sample ${i}`);
    assert.ok(compare(left, right).corr < -0.999); // a mix-down would have made them equal (and silent)
  });
});

describe('G.711 (8 kHz)', () => {
  let pcm8k: Float32Array;
  before(async () => {
    const a = await read('pcm16_8k.wav');
    assertShape(a, { container: 'wav', encoding: 'pcm16', sampleRate: 8000, frames: 4000, channelCount: 1 });
    pcm8k = a.channels[0];
  });

  for (const kind of ['mulaw', 'alaw'] as const) {
    it(`${kind}_8k.wav: exactly alawmulaw's decoding of the file's bytes, within the codec's error of the 16-bit source`, async () => {
      const a = await read(`${kind}_8k.wav`);
      assertShape(a, { container: 'wav', encoding: kind, sampleRate: 8000, frames: 4000, channelCount: 1 });
      const codec = alawmulaw[kind];
      const bytes = wavData(new Uint8Array(await readFile(fixture(`${kind}_8k.wav`))));
      const expected = Float32Array.from(codec.decode(bytes), (s) => s / 32768);
      assert.equal(maxAbsDiff(a.channels[0], expected), 0);
      // The worst error of alawmulaw's own encode → decode round trip over every 16-bit value (μ-law 644, A-law 512
      // — both at full scale) bounds what any G.711 encoder may do. sox encodes a little differently from
      // alawmulaw (one step apart on 249 μ-law / 591 A-law of 4000 samples) but stays inside it: measured max
      // error 249 (μ-law) and 132 (A-law) in 16-bit units, SNR 37.4 / 37.6 dB.
      let bound = 0;
      for (let s = -32768; s < 32768; s++) bound = Math.max(bound, Math.abs(codec.decodeSample(codec.encodeSample(s)) - s));
      assert.ok(maxAbsDiff(a.channels[0], pcm8k) * 32768 <= bound);
      assert.ok(compare(pcm8k, a.channels[0]).snrDb >= 30);
    });
  }
});

describe('other sample rates', () => {
  it('pcm16_44k1.wav: 44.1 kHz', async () => {
    const a = await read('pcm16_44k1.wav');
    assertShape(a, { container: 'wav', encoding: 'pcm16', sampleRate: 44100, frames: 22050, channelCount: 1 });
    // Against linear interpolation of the original (a crude resampler): measured corr 0.992, SNR 15.7 dB, lag 0.
    const m = align(upsampleLinear(ref, 44100 / 16000), a.channels[0], 10);
    assert.equal(m.lag, 0);
    assert.ok(m.corr > 0.98 && m.snrDb > 12, JSON.stringify(m));
  });

  it('flac24_48k.flac: 48 kHz 24-bit FLAC; every third sample is the original (sox resamples in phase)', async () => {
    const a = await read('flac24_48k.flac');
    assertShape(a, { container: 'flac', encoding: 'flac24', sampleRate: 48000, frames: 24000, channelCount: 1 });
    const decimated = Float32Array.from({ length: CUT_FRAMES }, (_, i) => a.channels[0][3 * i]);
    const m = compare(ref, decimated);
    assert.ok(m.snrDb > 40, JSON.stringify(m)); // measured 48.8 dB
  });
});

describe('lossy formats', () => {
  it('mono_16k.mp3: 16 kHz mono MPEG-2 layer III, gapless (no encoder delay), SNR ≥ 20 dB', async () => {
    const a = await read('mono_16k.mp3');
    // The LAME tag's delay and padding are removed: exactly the original's length, aligned at lag 0.
    assertShape(a, { container: 'mp3', encoding: 'mp3', sampleRate: 16000, frames: CUT_FRAMES, channelCount: 1 });
    const m = align(ref, a.channels[0], 50);
    assert.equal(m.lag, 0);
    assert.ok(m.corr > 0.99 && m.snrDb >= 20, JSON.stringify(m)); // measured corr 0.9992, SNR 24.1 dB
  });

  it('mono.opus: Ogg Opus decodes at 48 kHz, pre-skip and end padding removed, corr > 0.95', async () => {
    const a = await read('mono.opus');
    // 24000 = 0.5 s at 48 kHz: without our end trim ogg-opus-decoder returns 24312 (the pre-skip, 312, too many).
    assertShape(a, { container: 'ogg-opus', encoding: 'opus', sampleRate: 48000, frames: 24000, channelCount: 1 });
    const m = align(upsampleLinear(ref, 3), a.channels[0], 50);
    assert.ok(Math.abs(m.lag) <= 3, `lag ${m.lag}`); // measured -2 (0.04 ms)
    assert.ok(m.corr > 0.95 && m.snrDb >= 10, JSON.stringify(m)); // measured corr 0.973, SNR 12.2 dB
  });
});

describe('decodeAudio on bytes in memory', () => {
  it('tells the container by content, not by name', async () => {
    const bytes = await readFile(fixture('pcm16.wav'));
    const a = await decodeAudio(bytes, 'call.mp3');
    assert.equal(a.container, 'wav');
    assert.equal(maxAbsDiff(a.channels[0], ref), 0);
  });

  it('reads a Uint8Array at an odd offset inside a larger buffer', async () => {
    for (const f of ['pcm16.wav', 'pcm24.wav', 'float32.wav', 'aifc_sowt.aifc']) {
      const bytes = await readFile(fixture(f));
      const big = new Uint8Array(bytes.length + 3);
      big.set(bytes, 1);
      const a = await decodeAudio(big.subarray(1, 1 + bytes.length), f);
      assert.equal(maxAbsDiff(a.channels[0], ref), 0, f);
    }
  });

  it('skips unknown chunks, odd-sized ones with their pad byte, before fmt', async () => {
    const wav = await readFile(fixture('pcm16.wav'));
    const list = Buffer.from([...Buffer.from('LIST'), 3, 0, 0, 0, 0x61, 0x62, 0x63, 0 /* pad */]);
    const bytes = Buffer.concat([wav.subarray(0, 12), list, wav.subarray(12)]);
    const a = await decodeAudio(bytes, 'with-list.wav');
    assert.equal(maxAbsDiff(a.channels[0], ref), 0);
  });

  it('a plain-RIFF data size of 0xFFFFFFFF (streaming writer) means "to the end"; a last partial frame is dropped', async () => {
    const wav = Buffer.from(await readFile(fixture('pcm16.wav')));
    assert.equal(wav.toString('latin1', 36, 40), 'data');
    wav.writeUInt32LE(0xffffffff, 40);
    const a = await decodeAudio(Buffer.concat([wav, Buffer.from([0x7f])]), 'streamed.wav');
    assert.equal(a.channels[0].length, CUT_FRAMES);
    assert.equal(maxAbsDiff(a.channels[0], ref), 0);
  });

  it('skips an ID3v2 tag in front of MP3 and of FLAC', async () => {
    // ID3v2.4 header with a syncsafe size of 20, then one TIT2 frame (10-byte header + 10 bytes of text).
    const id3 = Buffer.concat([
      Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 20]),
      Buffer.from([...Buffer.from('TIT2'), 0, 0, 0, 10, 0, 0, 3, ...Buffer.from('callmood!')]),
    ]);
    const mp3 = await readFile(fixture('mono_16k.mp3'));
    const plain = await decodeAudio(mp3, 'plain.mp3');
    const tagged = await decodeAudio(Buffer.concat([id3, mp3]), 'tagged.mp3');
    assert.equal(tagged.container, 'mp3');
    assert.equal(maxAbsDiff(tagged.channels[0], plain.channels[0]), 0);
    const flac = await decodeAudio(Buffer.concat([id3, await readFile(fixture('flac16.flac'))]), 'tagged.flac');
    assert.equal(flac.container, 'flac');
    assert.equal(maxAbsDiff(flac.channels[0], ref), 0);
  });

  it('an AIFF cut inside its sound data → CORRUPT_FILE', async () => {
    const aiff = await readFile(fixture('aiff16.aiff'));
    await assertFails(decodeAudio(aiff.subarray(0, 3000), 'cut.aiff'), ErrorCodes.CORRUPT_FILE, 'cut.aiff', /SSND.*cut short/);
  });

  it('a lone MPEG sync word followed by garbage is not taken for MP3', async () => {
    const bytes = new Uint8Array(2000).fill(0x55);
    bytes.set([0xff, 0xfb, 0x90, 0x00]); // a valid MPEG-1 layer III header, but no second frame after it
    await assertFails(decodeAudio(bytes, 'sync.bin'), ErrorCodes.UNSUPPORTED_FORMAT, 'sync.bin');
  });

  it('a WAV with a bit depth it does not support names what is supported', async () => {
    const wav = Buffer.from(await readFile(fixture('float32.wav')));
    wav.writeUInt16LE(24, 34); // float, 24 bits per sample
    wav.writeUInt16LE(3, 32); // block align 3
    await assertFails(decodeAudio(wav, 'float24.wav'), ErrorCodes.UNSUPPORTED_FORMAT, 'float24.wav', /24-bit.*supported: .*float 32\/64/);
  });
});

async function assertFails(p: Promise<unknown>, code: ErrorCode, name: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CallmoodError, `not a CallmoodError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(name), `message does not name the file: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('broken and unsupported files', () => {
  const cases: [file: string, code: ErrorCode, message: RegExp][] = [
    ['empty.wav', ErrorCodes.EMPTY_AUDIO, /empty \(0 bytes\)/],
    ['no_samples.wav', ErrorCodes.EMPTY_AUDIO, /no samples/],
    ['truncated_header.wav', ErrorCodes.CORRUPT_FILE, /fmt .*cut short/],
    ['cut_short.wav', ErrorCodes.CORRUPT_FILE, /data chunk declares 16000 bytes but only 2956 remain/],
    ['truncated.flac', ErrorCodes.CORRUPT_FILE, /declares 8000 samples.*cut short or damaged/],
    ['truncated.opus', ErrorCodes.CORRUPT_FILE, /cut short/],
    ['float32_nan.wav', ErrorCodes.INVALID_AUDIO, /sample 10 of channel 0 is NaN/],
    ['random.bin', ErrorCodes.UNSUPPORTED_FORMAT, /supported containers: WAV.*FLAC.*AIFF.*Ogg Opus.*MP3/],
    ['text.wav', ErrorCodes.UNSUPPORTED_FORMAT, /text file.*supported containers/],
    ['ima_adpcm.wav', ErrorCodes.UNSUPPORTED_FORMAT, /IMA ADPCM is not supported; supported: integer PCM.*μ-law, A-law/],
    ['sun.au', ErrorCodes.UNSUPPORTED_FORMAT, /\.au file.*supported containers/],
    ['vorbis.ogg', ErrorCodes.UNSUPPORTED_FORMAT, /Ogg Vorbis is not supported/],
  ];
  for (const [file, code, message] of cases) {
    it(`${file} → ${code}`, async () => {
      await assertFails(read(file), code, file, message);
    });
    it(`${file} → ${code} from openAudioFile too`, async () => {
      await assertFails(openAudioFile(fixture(file)), code, file, message);
    });
  }

  it('readAudioFile on a missing path → FILE_READ naming the path', async () => {
    const path = fixture('no-such-file.wav');
    await assertFails(readAudioFile(path), ErrorCodes.FILE_READ, path, /no such file/);
  });

  it('readAudioFile on a directory → FILE_READ', async () => {
    await assertFails(readAudioFile(FORMATS), ErrorCodes.FILE_READ, FORMATS, /directory/);
  });
});

describe('openAudioFile: a recording read a range of frames at a time', () => {
  /** Reads the whole source in ranges of `step` frames into arrays as long as the file. */
  async function readInRanges(path: string, step: number) {
    const src = await openAudioFile(path);
    const whole = Array.from({ length: src.channelCount }, () => new Float32Array(src.frames));
    const buf = Array.from({ length: src.channelCount }, () => new Float32Array(step).fill(NaN));
    for (let s = 0; s < src.frames; s += step) {
      const end = Math.min(src.frames, s + step);
      src.read(s, end, buf);
      buf.forEach((b, c) => whole[c].set(b.subarray(0, end - s), s));
    }
    return { src, whole };
  }

  const broken = new Set(['empty.wav', 'no_samples.wav', 'truncated_header.wav', 'cut_short.wav', 'truncated.flac',
    'truncated.opus', 'float32_nan.wav', 'random.bin', 'text.wav', 'ima_adpcm.wav', 'sun.au', 'vorbis.ogg']);
  const files = readdirSync(FORMATS).filter((f) => !f.endsWith('.md') && !broken.has(f));

  it('every readable fixture gives exactly readAudioFile\'s samples, in ranges of 1,237 frames', async () => {
    assert.ok(files.length >= 15, `${files.length} fixtures`);
    for (const f of files) {
      const ref = await readAudioFile(fixture(f));
      const { src, whole } = await readInRanges(fixture(f), 1237);
      assert.equal(src.sampleRate, ref.sampleRate, f);
      assert.equal(src.channelCount, ref.channels.length, f);
      assert.equal(src.encoding, ref.encoding, f);
      assert.equal(src.container, ref.container, f);
      assert.ok(Math.abs(src.durationS - ref.durationS) < 1e-9, f);
      ref.channels.forEach((ch, c) => assert.deepEqual(whole[c], ch, `${f} channel ${c}`));
    }
  });

  it('G.711 with one, two and three channels, μ-law and 16-bit: the same samples as decoding the whole file', async () => {
    const n = 5003;
    const chans = [0, 1, 2].map((c) => Float32Array.from({ length: n }, (_, i) => 0.8 * Math.sin(0.01 * (c + 1) * i)));
    for (const encoding of ['mulaw', 'pcm16'] as const) {
      for (const k of [1, 2, 3]) {
        const bytes = encodeWav(chans.slice(0, k), 8000, encoding);
        const ref = await decodeAudio(bytes, 'x.wav');
        const src = await openAudio(bytes, 'x.wav');
        const out = Array.from({ length: k }, () => new Float32Array(777));
        src.read(1000, 1777, out);
        for (let c = 0; c < k; c++) assert.deepEqual(out[c], ref.channels[c].subarray(1000, 1777), `${encoding} ${k} channel(s), channel ${c}`);
      }
    }
  });

  it('a range outside the file is refused, naming what is allowed', async () => {
    const src = await openAudioFile(fixture('mulaw_8k.wav'));
    const out = [new Float32Array(src.frames + 10)];
    for (const [a, b] of [[-1, 10], [10, 5], [0, src.frames + 1], [0.5, 3]]) {
      assert.throws(() => src.read(a, b, out), (e: unknown) => e instanceof CallmoodError && e.code === ErrorCodes.INVALID_OPTION &&
        e.message.includes(`allowed: 0 ≤ start ≤ end ≤ ${src.frames}`));
    }
  });
});

describe('headerless G.711 (.ul/.ulaw/.mulaw μ-law, .al/.alaw A-law), as PBXs write it', () => {
  const RAW = fileURLToPath(new URL('./fixtures/raw/', import.meta.url));

  it('the fixtures are what scripts/make-g711-fixtures.ts makes from the committed clips', async () => {
    const { makeG711Fixtures } = await import('../scripts/make-g711-fixtures.js');
    for (const [name, bytes] of Object.entries(await makeG711Fixtures())) {
      assert.deepEqual(new Uint8Array(await readFile(join(RAW, name))), bytes, name);
    }
  });

  it('read as 8 kHz mono by default: exactly alawmulaw\'s decoding of every byte, μ-law and A-law', async () => {
    for (const [file, law] of [['angry_8k.ul', alawmulaw.mulaw], ['angry_8k.al', alawmulaw.alaw]] as const) {
      const bytes = await readFile(join(RAW, file));
      const a = await readAudioFile(join(RAW, file));
      assert.equal(a.container, 'raw');
      assert.equal(a.encoding, file.endsWith('.ul') ? 'mulaw' : 'alaw');
      assert.equal(a.sampleRate, 8000);
      assert.equal(a.channels.length, 1);
      assert.equal(a.channels[0].length, bytes.length);
      assert.equal(a.durationS, bytes.length / 8000);
      const expected = Float32Array.from(bytes, (b) => law.decodeSample(b) / 32768 + 0);
      assert.deepEqual(a.channels[0], expected, file);
      // openAudioFile, a range at a time, gives the same samples.
      const src = await openAudioFile(join(RAW, file));
      const out = [new Float32Array(1000)];
      src.read(5000, 6000, out);
      assert.deepEqual(out[0], expected.subarray(5000, 6000));
    }
  });

  it('with raw: { channels: 2 } a dual-channel call is de-interleaved: caller left, agent right', async () => {
    const dual = await readFile(join(RAW, 'call_dual.ulaw'));
    const mono = await readAudioFile(join(RAW, 'angry_8k.ul'));
    const a = await readAudioFile(join(RAW, 'call_dual.ulaw'), { raw: { channels: 2 } });
    assert.equal(a.channels.length, 2);
    assert.equal(a.channels[0].length, dual.length / 2);
    assert.deepEqual(a.channels[0].subarray(0, mono.channels[0].length), mono.channels[0]);
    assert.equal(a.channels[1][0], alawmulaw.mulaw.decodeSample(dual[1]) / 32768 + 0);
    // The same bytes read as mono are twice as long: nothing in the file can tell, so the option must.
    assert.equal((await readAudioFile(join(RAW, 'call_dual.ulaw'))).channels[0].length, dual.length);
    // Another rate, when told; a last partial frame is dropped, as in a WAV streamed to its end.
    const odd = await decodeAudio(dual.subarray(0, 101), 'cut.ul', { raw: { channels: 2, sampleRate: 16000 } });
    assert.equal(odd.sampleRate, 16000);
    assert.equal(odd.channels[0].length, 50);
  });

  it('a raw name does not override a real header; bad raw options and an empty file are refused in words', async () => {
    const wav = await readFile(fixture('mulaw_8k.wav'));
    const asWav = await decodeAudio(wav, 'mislabelled.ul');
    assert.equal(asWav.container, 'wav');
    await assert.rejects(decodeAudio(wav.subarray(0, 0), 'x.ul'), (e: CallmoodError) => e.code === ErrorCodes.EMPTY_AUDIO);
    await assert.rejects(decodeAudio(new Uint8Array(1), 'x.al', { raw: { channels: 2 } }), (e: CallmoodError) => e.code === ErrorCodes.EMPTY_AUDIO && /less than one frame of 2 channel/.test(e.message));
    await assert.rejects(decodeAudio(new Uint8Array(10), 'x.ul', { raw: { channels: 0 } }), (e: CallmoodError) => e.code === ErrorCodes.INVALID_OPTION && /raw audio option channels is 0; allowed: an integer in \[1, 32\]/.test(e.message));
    // Under another name the same bytes are refused, saying which names are read as headerless G.711.
    await assert.rejects(decodeAudio(await readFile(join(RAW, 'angry_8k.ul')), 'call.raw'), (e: CallmoodError) => e.code === ErrorCodes.UNSUPPORTED_FORMAT && /headerless G\.711 is read from files named \*\.ul, \*\.ulaw, \*\.mulaw \(μ-law\) or \*\.al, \*\.alaw \(A-law\)/.test(e.message));
  });
});
