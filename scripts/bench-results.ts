/**
 * Writes the generated tables of bench/RESULTS.md from the result files the benchmarks left behind, so every figure
 * in those tables has a file and a command:
 *   bench/results/calls.jsonl, replay.jsonl                 scripts/throughput.sh (bench calls / bench replay --json)
 *   bench/results/calls-8k-vs-16k.jsonl, replay-8k-vs-16k.jsonl  bench/calls-matrix.ts and bench replay, by label
 *   bench/results/replay-ab-22b10cb.txt                      alternating bench replay processes of two builds
 *   models/experiments/default.bench-runs.jsonl              scripts/speed.sh (bench model --json)
 *   bench/results/nodes.jsonl                                scripts/nodes-bench.sh (bench calls [--nodes 3 --redis] --json)
 *   bench/results/redis.jsonl                                scripts/redis-capacity.ts
 *   bench/results/transports.jsonl                           bench/calls-matrix.ts --provider twilio|telnyx, alternating
 * Each table sits between `<!-- generated:NAME:start … -->` and `<!-- generated:NAME:end -->`; text outside the
 * markers is left alone. A missing file shows as "not run", never guessed.
 *
 *   node --import tsx scripts/bench-results.ts           rewrite bench/RESULTS.md
 *   node --import tsx scripts/bench-results.ts --check   exit 1 if bench/RESULTS.md is not what the files give
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { replaceBetween } from './markers.js';
import type { ModelBenchResult } from '../src/bench/model.js';

const RESULTS = 'bench/RESULTS.md';
const DIR = 'bench/results';
const MODEL_RUNS = 'models/experiments/default.bench-runs.jsonl';
/** Runs less than this far apart belong to one set (one invocation of a script). */
const SET_GAP_MS = 5 * 60_000;
/** The latency target of the live path: p99 end to end. */
const TARGET_P99_MS = 200;

/** One `callmood bench calls --json` line (scripts/throughput.sh adds started and loadBefore). */
interface CallsRun {
  started: string;
  label?: string;
  loadBefore?: number;
  calls: number;
  /** End to end at the clients; in lines without serverP99Ms, the server's own part (the older meaning). */
  p50Ms: number;
  p99Ms: number;
  serverP50Ms?: number;
  serverP99Ms?: number;
  cpuMsPerCallSecond: number;
  mainThreadMsPerCallSecond: number;
  clientCpuMsPerCallSecond: number;
  clientCpuShare: number;
  rssMbPerCall: number;
  maxSendLagMs: number;
}

/** One `callmood bench calls [--nodes N --redis URL] --json` line of scripts/nodes-bench.sh. */
interface NodesRun extends CallsRun {
  nodes?: number;
  localP99Ms?: number | null;
  remoteP99Ms?: number | null;
  busEventsPerSecond?: number | null;
  redisKbPerCall?: number | null;
  realtime: boolean;
}

/** One `callmood bench replay --json` line. */
interface ReplayRun {
  started: string;
  label?: string;
  loadBefore?: number;
  /** The median of the timed replays in realtimeFactorRuns (or the only one). */
  realtimeFactor: number;
  realtimeFactorRuns?: number[];
  inferenceShare: number;
  mainThreadShare?: number;
  realtimeFactorWithoutModel: number;
}

/** One `callmood bench model --json` line. */
type ModelRun = Omit<ModelBenchResult, 'rounds' | 'loadAverage'> & { loadAverage?: number[] };

const jsonl = <T>(file: string): T[] | null =>
  existsSync(file)
    ? readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T)
    : null;

