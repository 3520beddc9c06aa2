/**
 * Distributed replay: recordings as jobs of a BullMQ queue on Redis, replayed by `callmood worker` processes on any
 * number of machines that see the recordings and the output folder at the same paths (a shared folder).
 *
 * - A job is one recording. Its id is a hash of the recording's absolute path, size and modification time and of
 *   the replay settings and output place (see {@link replayJobId}), so enqueuing the same night twice adds nothing
 *   the second time, while a file that changed (or the same night replayed with another model or into another
 *   folder) is a new job.
 * - A worker replays each job on one of its long-lived replay threads (run.ts's worker module, one model per thread),
 *   writes the events (JSON lines) and the HTML report to temporary names in the output folder, and renames them
 *   into place: a file under its final name is always complete, and a retried job overwrites it whole.
 * - A worker that dies mid-job (SIGKILL, a lost machine) stops renewing the job's lock; after `lockDurationMs` the
 *   stalled-job check of any live worker (every `stalledIntervalMs`) puts the job back in the queue. A job that
 *   fails (a broken file) is retried `attempts` times in all, then kept as failed with its error message, until
 *   `callmood queue retry` ({@link retryFailed}) puts it back with its attempts anew.
 * - A killed attempt may leave its hidden temporary outputs behind; a later attempt at the same output sweeps those
 *   older than twice the lock plus a minute (no live attempt keeps one that long: they are written at the end and
 *   renamed at once; the minute covers a worker's clock against a shared folder's).
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { CallDigest } from '../report/digest.js';
import { resolvePackagePath } from '../config/load.js';
import { DEFAULT_OPTIONS, REDIS_PREFIX_ALLOWED, REDIS_URL_ALLOWED } from '../config/options.js';
import { redactUrl } from '../util/redis-url.js';
import { startReplayThread, type JobOutcome, type ReplayThread, type RunSettings } from './run.js';

/** The queue's name under the key prefix: keys are `PREFIX:replay:…`. */
export const QUEUE_NAME = 'replay';
/** The `redis.prefix` option's default. */
export const DEFAULT_QUEUE_PREFIX = DEFAULT_OPTIONS.redis.prefix;
export { REDIS_URL_ALLOWED, REDIS_PREFIX_ALLOWED as PREFIX_ALLOWED };

/** Defaults of a worker's lock: see {@link QueueWorkerOptions}. */
export const DEFAULT_LOCK_DURATION_MS = 30_000;
export const DEFAULT_STALLED_INTERVAL_MS = 15_000;
/** Times a job may be found stalled (its worker gone) and put back before it is failed: a file that kills its worker every time stops there. */
export const MAX_STALLED = 2;
/** Attempts of a job that fails (the first included) before it is kept as failed. */
export const DEFAULT_ATTEMPTS = 3;
/** Finished jobs are kept this long: while kept, enqueuing the same file again adds nothing. */
export const KEEP_FINISHED_S = 7 * 24 * 3600;

/** How the policy file reaches a worker: the shipped one is looked up in the worker's own installation. */
const policySchema = z.union([z.null(), z.literal('shipped'), z.strictObject({ file: z.string().min(1) })]);

/** A job's data: one recording, where its outputs go, and the settings to replay it with. */
const jobDataSchema = z.strictObject({
  format: z.literal(1),
  path: z.string().min(1),
  name: z.string().min(1),
  reportPath: z.string().min(1),
  eventsPath: z.string().min(1),
  backHref: z.string().optional(),
  modelDir: z.string().min(1),
  policy: policySchema,
  replay: z.record(z.string(), z.unknown()),
});
export type QueueJobData = z.infer<typeof jobDataSchema>;

/** What a finished job returns (kept in Redis with the job). */
export interface QueueJobResult {
  name: string;
  callSid: string;
  /** `host:pid` of the worker that replayed it. */
  worker: string;
  reportPath: string;
  eventsPath: string;
  digest: CallDigest;
}

/**
 * A job's id: `r` + 32 hex digits of SHA-256 over the recording's absolute path, size and modification time, and
 * the settings and output paths. A stat, not a content hash: hashing 50,000 recordings would read the whole night on
 * the enqueuing machine before the first job is queued; a changed file gets a new size or time, and so is replayed.
 */
