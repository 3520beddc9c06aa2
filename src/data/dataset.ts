/**
 * From a manifest's clips to what a model trains on: per-clip features and speech masks (decoded, through the
 * chosen channel, cached on disk, on worker threads), global statistics, and normalised windows cut exactly as the
 * live stream will see them.
 *
 * Repeatability: every random choice for a clip (telephone or clean, SNR, gain, the line-noise seed) comes from a
 * PRNG seeded by (seed, the clip's corpus, speaker and file name), so results do not depend on the order, the
 * number of workers, or where the corpus lives on disk.
 */
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { describeEnd, ThreadGoneError, WorkerPool } from '../util/worker-pool.js';
import { mulberry32 as prng } from '../util/random.js';
import { readAudioFile } from '../audio/read.js';
import { resample } from '../audio/resample.js';
import { telephoneChannel } from '../audio/telephone.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { featureConfigKey, featureDims, resolveFeatureConfig, type FeatureConfig } from '../features/config.js';
import { computeFeatures } from '../features/mfcc.js';
import { FrameNormalizer, Welford, checkFeatureStats } from '../features/normalize.js';
import { speechGateKey, speechMask, type SpeechGateOptions } from '../features/vad.js';
import { FeatureCache, cacheKey } from './cache.js';
import type { ClipFeatures, ClipRecord, WindowSet } from './types.js';
import type { FeatureStats, NormalizationSpec, WindowConfig } from '../features/types.js';

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------------------------

/** 32-bit FNV-1a of a string, then murmur3's finaliser mixed with `seed`: a well-spread PRNG seed. */
function hashSeed(seed: number, text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= Math.imul(seed | 0, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}


/** What identifies a clip for its random choices: not its absolute path, so a moved corpus draws the same. */
const clipIdentity = (clip: ClipRecord) => `${clip.corpus}|${clip.speaker}|${basename(clip.path)}`;

// ---------------------------------------------------------------------------------------------------------------
// Feature extraction
// ---------------------------------------------------------------------------------------------------------------

/** Augmentation ranges; each drawn uniformly per clip. */
export interface AugmentOptions {
  /** Gain range in dB applied on the line (before G.711, so loud draws clip): AGC and handset variety. */
  gainDb?: [number, number];
  /** Line-noise SNR range in dB (below the active speech level); null: no added noise. */
  snrDb?: [number, number] | null;
  /** Share of clips through the telephone channel when `channel` is `mixed`. */
  telephoneShare?: number;
}

/** Defaults: gain −12…+6 dB (AGC and handsets move levels by about that), SNR 10–40 dB, 80% telephone. */
export const DEFAULT_AUGMENT: Readonly<Required<AugmentOptions>> = Object.freeze({
  gainDb: [-12, 6] as [number, number],
  snrDb: [10, 40] as [number, number],
  telephoneShare: 0.8,
});

/** Options of `extractClipFeatures`. */
export interface ExtractOptions {
  /** Feature config (merged over the default and validated). */
  feature: Partial<FeatureConfig>;
  /** `clean`: as decoded; `telephone`: every clip through the telephone channel; `mixed`: a share of them. */
  channel: 'clean' | 'telephone' | 'mixed';
  /** Seed of every random choice (with the clip's identity). An integer. */
  seed: number;
  augment?: AugmentOptions;
  /** Speech gate options (default: the gate's defaults, which the live stream uses). */
  gate?: Partial<SpeechGateOptions>;
  /** Cache directory; default `.cache/features` under the current directory; null: no cache. */
  cacheDir?: string | null;
  /** Worker threads decoding in parallel; default min(2, cores); 0: all in this thread. */
  workers?: number;
  /** Called after each clip with the number done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** The channel a clip goes through, all random choices made. */
export interface ClipPlan {
  /** Playback speed of a speed-perturbed copy (absent: 1, as recorded; see ClipRecord.speed). */
  speed?: number;
  channel: 'clean' | 'telephone';
  /** Line-noise SNR in dB, or null (no noise); null when clean. */
  snrDb: number | null;
  /** Gain in dB on the line; 0 when clean. */
  gainDb: number;
  /** Seed of the line noise. */
  noiseSeed: number;
}

/**
 * Bump when decoding, the telephone channel, the features or the gate change what they compute: cached entries of
 * older versions are then never read again (they are keyed by it).
 */
export const PIPELINE_VERSION = 1;

const round6 = (v: number) => Math.round(v * 1e6) / 1e6;

function resolveAugment(a: AugmentOptions = {}): Required<AugmentOptions> {
  const known = Object.keys(DEFAULT_AUGMENT);
  const unknown = Object.keys(a).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `augment: unknown field(s) ${unknown.join(', ')}; allowed: ${known.join(', ')}`);
  }
  const r = { ...DEFAULT_AUGMENT, ...a } as Required<AugmentOptions>;
  const range = (name: string, v: unknown, lo: number, hi: number) => {
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isFinite(x)) || v[0] > v[1] || v[0] < lo || v[1] > hi) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `augment.${name} is ${JSON.stringify(v)}; allowed: [min, max] dB with ${lo} ≤ min ≤ max ≤ ${hi}`,
      );
    }
  };
  range('gainDb', r.gainDb, -60, 60);
  if (r.snrDb !== null) range('snrDb', r.snrDb, -20, 120);
  if (!(Number.isFinite(r.telephoneShare) && r.telephoneShare >= 0 && r.telephoneShare <= 1)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `augment.telephoneShare is ${r.telephoneShare}; allowed: a number in [0, 1]`);
  }
  return r;
}

