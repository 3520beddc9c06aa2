/**
 * Reading recorded audio files into float samples, one array per channel, for offline replay and training.
 *
 * The container is told by its magic bytes, not by the file name: only headerless G.711, which has no header, is told
 * by its name. WAV and AIFF are parsed here: wavefile's `getSamples` took 1.5 s for a 10-minute 16 kHz stereo 16-bit
 * WAV, this parser about 0.1 s (0.2 s for 24-bit or float). FLAC, Ogg Opus and MP3 go through the wasm decoders of the `@wasm-audio-decoders` family, imported on first
 * use; the same 10 minutes take about 0.5 s as FLAC, 0.65 s as MP3 and 3 s as Opus (48 kHz output).
 * Every failure is a `CallmoodError` whose message starts with the file name and says what is wrong.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { z } from 'zod';
import { ALAW_TO_FLOAT, MULAW_TO_FLOAT } from './codecs.js';
import { CallmoodError, ErrorCodes, type ErrorCode } from '../errors.js';
import { describeIssues } from '../util/issues.js';
import { parseAiff } from './aiff.js';
import type { PcmLayout, SampleType, DecodedAudio } from './types.js';

/** The containers we read, for error messages. */
const SUPPORTED_CONTAINERS = 'WAV (RIFF, RF64), FLAC, AIFF/AIFF-C, Ogg Opus, MP3';
/** The WAV encodings we read, for error messages. */
const SUPPORTED_WAV =
  'integer PCM 8/16/24/32-bit, IEEE float 32/64-bit, μ-law, A-law (plain or WAVE_FORMAT_EXTENSIBLE)';

/**
 * File name endings of headerless G.711 audio, as PBXs and sox write it (sox: `.ul` μ-law, `.al` A-law; Asterisk:
 * `.ulaw`, `.alaw`), and the law each holds. Such a file has no header, so it is told by its name alone.
 */
export const RAW_G711_EXTENSIONS: Readonly<Record<string, 'mulaw' | 'alaw'>> = Object.freeze({
  '.ul': 'mulaw',
  '.ulaw': 'mulaw',
  '.mulaw': 'mulaw',
  '.al': 'alaw',
  '.alaw': 'alaw',
});

/** The G.711 law a file name says its headerless audio is in, or null. */
export function rawG711Encoding(name: string): 'mulaw' | 'alaw' | null {
  return RAW_G711_EXTENSIONS[extname(name).toLowerCase()] ?? null;
}

/** How to read a headerless G.711 file: what a header would have said. */
export interface RawAudioOptions {
  /** Samples per second of each channel. 8000: G.711 is the telephone network's 8 kHz codec. */
  sampleRate: number;
  /** Interleaved channels, one byte each per sample frame (2: a dual-channel call recording, caller first). */
  channels: number;
}

/** The telephone line's: 8 kHz, mono. */
export const DEFAULT_RAW_AUDIO: Readonly<RawAudioOptions> = Object.freeze({ sampleRate: 8000, channels: 1 });

/** The schema of RawAudioOptions (for option schemas that hold them). */
export const rawAudioSchema = z.strictObject({ sampleRate: z.number().int().min(1000).max(192_000), channels: z.number().int().min(1).max(32) });
const RAW_ALLOWED: Record<string, string> = { sampleRate: 'an integer number of Hz in [1000, 192000] (8000 on a phone line)', channels: 'an integer in [1, 32]' };

/** Merges `o` over DEFAULT_RAW_AUDIO and validates it; INVALID_OPTION names the field and what is allowed. */
export function resolveRawAudioOptions(o: Partial<RawAudioOptions> = {}): Readonly<RawAudioOptions> {
  // A field left undefined (an option not given) keeps its default.
  const merged = { sampleRate: o.sampleRate ?? DEFAULT_RAW_AUDIO.sampleRate, channels: o.channels ?? DEFAULT_RAW_AUDIO.channels };
  const r = rawAudioSchema.safeParse(merged);
  if (!r.success) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, describeIssues(r.error, merged, rawAudioSchema, { noun: 'raw audio option', allowedAt: (p) => RAW_ALLOWED[p.join('.')] }));
  }
  return Object.freeze(r.data);
}

/** How files are read. */
export interface ReadOptions {
  /** The layout of a headerless G.711 file (see RAW_G711_EXTENSIONS); default DEFAULT_RAW_AUDIO. */
  raw?: Partial<RawAudioOptions>;
}

function fail(code: ErrorCode, name: string, what: string, cause?: unknown): CallmoodError {
  return new CallmoodError(code, `${name}: ${what}`, { cause });
}

