/**
 * Replaying many recordings: each file is one job (replay, digest, and its report written by whoever replayed it),
 * run on this thread or spread over worker threads, one model per thread and one file at a time per thread.
 *
 * A file's events do not depend on how many threads ran: each file is replayed whole by one thread, with its own
 * batcher, in the same fixed order (see replay.ts). A file that cannot be read or decoded, or fails in any other way,
 * becomes a failed outcome with its CallmoodError's code and message; the other files go on. Only what would fail
 * every file (the model cannot be loaded, the policy file is invalid) rejects the whole run.
 */
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { CallmoodError, ErrorCodes, type ErrorCode } from '../errors.js';
import { describeEnd, ThreadGoneError, WorkerPool, type RestartOptions } from '../util/worker-pool.js';
import type { CallmoodEvent, Track } from '../stream/events.js';
import { renderCallReport } from '../report/call-report.js';
import { digestEvents, type CallDigest } from '../report/digest.js';
import { resolveModelDir } from '../config/load.js';
import { readMetadata } from '../model/io.js';
import { loadReplayModel, replayFile, resolveReplayOptions, type EventObserver, type ReplayModel, type ReplayOptions, type ReplayResult } from './replay.js';
import { policyObserverFactory, reportAngerThreshold } from './policy.js';
import type { AngerThreshold } from '../policy/anger.js';

/** One recording to replay. */
export interface ReplayJob {
  /** File path to read. */
  path: string;
  /** Name for ids and reports: path relative to the replayed folder (or the file's base name). */
  name: string;
  /** Where to write its HTML report; null for none. */
  reportPath: string | null;
  /** Link from the report back to the summary page, relative to the report. */
  backHref?: string;
}

/** How a job went. */
export type JobOutcome =
  | {
      ok: true;
      name: string;
      callSid: string;
      digest: CallDigest;
      /** The events, when asked for (`keepEvents`). */
      events: CallmoodEvent[] | null;
      source: ReplayResult['source'];
      channels: Partial<Record<Track, number>>;
      stats: ReplayResult['stats'];
    }
  | { ok: false; name: string; error: { code: string; message: string } };

/** What every thread needs to replay jobs; plain data, so it can be handed to worker threads. */
export interface RunSettings {
  /** Model directory. */
  modelDir: string;
  /** Replay options (channels, stream settings, batching). */
  replay: Partial<ReplayOptions>;
  /** A dialog policy file, run in dry-run mode on each call; null for none. */
  policyFile: string | null;
  /** Return each call's events with its outcome (for --json). */
  keepEvents: boolean;
}

/** Run-wide choices that stay on this thread. */
export interface RunOptions {
  /** Worker threads; 0 or 1 replays on this thread. Default: one per core, at most one per file. */
  workers?: number;
  /** Called as each job ends, in completion order. */
  onOutcome?: (index: number, outcome: JobOutcome) => void;
}

/** A thread's loaded model and policy. */
export interface ReplayContext {
  model: ReplayModel;
  /** When the reports call the caller angry: the policy's own anger threshold (see reportAngerThreshold). */
  anger: AngerThreshold;
  makeObserver: (() => EventObserver) | null;
  settings: RunSettings;
}

/** Loads the model and the policy for this thread. Throws what would fail every job. */
export async function createContext(settings: RunSettings): Promise<ReplayContext> {
  const makeObserver = settings.policyFile ? await policyObserverFactory(settings.policyFile) : null;
  const anger = reportAngerThreshold(settings.policyFile);
  const model = await loadReplayModel(settings.modelDir);
  return { model, makeObserver, anger, settings };
}

function failure(name: string, err: unknown): JobOutcome {
  const e = err as { code?: string; message?: string };
  const code = typeof e?.code === 'string' && e.code.startsWith('CALLMOOD_ERR_') ? e.code : ErrorCodes.INTERNAL;
  const message = err instanceof CallmoodError ? err.message : `${name}: ${e?.message ?? String(err)}${e?.code ? ` (${e.code})` : ''}`;
  return { ok: false, name, error: { code, message } };
}