// Figures are printed at the precision they were first quoted at: milliseconds of latency and real-time factors as
// whole numbers, CPU per call-second in hundredths, shares in whole percent.
const int = (v: number) => Math.round(v).toString();
const ms3 = (v: number) => v.toFixed(3);
const two = (v: number) => v.toFixed(2);
const pct = (v: number) => `${Math.round(100 * v)}%`;
const range = (vs: number[], f: (v: number) => string) => {
  if (vs.length === 0) return '–';
  const lo = f(Math.min(...vs));
  const hi = f(Math.max(...vs));
  if (lo === hi) return lo;
  return lo.endsWith('%') && hi.endsWith('%') ? `${lo.slice(0, -1)}–${hi}` : `${lo}–${hi}`;
};
const median = (vs: number[]) => {
  const s = [...vs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const day = (iso: string) => iso.slice(0, 10);
const clock = (iso: string) => iso.slice(11, 16);
/** A run's start to the second, as the tables of single runs show it. */
const stamp = (iso: string) => `${day(iso)} ${iso.slice(11, 19)}`;
const table = (head: string[], align: string[], rows: string[][]) =>
  [`| ${head.join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

/** Consecutive runs (in file order) less than SET_GAP_MS apart, as sets named by their first start. */
function sets<T extends { started: string }>(runs: T[]): { name: string; runs: T[] }[] {
  const out: { name: string; runs: T[] }[] = [];
  let last = -Infinity;
  for (const r of runs) {
    const t = Date.parse(r.started);
    if (out.length === 0 || t - last > SET_GAP_MS) out.push({ name: `${day(r.started)} ${clock(r.started)}`, runs: [] });
    out[out.length - 1].runs.push(r);
    last = t;
  }
  return out;
}

/** End-to-end p99 if the line has it (serverP99Ms beside it), else null. */
const e2eP99 = (r: CallsRun) => (r.serverP99Ms === undefined ? null : r.p99Ms);
const serverP99 = (r: CallsRun) => r.serverP99Ms ?? r.p99Ms;
/** Whether the run held the target: on the end-to-end p99, or on the server's own where that is all the line has. */
const held = (r: CallsRun) => (e2eP99(r) ?? serverP99(r)) <= TARGET_P99_MS;

function callsRuns(): string {
  const runs = jsonl<CallsRun>(`${DIR}/calls.jsonl`);
  if (!runs) return 'not run';
  const rows = runs.map((r) => [
    stamp(r.started),
    r.loadBefore === undefined ? '–' : r.loadBefore.toString(),
    String(r.calls),
    held(r) ? (e2eP99(r) === null ? 'yes (server)' : '**yes**') : 'no',
    e2eP99(r) === null ? '–' : int(r.p50Ms),
    e2eP99(r) === null ? '–' : int(r.p99Ms),
    int(serverP99(r)),
    two(r.cpuMsPerCallSecond),
    two(r.mainThreadMsPerCallSecond),
    two(r.clientCpuMsPerCallSecond),
    two(r.rssMbPerCall),
    pct(r.clientCpuShare),
    int(r.maxSendLagMs),
  ]);
  return table(
    ['started (UTC)', 'load before', 'calls', `p99 ≤ ${TARGET_P99_MS} ms?`, 'p50 ms', 'p99 ms', 'server p99 ms', 'server CPU ms per call-second', 'of it, main thread', 'clients\' CPU ms per call-second', 'server RSS MB per call', 'clients\' share of CPU', 'max send lag ms'],
    ['---', '---:', '---:', ':---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:'],
    rows,
  );
}

function callsSummary(): string {
  const runs = jsonl<CallsRun>(`${DIR}/calls.jsonl`);
  if (!runs) return 'not run';
  const rows: string[][] = [];
  for (const s of sets(runs)) {
    for (const n of [...new Set(s.runs.map((r) => r.calls))].sort((a, b) => a - b)) {
      const rs = s.runs.filter((r) => r.calls === n);
      const e2e = rs.map(e2eP99).filter((v): v is number => v !== null);
      rows.push([
        s.name,
        String(n),
        `${rs.filter(held).length} of ${rs.length}`,
        range(e2e, int),
        range(rs.map(serverP99), int),
        range(rs.map((r) => r.cpuMsPerCallSecond), two),
        range(rs.map((r) => r.clientCpuMsPerCallSecond), two),
        range(rs.map((r) => r.maxSendLagMs), int),
      ]);
    }
  }
  return table(
    ['set (UTC)', 'calls', `held p99 ≤ ${TARGET_P99_MS} ms`, 'p99 ms, end to end', 'server p99 ms', 'server CPU ms per call-second', 'clients\' CPU ms per call-second', 'max send lag ms'],
    ['---', '---:', ':---:', '---:', '---:', '---:', '---:', '---:'],
    rows,
  );
}

function replayRuns(): string {
  const runs = jsonl<ReplayRun>(`${DIR}/replay.jsonl`);
  if (!runs) return 'not run';
  const rows: string[][] = [];
  for (const s of sets(runs)) {
    const timed = s.runs.flatMap((r) => r.realtimeFactorRuns ?? []);
    const helper = s.runs.filter((r) => r.mainThreadShare !== undefined).map((r) => 1 - r.mainThreadShare!);
    rows.push([
      s.name,
      range(s.runs.map((r) => r.loadBefore ?? NaN).filter((v) => !Number.isNaN(v)), (v) => v.toString()),
      s.runs.map((r) => int(r.realtimeFactor)).join(', '),
      int(median(s.runs.map((r) => r.realtimeFactor))),
      timed.length ? range(timed, int) : '–',
      range(s.runs.map((r) => r.inferenceShare), pct),
      helper.length ? range(helper, pct) : '–',
    ]);
  }
  return table(
    ['set (UTC)', 'load before', '`realtimeFactor` of each run (median of its timed replays)', 'median of the set', 'timed replays, all runs', 'model\'s share of CPU (`inferenceShare`)', 'helper threads\' share (`1 − mainThreadShare`)'],
    ['---', '---:', '---', '---:', '---:', '---:', '---:'],
    rows,
  );
}

function eightVsSixteen(): string {
  const calls = jsonl<CallsRun>(`${DIR}/calls-8k-vs-16k.jsonl`);
  const replay = jsonl<ReplayRun>(`${DIR}/replay-8k-vs-16k.jsonl`);
  const out: string[] = [];
  if (calls) {
    out.push(`\`${DIR}/calls-8k-vs-16k.jsonl\` (${calls[0].calls} calls, interleaved; p99 is the server's own part):`, '');
    out.push(table(
      ['started (UTC)', 'model', 'p50 ms', 'p99 ms', 'server CPU ms per call-second', 'of it, main thread', 'server RSS MB per call'],
      ['---', '---', '---:', '---:', '---:', '---:', '---:'],
      calls.map((r) => [stamp(r.started), r.label ?? '–', int(r.p50Ms), int(r.p99Ms), two(r.cpuMsPerCallSecond), two(r.mainThreadMsPerCallSecond), two(r.rssMbPerCall)]),
    ));
  } else out.push('calls: not run');
  out.push('');
  if (replay) {
    out.push(`\`${DIR}/replay-8k-vs-16k.jsonl\` (the 10-minute dual-channel call, interleaved):`, '');
    out.push(table(
      ['started (UTC)', 'model', '`realtimeFactor`', 'without the model', '`inferenceShare`'],
      ['---', '---', '---:', '---:', '---:'],
      replay.map((r) => [stamp(r.started), r.label ?? '–', int(r.realtimeFactor), int(r.realtimeFactorWithoutModel), pct(r.inferenceShare)]),
    ));
  } else out.push('replay: not run');
  return out.join('\n');
}