export function replayJobId(file: { path: string; size: number; mtimeMs: number }, data: Omit<QueueJobData, 'format' | 'path' | 'name'>): string {
  const key = JSON.stringify([file.path, file.size, Math.round(file.mtimeMs), data.reportPath, data.eventsPath, data.modelDir, data.policy, data.replay]);
  return 'r' + createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 32);
}

/**
 * A Redis connection. `worker`: retries forever (BullMQ's workers need `maxRetriesPerRequest: null`), as a worker
 * should ride out a Redis restart; otherwise a command fails after a few tries. Connects at once; rejects with an
 * INVALID_OPTION naming `option` and the URL (without password) when Redis does not answer.
 */
export async function connectRedis(url: string, option: string, worker = false): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    maxRetriesPerRequest: worker ? null : 3,
    retryStrategy: (n) => Math.min(n * 200, 2000),
  });
  let lastError: NodeJS.ErrnoException | null = null;
  // Reported where a command fails; ioredis reconnects by itself.
  redis.on('error', (err: NodeJS.ErrnoException) => void (lastError = err));
  try {
    await Promise.race([
      redis.connect().then(() => redis.ping()),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref()),
    ]);
  } catch (err) {
    redis.disconnect();
    const why = (lastError ?? err) as NodeJS.ErrnoException;
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${option} ${redactUrl(url)}: cannot reach Redis: ${why.code ?? why.message}`, { cause: err });
  }
  return redis;
}

/** The replay queue on `redis` under `prefix`. */
export function replayQueue(redis: Redis, prefix: string): Queue<QueueJobData, QueueJobResult> {
  const queue = new Queue<QueueJobData, QueueJobResult>(QUEUE_NAME, { connection: redis, prefix });
  // Without a listener BullMQ prints each connection error with its stack; the commands that fail say it once, in words.
  queue.on('error', () => undefined);
  return queue;
}

/** One recording to enqueue: its file's identity and its job's data. */
export interface QueueItem {
  size: number;
  mtimeMs: number;
  data: QueueJobData;
}

/**
 * Adds a job per item unless one with its id is already there (waiting, running, done or failed); resolves to every
 * item's job id, in order, and which were added.
 */
export async function enqueueReplays(
  queue: Queue<QueueJobData, QueueJobResult>,
  items: readonly QueueItem[],
  options: { attempts?: number } = {},
): Promise<{ ids: string[]; added: number; already: number }> {
  const client = await queue.client;
  const ids = items.map((it) => replayJobId({ path: it.data.path, size: it.size, mtimeMs: it.mtimeMs }, it.data));
  let added = 0;
  const CHUNK = 500;
  for (let i = 0; i < items.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    const pipe = client.pipeline();
    for (const id of chunk) pipe.exists(queue.toKey(id));
    const exists = ((await pipe.exec()) ?? []).map(([, v]) => v === 1);
    const fresh = chunk.map((id, j) => ({ id, item: items[i + j], there: exists[j] })).filter((x) => !x.there);
    // BullMQ itself adds nothing for an id it has: two enqueuers racing still make one job (only the counts differ).
    await queue.addBulk(
      fresh.map(({ id, item }) => ({
        name: 'replay',
        data: item.data,
        opts: {
          jobId: id,
          attempts: options.attempts ?? DEFAULT_ATTEMPTS,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: KEEP_FINISHED_S },
          removeOnFail: { age: KEEP_FINISHED_S },
        },
      })),
    );
    added += fresh.length;
  }
  return { ids, added, already: ids.length - added };
}

/** Where a set of jobs stands. `waiting` includes jobs delayed before a retry; `missing`, jobs no longer in Redis (removed after KEEP_FINISHED_S, or by hand). */
export interface BatchStatus {
  total: number;
  done: number;
  failed: number;
  active: number;
  waiting: number;
  missing: number;
}

/**
 * Where the jobs `ids` stand, asking only about those still unfinished (`finished` collects the finished ones across
 * calls: pass the same map each time): one pipelined round trip per 1000 of them, and the active list.
 */
export async function batchStatus(queue: Queue<QueueJobData, QueueJobResult>, ids: readonly string[], finished: Map<string, 'done' | 'failed' | 'missing'>): Promise<BatchStatus> {
  const client = await queue.client;
  const open = ids.filter((id) => !finished.has(id));
  const CHUNK = 1000;
  for (let i = 0; i < open.length; i += CHUNK) {
    const chunk = open.slice(i, i + CHUNK);
    const pipe = client.pipeline();
    for (const id of chunk) pipe.zscore(queue.toKey('completed'), id).zscore(queue.toKey('failed'), id).exists(queue.toKey(id));
    const results = (await pipe.exec()) ?? [];
    // A pipeline cut by a lost connection answers each command with an error, not a throw: reading those as values
    // would count every job as done.
    const failed = results.find(([err]) => err);
    if (failed || results.length !== 3 * chunk.length) throw failed?.[0] ?? new Error('the status pipeline got no answer');
    const r = results.map(([, v]) => v);
    chunk.forEach((id, j) => {
      if (r[3 * j] !== null) finished.set(id, 'done');
      else if (r[3 * j + 1] !== null) finished.set(id, 'failed');
      else if (r[3 * j + 2] === 0) finished.set(id, 'missing');
    });
  }
  const activeIds = new Set(await client.lrange(queue.toKey('active'), 0, -1));
  const s: BatchStatus = { total: ids.length, done: 0, failed: 0, active: 0, waiting: 0, missing: 0 };
  for (const id of ids) {
    const f = finished.get(id);
    if (f) s[f]++;
    else if (activeIds.has(id)) s.active++;
    else s.waiting++;
  }
  return s;
}

/** The whole queue's counts (every batch enqueued under this prefix). */
export interface QueueCounts {
  waiting: number;
  active: number;
  /** Failed once, waiting for their next attempt. */
  delayed: number;
  completed: number;
  failed: number;
  paused: number;
}

export async function queueCounts(queue: Queue<QueueJobData, QueueJobResult>): Promise<QueueCounts> {
  const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'paused');
  return { waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0, paused: c.paused ?? 0 };
}

/** A failed job: its recording and its last error. */
export interface FailedJob {
  id: string;
  name: string;
  path: string;
  attempts: number;
  error: string;
}

export function describeFailed(job: Job<QueueJobData, QueueJobResult>): FailedJob {
  return { id: String(job.id), name: job.data?.name ?? '?', path: job.data?.path ?? '?', attempts: job.attemptsMade, error: job.failedReason ?? 'unknown' };
}

/** What `retryFailed` put back. */
export interface RetriedJobs {
  retried: FailedJob[];
  /** Failed jobs left as they were (not matching the filter). */
  left: number;
  /** Jobs that could not be put back (removed or taken meanwhile), with BullMQ's reason. */
  refused: Array<FailedJob & { reason: string }>;
}

/**
 * Puts failed jobs back in the queue (all, or those whose recording's name or job id is in `only`), each with its
 * attempts counted anew: after the cause is mended (a file replaced, a disk freed), the workers replay them.
 */
export async function retryFailed(queue: Queue<QueueJobData, QueueJobResult>, only: ReadonlySet<string> | null): Promise<RetriedJobs> {
  const failed: Job<QueueJobData, QueueJobResult>[] = [];
  for (let at = 0; ; at += 100) {
    const page = await queue.getFailed(at, at + 99);
    failed.push(...page);
    if (page.length < 100) break;
  }
  const out: RetriedJobs = { retried: [], left: 0, refused: [] };
  for (const job of failed) {
    if (only && !only.has(String(job.id)) && !only.has(job.data?.name ?? '')) {
      out.left++;
      continue;
    }
    const was = describeFailed(job);
    try {
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      out.retried.push(was);
    } catch (err) {
      out.refused.push({ ...was, reason: (err as Error).message });
    }
  }
  return out;
}

/** Jobs by id (those still in Redis), fetched a hundred at a time. */
export async function fetchJobs(queue: Queue<QueueJobData, QueueJobResult>, ids: readonly string[]): Promise<Job<QueueJobData, QueueJobResult>[]> {
  const out: Job<QueueJobData, QueueJobResult>[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const got = await Promise.all(ids.slice(i, i + 100).map((id) => queue.getJob(id)));
    for (const j of got) if (j) out.push(j);
  }
  return out;
}

/** A worker's choices. */
export interface QueueWorkerOptions {
  /** Jobs replayed at once, each on its own replay thread. Default: one per core. */
  concurrency: number;
  /**
   * How long a job's lock lasts without renewal (the worker renews it every half of this while the job runs). A
   * worker that dies is noticed this long after its last renewal at the earliest: short means a lost file is taken up
   * again sooner; too short, and a worker whose event loop is held up (a long GC, an overloaded machine) loses its lock
   * while still replaying, and the job is replayed twice (harmless to the outputs, which are renamed into place whole,
   * but wasted work).
   */
  lockDurationMs: number;
  /** How often this worker looks for stalled jobs (locks expired) of any worker; each look is one small Lua script. */
  stalledIntervalMs: number;
  /** One line per event (active, done, failed, closing), without the newline. */
  log: (line: string) => void;
}

/** A temporary name beside `path`, unique to this attempt: hidden, and ending in .tmp so that nothing reads it as an output. */
function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`);
}