/** Speeds allowed for speed-perturbed copies; Kaldi's recipe uses 0.9 and 1.1 (Ko et al., Interspeech 2015). */
export const SPEED_RANGE: readonly [number, number] = [0.5, 2];

/**
 * The speeds of `speedCopies`, rounded to hundredths.
 * @throws CallmoodError INVALID_OPTION for an empty list, a repeated speed, or one outside SPEED_RANGE
 */
export function checkSpeeds(speeds: readonly number[]): number[] {
  const rounded = speeds.map((s) => Math.round(s * 100) / 100);
  const bad = speeds.find((s) => !(Number.isFinite(s) && s >= SPEED_RANGE[0] && s <= SPEED_RANGE[1]));
  if (speeds.length === 0 || bad !== undefined || new Set(rounded).size !== rounded.length) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `speeds are [${speeds.join(', ')}]; allowed: one or more different speeds in [${SPEED_RANGE.join(', ')}], e.g. 0.9,1,1.1`,
    );
  }
  return rounded;
}

/**
 * Speed perturbation: every clip once per speed in `speeds` (1 = as recorded). A copy at another speed counts as
 * a speaker of its own (`SPEAKER@sp0.9`): its pitch and formants moved, so for the adaptive normaliser, which
 * learns each caller's voice, it is another voice, as Kaldi treats its perturbed copies. Speeds are rounded to
 * hundredths, which keeps the resampling ratio small.
 * @throws CallmoodError INVALID_OPTION for an empty list, a repeated speed, or one outside SPEED_RANGE
 */
export function speedCopies(clips: ClipRecord[], speeds: readonly number[]): ClipRecord[] {
  const out: ClipRecord[] = [];
  for (const s of checkSpeeds(speeds)) {
    for (const c of clips) out.push(s === 1 ? c : { ...c, speaker: `${c.speaker}@sp${s}`, speed: s, durationS: c.durationS / s });
  }
  return out;
}

/**
 * The random choices for one clip. Always draws the same four numbers in the same order, so changing e.g. the
 * telephone share does not reshuffle the SNRs of the clips that stay on the telephone.
 */