function fourCC(bytes: Uint8Array, at: number): string {
  if (at + 4 > bytes.length) return '';
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

function startsWith(bytes: Uint8Array, at: number, text: string): boolean {
  if (at + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------------------

/**
 * Reads an audio file (WAV, FLAC, AIFF/AIFF-C, Ogg Opus or MP3, told apart by content; headerless G.711 told by its
 * name, see RAW_G711_EXTENSIONS) and decodes it. Throws `CallmoodError` FILE_READ when the file cannot be read, and
 * whatever `decodeAudio` throws.
 */
export async function readAudioFile(path: string, options: ReadOptions = {}): Promise<DecodedAudio> {
  return decodeAudio(await readBytes(path), path, options);
}

/**
 * A recording opened for reading a range of sample frames at a time: what replay reads, a minute per track at a
 * time, so a long call is never held decoded in full. WAV and AIFF with integer PCM, μ-law or A-law samples are
 * decoded range by range straight from the file's bytes; every other file (float WAV, FLAC, Ogg Opus, MP3) is
 * decoded whole when opened, exactly as `readAudioFile` does, and served from memory. Either way `read` gives the
 * very samples `readAudioFile` gives.
 */
export interface AudioSource {
  sampleRate: number;
  /** Number of channels. */
  channelCount: number;
  /** Sample frames (one sample per channel each). */
  frames: number;
  container: DecodedAudio['container'];
  encoding: string;
  durationS: number;
  /** Writes frames [start, end) of every channel into out[c][0 … end − start); `out` holds channelCount arrays. */
  read(start: number, end: number, out: Float32Array[]): void;
}

/** Opens an audio file as an AudioSource; the same errors as `readAudioFile`, for the same files. */
export async function openAudioFile(path: string, options: ReadOptions = {}): Promise<AudioSource> {
  return openAudio(await readBytes(path), path, options);
}

/**
 * An AudioSource over a file held in memory (see AudioSource); `name` is used in error messages, and its ending tells
 * headerless G.711 apart.
 */
export async function openAudio(bytes: Uint8Array, name: string, options: ReadOptions = {}): Promise<AudioSource> {
  const pcm = bytes.length > 0 ? pcmFile(bytes, name, options) : null;
  if (!pcm) return audioSource(await decodeAudio(bytes, name));
  const { layout: l, container } = pcm;
  // Float files are checked for NaN and infinity in full before anything is replayed.
  if (l.sample === 'f32' || l.sample === 'f64') return audioSource(fromLayout(bytes, l, name, container));
  return {
    sampleRate: l.sampleRate,
    channelCount: l.channels,
    frames: l.frames,
    container,
    encoding: l.encoding,
    durationS: l.frames / l.sampleRate,
    read: (start, end, out) => decodeFrames(bytes, l, name, checkRange(start, end, l.frames), end, out),
  };
}

/**
 * The sample layout of a WAV or AIFF file (its header parsed and checked) or of a headerless G.711 file, or null for
 * any other container. Throws when the bytes claim to be RIFF or IFF but are cut short or of another type.
 */
function pcmFile(bytes: Uint8Array, name: string, options: ReadOptions = {}): { layout: PcmLayout; container: 'wav' | 'aiff' | 'raw' } | null {
  const raw = rawG711Encoding(name);
  if (raw && !hasContainerMagic(bytes)) return { layout: rawLayout(bytes, name, raw, options.raw), container: 'raw' };
  const id = fourCC(bytes, 0);
  if (id === 'RIFF' || id === 'RF64' || id === 'BW64') {
    if (bytes.length < 12) throw fail(ErrorCodes.CORRUPT_FILE, name, `the ${id} header is cut short (${bytes.length} bytes)`);
    const form = fourCC(bytes, 8);
    if (form === 'WAVE') return { layout: parseWav(bytes, name), container: 'wav' };
    throw unsupported(name, `a RIFF file of type "${form}", not WAVE`);
  }
  if (id === 'FORM') {
    if (bytes.length < 12) throw fail(ErrorCodes.CORRUPT_FILE, name, `the FORM header is cut short (${bytes.length} bytes)`);
    const form = fourCC(bytes, 8);
    if (form === 'AIFF' || form === 'AIFC') return { layout: parseAiff(bytes, name), container: 'aiff' };
    throw unsupported(name, `an IFF file of type "${form}", not AIFF or AIFF-C`);
  }
  return null;
}

/** An AudioSource over audio already decoded. */
export function audioSource(audio: DecodedAudio): AudioSource {
  const frames = audio.channels[0]?.length ?? 0;
  return {
    sampleRate: audio.sampleRate,
    channelCount: audio.channels.length,
    frames,
    container: audio.container,
    encoding: audio.encoding,
    durationS: audio.durationS,
    read: (start, end, out) => {
      checkRange(start, end, frames);
      audio.channels.forEach((ch, c) => out[c].set(ch.subarray(start, end)));
    },
  };
}

function checkRange(start: number, end: number, frames: number): number {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= frames)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `audio read of frames [${start}, ${end}); allowed: 0 ≤ start ≤ end ≤ ${frames}`);
  }
  return start;
}

/** The bytes of a file; FILE_READ with the reason when it cannot be read. */
async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'it is a directory, not a file'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied'
            : code === 'ERR_FS_FILE_TOO_LARGE'
              ? 'the file is too large to read into memory (over 2 GiB)'
              : `${(err as Error).message}`;
    // Out of file handles or an I/O hiccup may pass on retry; a missing file or a directory will not.
    const transient = code === 'EMFILE' || code === 'ENFILE' || code === 'EAGAIN' || code === 'EBUSY' || code === 'EIO';
    throw new CallmoodError(ErrorCodes.FILE_READ, `${path}: cannot read the audio file: ${why}`, {
      cause: err,
      permanent: !transient,
    });
  }
}

