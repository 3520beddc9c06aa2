/**
 * `callmood replay --queue redis://HOST:PORT PATH…`: one job per recording on a Redis queue (src/replay/queue.ts),
 * replayed by `callmood worker` processes; this process follows the jobs until all are done, then writes index.html.
 */
import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { jsonTarget, openJsonOutput, integer } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import { DEFAULT_OPTIONS, resolveOptions, type CallmoodOptionsInput } from '../config/options.js';
import { redactUrl } from '../util/redis-url.js';
import { parseChannelSpec } from '../replay/channels.js';
import { checkSettings, type RunSettings } from '../replay/run.js';
import type { SummaryRow } from '../report/summary-page.js';
import {
  DEFAULT_ATTEMPTS,
  DEFAULT_QUEUE_PREFIX,
  PREFIX_ALLOWED,
  REDIS_URL_ALLOWED,
  batchStatus,
  connectRedis,
  describeFailed,
  enqueueReplays,
  fetchJobs,
  replayQueue,
  type BatchStatus,
  type FailedJob,
  type QueueItem,
  type QueueJobData,
} from '../replay/queue.js';
import { isFolder, listRecordings, noRecordings, renderIndex, replayOptionsOf, replayPolicyFile, reportFileName, type QueueCliOptions, type ReplayCliOptions, type SkippedFile } from './recordings.js';

/** The options `replay` has for the queue. */
export type { QueueCliOptions };

/** Whether `redis` passes the configuration's own check of its `redis` option (config/options.ts holds the patterns). */
function validRedisOption(redis: { url?: string; prefix?: string }): boolean {
  try {
    resolveOptions({ validateSignatures: false, redis }, {});
    return true;
  } catch {
    return false;
  }
}

/** A Redis URL option's value, or a usage error saying what is allowed. */
export const redisUrl = (name: string) => (v: string): string => {
  if (!validRedisOption({ url: v })) throw new InvalidArgumentError(`${name} must be ${REDIS_URL_ALLOWED}, got '${redactUrl(v)}'`);
  return v;
};

/** A key prefix option's value. */
export const keyPrefix = (v: string): string => {
  if (!validRedisOption({ prefix: v })) throw new InvalidArgumentError(`--prefix must be ${PREFIX_ALLOWED}, got '${v}'`);
  return v;
};

export const prefixOption = (): Option =>
  new Option('--prefix <p>', `key prefix of the queue on Redis, so that several runs or deployments can share one Redis (default: ${DEFAULT_QUEUE_PREFIX})`).argParser(keyPrefix);

export const queueOptions = {
  queue: new Option('--queue <url>', `enqueue one job per recording on this Redis (${REDIS_URL_ALLOWED}) for 'callmood worker' processes instead of replaying here`).argParser(redisUrl('--queue')),
  prefix: prefixOption(),
  attempts: new Option('--attempts <n>', `with --queue: tries of a recording that fails before it is kept as failed (default ${DEFAULT_ATTEMPTS})`).argParser(integer('--attempts', 1, 100)),
  wait: new Option('--no-wait', 'with --queue: enqueue and exit, without following the jobs (and without index.html)'),
};

const POLL_MS = 1000;

/** The recordings of every path given, each named relative to its folder (or by its file name). */
async function collect(targets: string[]): Promise<{ recordings: { path: string; name: string }[]; skipped: SkippedFile[] }> {
  const recordings: { path: string; name: string }[] = [];
  const skipped: SkippedFile[] = [];
  for (const target of targets) {
    if (!isFolder(target)) {
      recordings.push({ path: resolve(target), name: basename(target) });
      continue;
    }
    const listed = await listRecordings(target);
    recordings.push(...listed.recordings.map((r) => ({ path: resolve(r.path), name: r.name })));
    skipped.push(...listed.skipped);
  }
  if (recordings.length === 0) {
    throw noRecordings(`${targets.join(' ')}: no recordings`, skipped);
  }
  return { recordings, skipped };
}

