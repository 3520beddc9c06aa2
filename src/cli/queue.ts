/**
 * `callmood worker`: replays jobs of the Redis replay queue (src/replay/queue.ts) enqueued by `callmood replay
 * --queue`; and `callmood queue status`: that queue's counts and failed jobs.
 */
import { availableParallelism } from 'node:os';
import { Command, Option } from 'commander';
import { integer, jsonOption, jsonTarget, writeJson } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import {
  DEFAULT_LOCK_DURATION_MS,
  DEFAULT_QUEUE_PREFIX,
  DEFAULT_STALLED_INTERVAL_MS,
  MAX_STALLED,
  REDIS_URL_ALLOWED,
  connectRedis,
  describeFailed,
  queueCounts,
  replayQueue,
  retryFailed,
  startQueueWorker,
} from '../replay/queue.js';
import { redactUrl } from '../util/redis-url.js';
import { prefixOption, redisUrl } from './replay-queue.js';

const redisOption = () =>
  new Option('--redis <url>', `the Redis of the replay queue, ${REDIS_URL_ALLOWED} (default: CALLMOOD_REDIS_URL)`).argParser(redisUrl('--redis'));

/** --redis, else CALLMOOD_REDIS_URL (checked as --redis is), else a usage error. */
function redisOf(given: string | undefined): string {
  if (given) return given;
  const env = process.env.CALLMOOD_REDIS_URL;
  if (env) {
    try {
      return redisUrl('CALLMOOD_REDIS_URL')(env);
    } catch (err) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, (err as Error).message);
    }
  }
  throw new CallmoodError(ErrorCodes.INVALID_OPTION, '--redis redis://HOST:PORT is needed (or CALLMOOD_REDIS_URL)');
}

const FAILED_SHOWN = 20;