/**
 * Decodes a whole audio file held in memory. `name` is used in error messages, and its ending tells headerless G.711
 * apart (RAW_G711_EXTENSIONS; read as `options.raw` says). Channels are kept apart, samples are floats in [-1, 1]
 * (float sources and lossy decoders' overshoot are clamped to that range).
 * Throws `CallmoodError`: EMPTY_AUDIO (no bytes or no samples), UNSUPPORTED_FORMAT (unknown container, encoding or
 * bit depth), CORRUPT_FILE (truncated or damaged), INVALID_AUDIO (NaN or infinity in a float file).
 */
export async function decodeAudio(bytes: Uint8Array, name: string, options: ReadOptions = {}): Promise<DecodedAudio> {
  if (bytes.length === 0) throw fail(ErrorCodes.EMPTY_AUDIO, name, 'the file is empty (0 bytes)');

  const pcm = pcmFile(bytes, name, options);
  if (pcm) return fromLayout(bytes, pcm.layout, name, pcm.container);
  const id = fourCC(bytes, 0);
  if (id === 'fLaC') return decodeFlac(bytes, name);
  if (id === 'OggS') return decodeOgg(bytes, name);

  let audioStart = 0;
  if (startsWith(bytes, 0, 'ID3')) {
    // ID3v2: 10-byte header, size as a 28-bit "syncsafe" integer, plus a 10-byte footer if flagged.
    if (bytes.length < 10) throw fail(ErrorCodes.CORRUPT_FILE, name, 'the ID3 tag header is cut short');
    const size = ((bytes[6] & 0x7f) << 21) | ((bytes[7] & 0x7f) << 14) | ((bytes[8] & 0x7f) << 7) | (bytes[9] & 0x7f);
    audioStart = 10 + size + (bytes[5] & 0x10 ? 10 : 0);
    // Some taggers pad beyond the declared size with zeros.
    while (audioStart < bytes.length && bytes[audioStart] === 0) audioStart++;
    if (audioStart >= bytes.length) {
      throw fail(ErrorCodes.CORRUPT_FILE, name, 'the file holds an ID3 tag and nothing after it');
    }
    if (startsWith(bytes, audioStart, 'fLaC')) return decodeFlac(bytes.subarray(audioStart), name);
  }
  const frame = mpegFrameAt(bytes, audioStart);
  if (frame && (audioStart > 0 || confirmsMpeg(bytes, frame))) return decodeMp3(bytes, frame, name);
  const what = describeUnknown(bytes, audioStart);
  const headerless = audioStart === 0 && (what.startsWith('this looks like a text') || what.startsWith('the first bytes match no'));
  throw fail(ErrorCodes.UNSUPPORTED_FORMAT, name, `${what}; supported containers: ${SUPPORTED_CONTAINERS}${headerless ? `; ${RAW_HINT}` : ''}`);
}

function unsupported(name: string, what: string): CallmoodError {
  return fail(ErrorCodes.UNSUPPORTED_FORMAT, name, `${what}; supported containers: ${SUPPORTED_CONTAINERS}`);
}

/** Names what the bytes look like, for the UNSUPPORTED_FORMAT message. */
function describeUnknown(bytes: Uint8Array, at: number): string {
  const id = fourCC(bytes, at);
  if (id === '.snd') return 'a Sun/NeXT .au file, which is not supported';
  if (id === 'caff') return 'an Apple CAF file, which is not supported';
  if (id === 'wvpk') return 'a WavPack file, which is not supported';
  if (id === 'MAC ') return "a Monkey's Audio file, which is not supported";
  if (startsWith(bytes, at, '#!AMR')) return 'an AMR file, which is not supported';
  if (startsWith(bytes, at, 'riff') && bytes[at + 4] === 0x2e) return 'a Sony Wave64 file, which is not supported';
  if (fourCC(bytes, at + 4) === 'ftyp') return 'an MP4/M4A file, which is not supported';
  if (bytes[at] === 0x1a && bytes[at + 1] === 0x45 && bytes[at + 2] === 0xdf && bytes[at + 3] === 0xa3) {
    return 'a Matroska/WebM file, which is not supported';
  }
  // ADTS AAC shares MPEG audio's sync word but has layer bits 00.
  if (bytes[at] === 0xff && (bytes[at + 1] & 0xf6) === 0xf0) return 'an AAC (ADTS) stream, which is not supported';
  const head = bytes.subarray(at, at + 256);
  let printable = head.length > 0;
  for (const b of head) if (!(b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127) || b >= 0x80)) printable = false;
  if (printable) return 'this looks like a text file, not audio';
  return 'the first bytes match no audio container we know';
}

/** Said after a file with no header we know: it may be headerless audio under a name we do not read as such. */
const RAW_HINT = 'headerless G.711 is read from files named *.ul, *.ulaw, *.mulaw (μ-law) or *.al, *.alaw (A-law)';

// ---------------------------------------------------------------------------------------------------------------
// Headerless G.711 (ITU-T G.711 bytes, channels interleaved, nothing else)
// ---------------------------------------------------------------------------------------------------------------

/** Whether the bytes start like a container we read: then a file's content wins over a raw-audio name. */
function hasContainerMagic(bytes: Uint8Array): boolean {
  const id = fourCC(bytes, 0);
  return id === 'RIFF' || id === 'RF64' || id === 'BW64' || id === 'FORM' || id === 'fLaC' || id === 'OggS' || startsWith(bytes, 0, 'ID3');
}