export async function replayToQueue(targets: string[], o: ReplayCliOptions): Promise<number> {
  const url = o.queue!;
  const prefix = o.prefix ?? DEFAULT_QUEUE_PREFIX;
  if (o.channels !== undefined) parseChannelSpec(o.channels);
  if (o.report) throw new CallmoodError(ErrorCodes.INVALID_OPTION, '--report goes without --queue: with --queue give --report-dir DIR (a folder every worker sees)');
  if (o.workers !== undefined) throw new CallmoodError(ErrorCodes.INVALID_OPTION, "--workers goes without --queue: with --queue, each 'callmood worker --concurrency N' says its own");
  if (!o.reportDir) throw new CallmoodError(ErrorCodes.INVALID_OPTION, '--queue needs --report-dir DIR: where the workers write each recording\'s report and events (a folder they all see at that path)');
  const summaryTo = jsonTarget(o.json);
  const config: CallmoodOptionsInput = o.config ? loadConfigFile(o.config) : {};
  const replay = replayOptionsOf(o, config);
  const givenModel = o.model ?? (config.modelDir as string | undefined);
  // A path given here is made absolute; the shipped model and policy are each worker's own.
  const modelDir = givenModel ? resolve(givenModel) : DEFAULT_OPTIONS.modelDir;
  const policyFile = replayPolicyFile(o.policy, config);
  const policy: QueueJobData['policy'] =
    policyFile === null ? null : typeof o.policy !== 'string' && !config.policy?.file ? 'shipped' : { file: resolve(policyFile) };
  const settings: RunSettings = { modelDir, replay, policyFile, keepEvents: false };
  // What would fail every job fails here first, as a usage error.
  await checkSettings(settings);
  const { recordings, skipped } = await collect(targets);

  const reportDir = resolve(o.reportDir);
  try {
    mkdirSync(reportDir, { recursive: true });
  } catch (err) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--report-dir ${o.reportDir}: cannot write there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const summaryOut = summaryTo ? openJsonOutput(summaryTo) : null;
  const taken = new Set<string>();
  const items: QueueItem[] = recordings.map((r) => {
    const file = reportFileName(r.name, taken);
    const st = statSync(r.path);
    return {
      size: st.size,
      mtimeMs: st.mtimeMs,
      data: {
        format: 1,
        path: r.path,
        name: r.name,
        reportPath: join(reportDir, file),
        eventsPath: join(reportDir, file.replace(/\.html$/, '.events.jsonl')),
        backHref: 'index.html',
        modelDir,
        policy,
        replay,
      },
    };
  });

  const redis = await connectRedis(url, '--queue');
  const queue = replayQueue(redis, prefix);
  try {
    const { ids, added, already } = await enqueueReplays(queue, items, { attempts: o.attempts });
    process.stderr.write(`enqueued ${added} recording(s) on ${redactUrl(url)} (prefix ${prefix}); ${already} already there${skipped.length ? `; ${skipped.length} other file(s) skipped` : ''}\n`);
    const summary: Record<string, unknown> = { queue: redactUrl(url), prefix, recordings: ids.length, enqueued: added, already, skipped };
    if (!o.wait) {
      summaryOut?.write(JSON.stringify(summary) + '\n');
      await summaryOut?.close();
      return 0;
    }
    const { status, finished } = await follow(queue, ids, o.progress);
    const jobs = await fetchJobs(queue, ids);
    const failed: FailedJob[] = jobs.filter((j) => finished.get(String(j.id)) === 'failed').map(describeFailed);
    writeIndex(reportDir, items, jobs, targets, settings, skipped, o.channels);
    for (const f of failed) process.stderr.write(`${f.name}  FAILED after ${f.attempts} attempt(s): ${f.error}\n`);
    process.stderr.write(
      `replayed ${status.done} of ${status.total} recording(s)${status.failed ? `; ${status.failed} failed` : ''}${status.missing ? `; ${status.missing} no longer in the queue` : ''}; reports in ${reportDir}${sep}index.html\n`,
    );
    if (failed.length > 0) process.stderr.write(`once mended: callmood queue retry --redis ${redactUrl(url)} --prefix ${prefix} puts the failed back\n`);
    summaryOut?.write(JSON.stringify({ ...summary, status, failed }) + '\n');
    await summaryOut?.close();
    return status.failed > 0 || status.missing > 0 ? 1 : 0;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/** Polls the jobs until every one is finished: a bar on a terminal, else a line on stderr whenever the counts change. */
async function follow(queue: ReturnType<typeof replayQueue>, ids: string[], progress: boolean): Promise<{ status: BatchStatus; finished: Map<string, 'done' | 'failed' | 'missing'> }> {
  const finished = new Map<string, 'done' | 'failed' | 'missing'>();
  const bar =
    progress && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          { format: 'replay queue [{bar}] {value}/{total} done | {failed} failed | {active} active | {waiting} waiting', stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : null;
  let last = '';
  bar?.start(ids.length, 0, { failed: 0, active: 0, waiting: ids.length });
  let lost: string | null = null;
  for (;;) {
    let s: BatchStatus;
    try {
      s = await batchStatus(queue, ids, finished);
    } catch (err) {
      // The jobs are safe in Redis and the workers wait for it too: following waits rather than failing the run.
      if (lost === null) process.stderr.write(`queue: lost Redis (${(err as Error).message}); waiting for it (Ctrl-C leaves the jobs queued; callmood queue status shows them later)\n`);
      lost = (err as Error).message;
      await new Promise((r) => setTimeout(r, POLL_MS));
      continue;
    }
    if (lost !== null) {
      process.stderr.write('queue: Redis is back\n');
      lost = null;
    }
    const line = `queue: done ${s.done}/${s.total}, failed ${s.failed}, active ${s.active}, waiting ${s.waiting}${s.missing ? `, missing ${s.missing}` : ''}`;
    if (bar) bar.update(s.done, { failed: s.failed, active: s.active, waiting: s.waiting });
    else if (line !== last) process.stderr.write(line + '\n');
    last = line;
    if (s.done + s.failed + s.missing >= s.total) {
      bar?.stop();
      return { status: s, finished };
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** index.html across this run's recordings, from what the jobs returned; written whole under a temporary name, then renamed. */
function writeIndex(
  reportDir: string,
  items: QueueItem[],
  jobs: Awaited<ReturnType<typeof fetchJobs>>,
  targets: string[],
  settings: RunSettings,
  skipped: SkippedFile[],
  channels: string | undefined,
): void {
  const byPath = new Map(jobs.map((j) => [j.data.reportPath, j]));
  const rows: SummaryRow[] = items.map(({ data }) => {
    const j = byPath.get(data.reportPath);
    if (j?.returnvalue) return { name: data.name, href: basename(data.reportPath), status: 'ok', digest: j.returnvalue.digest };
    const [code, ...rest] = (j?.failedReason ?? `${ErrorCodes.INTERNAL}: no longer in the queue`).split(': ');
    return { name: data.name, href: null, status: 'failed', error: code.startsWith('CALLMOOD_ERR_') ? { code, message: rest.join(': ') } : { code: ErrorCodes.INTERNAL, message: j?.failedReason ?? '' } };
  });
  const title = targets.length === 1 ? basename(resolve(targets[0])) : `${targets.length} paths`;
  const html = renderIndex(rows, title, settings, channels, skipped);
  const tmp = join(reportDir, `.index.html.${process.pid}.tmp`);
  writeFileSync(tmp, html);
  renameSync(tmp, join(reportDir, 'index.html'));
}