/**
 * Removes the temporary files that earlier attempts at an output left (killed workers: see tempBeside) and that were
 * last written more than `staleMs` ago. A folder is listed at most once per `staleMs`: a temporary file that was not
 * there at the last listing is younger than that listing, so it cannot be stale before the next one is due. A night's
 * output folder holds every report, and listing it for every job would cost more than replaying some of them.
 */
class TempSweeper {
  /** Per folder: when it was listed, and the temporary files seen then with their modification times. */
  private readonly listed = new Map<string, { at: number; temps: Map<string, number> }>();
  constructor(private readonly staleMs: number) {}

  /** Sweeps the stale temporary files of `paths`; how many went. Never throws (a sweep must not fail a job). */
  async sweep(paths: readonly string[], now = Date.now()): Promise<number> {
    let swept = 0;
    for (const path of paths) {
      const dir = dirname(path);
      const head = `.${basename(path)}.`;
      try {
        const seen = await this.listing(dir, now);
        for (const [name, mtimeMs] of seen.temps) {
          if (!name.startsWith(head) || now - mtimeMs <= this.staleMs) continue;
          await rm(join(dir, name), { force: true });
          seen.temps.delete(name);
          swept++;
        }
      } catch {
        // The folder unreadable: the job's own writes will say so.
      }
    }
    return swept;
  }