export function queueCommands(program: Command): void {
  program
    .command('worker')
    .description("replay recordings enqueued by 'callmood replay --queue': take jobs from Redis, write their events and reports where each job says")
    .addOption(redisOption())
    .addOption(prefixOption())
    .option('--concurrency <n>', 'recordings replayed at once, each on its own thread with its own model (default: one per core)', integer('--concurrency', 1, 256))
    .option(
      '--lock-duration <ms>',
      `how long a job stays this worker's without renewal (renewed every half of it): a worker that dies is replaced this long after, at the earliest (default ${DEFAULT_LOCK_DURATION_MS})`,
      integer('--lock-duration', 1000, 3_600_000),
    )
    .option('--stalled-interval <ms>', `how often this worker looks for jobs whose worker died (default ${DEFAULT_STALLED_INTERVAL_MS})`, integer('--stalled-interval', 500, 3_600_000))
    .addHelpText(
      'after',
      `
The worker must see the recordings and the jobs' --report-dir at the paths the enqueuing machine gave (a shared
folder). Outputs are written under a hidden temporary name and renamed into place, so a file under its final name is
complete. A job whose worker dies (killed, machine lost) is put back by any other worker's stalled-job check after
--lock-duration and replayed again (a job found stalled more than ${MAX_STALLED} times is failed); a job that fails
is retried as 'replay --attempts' said, then kept as failed with its error. SIGTERM or SIGINT: take no more jobs,
finish the active ones, exit 0; a second signal exits at once, leaving the active jobs to the other workers.
One line per job on standard output: active, done, failed.`,
    )
    .action(async (o: { redis?: string; prefix?: string; concurrency?: number; lockDuration?: number; stalledInterval?: number }) => {
      const url = redisOf(o.redis);
      const prefix = o.prefix ?? DEFAULT_QUEUE_PREFIX;
      const lockDurationMs = o.lockDuration ?? DEFAULT_LOCK_DURATION_MS;
      const stalledIntervalMs = o.stalledInterval ?? DEFAULT_STALLED_INTERVAL_MS;
      const concurrency = o.concurrency ?? availableParallelism();
      const redis = await connectRedis(url, o.redis ? '--redis' : 'CALLMOOD_REDIS_URL', true);
      const log = (line: string) => void process.stdout.write(`${new Date().toISOString()} ${line}\n`);
      const w = startQueueWorker(redis, prefix, { concurrency, lockDurationMs, stalledIntervalMs, log });
      log(`worker ${w.id} on ${redactUrl(url)} prefix ${prefix}: concurrency ${concurrency}, lock ${lockDurationMs} ms, stalled check every ${stalledIntervalMs} ms`);
      await new Promise<void>((resolve) => {
        let signals = 0;
        const stop = (sig: string) => {
          signals++;
          if (signals === 1) {
            log(`${sig}: taking no more jobs, finishing the active ones`);
            void w.close().then(resolve, (err: Error) => {
              log(`closing: ${err.message}`);
              resolve();
            });
          } else {
            log(`${sig} again: leaving the active jobs to the other workers`);
            void w.close(true).finally(() => process.exit(1));
          }
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
      });
      redis.disconnect();
      log('closed');
    });

  const queueCmd = program.command('queue').description('the Redis replay queue: status, retry');
  queueCmd
    .command('status')
    .description("counts of the replay queue's jobs (every run enqueued under this prefix) and the failed ones with their errors")
    .addOption(redisOption())
    .addOption(prefixOption())
    .addOption(jsonOption('the counts and the failed jobs'))
    .action((o: QueueCommandOptions) =>
      onQueue(o, async (queue, where) => {
        const counts = await queueCounts(queue);
        const failed = (await queue.getFailed(0, FAILED_SHOWN - 1)).map(describeFailed);
        return {
          json: { counts, failed },
          text: () => {
            process.stdout.write(
              `${where}: done ${counts.completed}, failed ${counts.failed}, active ${counts.active}, waiting ${counts.waiting}, retrying ${counts.delayed}${counts.paused ? `, paused ${counts.paused}` : ''}\n`,
            );
            for (const f of failed) process.stdout.write(`  ${f.name}  FAILED after ${f.attempts} attempt(s): ${f.error}\n`);
            if (counts.failed > failed.length) process.stdout.write(`  … and ${counts.failed - failed.length} more failed\n`);
          },
        };
      }),
    );

  queueCmd
    .command('retry')
    .description('put failed jobs back in the queue (all, or --name/--id), each with its attempts anew; running workers replay them')
    .addOption(redisOption())
    .addOption(prefixOption())
    .option('--name <name...>', "only the failed jobs of these recordings (the names 'queue status' lists)")
    .option('--id <id...>', 'only the failed jobs with these ids')
    .addOption(jsonOption('what was put back'))
    .action((o: QueueCommandOptions & { name?: string[]; id?: string[] }) =>
      onQueue(o, async (queue, where) => {
        const only = o.name || o.id ? new Set([...(o.name ?? []), ...(o.id ?? [])]) : null;
        const r = await retryFailed(queue, only);
        // Exit 1 when a job could not be put back.
        if (r.refused.length > 0) process.exitCode = 1;
        return {
          json: r,
          text: () => {
            process.stdout.write(`${where}: put back ${r.retried.length} failed job(s)${r.left > 0 ? `, left ${r.left} that did not match` : ''}\n`);
            for (const f of r.retried) process.stdout.write(`  ${f.name}  (was: ${f.error})\n`);
            for (const f of r.refused) process.stdout.write(`  ${f.name}  NOT put back: ${f.reason}\n`);
            if (only && r.retried.length + r.refused.length === 0) process.stdout.write(`  no failed job is named or numbered ${[...only].join(', ')}\n`);
          },
        };
      }),
    );
}

interface QueueCommandOptions {
  redis?: string;
  prefix?: string;
  json?: string | boolean;
}

/**
 * What `queue status` and `queue retry` share: connects to the queue the options name, runs `work`, writes its JSON
 * (with the queue and prefix) where --json says, and its text unless the JSON went to standard output; then closes.
 */
async function onQueue(
  o: QueueCommandOptions,
  work: (queue: ReturnType<typeof replayQueue>, where: string) => Promise<{ json: object; text: () => void }>,
): Promise<void> {
  const url = redisOf(o.redis);
  const prefix = o.prefix ?? DEFAULT_QUEUE_PREFIX;
  const redis = await connectRedis(url, o.redis ? '--redis' : 'CALLMOOD_REDIS_URL');
  const queue = replayQueue(redis, prefix);
  try {
    const out = await work(queue, `${redactUrl(url)} prefix ${prefix}`);
    const jsonTo = jsonTarget(o.json);
    if (jsonTo) {
      await writeJson(jsonTo, { queue: redactUrl(url), prefix, ...out.json });
      if (jsonTo === '-') return;
    }
    out.text();
  } finally {
    await queue.close();
    redis.disconnect();
  }
}