export function planClip(clip: ClipRecord, channel: ExtractOptions['channel'], seed: number, augment: AugmentOptions = {}): ClipPlan {
  const a = resolveAugment(augment);
  const next = prng(hashSeed(seed, clipIdentity(clip)));
  const uChannel = next(), uSnr = next(), uGain = next(), uNoise = next();
  const share = channel === 'telephone' ? 1 : channel === 'clean' ? 0 : a.telephoneShare;
  // Only a perturbed copy's plan names its speed, so the plans (and cache entries) of clips as recorded stay the same.
  const speed = clip.speed !== undefined && clip.speed !== 1 ? { speed: clip.speed } : {};
  if (uChannel >= share) return { ...speed, channel: 'clean', snrDb: null, gainDb: 0, noiseSeed: 0 };
  return {
    ...speed,
    channel: 'telephone',
    snrDb: a.snrDb === null ? null : round6(a.snrDb[0] + uSnr * (a.snrDb[1] - a.snrDb[0])),
    gainDb: round6(a.gainDb[0] + uGain * (a.gainDb[1] - a.gainDb[0])),
    noiseSeed: Math.floor(uNoise * 0x7fffffff),
  };
}

/** Decode → mono at the feature rate → channel → features → speech mask. Pure; runs in workers too. */
export async function featuresForClip(
  path: string,
  plan: ClipPlan,
  feature: Readonly<FeatureConfig>,
  gate: Partial<SpeechGateOptions> = {},
): Promise<ClipFeatures> {
  const audio = await readAudioFile(path);
  let x = audio.channels[0];
  if (audio.channels.length > 1) {
    // The corpora are mono; a stereo file is mixed down rather than half of it dropped.
    x = new Float32Array(x.length);
    for (const c of audio.channels) for (let i = 0; i < x.length; i++) x[i] += c[i] / audio.channels.length;
  }
  // A copy at speed s is the recording read as if it were sampled s times faster, then resampled as usual.
  const inRate = Math.round(audio.sampleRate * (plan.speed ?? 1) * 1000) / 1000;
  if (inRate !== feature.sampleRate && x.length > 0) x = resample(x, inRate, feature.sampleRate);
  if (plan.channel === 'telephone' && x.length > 0) {
    x = telephoneChannel(x, feature.sampleRate, { snrDb: plan.snrDb, gainDb: plan.gainDb, seed: plan.noiseSeed });
  }
  const m = computeFeatures(x, feature);
  return { features: m.data, frames: m.frames, dims: m.dims, speech: speechMask(m.data, m.frames, m.dims, feature, gate) };
}

interface Job {
  id: number;
  path: string;
  plan: ClipPlan;
  feature: FeatureConfig;
  gate: Partial<SpeechGateOptions>;
  cacheDir: string | null;
  key: string | null;
}

type JobResult = { id: number; ok: true; value: ClipFeatures } | { id: number; ok: false; error: { code?: string; message: string } };

async function runJob(job: Job): Promise<ClipFeatures> {
  const value = await featuresForClip(job.path, job.plan, job.feature, job.gate);
  if (job.cacheDir !== null && job.key !== null) await new FeatureCache(job.cacheDir).put(job.key, value);
  return value;
}

// Worker side: this very module is the worker's entry (its threads are started by the WorkerPool below).
const WORKER_MARKER = 'callmood-extract-worker';
if (!isMainThread && (workerData as { marker?: string } | null)?.marker === WORKER_MARKER && parentPort) {
  const port = parentPort;
  port.on('message', (job: Job) => {
    runJob(job).then(
      (value) => {
        const msg: JobResult = { id: job.id, ok: true, value };
        port.postMessage(msg, [value.features.buffer as ArrayBuffer, value.speech.buffer as ArrayBuffer]);
      },
      (err: unknown) => {
        const msg: JobResult = { id: job.id, ok: false, error: { code: (err as CallmoodError).code, message: String((err as Error)?.message ?? err) } };
        port.postMessage(msg);
      },
    );
  });
}

/** What fails the whole extraction when a feature worker is gone: its own exception, or its exit code. */
function featureWorkerLost(err: unknown): unknown {
  if (!(err instanceof ThreadGoneError)) return err;
  const end = err.end;
  if (end.cause === 'crashed') return end.error;
  if (end.cause === 'closed') return new CallmoodError(ErrorCodes.CLOSED, 'feature worker pool closed');
  return new CallmoodError(ErrorCodes.INVALID_OPTION, `feature worker ${describeEnd(end)}`, { permanent: false });
}

