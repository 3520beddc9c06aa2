import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { integer, jsonOption, jsonTarget, openJsonOutput } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import { DEFAULT_OPTIONS } from '../config/options.js';
import { clock, pct } from '../report/html.js';
import type { SummaryRow } from '../report/summary-page.js';
import { parseChannelSpec, DEFAULT_CHANNEL_SPEC } from '../replay/channels.js';
import { DEFAULT_RAW_AUDIO, RAW_G711_EXTENSIONS } from '../audio/read.js';
import type { Track } from '../stream/events.js';
import { runReplays, type JobOutcome, type ReplayJob, type RunSettings } from '../replay/run.js';
import { queueOptions, replayToQueue } from './replay-queue.js';
import { isFolder, listRecordings, noRecordings, renderIndex, replayOptionsOf, replayPolicyFile, reportFileName, type ReplayCliOptions } from './recordings.js';

export { AUDIO_EXTENSIONS, listRecordings, reportFileName, replayPolicyFile, type ReplayCliOptions, type SkippedFile } from './recordings.js';

/** Skipped files listed on the console; the rest are counted (all of them are on the summary page). */
const SKIPPED_SHOWN = 20;

const PARTIES: readonly [Track, string][] = [
  ['inbound', 'caller'],
  ['outbound', 'agent'],
];

/**
 * A recording's console line: its duration, then every replayed track's angry speech and peak anger (the caller's,
 * then the agent's: an angry agent matters as much to a supervisor), then the policy's decisions.
 */
export function describeOutcome(o: JobOutcome): string {
  if (!o.ok) return `${o.name}  FAILED  ${o.error.code}: ${o.error.message}`;
  const parts = PARTIES.filter(([t]) => o.digest.summary[t] || o.digest.tracks.includes(t)).map(([t, who]) => {
    const s = o.digest.summary[t];
    if (!s) return `${who}: no summary`;
    return `${who} angry ${clock(s.anger.durationMs)} of ${clock(s.speechMs)} speech${s.anger.peakAtMs !== null ? `, peak ${pct(s.anger.peak)} at ${clock(s.anger.peakAtMs)}` : ''}`;
  });
  return `${o.name}  ${clock(o.digest.durationMs)}  ${parts.length > 0 ? parts.join('; ') : 'no track replayed'}  actions ${o.digest.actions.length}`;
}

/**
 * `callmood replay FILE|DIR`: recorded calls through the live emotion stream (and a dry-run dialog policy), to JSON
 * lines and HTML reports. Exit code 0 when every recording was replayed, 1 when any failed (each is listed with its
 * reason), 2 for a usage error.
 */
