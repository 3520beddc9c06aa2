/**
 * `callmood bench replay`: how fast one recording replays on one core. The recording is what Twilio stores for a
 * dual-channel call: 8 kHz μ-law WAV, caller left, agent right, taking turns with pauses (made by `benchCall`, so
 * the bench runs from the installed package). It is read from a file and replayed on this thread, the model
 * in-process, exactly as `callmood replay FILE` does; reports are not included.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../model/backend.js';
import { threadCpuMs } from './threads.js';
import { benchCall } from './signal.js';
import { encodeWav } from '../replay/wav.js';
import { loadReplayModel, replayFile } from '../replay/replay.js';

/** What to measure. */
export interface ReplayBenchOptions {
  /** Length of the recording, s. */
  seconds: number;
  /** 2: a dual-channel call (caller and agent); 1: the caller alone. */
  channels: 1 | 2;
  /** Largest inference batch. */
  maxBatch: number;
  /** Model directory. */
  modelDir: string;
  /** Timed replays; the figures are those of the median one (by CPU time). */
  runs: number;
}

export const DEFAULT_REPLAY_BENCH: Readonly<ReplayBenchOptions> = Object.freeze({ seconds: 600, channels: 2, maxBatch: 32, modelDir: 'models/default', runs: 5 });

/**
 * Result: `realtimeFactor` = seconds of call per CPU second of this process, in the median of `runs` timed replays
 * (the shared cores' speed drifts from one second to the next; `realtimeFactorRuns` has every run's figure).
 */
export interface ReplayBenchResult {
  realtimeFactor: number;
  /** Each timed run's realtime factor, in the order they ran. */
  realtimeFactorRuns: number[];
  seconds: number;
  channels: number;
  cpuS: number;
  wallS: number;
  windows: number;
  batches: number;
  /** Share of the CPU time spent inside the model. */
  inferenceShare: number;
  /** CPU ms per window inside the model. */
  msPerWindow: number;
  /**
   * Of the CPU time of all timed runs, the share of the main thread (the replay itself); the rest is V8's helper
   * threads (concurrent GC marking, compilers). From /proc at a 10 ms tick; NaN where /proc is not there.
   */
  mainThreadShare: number;
  /** Realtime factor with the model's time taken out of the CPU time: what the rest (read, decode, resample, MFCC, gate, events) allows. */
  realtimeFactorWithoutModel: number;
  backend: string;
}

/** A conversation at 8 kHz: caller and agent take turns, with pauses (`benchCall`). */
export function conversation(seconds: number): [Float32Array, Float32Array] {
  const [caller, agent] = benchCall(seconds, 8000, 2);
  return [caller, agent];
}

/** Writes conversation(seconds) to `path` as Twilio stores a call: 8 kHz μ-law WAV, caller left, agent right (or the caller alone). */
export async function writeConversation(path: string, seconds: number, channels: 1 | 2 = 2): Promise<string> {
  const [caller, agent] = conversation(seconds);
  writeFileSync(path, encodeWav(channels === 2 ? [caller, agent] : [caller], 8000, 'mulaw'));
  return path;
}

/** Runs the benchmark: one warm-up replay of the recording, then `runs` timed ones. */
export async function benchReplay(opts: Partial<ReplayBenchOptions> = {}): Promise<ReplayBenchResult> {
  const o = { ...DEFAULT_REPLAY_BENCH, ...opts };
  const { name: backend } = await initBackend({ log: () => {} });
  const model = await loadReplayModel(o.modelDir);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-replay-'));
  try {
    const file = await writeConversation(join(dir, 'call.wav'), o.seconds, o.channels);
    // The warm-up replays the very file once: the code is compiled and the garbage of making the recording is
    // collected before the timed run, which then costs what each file of a folder costs.
    await replayFile(file, model, { maxBatch: o.maxBatch });
    // Only each run's figures are kept: holding every run's events would make the later runs pay for marking them.
    const runs: { cpuS: number; wallS: number; stats: Awaited<ReturnType<typeof replayFile>>['stats'] }[] = [];
    const threads0 = threadCpuMs(process.pid);
    for (let i = 0; i < o.runs; i++) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const { stats } = await replayFile(file, model, { maxBatch: o.maxBatch });
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      runs.push({ cpuS: (cpu.user + cpu.system) / 1e6, wallS: wallMs / 1000, stats });
    }
    const threads1 = threadCpuMs(process.pid);
    const mainMs = threads1.main - threads0.main;
    // The median by CPU time (of an even number, the slower of the two middle runs).
    const { cpuS, wallS, stats } = [...runs].sort((a, b) => a.cpuS - b.cpuS)[runs.length >> 1];
    const modelS = stats.inferenceCpuMs / 1000;
    return {
      realtimeFactor: o.seconds / cpuS,
      realtimeFactorRuns: runs.map((x) => o.seconds / x.cpuS),
      seconds: o.seconds,
      channels: o.channels,
      cpuS,
      wallS,
      windows: stats.windows,
      batches: stats.batches,
      inferenceShare: modelS / cpuS,
      msPerWindow: stats.windows > 0 ? stats.inferenceCpuMs / stats.windows : 0,
      realtimeFactorWithoutModel: o.seconds / (cpuS - modelS),
      mainThreadShare: mainMs / (mainMs + threads1.other - threads0.other),
      backend,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await model.close();
  }
}