/** A job's result as the worker sent it, or its error as a CallmoodError. */
function jobValue(msg: JobResult): ClipFeatures {
  if (msg.ok) return msg.value;
  const code = Object.values(ErrorCodes).includes(msg.error.code as never) ? (msg.error.code as (typeof ErrorCodes)[keyof typeof ErrorCodes]) : ErrorCodes.INVALID_AUDIO;
  throw new CallmoodError(code, msg.error.message);
}

/**
 * Features and speech masks of `clips`, in their order. Cached entries are read (one stat and one read per clip);
 * the rest are decoded and featurised on `workers` threads and written to the cache. Rejects with the first clip's
 * error (its message starts with the file name).
 */
export async function extractClipFeatures(clips: ClipRecord[], opts: ExtractOptions): Promise<ClipFeatures[]> {
  const feature = resolveFeatureConfig(opts.feature);
  if (!['clean', 'telephone', 'mixed'].includes(opts.channel)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `channel is '${String(opts.channel)}'; allowed: 'clean', 'telephone', 'mixed'`);
  }
  if (!Number.isInteger(opts.seed)) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `seed is ${opts.seed}; allowed: an integer`);
  const augment = resolveAugment(opts.augment);
  const gate = opts.gate ?? {};
  const gateKey = speechGateKey(gate);
  const cacheDir = opts.cacheDir === null ? null : resolve(opts.cacheDir ?? '.cache/features');
  const cache = cacheDir === null ? null : new FeatureCache(cacheDir);
  const workers = opts.workers ?? Math.min(2, availableParallelism());
  if (!(Number.isInteger(workers) && workers >= 0 && workers <= 64)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `workers is ${workers}; allowed: an integer in [0, 64]`);
  }
  const featureKey = featureConfigKey(feature);
  const plainFeature: FeatureConfig = { ...feature };

  const total = clips.length;
  const out: ClipFeatures[] = new Array(total);
  let done = 0;
  const progress = () => opts.onProgress?.(++done, total);

  // Plans and cache keys first; hits are filled in, misses become jobs.
  const jobs: Job[] = [];
  for (let i = 0; i < total; i++) {
    const clip = clips[i];
    const plan = planClip(clip, opts.channel, opts.seed, augment);
    let key: string | null = null;
    if (cache) {
      let st;
      try {
        st = await stat(clip.path);
      } catch (err) {
        throw new CallmoodError(ErrorCodes.FILE_READ, `${clip.path}: cannot stat (${(err as Error).message})`, { cause: err });
      }
      // The plan stands for (channel settings, seed, clip): two option sets that give a clip the same treatment
      // share its entry (the clean clips of a `mixed` run and of a `clean` run, for instance).
      key = cacheKey([PIPELINE_VERSION, clip.path, st.size, st.mtimeMs, featureKey, gateKey, plan]);
      const hit = await cache.get(key);
      if (hit && hit.dims === featureDims(feature)) {
        out[i] = hit;
        progress();
        continue;
      }
    }
    jobs.push({ id: i, path: clip.path, plan, feature: plainFeature, gate, cacheDir, key });
  }

  const inThread = async () => {
    for (const job of jobs) {
      out[job.id] = await runJob(job);
      progress();
    }
    return out;
  };
  if (jobs.length === 0) return out;
  if (workers === 0 || jobs.length === 1) return inThread();
  // One job per thread at a time, queued in clip order; no restarts. The first error (a clip's, or a worker lost)
  // rejects the extraction, and closing the pool ends the rest.
  const pool = new WorkerPool({ moduleUrl: import.meta.url, data: { marker: WORKER_MARKER }, threads: Math.min(workers, jobs.length) });
  try {
    pool.start().catch(() => {});
  } catch {
    // No way to start a worker on this module (e.g. TypeScript run through a loader other than tsx): same work here.
    return inThread();
  }
  const run = async (job: Job) => {
    const reply = await pool.request<JobResult>(job).catch((err: unknown) => Promise.reject(featureWorkerLost(err)));
    out[job.id] = jobValue(reply);
    progress();
  };
  try {
    await Promise.all(jobs.map(run));
  } finally {
    await pool.close();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics and windows
// ---------------------------------------------------------------------------------------------------------------

/** Per-coefficient mean and std over the speech frames of all clips (Welford). EMPTY_AUDIO if there are none. */
export function fitGlobalStats(clipFeatures: ClipFeatures[]): FeatureStats {
  if (clipFeatures.length === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, 'fitGlobalStats: no clips');
  const dims = clipFeatures[0].dims;
  const w = new Welford(dims);
  for (const [i, c] of clipFeatures.entries()) {
    if (c.dims !== dims) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `fitGlobalStats: clip ${i} has ${c.dims} dims, clip 0 has ${dims}`);
    w.addMany(c.features, c.frames, c.speech);
  }
  if (w.count === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, `fitGlobalStats: none of the ${clipFeatures.length} clips has a speech frame`);
  return w.stats();
}

