/**
 * Inference cost of cnn variants at the shipped geometry (120 frames × 40 MFCC → 7 classes), untrained: speed
 * depends on the shapes, not on the weights, so candidates are compared here before any is trained.
 *
 *   node --import tsx bench/cnn-variants.ts [--rounds N] [--only a,b] [--json FILE]
 *
 * Each variant is timed as the live path runs it (tensor from a Float32Array → predict → read back), one window per
 * call and in batches of 32, in `--rounds` interleaved rounds (default 7) so that load from other processes falls on
 * all variants alike; the table gives the median round and the range. `inference` variants are the same network
 * with BatchNorm folded into the conv (conv2d over [frames, 1, dims] with bias + ReLU fused in one kernel), which
 * is what `toInferenceModel` in src/model/architectures.ts produces from a trained model.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { availableParallelism, loadavg } from 'node:os';
import type * as tfjs from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { CNN_FAST_SPEC, CNN_MID_SPEC, CNN_SPEC, buildCnn, paramCount, toInferenceModel, type CnnSpec } from '../src/model/architectures.js';
import { mulberry32 } from '../src/util/random.js';
import { inferMs } from './infer-ms.js';

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, only: { type: 'string' }, json: { type: 'string' } },
});
const ROUNDS = Number(args.rounds);
const FRAMES = 120;
const DIMS = 40;
const CLASSES = 7;
const BATCH = 32;
const PER = FRAMES * DIMS;
const SHAPE = { frames: FRAMES, dims: DIMS };

const b = (filters: number, kernel: number, pool: number, stride = 1) => ({ filters, kernel, pool, stride, dropout: 0.1 });
const VARIANTS: Record<string, CnnSpec> = {
  'cnn (64,96,128)': CNN_SPEC,
  'half (32,48,64)': { blocks: [b(32, 5, 2), b(48, 5, 2), b(64, 3, 2)] },
  'stride2 (64,96,128)': { blocks: [b(64, 5, 1, 2), b(96, 5, 2), b(128, 3, 2)] },
  'half stride2 (32,48,64)': { blocks: [b(32, 5, 1, 2), b(48, 5, 2), b(64, 3, 2)] },
  'half pool4 (32,48,64)': { blocks: [b(32, 5, 4), b(48, 5, 2), b(64, 3, 2)] },
  'cnn-fast: stride2 pool4 (32,64,96)': CNN_FAST_SPEC,
  'stride2 (48,64,96)': { blocks: [b(48, 5, 1, 2), b(64, 5, 2), b(96, 3, 2)] },
  'cnn-mid: stride2 pool2 (48,64,96)': CNN_MID_SPEC,
};

const { tf, name, reason } = await initBackend({ log: () => {} });
const r = mulberry32(9);
const inputs = Float32Array.from({ length: 256 * PER }, () => (r() + r() + r() - 1.5) * 2);

const only = args.only?.split(',');
const entries: [string, tfjs.LayersModel, number][] = [];
for (const [label, spec] of Object.entries(VARIANTS)) {
  if (only && !only.some((o) => label.startsWith(o))) continue;
  const m = buildCnn(tf, spec, { frames: FRAMES, dims: DIMS, classes: CLASSES, seed: 1 });
  const params = paramCount(m);
  entries.push([label, m, params]);
  entries.push([`${label}, inference`, toInferenceModel(tf, m), params]);
}
for (const [, m] of entries) {
  inferMs(tf, m, inputs, SHAPE, 1, 5);
  inferMs(tf, m, inputs, SHAPE, BATCH, 2);
}
const load0 = loadavg()[0];
const single = entries.map(() => [] as number[]);
const batched = entries.map(() => [] as number[]);
for (let round = 0; round < ROUNDS; round++) {
  entries.forEach(([, m], i) => {
    single[i].push(inferMs(tf, m, inputs, SHAPE, 1, 200));
    batched[i].push(inferMs(tf, m, inputs, SHAPE, BATCH, 20) / BATCH);
  });
}
const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const fmt = (v: number[]) => `${median(v).toFixed(3)} (${Math.min(...v).toFixed(3)}–${Math.max(...v).toFixed(3)})`;
console.log(`backend: ${name} (${reason}); load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)} on ${availableParallelism()} cores; median of ${ROUNDS} rounds`);
console.log('');
console.log(`| variant | params | ms/window, single | ms/window, batch ${BATCH} |`);
console.log('|---|---:|---:|---:|');
entries.forEach(([label, , params], i) => console.log(`| ${label} | ${params.toLocaleString('en')} | ${fmt(single[i])} | ${fmt(batched[i])} |`));
if (args.json) {
  const rows = entries.map(([label, , params], i) => ({
    variant: label, params, msPerWindow: median(single[i]), msPerWindowBatched: median(batched[i]),
    singleRange: [Math.min(...single[i]), Math.max(...single[i])], batchedRange: [Math.min(...batched[i]), Math.max(...batched[i])],
  }));
  const meta = { backend: name, rounds: ROUNDS, batch: BATCH, loadAverage: [load0, loadavg()[0]], cores: availableParallelism(), date: new Date().toISOString() };
  writeFileSync(args.json, JSON.stringify({ ...meta, rows }, null, 2) + '\n');
}