  private async listing(dir: string, now: number): Promise<{ at: number; temps: Map<string, number> }> {
    const cached = this.listed.get(dir);
    if (cached && now - cached.at <= this.staleMs) return cached;
    const temps = new Map<string, number>();
    for (const name of await readdir(dir)) {
      if (!name.startsWith('.') || !name.endsWith('.tmp')) continue;
      const st = await stat(join(dir, name)).catch(() => null);
      if (st) temps.set(name, st.mtimeMs);
    }
    const fresh = { at: now, temps };
    this.listed.set(dir, fresh);
    return fresh;
  }
}

/** Idle replay threads, by settings; at most `max` threads in all. */
class ThreadPool {
  private idle = new Map<string, ReplayThread[]>();
  private count = 0;
  constructor(private readonly max: number) {}

  async take(settings: RunSettings): Promise<{ key: string; thread: ReplayThread }> {
    const key = JSON.stringify(settings);
    const mine = this.idle.get(key);
    if (mine && mine.length > 0) return { key, thread: mine.pop()! };
    if (this.count >= this.max) {
      // Every thread is idle under other settings (the queue's concurrency equals the threads): end one of them.
      for (const [k, list] of this.idle) {
        const t = list.pop();
        if (!t) continue;
        if (list.length === 0) this.idle.delete(k);
        this.count--;
        await t.close();
        break;
      }
    }
    this.count++;
    try {
      return { key, thread: await startReplayThread(settings) };
    } catch (err) {
      this.count--;
      throw err;
    }
  }

  give(key: string, thread: ReplayThread): void {
    const list = this.idle.get(key) ?? [];
    list.push(thread);
    this.idle.set(key, list);
  }

  async discard(thread: ReplayThread): Promise<void> {
    this.count--;
    await thread.close().catch(() => {});
  }

  async close(): Promise<void> {
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    this.count = 0;
    await Promise.all(all.map((t) => t.close().catch(() => {})));
  }
}