/** Options of `makeWindows`. */
export interface MakeWindowsOptions {
  /** The model's labels (softmax order); clips with another label are skipped. */
  labels: readonly string[];
  window: WindowConfig;
  normalization: NormalizationSpec;
  /**
   * Order in which clips are processed, and their windows emitted: `as-given`, or `by-speaker-shuffled` (speakers
   * in order of first appearance, each speaker's clips in a seeded shuffle). With `adaptive` normalisation this is
   * also the order in which each speaker's normaliser hears the clips. Default: `by-speaker-shuffled` for
   * `adaptive`, `as-given` for `global`.
   */
  order?: 'as-given' | 'by-speaker-shuffled';
  /** Seed of the shuffle (default 0). */
  seed?: number;
  /**
   * How long an `adaptive` normaliser listens before it starts again (ignored for `global`):
   * - `speaker` (default): one normaliser per speaker over all of that speaker's clips (training);
   * - `call`: one per speaker, restarted once it has heard `callSeconds` of that speaker's audio (a caller heard
   *   over a call of that length);
   * - `clip`: a fresh normaliser per clip (the first seconds of a call).
   */
  adapt?: AdaptRegime;
}

/** See {@link MakeWindowsOptions.adapt}. */
export type AdaptRegime = { mode: 'speaker' } | { mode: 'call'; callSeconds: number } | { mode: 'clip' };

/** Evaluation's default call length: about three minutes of a caller's speech. */
export const DEFAULT_CALL_SECONDS = 180;

/** Where one window comes from: `start` may be negative and `start + frames` past the clip's end (edge padding). */
interface WindowPick {
  clip: number;
  start: number;
}

/** The windows of one clip per the rules of makeWindows, or the reason it has none. */
function pickWindows(speech: Uint8Array, frames: number, w: WindowConfig): number[] | string {
  const W = w.frames;
  let total = 0;
  for (let t = 0; t < frames; t++) total += speech[t] ? 1 : 0;
  if (total === 0) return 'no speech';
  if (frames < W) {
    // One window centred on the speech (first to last speech frame), the clip inside it, edges repeated.
    const first = speech.indexOf(1);
    const last = speech.lastIndexOf(1);
    const centre = (first + last + 1) / 2;
    const start = Math.round(centre - W / 2);
    return [Math.min(0, Math.max(frames - W, start))];
  }
  const prefix = new Int32Array(frames + 1);
  for (let t = 0; t < frames; t++) prefix[t + 1] = prefix[t] + (speech[t] ? 1 : 0);
  const need = w.minSpeechRatio * W - 1e-9;
  const starts: number[] = [];
  for (let s = 0; s + W <= frames; s += w.hop) if (prefix[s + W] - prefix[s] >= need) starts.push(s);
  if (starts.length > 0) return starts;
  // None qualifies: the window with the most speech, over every start; among equals, the middle of the first run.
  let best = -1, bestStart = 0, runEnd = 0;
  for (let s = 0; s + W <= frames; s++) {
    const c = prefix[s + W] - prefix[s];
    if (c > best) {
      best = c;
      bestStart = s;
      runEnd = s;
    } else if (c === best && runEnd === s - 1) runEnd = s;
  }
  return [Math.floor((bestStart + runEnd) / 2)];
}