/** Replays one job on this thread: the events, their digest, and the report file. Never throws. */
export async function runJob(job: ReplayJob, ctx: ReplayContext): Promise<JobOutcome> {
  try {
    const r = await replayFile(job.path, ctx.model, ctx.settings.replay, { name: job.name, observe: ctx.makeObserver?.() });
    const digest = digestEvents(r.events);
    if (job.reportPath) {
      const html = await renderCallReport({
        name: job.name,
        events: r.events,
        labels: ctx.model.metadata.labels,
        backHref: job.backHref,
        meta: reportMeta(r, ctx),
        anger: ctx.anger,
      });
      await writeFile(job.reportPath, html);
    }
    return { ok: true, name: job.name, callSid: r.callSid, digest, events: ctx.settings.keepEvents ? r.events : null, source: r.source, channels: r.channels, stats: r.stats };
  } catch (err) {
    return failure(job.name, err);
  }
}

/** A telephone line's rate: what a live call's μ-law decodes to. */
const LIVE_RATE = 8000;

function khz(hz: number): string {
  return `${Number((hz / 1000).toFixed(3))} kHz`;
}

/**
 * How a recording's audio reaches the model, as the report's "path" row says it: the file's rate against a live
 * call's 8 kHz, and whether the stream resamples it to the model's feature rate (`metadata.window.feature.sampleRate`;
 * EmotionTrack resamples only when the two differ).
 */
export function signalPath(fileRate: number, featureRate: number): string {
  const file = fileRate === LIVE_RATE ? `${khz(fileRate)}, as a live call` : `${khz(fileRate)} (a live call is ${khz(LIVE_RATE)})`;
  if (fileRate === featureRate) return `${file}: not resampled, the model's features are ${khz(featureRate)} too`;
  return `${file}: resampled ${khz(fileRate)} → ${khz(featureRate)} (the model's feature rate) in the stream`;
}

function reportMeta(r: ReplayResult, ctx: ReplayContext): Record<string, string> {
  const ch = (i: number | undefined) => (i === undefined ? 'not replayed' : `channel ${i}${i === 0 ? ' (left)' : i === 1 ? ' (right)' : ''}`);
  // The stream settings the replay ran with (the defaults merged in), not the ones given.
  const s = resolveReplayOptions(ctx.settings.replay).stream;
  return {
    recording: `${r.source.container}, ${r.source.encoding}, ${r.source.sampleRate} Hz, ${r.source.channels} channel(s)`,
    caller: ch(r.channels.inbound),
    agent: ch(r.channels.outbound),
    path: signalPath(r.source.sampleRate, ctx.model.metadata.window.feature.sampleRate),
    model: `${ctx.model.dir} (${ctx.model.metadata.arch})`,
    'window hop': `${s.hopMs} ms`,
    policy: ctx.settings.policyFile ? `${ctx.settings.policyFile} (dry run)` : 'none',
  };
}

/** Checks, on this thread and before any worker starts, what would fail every job: the options, the policy file, the model's metadata. */
export async function checkSettings(settings: RunSettings): Promise<void> {
  resolveReplayOptions(settings.replay);
  if (settings.policyFile) await policyObserverFactory(settings.policyFile);
  await readMetadata(resolveModelDir(settings.modelDir));
}

