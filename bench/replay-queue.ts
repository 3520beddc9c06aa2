/**
 * Distributed replay's throughput: K recordings through the Redis queue (`callmood replay --queue` and `callmood
 * worker` child processes, a real redis-server on loopback in a temporary folder), replayed by one worker with one
 * thread, one worker with two threads, and two workers with one thread each; and, for reference, the same files
 * replayed in this process by runReplays (the one-process `callmood replay`) with 1 and 2 threads, writing reports
 * too. Every setup runs `--rounds` times, the setups taking turns, so that a neighbour's load falls on all of them;
 * prints one JSON line: per setup the median files per second and × real time, and every round's wall time. The
 * in-process runs include their threads' model loading (about a second per thread); queue workers are warmed (each thread has loaded its model on a
 * warm-up job) before the clock starts; the clock runs from the enqueue to the last job done, as the enqueuing
 * `replay --queue` sees it (it polls once a second, so figures are rounded up to that).
 *
 *   node --import tsx bench/replay-queue.ts [--files 24] [--seconds 180] [--rounds 2]
 *
 * Needs redis-server (Debian's package). On this project's 2-core machine "two workers" share the same two cores
 * as "one worker, two threads": the comparison shows the queue's overhead, not a second machine's gain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startRedis } from '../test/helpers/redis.js';
import { phoneClip, writeCall } from '../test/helpers/replay-audio.js';
import { runReplays } from '../src/replay/run.js';
import { resolvePackagePath } from '../src/config/load.js';
import { DEFAULT_OPTIONS } from '../src/config/options.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const main = join(root, 'src/cli/main.ts');

export interface ReplayQueueBench {
  files: number;
  secondsPerFile: number;
  /** Files per second and × real time, by setup. */
  rounds: number;
  runs: Record<string, { filesPerS: number; xRealTime: number; wallS: number[] }>;
}

function worker(url: string, prefix: string, concurrency: number): { child: ChildProcess; lines: string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'worker', '--redis', url, '--prefix', prefix, '--concurrency', String(concurrency)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  return { child, lines };
}

async function cli(args: string[]): Promise<string> {
  const { stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', main, ...args], { cwd: root, maxBuffer: 16 << 20 });
  return stderr;
}

export async function benchReplayQueue(o: { files?: number; seconds?: number; rounds?: number } = {}): Promise<ReplayQueueBench> {
  const rounds = o.rounds ?? 2;
  const files = o.files ?? 24;
  const seconds = o.seconds ?? 180;
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-replayq-'));
  const children: ChildProcess[] = [];
  try {
    const calls = join(dir, 'calls');
    const warm = join(dir, 'warm');
    mkdirSync(calls);
    mkdirSync(warm);
    const clip = await phoneClip('YAF_back_angry.flac');
    const long = new Float32Array(Math.ceil((seconds * 8000) / clip.length) * clip.length);
    for (let i = 0; i < long.length; i += clip.length) long.set(clip, i);
    const audio = long.subarray(0, seconds * 8000);
    const paths = Array.from({ length: files }, (_, i) => writeCall(calls, `call-${String(i).padStart(3, '0')}.wav`, [audio]));
    const walls: Record<string, number[]> = {};
    const took = (label: string, t0: number) => (walls[label] ??= []).push(+((performance.now() - t0) / 1000).toFixed(2));
    let n = 0;
    for (let round = 0; round < rounds; round++) {
    for (const [label, threads] of [['in-process, 1 thread', 1], ['in-process, 2 threads', 2]] as const) {
      const out = join(dir, `out-${n++}`);
      mkdirSync(out);
      const t0 = performance.now();
      const jobs = paths.map((path) => ({ path, name: path.split('/').pop()!, reportPath: join(out, `${path.split('/').pop()}.html`) }));
      await runReplays(jobs, { modelDir: DEFAULT_OPTIONS.modelDir, replay: {}, policyFile: resolvePackagePath('config/policy.json'), keepEvents: true }, { workers: threads });
      took(label, t0);
    }

    for (const [label, workers, concurrency] of [
      ['queue, 1 worker x 1 thread', 1, 1],
      ['queue, 1 worker x 2 threads', 1, 2],
      ['queue, 2 workers x 1 thread', 2, 1],
    ] as const) {
      const prefix = `bench${n++}`;
      const ws = Array.from({ length: workers }, () => worker(redis.url, prefix, concurrency));
      children.push(...ws.map((w) => w.child));
      // Warm-up: one short job per thread, so that every thread has loaded its model before the clock starts.
      const warmFiles = Array.from({ length: workers * concurrency }, (_, i) => writeCall(warm, `${prefix}-${i}.wav`, [clip]));
      await cli(['replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', join(dir, `out-${prefix}-warm`), ...warmFiles]);
      const t0 = performance.now();
      await cli(['replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', join(dir, `out-${prefix}`), ...paths]);
      took(label, t0);
      for (const w of ws) w.child.kill('SIGTERM');
      await Promise.all(ws.map((w) => new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.once('exit', r)))));
    }
    }
    const runs: ReplayQueueBench['runs'] = {};
    for (const [label, w] of Object.entries(walls)) {
      const sorted = [...w].sort((a, b) => a - b);
      const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
      runs[label] = { filesPerS: +(files / median).toFixed(2), xRealTime: Math.round((files * seconds) / median), wallS: w };
    }
    return { files, secondsPerFile: seconds, rounds, runs };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const o: { files?: number; seconds?: number; rounds?: number } = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--files') o.files = Number(argv[i + 1]);
    else if (argv[i] === '--seconds') o.seconds = Number(argv[i + 1]);
    else if (argv[i] === '--rounds') o.rounds = Number(argv[i + 1]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  process.stdout.write(`replay queue ${JSON.stringify(await benchReplayQueue(o))}\n`);
}
