/**
 * Size and speed of the three architectures at the shipped geometry (120 frames × 40 MFCC → 7 classes) on the
 * backend initBackend() chooses: parameters, weight bytes, inference per window (one window at a time, and in
 * batches of 32), and seconds per training epoch of 2048 windows at batch 32.
 *
 *   node --import tsx bench/architectures.ts [--rounds N] [--train-rounds N] [--layers]
 *
 * Inference is timed end to end as the live path runs it (tensor from a Float32Array → predict → read back), in
 * `--rounds` rounds (default 7) that visit the architectures in turn, so load from other processes on this shared
 * machine falls on all of them alike; the table gives the median round. Training uses trainModel itself (shuffle,
 * batch building, Adam step, and a 64-window validation pass each epoch, ~1% of it), one epoch per arch per
 * `--train-rounds` (default 1), architectures again in turn; the table gives the fastest epoch.
 */
import { parseArgs } from 'node:util';
import { availableParallelism, loadavg } from 'node:os';
import type * as tfjs from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { ARCHITECTURES, buildModel, paramCount, weightBytes, type Arch } from '../src/model/architectures.js';
import { trainModel } from '../src/model/train.js';
import { mulberry32 } from '../src/util/random.js';
import { inferMs } from './infer-ms.js';
import type { WindowSet } from '../src/data/types.js';
import { EMOTION_LABELS } from '../src/labels.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    'train-rounds': { type: 'string', default: '1' },
    layers: { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(args.rounds);
const TRAIN_ROUNDS = Number(args['train-rounds']);
const FRAMES = 120;
const DIMS = 40;
const CLASSES = EMOTION_LABELS.length;
const TRAIN_WINDOWS = 2048;
const BATCH = 32;
const PER = FRAMES * DIMS;
const SHAPE = { frames: FRAMES, dims: DIMS };

const info = await initBackend({ log: () => {} });
const { tf } = info;

function windows(n: number, seed: number): WindowSet {
  const r = mulberry32(seed);
  const x = new Float32Array(n * PER);
  for (let i = 0; i < x.length; i++) x[i] = (r() + r() + r() - 1.5) * 2;
  const y = Int32Array.from({ length: n }, () => Math.floor(r() * CLASSES));
  return { x, n, frames: FRAMES, dims: DIMS, y, labels: EMOTION_LABELS, clip: Int32Array.from({ length: n }, (_, i) => i), clips: [] };
}

const median = (a: number[]): number => {
  const s = [...a].sort((p, q) => p - q);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const models = new Map<Arch, tfjs.LayersModel>();
for (const arch of ARCHITECTURES) models.set(arch, buildModel(tf, arch, { frames: FRAMES, dims: DIMS, classes: CLASSES, seed: 1 }));
const inputs = windows(256, 9).x;
const load0 = loadavg()[0];

// Warm-up: XNNPACK operators and kernels are set up on first use for each shape.
for (const m of models.values()) {
  inferMs(tf, m, inputs, SHAPE, 1, 5);
  inferMs(tf, m, inputs, SHAPE, BATCH, 2);
}
// Reps sized so that a round takes a second or two per arch.
const reps = (arch: Arch, batch: number): number => (arch === 'lstm' ? (batch === 1 ? 20 : 3) : batch === 1 ? 200 : 20);
const single = new Map<Arch, number[]>(ARCHITECTURES.map((a) => [a, []]));
const batched = new Map<Arch, number[]>(ARCHITECTURES.map((a) => [a, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const arch of ARCHITECTURES) {
    const m = models.get(arch)!;
    single.get(arch)!.push(inferMs(tf, m, inputs, SHAPE, 1, reps(arch, 1)));
    batched.get(arch)!.push(inferMs(tf, m, inputs, SHAPE, BATCH, reps(arch, BATCH)) / BATCH);
  }
}

const train = windows(TRAIN_WINDOWS, 1);
const val = windows(64, 2);
const epochSeconds = new Map<Arch, number[]>(ARCHITECTURES.map((a) => [a, []]));
for (let r = 0; r < TRAIN_ROUNDS; r++) {
  for (const arch of ARCHITECTURES) {
    process.stderr.write(`training ${arch}, round ${r + 1} of ${TRAIN_ROUNDS}…\n`);
    const res = await trainModel(tf, {
      arch, train, val, epochs: 1, batchSize: BATCH, learningRate: 1e-3, seed: 1, patience: Infinity,
      plateau: { factor: 0.5, patience: 3, minLr: 1e-5 }, classWeights: 'balanced',
    });
    epochSeconds.get(arch)!.push(res.history[0].seconds);
    res.model.dispose();
  }
}

const lines: string[] = [];
lines.push(`backend: ${info.name} (${info.reason}); load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)} on ${availableParallelism()} cores`);
lines.push(`inference: median of ${ROUNDS} interleaved rounds (range in brackets); training: fastest of ${TRAIN_ROUNDS} epoch(s) of ${TRAIN_WINDOWS} windows, batch ${BATCH}`);
lines.push('');
lines.push(`| arch | params | weights | ms/window, single | ms/window, batch ${BATCH} | s/epoch (${TRAIN_WINDOWS} windows, batch ${BATCH}) |`);
lines.push('|---|---:|---:|---:|---:|---:|');
for (const arch of ARCHITECTURES) {
  const m = models.get(arch)!;
  const s = single.get(arch)!;
  const b = batched.get(arch)!;
  const fmt = (v: number[]) => `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)})`;
  lines.push(
    `| ${arch} | ${paramCount(m).toLocaleString('en')} | ${(weightBytes(m) / 1024).toFixed(0)} KB | ${fmt(s)} | ${fmt(b)} | ` +
      `${Math.min(...epochSeconds.get(arch)!).toFixed(1)} |`,
  );
}
if (args.layers) {
  for (const arch of ARCHITECTURES) {
    lines.push('', `${arch}:`);
    for (const l of models.get(arch)!.layers) {
      const shape = JSON.stringify(l.outputShape).replace(/null/g, 'b');
      lines.push(`  ${l.name.padEnd(10)} ${l.getClassName().padEnd(22)} → ${shape.padEnd(14)} ${l.countParams()}`);
    }
  }
}
console.log(lines.join('\n'));
for (const m of models.values()) m.dispose();