/** Replays every job (see the module comment); resolves to the outcomes in job order. */
export async function runReplays(jobs: readonly ReplayJob[], settings: RunSettings, options: RunOptions = {}): Promise<JobOutcome[]> {
  await checkSettings(settings);
  const outcomes: JobOutcome[] = new Array(jobs.length);
  const workers = Math.min(options.workers ?? availableParallelism(), jobs.length);
  const done = (i: number, o: JobOutcome) => {
    outcomes[i] = o;
    options.onOutcome?.(i, o);
  };
  if (jobs.length === 0) return outcomes;
  if (workers <= 1) {
    const ctx = await createContext(settings);
    try {
      for (let i = 0; i < jobs.length; i++) done(i, await runJob(jobs[i], ctx));
    } finally {
      await ctx.model.close();
    }
    return outcomes;
  }
  // The lanes take the next job when their last one is done, one per thread; a thread that dies fails its job and
  // is replaced, up to 3 times a slot. More deaths, or a replacement that cannot start, stop the run: the lanes take
  // no more jobs (those running finish) and the run rejects with why.
  const wasReady = new Array<boolean>(workers).fill(false);
  const max = 3;
  const pool = replayPool(settings, workers, { max, resetOnAnswer: false, allow: (end, slot) => end.cause !== 'refused' && wasReady[slot] });
  let stop: unknown = null;
  pool.on('started', (t) => (wasReady[t.slot] = false));
  pool.on('ready', (t) => (wasReady[t.slot] = true));
  pool.on('gone', (end, slot, restarting) => {
    if (restarting) return;
    if (end.cause === 'refused' || !wasReady[slot]) stop ??= startError(new ThreadGoneError(end, slot));
    // Restarts allowed, none left: the slot's deaths (never forgiven) went past `max`.
    else stop ??= new CallmoodError(ErrorCodes.INTERNAL, `replay workers died ${max + 1} times; stopping`);
  });
  try {
    await pool.start().catch((err: unknown) => Promise.reject(startError(err)));
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < jobs.length && !stop) {
        const i = next++;
        try {
          done(i, await askThread(pool, jobs[i]));
        } catch (err) {
          done(i, failure(jobs[i].name, new CallmoodError(ErrorCodes.INTERNAL, `${jobs[i].name}: the replay worker died: ${(err as Error).message}`)));
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, lane));
  } finally {
    await pool.close();
  }
  if (stop) throw stop;
  return outcomes;
}

/** One long-lived replay thread (the model and policy loaded once), fed one job at a time by its caller. */
export interface ReplayThread {
  /** Replays one job on the thread; rejects only when the thread dies (then start another). */
  run(job: ReplayJob): Promise<JobOutcome>;
  close(): Promise<void>;
}

/**
 * Starts a replay thread for callers that take jobs one by one from elsewhere (the Redis queue worker) instead of a
 * list known up front. Rejects with what would fail every job (the model cannot be loaded, the policy is invalid).
 */
export async function startReplayThread(settings: RunSettings): Promise<ReplayThread> {
  const pool = replayPool(settings, 1);
  try {
    await pool.start();
  } catch (err) {
    await pool.close();
    throw startError(err);
  }
  return {
    run: (job) => askThread(pool, job),
    close: () => pool.close(),
  };
}

interface WorkerMessage {
  ready?: true;
  error?: { code: string; message: string };
  outcome?: JobOutcome;
}

/** Replay threads on the shared pool: the handshake is the worker's `{ ready }` or its `{ error }`; one job at a time each. */
function replayPool(settings: RunSettings, threads: number, restart?: RestartOptions): WorkerPool {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new WorkerPool({
    moduleUrl: new URL(`./worker.${ext}`, import.meta.url).href,
    data: { settings },
    threads,
    restart,
    ready: (m) => {
      const msg = m as WorkerMessage;
      if (msg.ready) return true;
      throw new CallmoodError((msg.error?.code as ErrorCode) ?? ErrorCodes.INTERNAL, msg.error?.message ?? 'the replay worker did not start');
    },
  });
}

/** What a replay thread that could not start rejects with: what the worker said, its exception, or its exit code. */
function startError(err: unknown): unknown {
  if (!(err instanceof ThreadGoneError)) return err;
  if (err.end.cause === 'crashed' || err.end.cause === 'refused') return err.end.error;
  return new CallmoodError(ErrorCodes.INTERNAL, `the replay worker ${describeEnd(err.end)} while starting`);
}

/**
 * One job on a replay thread; the worker answers jobs in order, without an id. Rejects only when the thread dies,
 * with its exception or `exit code N`.
 */
function askThread(pool: WorkerPool, job: ReplayJob): Promise<JobOutcome> {
  return pool.request<WorkerMessage>({ job }).then(
    (m) => m.outcome!,
    (err: unknown) => {
      if (!(err instanceof ThreadGoneError)) throw err;
      throw err.end.cause === 'crashed' ? err.end.error : new Error(err.end.cause === 'exited' ? `exit code ${err.end.code}` : describeEnd(err.end));
    },
  );
}