export function replayCommand(program: Command): void {
  program
    .command('replay')
    .description('replay recorded calls (WAV/FLAC/…, headerless .ul/.al G.711, 8 kHz μ-law or PCM at any rate, mono or dual-channel) through the live emotion stream; write events and HTML reports')
    .argument('<path...>', 'a recording, or a folder of recordings (searched recursively); several with --queue')
    .option('--channels <spec>', `which channel each party is on: caller=left|right|N, agent=left|right|N (default ${DEFAULT_CHANNEL_SPEC}; a mono file is the caller)`)
    .option('--raw-channels <n>', `headerless G.711 (${Object.keys(RAW_G711_EXTENSIONS).join(' ')}): interleaved channels in the file (default ${DEFAULT_RAW_AUDIO.channels}; 2 for a dual-channel call)`, integer('--raw-channels', 1, 32))
    .option('--raw-rate <hz>', `headerless G.711: samples per second (default ${DEFAULT_RAW_AUDIO.sampleRate}, the telephone line's)`, integer('--raw-rate', 1000, 192_000))
    .addOption(jsonOption('the events (one per line)', "latencyMs and atMs are this replay's wall clock, not comparable with a live call"))
    .option('--report <file.html>', "one recording's HTML report")
    .option('--report-dir <dir>', "a report per recording and index.html across them (for a folder)")
    .option('--policy <file>', "a dialog policy file (default: the config's policy, else the shipped one), run as a dry run: its decisions are reported, never carried out")
    .option('--no-policy', 'run no dialog policy')
    .option('--model <dir>', `model directory (default: the config's, else ${DEFAULT_OPTIONS.modelDir})`)
    .option('--config <file>', "a serve config file: replay with its model and stream settings, to hear what that server would hear")
    .option('--workers <n>', 'worker threads for a folder (default: one per core)', integer('--workers', 1, 256))
    .option('--no-progress', 'no progress bar')
    .addOption(queueOptions.queue)
    .addOption(queueOptions.prefix)
    .addOption(queueOptions.attempts)
    .addOption(queueOptions.wait)
    .addHelpText(
      'after',
      `
The callSid of a recording is CA + 32 hex digits of SHA-256 of its name (its path relative to the folder, or its file
name), unless the file name holds a Twilio CallSid (CA + 32 hex), which is then used. Events come in call-time order.
In a folder, files whose names are not recordings' are skipped, and listed with the reason after the summary line
(and in index.html). Headerless G.711 files (.ul .ulaw .mulaw μ-law, .al .alaw A-law) have no header to say their
rate and channels: 8 kHz mono unless --raw-rate and --raw-channels say otherwise.
Exit code: 0 when every recording was replayed, 1 when any failed (each is listed with its reason), 2 for a usage
error (bad option, policy file or model).

With --queue redis://HOST:PORT, recordings are not replayed here: each becomes a job on that Redis, replayed by
'callmood worker' processes on any machines that see the recordings and --report-dir at the same paths. A job's id
is a hash of the file's absolute path, size and modification time and of the settings, so enqueuing the same files
again adds nothing. Each recording's report goes to --report-dir (needed), its events beside it as NAME.events.jsonl;
--json then writes this run's summary. The command follows the jobs until all are done (--no-wait: enqueue only),
and writes index.html. Exit code: 0 when every job is done, 1 when any failed (listed with their errors), 2 for a
usage error (bad URL, Redis unreachable). 'callmood queue status' prints the queue's counts.`,
    )
    .action(async (targets: string[], o: ReplayCliOptions) => {
      const code = o.queue !== undefined ? await replayToQueue(targets, o) : await replay(oneTarget(targets, o), o);
      if (code !== 0) process.exitCode = code;
    });
}

/** The one path of a replay without --queue; the queue's options without it are usage errors. */
function oneTarget(targets: string[], o: ReplayCliOptions): string {
  for (const [given, flag] of [[o.prefix, '--prefix'], [o.attempts, '--attempts'], [o.wait === false ? true : undefined, '--no-wait']] as const) {
    if (given !== undefined) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${flag} goes with --queue redis://HOST:PORT (a replay through a Redis queue)`);
  }
  if (targets.length > 1) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${targets.length} paths given: replay takes one file or folder, several only with --queue redis://HOST:PORT`);
  return targets[0];
}

