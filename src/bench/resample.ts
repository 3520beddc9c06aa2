/** Resampler throughput benchmark (`callmood bench resample`). */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { StreamingResampler } from '../audio/resample.js';
import { benchSignal } from './signal.js';

/** Options of `benchResample`; every field is optional. */
export interface BenchResampleOptions {
  /** Input rate in Hz (default 8000, the Twilio rate). */
  inRate?: number;
  /** Output rate in Hz (default 16000, the model's rate). */
  outRate?: number;
  /** Seconds of audio streamed in the timed loop (default 600). */
  seconds?: number;
  /** Chunk length in milliseconds (default 20, a Twilio media frame). */
  chunkMs?: number;
}

/** What `benchResample` measured. */
export interface BenchResampleResult {
  /** Seconds of audio resampled per CPU second (user + system) of this process. */
  realtimeFactor: number;
  /** Input rate in Hz. */
  inRate: number;
  /** Output rate in Hz. */
  outRate: number;
  /** Chunk length in milliseconds. */
  chunkMs: number;
  /** Seconds of audio streamed in the timed loop (whole chunks, so it can exceed the request slightly). */
  seconds: number;
  /** CPU seconds (user + system) spent in the timed loop. */
  cpuSeconds: number;
}

const DEFAULT_BENCH: Required<BenchResampleOptions> = Object.freeze({
  inRate: 8000,
  outRate: 16000,
  seconds: 600,
  chunkMs: 20,
});

/** Length of the signal that the timed loop cycles through: long enough to vary, small enough to stay cached. */
const SIGNAL_SECONDS = 10;
/** Audio streamed before timing, so the timed loop runs optimised code. */
const WARMUP_SECONDS = 5;

/**
 * Streams `seconds` of a voice-like signal (`benchSignal`; a polyphase resampler's cost does not depend on what it
 * carries) through a `StreamingResampler` in `chunkMs` chunks and measures the
 * process's CPU time (user + system) around the loop, after a warm-up.
 * @throws CallmoodError INVALID_OPTION for a non-positive or non-finite `seconds` or `chunkMs`;
 *   UNSUPPORTED_RATE for a bad rate
 */
export function benchResample(opts: BenchResampleOptions = {}): BenchResampleResult {
  const o = { ...DEFAULT_BENCH, ...stripUndefined(opts) };
  for (const field of ['seconds', 'chunkMs'] as const) {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${field} must be a positive number of ${field === 'seconds' ? 'seconds' : 'milliseconds'}, got ${String(v)}`);
    }
  }
  const resampler = new StreamingResampler(o.inRate, o.outRate); // validates the rates
  const chunk = Math.max(1, Math.round((o.inRate * o.chunkMs) / 1000));
  // A whole number of chunks, so every chunk is a view of the signal.
  const chunksInSignal = Math.max(1, Math.round((SIGNAL_SECONDS * o.inRate) / chunk));
  const signal = benchSignal((chunksInSignal * chunk) / o.inRate, o.inRate);
  const views: Float32Array[] = [];
  for (let c = 0; c < chunksInSignal; c++) views.push(signal.subarray(c * chunk, (c + 1) * chunk));

  const run = (count: number): number => {
    let sink = 0;
    for (let c = 0; c < count; c++) {
      const y = resampler.push(views[c % chunksInSignal]);
      if (y.length > 0) sink += y[0];
    }
    return sink;
  };
  run(Math.ceil((WARMUP_SECONDS * o.inRate) / chunk));
  resampler.reset();

  const chunks = Math.ceil((o.seconds * o.inRate) / chunk);
  const before = process.cpuUsage();
  const sink = run(chunks);
  const used = process.cpuUsage(before);
  resampler.close();
  if (Number.isNaN(sink)) throw new Error('unreachable: keeps the loop from being optimised away');

  const cpuSeconds = (used.user + used.system) / 1e6;
  const seconds = (chunks * chunk) / o.inRate;
  return {
    realtimeFactor: seconds / Math.max(cpuSeconds, 1e-6),
    inRate: o.inRate,
    outRate: o.outRate,
    chunkMs: o.chunkMs,
    seconds,
    cpuSeconds,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