function replayAb(): string {
  const file = `${DIR}/replay-ab-22b10cb.txt`;
  if (!existsSync(file)) return 'not run';
  const text = readFileSync(file, 'utf8').split('\n');
  const head = text.filter((l) => l.startsWith('#')).map((l) => l.replace(/^#\s*/, ''));
  const pairs = text
    .map((l) => /^base\s+(\d+(?:\.\d+)?)\s+new\s+(\d+(?:\.\d+)?)\s*$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [Number(m[1]), Number(m[2])] as const);
  return [
    `\`${file}\`: ${head.join(' ')}`,
    '',
    table(['run', 'base `realtimeFactor`', 'new `realtimeFactor`', 'new / base'], ['---:', '---:', '---:', '---:'],
      pairs.map(([b, n], i) => [String(i + 1), String(b), String(n), `${two(n / b)}×`])),
    '',
    `Range: new ${range(pairs.map((p) => p[1]), String)} against base ${range(pairs.map((p) => p[0]), String)}, ` +
      `${range(pairs.map(([b, n]) => n / b), two)}× run for run.`,
  ].join('\n');
}

function modelRuns(): string {
  const runs = jsonl<ModelRun>(MODEL_RUNS);
  if (!runs || runs.length === 0) return 'not run';
  const m = runs[0];
  return [
    `\`${MODEL_RUNS}\`: ${m.arch} (${m.params.toLocaleString('en')} parameters, ${Math.round(m.weightBytes / 1000)} KB of weights) on ${m.backend}, ${runs.length} runs of \`callmood bench model --json\`.`,
    '',
    table(['run', '`msPerWindow`', `\`msPerWindowBatched\` (batches of ${m.batch})`, 'load average'], ['---:', '---:', '---:', '---'],
      runs.map((r, i) => [String(i + 1), ms3(r.msPerWindow), ms3(r.msPerWindowBatched), r.loadAverage ? r.loadAverage.join(', ') : '–'])),
    '',
    `Median ${ms3(median(runs.map((r) => r.msPerWindow)))} ms per window (${range(runs.map((r) => r.msPerWindow), ms3)}), ` +
      `${ms3(median(runs.map((r) => r.msPerWindowBatched)))} ms per window in batches (${range(runs.map((r) => r.msPerWindowBatched), ms3)}).`,
  ].join('\n');
}

/** JSON writes NaN as null: a figure a one-node run does not have. */
const maybe = (v: number | null | undefined, f: (v: number) => string) => (v === null || v === undefined || Number.isNaN(v) ? '–' : f(v));

function nodesRuns(): string {
  const runs = jsonl<NodesRun>(`${DIR}/nodes.jsonl`);
  if (!runs) return 'not run';
  const rows = runs.map((r) => [
    stamp(r.started),
    r.loadBefore === undefined ? '–' : r.loadBefore.toString(),
    String(r.calls),
    (r.nodes ?? 1) > 1 ? `${r.nodes}, Redis` : '1, no Redis',
    held(r) && r.realtime ? '**yes**' : 'no',
    int(r.p99Ms),
    maybe(r.localP99Ms, int),
    maybe(r.remoteP99Ms, int),
    two(r.cpuMsPerCallSecond),
    two(r.clientCpuMsPerCallSecond),
    maybe(r.busEventsPerSecond, int),
    maybe(r.redisKbPerCall, (v) => v.toFixed(1)),
  ]);
  return table(
    ['started (UTC)', 'load before', 'calls', 'nodes', `p99 ≤ ${TARGET_P99_MS} ms, in real time?`, 'p99 ms, end to end', 'p99 ms, calls on node 0', 'p99 ms, calls on other nodes (over the bus)', 'servers\' CPU ms per call-second (all nodes)', 'clients\' CPU ms per call-second', 'bus events/s read by node 0', 'Redis KB per live call'],
    ['---', '---:', '---:', '---', ':---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:'],
    rows,
  );
}

/** One line of scripts/redis-capacity.ts. */
interface RedisRun {
  started: string;
  events: number;
  eventBytes: number;
  busEventsPerSecond: number;
  redisCpuShare: number;
  eventsPerRedisCpuSecond: number;
  oneCallStreamKb: number;
  allCallsStreamMb: number;
}

function redisRuns(): string {
  const runs = jsonl<RedisRun>(`${DIR}/redis.jsonl`);
  if (!runs) return 'not run';
  return table(
    ['started (UTC)', 'events written', 'bytes per event', 'events/s (one client)', 'Redis CPU share', 'events per Redis CPU-second', 'a call\'s minute of events, KB', 'stream of all calls at its bound, MB'],
    ['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:'],
    runs.map((r) => [stamp(r.started), String(r.events), String(r.eventBytes), int(r.busEventsPerSecond), pct(r.redisCpuShare), int(r.eventsPerRedisCpuSecond), String(r.oneCallStreamKb), String(r.allCallsStreamMb)]),
  );
}

function transportRuns(): string {
  const runs = jsonl<CallsRun & { provider?: string; realtime: boolean; windows: number }>(`${DIR}/transports.jsonl`);
  if (!runs) return 'not run';
  return table(
    ['started (UTC)', 'transport', 'calls', 'in real time?', 'p50 ms', 'p99 ms', 'windows scored', 'server CPU ms per call-second', 'of it, main thread'],
    ['---', '---', '---:', ':---:', '---:', '---:', '---:', '---:', '---:'],
    runs.map((r) => [stamp(r.started), r.provider ?? 'twilio', String(r.calls), r.realtime ? 'yes' : 'no', int(r.p50Ms), int(r.p99Ms), String(r.windows), two(r.cpuMsPerCallSecond), two(r.mainThreadMsPerCallSecond)]),
  );
}

const blocks: Record<string, () => string> = {
  transports: transportRuns,
  nodes: nodesRuns,
  redis: redisRuns,
  'calls-summary': callsSummary,
  'calls-runs': callsRuns,
  'replay-runs': replayRuns,
  'replay-ab': replayAb,
  '8k-vs-16k': eightVsSixteen,
  model: modelRuns,
};

const before = readFileSync(RESULTS, 'utf8');
let doc = before;
for (const [name, make] of Object.entries(blocks)) {
  const startTag = `<!-- generated:${name}:start`;
  const endTag = `<!-- generated:${name}:end -->`;
  doc = replaceBetween(doc, startTag, endTag, `${startTag} (scripts/bench-results.ts; do not edit by hand) -->\n\n${make()}\n\n`, RESULTS);
}
if (process.argv.includes('--check')) {
  if (doc !== before) {
    process.stderr.write(`${RESULTS} is out of date: run node --import tsx scripts/bench-results.ts\n`);
    process.exitCode = 1;
  }
} else {
  writeFileSync(RESULTS, doc);
}