function rawLayout(bytes: Uint8Array, name: string, law: 'mulaw' | 'alaw', given: Partial<RawAudioOptions> | undefined): PcmLayout {
  const { sampleRate, channels } = resolveRawAudioOptions(given);
  // As a WAV streamed to its end: a last partial frame is the writer stopping, not a damaged file.
  const frames = Math.floor(bytes.length / channels);
  if (frames === 0) throw fail(ErrorCodes.EMPTY_AUDIO, name, `the headerless ${law === 'mulaw' ? 'μ-law' : 'A-law'} file holds less than one frame of ${channels} channel(s)`);
  return { sampleRate, channels, frames, offset: 0, blockAlign: channels, sample: law, bytesPerSample: 1, littleEndian: true, encoding: law };
}

// ---------------------------------------------------------------------------------------------------------------
// WAV (Microsoft RIFF WAVE; RF64/BW64 per EBU Tech 3306 and ITU-R BS.2088)
// ---------------------------------------------------------------------------------------------------------------

/** The tail shared by every WAVE_FORMAT_EXTENSIBLE subformat GUID `xxxxxxxx-0000-0010-8000-00aa00389b71`. */
const KSDATAFORMAT_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

/** Names of format tags people meet, for a clearer "not supported" message (mmreg.h). */
const WAV_TAG_NAMES: Record<number, string> = {
  0x0001: 'integer PCM',
  0x0003: 'IEEE float',
  0x0006: 'A-law',
  0x0007: 'μ-law',
  0x0002: 'Microsoft ADPCM',
  0x0011: 'IMA ADPCM',
  0x0031: 'GSM 6.10',
  0x0040: 'G.721 ADPCM',
  0x0050: 'MPEG layer 1/2',
  0x0055: 'MPEG layer 3 (MP3)',
  0x00ff: 'AAC',
  0x1610: 'AAC (HE)',
};

function parseWav(bytes: Uint8Array, name: string): PcmLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const corrupt = (what: string) => fail(ErrorCodes.CORRUPT_FILE, name, what);
  const is64 = fourCC(bytes, 0) !== 'RIFF';

  let ds64DataSize: number | undefined;
  let fmt: { tag: number; channels: number; rate: number; blockAlign: number; bits: number } | undefined;
  let data: { start: number; size: number; toEnd: boolean } | undefined;
  let pos = 12;
  while (!(fmt && data)) {
    if (pos + 8 > bytes.length) {
      if (pos < bytes.length || !fmt) {
        throw corrupt(`the WAV header is cut short: the file ends before the ${fmt ? 'data' : 'fmt'} chunk`);
      }
      throw corrupt('the WAV file has no data chunk');
    }
    const id = fourCC(bytes, pos);
    const size = view.getUint32(pos + 4, true);
    const body = pos + 8;
    if (id === 'data') {
      let dataSize = size;
      let toEnd = false;
      if (size === 0xffffffff) {
        // RF64 keeps the real size in ds64. In a plain RIFF file the value is a streaming writer's "unknown":
        // the data runs to the end of the file.
        toEnd = !(is64 && ds64DataSize !== undefined);
        dataSize = toEnd ? bytes.length - body : (ds64DataSize as number);
      }
      if (body + dataSize > bytes.length) {
        throw corrupt(
          `the WAV data chunk declares ${dataSize} bytes but only ${bytes.length - body} remain: the file was cut short`,
        );
      }
      data = { start: body, size: dataSize, toEnd };
      pos = body + dataSize + (dataSize % 2);
      continue;
    }
    if (body + size > bytes.length) {
      throw corrupt(`the WAV "${id}" chunk declares ${size} bytes but only ${bytes.length - body} remain: the file was cut short`);
    }
    if (id === 'ds64') {
      if (size < 24) throw corrupt(`the RF64 ds64 chunk is ${size} bytes, it needs at least 24`);
      ds64DataSize = view.getUint32(body + 8, true) + view.getUint32(body + 12, true) * 2 ** 32;
    } else if (id === 'fmt ') {
      if (size < 16) throw corrupt(`the WAV fmt chunk is ${size} bytes, it needs at least 16`);
      let tag = view.getUint16(body, true);
      if (tag === 0xfffe) {
        if (size < 40) throw corrupt(`the WAVE_FORMAT_EXTENSIBLE fmt chunk is ${size} bytes, it needs 40`);
        const guidTail = bytes.subarray(body + 26, body + 40);
        if (!KSDATAFORMAT_TAIL.every((b, i) => guidTail[i] === b)) {
          throw fail(
            ErrorCodes.UNSUPPORTED_FORMAT,
            name,
            `WAVE_FORMAT_EXTENSIBLE with a subformat GUID that is not a standard format tag is not supported; ` +
              `supported WAV encodings: ${SUPPORTED_WAV}`,
          );
        }
        tag = view.getUint16(body + 24, true);
      }
      fmt = {
        tag,
        channels: view.getUint16(body + 2, true),
        rate: view.getUint32(body + 4, true),
        blockAlign: view.getUint16(body + 12, true),
        bits: view.getUint16(body + 14, true),
      };
    }
    pos = body + size + (size % 2); // chunks are padded to an even length
  }

  const { tag, channels, rate, blockAlign, bits } = fmt;
  let format: Pick<PcmLayout, 'sample' | 'bytesPerSample' | 'encoding'> | undefined;
  const intBytes = Math.ceil(bits / 8);
  if (tag === 1 && bits >= 1 && bits <= 32) {
    format = {
      sample: (['u8', 's16', 's24', 's32'] as const)[intBytes - 1],
      bytesPerSample: intBytes,
      encoding: `pcm${intBytes * 8}`,
    };
  } else if (tag === 3 && (bits === 32 || bits === 64)) {
    format = { sample: bits === 32 ? 'f32' : 'f64', bytesPerSample: bits / 8, encoding: `float${bits}` };
  } else if ((tag === 6 || tag === 7) && bits === 8) {
    format = tag === 7
      ? { sample: 'mulaw', bytesPerSample: 1, encoding: 'mulaw' }
      : { sample: 'alaw', bytesPerSample: 1, encoding: 'alaw' };
  }
  if (!format) {
    const tagName = WAV_TAG_NAMES[tag] ?? `format tag 0x${tag.toString(16).padStart(4, '0')}`;
    const what = tag === 1 || tag === 3 || tag === 6 || tag === 7 ? `${tagName} with ${bits}-bit samples` : tagName;
    throw fail(ErrorCodes.UNSUPPORTED_FORMAT, name, `WAV encoding ${what} is not supported; supported: ${SUPPORTED_WAV}`);
  }
  if (channels < 1) throw corrupt('the WAV fmt chunk declares 0 channels');
  if (rate < 1) throw corrupt('the WAV fmt chunk declares a sample rate of 0');
  if (blockAlign !== channels * format.bytesPerSample) {
    throw corrupt(
      `the WAV fmt chunk is inconsistent: block align ${blockAlign} for ${channels} channel(s) of ` +
        `${format.bytesPerSample * 8}-bit samples (expected ${channels * format.bytesPerSample})`,
    );
  }
  let size = data.size;
  if (size % blockAlign !== 0) {
    if (data.toEnd) {
      size -= size % blockAlign; // streamed to the end of the file: a last partial frame is the writer stopping
    } else {
      throw corrupt(`the WAV data chunk holds ${size} bytes, not a whole number of ${blockAlign}-byte frames`);
    }
  }
  const frames = size / blockAlign;
  if (frames === 0) throw fail(ErrorCodes.EMPTY_AUDIO, name, 'the WAV file holds no samples (its data chunk is empty)');
  return { sampleRate: rate, channels, frames, offset: data.start, blockAlign, littleEndian: true, ...format };
}