function checkWindowOptions(clips: ClipRecord[], feats: ClipFeatures[], o: MakeWindowsOptions): number {
  const bad = (why: string) => new CallmoodError(ErrorCodes.INVALID_OPTION, `makeWindows: ${why}`);
  if (clips.length !== feats.length) throw bad(`${clips.length} clips but ${feats.length} feature sets`);
  if (!Array.isArray(o.labels) || o.labels.length === 0) throw bad('labels must be a non-empty array');
  if (new Set(o.labels).size !== o.labels.length) throw bad(`labels repeat: ${o.labels.join(', ')}`);
  const w = o.window;
  if (!w || !Number.isInteger(w.frames) || w.frames < 1) throw bad(`window.frames is ${w?.frames}; allowed: an integer ≥ 1`);
  if (!Number.isInteger(w.hop) || w.hop < 1) throw bad(`window.hop is ${w.hop}; allowed: an integer ≥ 1`);
  if (!(Number.isFinite(w.minSpeechRatio) && w.minSpeechRatio >= 0 && w.minSpeechRatio <= 1)) {
    throw bad(`window.minSpeechRatio is ${w.minSpeechRatio}; allowed: a number in [0, 1]`);
  }
  const dims = featureDims(resolveFeatureConfig(w.feature));
  const statDims = checkFeatureStats(o.normalization?.stats, 'makeWindows: normalization.stats');
  if (statDims !== dims) throw bad(`normalization stats have ${statDims} dims; window.feature gives ${dims}`);
  for (const [i, f] of feats.entries()) {
    if (f.dims !== dims) throw bad(`clip ${i} (${clips[i].path}) has ${f.dims} dims; window.feature gives ${dims}`);
    if (f.features.length < f.frames * f.dims || f.speech.length < f.frames) throw bad(`clip ${i} (${clips[i].path}): arrays shorter than frames × dims`);
  }
  if (o.order !== undefined && o.order !== 'as-given' && o.order !== 'by-speaker-shuffled') {
    throw bad(`order is '${String(o.order)}'; allowed: 'as-given' or 'by-speaker-shuffled'`);
  }
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw bad(`seed is ${o.seed}; allowed: an integer`);
  const a = o.adapt;
  if (a !== undefined) {
    if (a.mode !== 'speaker' && a.mode !== 'call' && a.mode !== 'clip') throw bad(`adapt.mode is '${String((a as { mode?: unknown }).mode)}'; allowed: 'speaker', 'call' or 'clip'`);
    if (a.mode === 'call' && !(Number.isFinite(a.callSeconds) && a.callSeconds > 0)) throw bad(`adapt.callSeconds is ${a.callSeconds}; allowed: a number > 0`);
  }
  return dims;
}

/** Clip indices in processing order. */
function processingOrder(clips: ClipRecord[], order: 'as-given' | 'by-speaker-shuffled', seed: number): number[] {
  if (order === 'as-given') return clips.map((_, i) => i);
  const bySpeaker = new Map<string, number[]>();
  for (const [i, c] of clips.entries()) {
    const list = bySpeaker.get(c.speaker);
    if (list) list.push(i);
    else bySpeaker.set(c.speaker, [i]);
  }
  const out: number[] = [];
  for (const [speaker, list] of bySpeaker) {
    // Seeded by speaker, so one speaker's order does not depend on the others; sorted by identity first, so it
    // does not depend on the order the clips were given in either.
    const sorted = [...list].sort((a, b) => (clipIdentity(clips[a]) < clipIdentity(clips[b]) ? -1 : clipIdentity(clips[a]) > clipIdentity(clips[b]) ? 1 : a - b));
    const next = prng(hashSeed(seed, `speaker|${speaker}`));
    for (let i = sorted.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [sorted[i], sorted[j]] = [sorted[j], sorted[i]];
    }
    out.push(...sorted);
  }
  return out;
}