/** The settings a job's replay thread runs with, resolved on this machine. */
function settingsOf(d: QueueJobData): RunSettings {
  return {
    modelDir: d.modelDir,
    replay: d.replay,
    policyFile: d.policy === null ? null : d.policy === 'shipped' ? resolvePackagePath('config/policy.json') : d.policy.file,
    keepEvents: true,
  };
}

/** A running worker: `close()` stops taking jobs and waits for the active ones; `close(true)` leaves them to the stalled-job check. */
export interface ReplayQueueWorker {
  readonly worker: Worker<QueueJobData, QueueJobResult>;
  readonly id: string;
  close(force?: boolean): Promise<void>;
}

/** Starts a worker taking replay jobs from the queue `prefix` on `redis` (a connection made with `worker` true). */
export function startQueueWorker(redis: Redis, prefix: string, o: QueueWorkerOptions): ReplayQueueWorker {
  const id = `${hostname()}:${process.pid}`;
  const pool = new ThreadPool(o.concurrency);
  const sweeper = new TempSweeper(2 * o.lockDurationMs + 60_000);
  const process_ = async (job: Job<QueueJobData, QueueJobResult>): Promise<QueueJobResult> => {
    const parsed = jobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`${ErrorCodes.INVALID_OPTION}: job ${job.id} is not a replay job this callmood reads: ${parsed.error.issues[0]?.message}`);
    const d = parsed.data;
    o.log(`active ${d.name} job ${job.id} attempt ${job.attemptsMade + 1}/${job.opts.attempts ?? 1}`);
    // The report and its events are written side by side: one folder to make, most often.
    for (const dir of new Set([dirname(d.reportPath), dirname(d.eventsPath)])) await mkdir(dir, { recursive: true });
    const reportTmp = tempBeside(d.reportPath);
    const eventsTmp = tempBeside(d.eventsPath);
    try {
      const { key, thread } = await pool.take(settingsOf(d));
      let outcome: JobOutcome;
      try {
        outcome = await thread.run({ path: d.path, name: d.name, reportPath: reportTmp, backHref: d.backHref });
      } catch (err) {
        await pool.discard(thread);
        throw new Error(`${ErrorCodes.INTERNAL}: ${d.name}: the replay thread died: ${(err as Error).message}`);
      }
      pool.give(key, thread);
      if (!outcome.ok) throw new Error(`${outcome.error.code}: ${outcome.error.message}`);
      await writeFile(eventsTmp, (outcome.events ?? []).map((e) => JSON.stringify(e) + '\n').join(''));
      // Events first, the report last: a report under its final name means both are complete.
      await rename(eventsTmp, d.eventsPath);
      await rename(reportTmp, d.reportPath);
      o.log(`done ${d.name} job ${job.id} ${outcome.digest.durationMs} ms of audio`);
      return { name: d.name, callSid: outcome.callSid, worker: id, reportPath: d.reportPath, eventsPath: d.eventsPath, digest: outcome.digest };
    } finally {
      await rm(reportTmp, { force: true });
      await rm(eventsTmp, { force: true });
      const swept = await sweeper.sweep([d.reportPath, d.eventsPath]);
      if (swept > 0) o.log(`swept ${swept} temporary file(s) of ${d.name} left by killed attempts`);
    }
  };
  const worker = new Worker<QueueJobData, QueueJobResult>(QUEUE_NAME, process_, {
    connection: redis,
    prefix,
    concurrency: o.concurrency,
    lockDuration: o.lockDurationMs,
    stalledInterval: o.stalledIntervalMs,
    maxStalledCount: MAX_STALLED,
  });
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = job.attemptsMade >= (job.opts.attempts ?? 1);
    o.log(`failed ${job.data?.name ?? job.id} job ${job.id} attempt ${job.attemptsMade}/${job.opts.attempts ?? 1}${final ? '' : ', will retry'}: ${err.message}`);
  });
  worker.on('error', (err) => o.log(`error ${err.message}`));
  let closing: Promise<void> | null = null;
  return {
    worker,
    id,
    close(force = false) {
      if (force) return worker.close(true).then(() => pool.close());
      closing ??= worker.close().then(() => pool.close());
      return closing;
    },
  };
}