// ---------------------------------------------------------------------------------------------------------------
// Interleaved PCM → one Float32Array per channel (WAV and AIFF)
// ---------------------------------------------------------------------------------------------------------------

function fromLayout(bytes: Uint8Array, l: PcmLayout, name: string, container: 'wav' | 'aiff' | 'raw'): DecodedAudio {
  const channels = Array.from({ length: l.channels }, () => new Float32Array(l.frames));
  decodeFrames(bytes, l, name, 0, l.frames, channels);
  return { sampleRate: l.sampleRate, channels, container, encoding: l.encoding, durationS: l.frames / l.sampleRate };
}

/** Decodes frames [start, end) of interleaved PCM into out[c][0 … end − start). */
function decodeFrames(bytes: Uint8Array, l: PcmLayout, name: string, start: number, end: number, out: Float32Array[]): void {
  const { blockAlign, littleEndian: le } = l;
  const frames = end - start;
  const origin = l.offset + start * blockAlign;
  if (l.sample === 'mulaw' || l.sample === 'alaw') {
    // One pass over the interleaved bytes for all channels (Twilio's dual-channel recordings: half the memory
    // traffic), with the one- and two-channel loops written out (about twice as fast as the general one).
    const table = l.sample === 'mulaw' ? MULAW_TO_FLOAT : ALAW_TO_FLOAT;
    const n = l.channels;
    if (n === 1) {
      const a = out[0];
      for (let f = 0, p = origin; f < frames; f++, p++) a[f] = table[bytes[p]];
    } else if (n === 2) {
      const a = out[0];
      const b = out[1];
      for (let f = 0, p = origin; f < frames; f++, p += 2) {
        a[f] = table[bytes[p]];
        b[f] = table[bytes[p + 1]];
      }
    } else {
      for (let f = 0, p = origin; f < frames; f++) for (let c = 0; c < n; c++, p++) out[c][f] = table[bytes[p]];
    }
    return;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + origin, frames * blockAlign);
  for (let c = 0; c < l.channels; c++) {
    const o = out[c];
    const first = c * l.bytesPerSample;
    switch (l.sample) {
      case 'u8':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) o[f] = (view.getUint8(p) - 128) / 128;
        break;
      case 's8':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) o[f] = view.getInt8(p) / 128;
        break;
      case 's16':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) o[f] = view.getInt16(p, le) / 32768;
        break;
      case 's24':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) {
          const hi = le ? view.getInt8(p + 2) : view.getInt8(p);
          const mid = view.getUint8(p + 1);
          const lo = le ? view.getUint8(p) : view.getUint8(p + 2);
          o[f] = (hi * 65536 + mid * 256 + lo) / 8388608;
        }
        break;
      case 's32':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) o[f] = view.getInt32(p, le) / 2147483648;
        break;
      case 'f32':
      case 'f64':
        for (let f = 0, p = first; f < frames; f++, p += blockAlign) {
          const v = l.sample === 'f32' ? view.getFloat32(p, le) : view.getFloat64(p, le);
          if (!Number.isFinite(v)) {
            throw fail(
              ErrorCodes.INVALID_AUDIO,
              name,
              `sample ${start + f} of channel ${c} is ${v} (at ${((start + f) / l.sampleRate).toFixed(3)} s); ` +
                'float audio must hold finite numbers',
            );
          }
          o[f] = v > 1 ? 1 : v < -1 ? -1 : v;
        }
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// FLAC (https://xiph.org/flac/format.html) via @wasm-audio-decoders/flac
// ---------------------------------------------------------------------------------------------------------------