async function replay(target: string, o: ReplayCliOptions): Promise<number> {
  const jsonTo = jsonTarget(o.json);
  if (o.channels !== undefined) parseChannelSpec(o.channels);
  if (o.report && o.reportDir) throw new CallmoodError(ErrorCodes.INVALID_OPTION, '--report and --report-dir: give one (--report for one recording, --report-dir for a folder)');
  const isDir = isFolder(target);
  if (isDir && o.report) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${target} is a folder: use --report-dir DIR (a report per recording, and index.html), not --report`);
  const config = o.config ? loadConfigFile(o.config) : {};
  const settings: RunSettings = {
    modelDir: o.model ?? (config.modelDir as string | undefined) ?? DEFAULT_OPTIONS.modelDir,
    replay: replayOptionsOf(o, config),
    // As `serve` would: the flag, else the config's policy, else the shipped one.
    policyFile: replayPolicyFile(o.policy, config),
    keepEvents: jsonTo !== null,
  };
  const listed = isDir ? await listRecordings(target) : { recordings: [{ path: target, name: basename(target) }], skipped: [] };
  const files = listed.recordings;
  const { skipped } = listed;
  if (files.length === 0) {
    throw noRecordings(`${target}: no recordings in this folder`, skipped);
  }

  const cannot = (what: string, err: unknown) =>
    new CallmoodError(ErrorCodes.INVALID_OPTION, `${what}: cannot write there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  const reportDir = o.reportDir ? resolve(o.reportDir) : null;
  if (reportDir) {
    try {
      mkdirSync(reportDir, { recursive: true });
    } catch (err) {
      throw cannot(`--report-dir ${o.reportDir}`, err);
    }
  }
  if (o.report && !existsSync(dirname(resolve(o.report)))) throw cannot(`--report ${o.report}`, Object.assign(new Error('no such folder'), { code: 'ENOENT' }));
  const taken = new Set<string>();
  const jobs: ReplayJob[] = files.map((f) => {
    if (reportDir) {
      const file = reportFileName(f.name, taken);
      return { ...f, reportPath: join(reportDir, file), backHref: 'index.html' };
    }
    return { ...f, reportPath: o.report ? resolve(o.report) : null };
  });

  // Opened before the replay: an unwritable events file is a usage error, found before any work.
  const out = jsonTo ? openJsonOutput(jsonTo) : null;
  const lines = process.stdout;
  const pending = new Map<number, JobOutcome>();
  let written = 0;
  const bar =
    o.progress && jobs.length > 1 && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          { format: 'replay [{bar}] {value}/{total} recordings | {failed} failed | {audio} of audio | ETA {eta_formatted}', stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : null;
  let failed = 0;
  let audioMs = 0;
  bar?.start(jobs.length, 0, { failed: 0, audio: clock(0) });
  const outcomes = await runReplays(jobs, settings, {
    workers: isDir ? (o.workers ?? availableParallelism()) : 1,
    onOutcome: (i, outcome) => {
      if (!outcome.ok) failed++;
      else audioMs += outcome.digest.durationMs;
      bar?.increment(1, { failed, audio: clock(audioMs) });
      // Results come in completion order; lines and JSON go out in file order.
      pending.set(i, outcome);
      while (pending.has(written)) {
        const x = pending.get(written)!;
        pending.delete(written);
        written++;
        if (out && x.ok && x.events) for (const e of x.events) out.write(JSON.stringify(e) + '\n');
        // With events on stdout, the per-call lines go to stderr.
        if (!bar) (out?.stdout ? process.stderr : lines).write(describeOutcome(x) + '\n');
      }
    },
  });
  bar?.stop();
  if (bar) for (const x of outcomes) if (!x.ok) process.stderr.write(describeOutcome(x) + '\n');
  await out?.close();

  if (reportDir) {
    const rows: SummaryRow[] = outcomes.map((x, i) =>
      x.ok
        ? { name: x.name, href: basename(jobs[i].reportPath!), status: 'ok', digest: x.digest }
        : { name: x.name, href: null, status: 'failed', error: x.error },
    );
    writeFileSync(join(reportDir, 'index.html'), renderIndex(rows, basename(resolve(target)), settings, o.channels, skipped));
  }
  process.stderr.write(
    `replayed ${outcomes.length - failed} of ${outcomes.length} recording(s), ${clock(audioMs)} of calls${failed > 0 ? `; ${failed} failed` : ''}` +
      `${skipped.length > 0 ? `; ${skipped.length} other file(s) skipped` : ''}` +
      `${reportDir ? `; reports in ${reportDir}${sep}index.html` : o.report ? `; report ${resolve(o.report)}` : ''}\n`,
  );
  for (const f of skipped.slice(0, SKIPPED_SHOWN)) process.stderr.write(`  skipped ${f.name}: ${f.reason}\n`);
  if (skipped.length > SKIPPED_SHOWN) process.stderr.write(`  … and ${skipped.length - SKIPPED_SHOWN} more skipped${reportDir ? ' (all are listed in index.html)' : ''}\n`);
  return failed > 0 ? 1 : 0;
}
