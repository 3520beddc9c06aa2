/**
 * Does V8's heap growing factor change what a replay costs? One process replays the `bench replay` recording (10
 * minutes, dual-channel μ-law, 8 kHz) over and over, switching `--heap-growing-percent` between 0 (V8's own
 * heuristics) and 100 (the command line's default, src/cli/heap.ts) round by round, and reads the CPU time of the
 * main thread and of the other threads (V8's helpers: concurrent marking, compilers) from /proc. Each round first
 * replays once untimed so that a full collection has taken the new factor, then times three replays.
 *
 *   npm run build && node dist/bench/heap-growing.js [rounds]
 *
 * Run it compiled, as the command line runs: under tsx the process holds more (the compiler, source maps), V8 gives
 * that larger heap more room by itself, and the difference disappears (bench/RESULTS.md, "V8's heap growing factor").
 */
import v8 from 'node:v8';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeConversation } from '../src/bench/replay.js';
import { threadCpuMs } from '../src/bench/threads.js';
import { initBackend } from '../src/model/backend.js';
import { loadReplayModel, replayFile } from '../src/replay/replay.js';

const rounds = Number(process.argv[2] ?? 10);
await initBackend({ log: () => {} });
const model = await loadReplayModel('models/default');
const dir = mkdtempSync(join(tmpdir(), 'callmood-heap-'));
const file = await writeConversation(join(dir, 'call.wav'), 600);
for (let i = 0; i < 2; i++) await replayFile(file, model);
const res: Record<string, [number, number][]> = { 0: [], 100: [] };
for (let r = 0; r < rounds; r++) {
  for (const pct of r % 2 ? [100, 0] : [0, 100]) {
    v8.setFlagsFromString(`--heap-growing-percent=${pct}`);
    await replayFile(file, model);
    const t0 = threadCpuMs(process.pid);
    for (let i = 0; i < 3; i++) await replayFile(file, model);
    const t1 = threadCpuMs(process.pid);
    res[pct].push([(t1.main - t0.main) / 3, (t1.other - t0.other) / 3]);
  }
}
rmSync(dir, { recursive: true, force: true });
await model.close();
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
for (const [pct, runs] of Object.entries(res)) {
  console.log(`--heap-growing-percent=${pct}: CPU ms per replay, main + other threads: ` +
    `${runs.map(([m, o]) => `${m.toFixed(0)}+${o.toFixed(0)}`).join(' ')}; median total ${median(runs.map(([m, o]) => m + o)).toFixed(0)}, ` +
    `median other threads ${median(runs.map(([, o]) => o)).toFixed(0)}`);
}
const ratios = res[100].map(([m, o], i) => (m + o) / (res[0][i][0] + res[0][i][1]));
console.log(`total CPU, 100 over 0, round by round: ${ratios.map((x) => x.toFixed(2)).join(' ')}; median ${median(ratios).toFixed(3)}`);
