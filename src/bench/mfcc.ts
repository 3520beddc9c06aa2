import { StreamingFeatures, computeFeatures } from '../features/mfcc.js';
import type { FeatureConfig } from '../features/config.js';
import { benchSignal, cpuSeconds } from './signal.js';

/** Result of `benchMfcc`: how many seconds of audio one CPU second turns into features. */
export interface MfccBenchResult {
  /** Streaming in `chunkMs` chunks: audio seconds per CPU second (best of the rounds). */
  realtimeFactor: number;
  /** The same clip pushed whole, in the same process: the reference the streaming figure is compared with. */
  batchRealtimeFactor: number;
  /** realtimeFactor / batchRealtimeFactor: what streaming costs over batch (1 = nothing). */
  streamingOverBatch: number;
  /** Streaming with the plain-JavaScript frame kernel, same run: the reference the wasm kernel is measured against. */
  jsKernelRealtimeFactor: number;
  /** realtimeFactor / jsKernelRealtimeFactor. */
  wasmOverJs: number;
  /** CPU microseconds per frame, streaming. */
  usPerFrame: number;
  seconds: number;
  chunkMs: number;
  rounds: number;
  frames: number;
}

/**
 * Streams `seconds` of audio at the config's rate (16 kHz by default) through the MFCC in `chunkMs` chunks, `rounds`
 * times, after one warm-up round, timing the process's CPU time; batch rounds and JS-kernel rounds are interleaved so
 * all see the same machine.
 */
export function benchMfcc(
  opts: { seconds?: number; chunkMs?: number; rounds?: number; config?: Partial<FeatureConfig> } = {},
): MfccBenchResult {
  const seconds = opts.seconds ?? 120;
  const chunkMs = opts.chunkMs ?? 20;
  const rounds = opts.rounds ?? 5;
  const stream = new StreamingFeatures(opts.config);
  const jsStream = new StreamingFeatures(opts.config, { kernel: 'js' });
  const rate = stream.config.sampleRate;
  const x = benchSignal(seconds, rate);
  const chunk = Math.round((rate * chunkMs) / 1000);
  const chunks: Float32Array[] = [];
  for (let i = 0; i < x.length; i += chunk) chunks.push(x.subarray(i, i + chunk));
  let frames = 0;
  let checksum = 0;
  const onFrame = (f: Float32Array) => {
    frames++;
    checksum += f[1];
  };
  const run = (s: StreamingFeatures) => () => {
    for (const c of chunks) s.push(c, onFrame);
    s.flush(onFrame);
  };
  const streamRound = run(stream);
  const jsRound = run(jsStream);
  const batchRound = () => {
    checksum += computeFeatures(x, opts.config).data[1];
  };
  streamRound();
  batchRound();
  jsRound();
  let bestStream = Infinity;
  let bestBatch = Infinity;
  let bestJs = Infinity;
  for (let r = 0; r < rounds; r++) {
    bestStream = Math.min(bestStream, cpuSeconds(streamRound));
    bestBatch = Math.min(bestBatch, cpuSeconds(batchRound));
    bestJs = Math.min(bestJs, cpuSeconds(jsRound));
  }
  if (!Number.isFinite(checksum)) throw new Error('benchmark produced non-finite features');
  const perRound = frames / (2 * (rounds + 1));
  return {
    realtimeFactor: seconds / bestStream,
    batchRealtimeFactor: seconds / bestBatch,
    streamingOverBatch: bestBatch / bestStream,
    jsKernelRealtimeFactor: seconds / bestJs,
    wasmOverJs: bestJs / bestStream,
    usPerFrame: (bestStream * 1e6) / perRound,
    seconds,
    chunkMs,
    rounds,
    frames: perRound,
  };
}