/** CRC-8 (polynomial 0x07) as FLAC frame headers use it. */
function flacCrc8(b: Uint8Array, start: number, end: number): number {
  let c = 0;
  for (let i = start; i < end; i++) {
    c ^= b[i];
    for (let k = 0; k < 8; k++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
  }
  return c;
}

/**
 * Byte offsets of possible FLAC frame starts, from the end of the file backwards: a frame sync code whose header
 * (sync, codes, UTF-8 coded number, optional block size and rate bytes) is closed by a matching CRC-8. Audio data
 * can imitate a header by chance, so callers try them in turn.
 */
function* flacFrameStartsFromEnd(b: Uint8Array): Generator<number> {
  for (let i = b.length - 6; i >= 42; i--) {
    if (b[i] !== 0xff || (b[i + 1] & 0xfe) !== 0xf8) continue;
    const blockCode = b[i + 2] >> 4;
    const rateCode = b[i + 2] & 0x0f;
    const lead = b[i + 4];
    let p = i + 5;
    if (lead >= 0xc0) p += lead >= 0xfe ? 6 : lead >= 0xfc ? 5 : lead >= 0xf8 ? 4 : lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1;
    if (blockCode === 6) p += 1;
    else if (blockCode === 7) p += 2;
    if (rateCode === 12) p += 1;
    else if (rateCode === 13 || rateCode === 14) p += 2;
    if (p < b.length && flacCrc8(b, i, p) === b[p]) yield i;
  }
}

/** Decodes the file's final frame(s) on their own: the first candidate start that yields exactly `missing` samples. */
async function decodeFlacTail(
  bytes: Uint8Array,
  missing: number,
  Decoder: typeof import('@wasm-audio-decoders/flac').FLACDecoder,
): Promise<{ channelData: Float32Array[]; samplesDecoded: number } | null> {
  let tries = 0;
  for (const start of flacFrameStartsFromEnd(bytes)) {
    if (++tries > 32) break;
    const decoder = new Decoder();
    try {
      await decoder.ready;
      // A wrong candidate makes the decoder console.error its lost sync; we read the same from r.errors, so the
      // probe stays quiet. decodeFrames decodes synchronously inside its promise.
      const log = console.error;
      console.error = () => {};
      let r;
      try {
        r = await decoder.decodeFrames([bytes.subarray(start)]);
      } finally {
        console.error = log;
      }
      if (r.errors.length === 0 && r.samplesDecoded === missing) return r;
      if (r.samplesDecoded > missing) break;
    } catch {
      // not a frame after all: try the next candidate
    } finally {
      decoder.free();
    }
  }
  return null;
}

async function decodeFlac(bytes: Uint8Array, name: string): Promise<DecodedAudio> {
  // STREAMINFO must be the first metadata block: 4-byte block header, then 34 bytes. We read it ourselves because
  // the decoder silently drops cut or damaged frames; the declared total sample count is how we notice.
  if (bytes.length < 42) throw fail(ErrorCodes.CORRUPT_FILE, name, 'the FLAC header is cut short (no complete STREAMINFO)');
  if ((bytes[4] & 0x7f) !== 0) throw fail(ErrorCodes.CORRUPT_FILE, name, 'the FLAC file does not start with STREAMINFO');
  const si = 8;
  const bitsPerSample = (((bytes[si + 12] & 0x01) << 4) | (bytes[si + 13] >> 4)) + 1;
  const totalSamples =
    (bytes[si + 13] & 0x0f) * 2 ** 32 +
    (((bytes[si + 14] << 24) | (bytes[si + 15] << 16) | (bytes[si + 16] << 8) | bytes[si + 17]) >>> 0);

  const { FLACDecoder } = await import('@wasm-audio-decoders/flac');
  const decoder = new FLACDecoder();
  let result;
  try {
    await decoder.ready;
    result = await decoder.decodeFile(bytes);
  } catch (err) {
    throw fail(ErrorCodes.CORRUPT_FILE, name, `the FLAC decoder failed: ${(err as Error).message}`, err);
  } finally {
    decoder.free();
  }
  checkDecoderErrors(result.errors, 'FLAC', name);
  let decoded = result.samplesDecoded;
  if (totalSamples > 0 && decoded < totalSamples) {
    // The decoder's frame parser drops the final frame of some intact files (136 of the 4,240 FLAC clips in our
    // training data; soundfile/libFLAC decode them whole). Find the last frame ourselves, decode it alone and
    // keep it only if it makes up exactly the missing samples; a truly cut file still fails below.
    const tail = await decodeFlacTail(bytes, totalSamples - decoded, FLACDecoder);
    if (tail && tail.channelData.length === result.channelData.length) {
      result.channelData = result.channelData.map((ch, c) => {
        const all = new Float32Array(totalSamples);
        all.set(ch.subarray(0, decoded));
        all.set(tail.channelData[c], decoded);
        return all;
      });
      decoded = totalSamples;
    }
  }
  if (totalSamples > 0 && decoded < totalSamples) {
    throw fail(
      ErrorCodes.CORRUPT_FILE,
      name,
      `the FLAC stream declares ${totalSamples} samples per channel but only ${decoded} decode: ` +
        'the file is cut short or damaged',
    );
  }
  if (decoded === 0 || result.channelData.length === 0) {
    throw fail(ErrorCodes.EMPTY_AUDIO, name, 'the FLAC file holds no audio frames');
  }
  // The decoder scales by 1 / (2^(bits-1) - 1) (measured: 16-bit 136 → 136/32767), so -32768 comes out below -1
  // and FLAC would disagree with the same samples in a WAV. Recover the integer and rescale by 1 / 2^(bits-1).
  const max = 2 ** (bitsPerSample - 1) - 1;
  const inv = 1 / 2 ** (bitsPerSample - 1);
  for (const ch of result.channelData) {
    for (let i = 0; i < ch.length; i++) ch[i] = Math.round(ch[i] * max) * inv;
  }
  return {
    sampleRate: result.sampleRate,
    channels: result.channelData,
    container: 'flac',
    encoding: `flac${bitsPerSample}`,
    durationS: decoded / result.sampleRate,
  };
}

function checkDecoderErrors(errors: { message: string; frameNumber: number }[], codec: string, name: string): void {
  if (errors.length === 0) return;
  const first = errors[0];
  throw fail(
    ErrorCodes.CORRUPT_FILE,
    name,
    `the ${codec} decoder reported ${errors.length} error(s), the first in frame ${first.frameNumber}: ${first.message}`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Ogg (RFC 3533) with Opus (RFC 7845) via ogg-opus-decoder
// ---------------------------------------------------------------------------------------------------------------

interface OggPage {
  flags: number;
  granule: bigint;
  payload: number;
  end: number;
}

function oggPageAt(bytes: Uint8Array, at: number): OggPage | null {
  if (at + 27 > bytes.length || !startsWith(bytes, at, 'OggS') || bytes[at + 4] !== 0) return null;
  const segments = bytes[at + 26];
  if (at + 27 + segments > bytes.length) return null;
  let size = 0;
  for (let i = 0; i < segments; i++) size += bytes[at + 27 + i];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    flags: bytes[at + 5],
    granule: view.getBigInt64(at + 6, true),
    payload: at + 27 + segments,
    end: at + 27 + segments + size,
  };
}

async function decodeOgg(bytes: Uint8Array, name: string): Promise<DecodedAudio> {
  const first = oggPageAt(bytes, 0);
  if (!first || first.end > bytes.length) {
    throw fail(ErrorCodes.CORRUPT_FILE, name, 'the first Ogg page is cut short');
  }
  const p = first.payload;
  if (!startsWith(bytes, p, 'OpusHead')) {
    const codec = startsWith(bytes, p + 1, 'vorbis')
      ? 'Ogg Vorbis'
      : startsWith(bytes, p + 1, 'FLAC')
        ? 'Ogg FLAC'
        : startsWith(bytes, p, 'Speex')
          ? 'Ogg Speex'
          : 'an Ogg stream whose codec is not Opus';
    throw unsupported(name, `${codec} is not supported (of Ogg, only Opus is)`);
  }
  if (p + 19 > first.end) throw fail(ErrorCodes.CORRUPT_FILE, name, 'the OpusHead header is cut short');
  const preSkip = bytes[p + 10] | (bytes[p + 11] << 8);

  // The last page must be complete and carry the end-of-stream flag; otherwise the file was cut.
  const lastStart = lastOggPageStart(bytes);
  const last = lastStart < 0 ? null : oggPageAt(bytes, lastStart);
  if (!last || last.end > bytes.length || (last.flags & 0x04) === 0) {
    throw fail(
      ErrorCodes.CORRUPT_FILE,
      name,
      'the Ogg stream does not end with a complete end-of-stream page: the file was cut short',
    );
  }

  const { OggOpusDecoder } = await import('ogg-opus-decoder');
  const decoder = new OggOpusDecoder();
  let result;
  try {
    await decoder.ready;
    result = await decoder.decodeFile(bytes);
  } catch (err) {
    throw fail(ErrorCodes.CORRUPT_FILE, name, `the Opus decoder failed: ${(err as Error).message}`, err);
  } finally {
    decoder.free();
  }
  checkDecoderErrors(result.errors, 'Opus', name);
  let channels = result.channelData;
  let samples = result.samplesDecoded;
  // ogg-opus-decoder 1.7 removes the pre-skip at the start but trims the end to the last granule position without
  // subtracting it, leaving `preSkip` extra samples (measured: 24312 for 24000). RFC 7845 §4.1: the stream's length
  // is the last granule position minus the pre-skip. Trim only a surplus of that shape, so that a fixed decoder or a
  // chained file is left alone.
  const expected = Number(last.granule) - preSkip;
  if (expected > 0 && samples > expected && samples - expected <= preSkip) {
    channels = channels.map((ch) => ch.subarray(0, expected));
    samples = expected;
  }
  if (samples === 0 || channels.length === 0) {
    throw fail(ErrorCodes.EMPTY_AUDIO, name, 'the Ogg Opus file holds no audio');
  }
  return {
    sampleRate: 48000, // Opus always decodes at 48 kHz (RFC 7845 §5.1: the header's input rate is informational)
    channels: channels.map(clampInPlace),
    container: 'ogg-opus',
    encoding: 'opus',
    durationS: samples / 48000,
  };
}

function lastOggPageStart(bytes: Uint8Array): number {
  // A page is at most 27 + 255 + 255 * 255 bytes, so the last one starts within that distance of the end.
  const stop = Math.max(0, bytes.length - 65307);
  for (let i = bytes.length - 27; i >= stop; i--) {
    if (bytes[i] === 0x4f && bytes[i + 1] === 0x67 && bytes[i + 2] === 0x67 && bytes[i + 3] === 0x53) return i;
  }
  return -1;
}

/** Clamps a lossy decoder's overshoot into [-1, 1], in place: the decoders hand us fresh arrays, and a copy of
 * 10 minutes of 48 kHz stereo would cost another 230 MB. */
function clampInPlace(ch: Float32Array): Float32Array {
  for (let i = 0; i < ch.length; i++) {
    const v = ch[i];
    if (v > 1) ch[i] = 1;
    else if (v < -1) ch[i] = -1;
  }
  return ch;
}

// ---------------------------------------------------------------------------------------------------------------
// MPEG audio (ISO/IEC 11172-3, 13818-3) via mpg123-decoder
// ---------------------------------------------------------------------------------------------------------------

interface MpegFrame {
  layer: 1 | 2 | 3;
  mono: boolean;
  sampleRate: number;
  length: number;
}

// Bitrates in kbit/s by [MPEG-1 ? 0 : 1][layer - 1][index]; index 0 (free format) and 15 (bad) are rejected.
const MPEG_BITRATES = [
  [
    [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  ],
  [
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  ],
];
const MPEG_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };

/** Parses an MPEG audio frame header at `at`; null unless every field is valid. */
function mpegFrameAt(bytes: Uint8Array, at: number): MpegFrame | null {
  if (at + 4 > bytes.length || bytes[at] !== 0xff || (bytes[at + 1] & 0xe0) !== 0xe0) return null;
  const version = (bytes[at + 1] >> 3) & 3; // 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 reserved
  const layerBits = (bytes[at + 1] >> 1) & 3; // 3 = layer I, 2 = II, 1 = III, 0 reserved
  const bitrateIndex = bytes[at + 2] >> 4;
  const rateIndex = (bytes[at + 2] >> 2) & 3;
  if (version === 1 || layerBits === 0 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return null;
  const layer = (4 - layerBits) as 1 | 2 | 3;
  const bitrate = MPEG_BITRATES[version === 3 ? 0 : 1][layer - 1][bitrateIndex] * 1000;
  const sampleRate = MPEG_RATES[version][rateIndex];
  const padding = (bytes[at + 2] >> 1) & 1;
  const length =
    layer === 1
      ? Math.floor((12 * bitrate) / sampleRate + padding) * 4
      : Math.floor(((layer === 3 && version !== 3 ? 72 : 144) * bitrate) / sampleRate) + padding;
  return { layer, mono: bytes[at + 3] >> 6 === 3, sampleRate, length };
}

/** A lone sync word is easy to hit by chance; a second valid header right after the first frame is not. */
function confirmsMpeg(bytes: Uint8Array, frame: MpegFrame): boolean {
  if (frame.length >= bytes.length) return true; // a single-frame file
  return mpegFrameAt(bytes, frame.length) !== null;
}

async function decodeMp3(bytes: Uint8Array, frame: MpegFrame, name: string): Promise<DecodedAudio> {
  const { MPEGDecoder } = await import('mpg123-decoder');
  const decoder = new MPEGDecoder(); // gapless on: the LAME/Xing tag's encoder delay and padding are removed
  let result;
  try {
    await decoder.ready;
    result = decoder.decode(bytes);
  } catch (err) {
    throw fail(ErrorCodes.CORRUPT_FILE, name, `the MPEG audio decoder failed: ${(err as Error).message}`, err);
  } finally {
    decoder.free();
  }
  checkDecoderErrors(result.errors, 'MPEG audio', name);
  if (result.samplesDecoded === 0 || result.channelData.length === 0) {
    throw fail(ErrorCodes.EMPTY_AUDIO, name, 'the MPEG audio file decodes to no samples');
  }
  // mpg123-decoder always returns two channels; a mono stream's are copies, so keep one.
  const channels = frame.mono ? result.channelData.slice(0, 1) : result.channelData;
  return {
    sampleRate: result.sampleRate,
    channels: channels.map(clampInPlace),
    container: 'mp3',
    encoding: `mp${frame.layer}`,
    durationS: result.samplesDecoded / result.sampleRate,
  };
}