/**
 * Normalised windows for a model. Per clip, frames are normalised by a FrameNormalizer exactly as the live stream
 * does (`process`, frame by frame: normalise with the statistics so far, then observe if speech): `global` with one
 * stateless normaliser, `adaptive` with one normaliser per speaker that hears that speaker's clips one after another
 * (the order: see `order`), as a call's normaliser hears its caller. Then windows of `window.frames` frames every
 * `window.hop` frames are kept if at least `minSpeechRatio` of their frames are speech. A clip shorter than a
 * window gives one window centred on its speech, padded by repeating its first and last (normalised) frames; a
 * clip where no window qualifies gives its single window with the most speech frames. Clips with an unknown label
 * (`unknown label`) or no speech frame (`no speech`) are skipped and listed; skipped clips do not feed the
 * speaker's normaliser.
 */
export function makeWindows(
  clips: ClipRecord[],
  feats: ClipFeatures[],
  opts: MakeWindowsOptions,
): { set: WindowSet; skipped: { clip: ClipRecord; reason: string }[] } {
  const dims = checkWindowOptions(clips, feats, opts);
  const W = opts.window.frames;
  const labelIndex = new Map(opts.labels.map((l, i) => [l, i]));
  const order = processingOrder(clips, opts.order ?? (opts.normalization.kind === 'adaptive' ? 'by-speaker-shuffled' : 'as-given'), opts.seed ?? 0);

  // Pass 1: which windows (masks only), so the output is allocated once.
  const skipped: { clip: ClipRecord; reason: string }[] = [];
  const picks: WindowPick[] = [];
  const used: number[] = [];
  for (const i of order) {
    if (!labelIndex.has(clips[i].label)) {
      skipped.push({ clip: clips[i], reason: 'unknown label' });
      continue;
    }
    const starts = pickWindows(feats[i].speech, feats[i].frames, opts.window);
    if (typeof starts === 'string') {
      skipped.push({ clip: clips[i], reason: starts });
      continue;
    }
    used.push(i);
    for (const s of starts) picks.push({ clip: i, start: s });
  }

  // Pass 2: normalise each used clip in processing order and copy its windows out.
  const n = picks.length;
  const x = new Float32Array(n * W * dims);
  const y = new Int32Array(n);
  const clipOf = new Int32Array(n);
  const normalizers = new Map<string, { norm: FrameNormalizer; heardS: number }>();
  const global = opts.normalization.kind === 'global' ? new FrameNormalizer(opts.normalization, dims) : null;
  const adapt = opts.adapt ?? { mode: 'speaker' };
  const fc = resolveFeatureConfig(opts.window.feature);
  const frameS = fc.hop / fc.sampleRate;
  let p = 0;
  for (const i of used) {
    const f = feats[i];
    let norm = global;
    if (!norm) {
      let slot = adapt.mode === 'clip' ? undefined : normalizers.get(clips[i].speaker);
      if (!slot) {
        slot = { norm: new FrameNormalizer(opts.normalization, dims), heardS: 0 };
        if (adapt.mode !== 'clip') normalizers.set(clips[i].speaker, slot);
      } else if (adapt.mode === 'call' && slot.heardS >= adapt.callSeconds) {
        // The call is over: the next clip is a new call of the same speaker, heard from the global prior.
        slot.norm.reset();
        slot.heardS = 0;
      }
      slot.heardS += f.frames * frameS;
      norm = slot.norm;
    }
    const z = new Float32Array(f.frames * dims);
    norm.processMany(f.features, f.frames, f.speech, z);
    for (; p < n && picks[p].clip === i; p++) {
      const { start } = picks[p];
      const base = p * W * dims;
      for (let k = 0; k < W; k++) {
        const t = Math.min(f.frames - 1, Math.max(0, start + k));
        x.set(z.subarray(t * dims, (t + 1) * dims), base + k * dims);
      }
      y[p] = labelIndex.get(clips[i].label)!;
      clipOf[p] = i;
    }
  }
  return {
    set: { x, n, frames: W, dims, y, labels: opts.labels, clip: clipOf, clips },
    skipped,
  };
}
