/**
 * FrameAnalyzer (JS) vs WasmFrameAnalyzer (wasm SIMD128, f64): CPU µs per frame over 60 s of 16 kHz speech.
 *
 *   node --import tsx bench/mfcc-kernel.ts [rounds] [config-json]
 *
 * The signal is the FLAC test clips, pre-emphasised and tiled to 60 s. Each round runs every frame through one
 * variant and is timed with process.cpuUsage() (user + system, this process only); variants alternate round by
 * round (A B C A B C …) so drift in machine load hits all alike. Other processes may be running on this machine:
 * compare numbers from one run, not across runs. Also measured: the whole streaming path (StreamingFeatures.push in
 * 20 ms chunks: pre-emphasis, buffering, Float32 delivery) with either kernel, and the wasm kernel on blocks of
 * frames (analyzeStage, two frames at a time) against one frame at a time.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLACDecoder } from '@wasm-audio-decoders/flac';
import { DEFAULT_FEATURE_CONFIG, frameCount, resolveFeatureConfig, type FeatureConfig } from '../src/features/config.js';
import { FrameAnalyzer, StreamingFeatures } from '../src/features/mfcc.js';
import { WasmFrameAnalyzer, wasmPlanBytes, wasmKernelMemoryBytes } from '../src/features/kernel-wasm.js';
import { FRAME_WASM_BYTES } from '../src/features/wasm/frame-wasm.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Number(process.argv[2] ?? 12);
const config: Readonly<FeatureConfig> = process.argv[3]
  ? resolveFeatureConfig(JSON.parse(process.argv[3]) as Partial<FeatureConfig>)
  : DEFAULT_FEATURE_CONFIG;
const SECONDS = 60;

async function speech(): Promise<Float32Array> {
  const dir = join(root, 'test/fixtures/audio');
  const decoder = new FLACDecoder();
  await decoder.ready;
  const parts: Float32Array[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.flac')).sort()) {
    const r = await decoder.decodeFile(new Uint8Array(readFileSync(join(dir, f))));
    if (r.sampleRate !== config.sampleRate) throw new Error(`${f}: ${r.sampleRate} Hz, config wants ${config.sampleRate}`);
    parts.push(r.channelData[0]);
    await decoder.reset();
  }
  decoder.free();
  const out = new Float32Array(SECONDS * config.sampleRate);
  for (let i = 0, p = 0, j = 0; i < out.length; i++, j++) {
    if (j === parts[p].length) { p = (p + 1) % parts.length; j = 0; }
    out[i] = parts[p][j];
  }
  return out;
}

const raw = await speech();
const pre = new Float64Array(raw.length);
for (let i = 0, prev = 0; i < raw.length; i++) { pre[i] = raw[i] - config.preEmphasis * prev; prev = raw[i]; }
const frames = frameCount(config, raw.length);

interface Analyzer { staticDims: number; analyze(frame: Float64Array, offset: number, out: Float64Array): void }
let sink = 0;
function perFrame(a: Analyzer): () => void {
  const out = new Float64Array(a.staticDims);
  const hop = config.hop;
  return () => {
    for (let f = 0; f < frames; f++) {
      a.analyze(pre, f * hop, out);
      sink += out[0];
    }
  };
}
/** The wasm kernel on blocks of frames, as StreamingFeatures drives it: the stage filled, then analyzeStage (two frames at a time). */
function blocks(a: WasmFrameAnalyzer): () => void {
  const out = new Float64Array(a.blockFrames * a.staticDims);
  const hop = config.hop;
  return () => {
    for (let f = 0; f < frames; f += a.blockFrames) {
      const n = Math.min(a.blockFrames, frames - f);
      const from = f * hop;
      a.stageData().set(pre.subarray(from, Math.min(pre.length, from + config.winLength + (n - 1) * hop)), a.stageOffset);
      a.analyzeStage(n, out);
      sink += out[0];
    }
  };
}

/** StreamingFeatures with the JS or the wasm kernel, pushed 20 ms at a time. */
function streaming(kernel: 'js' | 'wasm'): () => void {
  const s = new StreamingFeatures(config, { kernel });
  const chunk = config.sampleRate / 50;
  const onFrame = (v: Float32Array) => { sink += v[0]; };
  return () => {
    for (let i = 0; i < raw.length; i += chunk) s.push(raw.subarray(i, i + chunk), onFrame);
    s.flush(onFrame);
  };
}

const variants: { name: string; run: () => void; us: number[] }[] = [
  { name: 'FrameAnalyzer (JS, f64)', run: perFrame(new FrameAnalyzer(config)), us: [] },
  { name: 'WasmFrameAnalyzer (wasm SIMD128, f64)', run: perFrame(new WasmFrameAnalyzer(config)), us: [] },
  { name: 'StreamingFeatures, JS kernel', run: streaming('js'), us: [] },
  { name: 'StreamingFeatures, wasm kernel', run: streaming('wasm'), us: [] },
  { name: 'WasmFrameAnalyzer blocks (two at a time)', run: blocks(new WasmFrameAnalyzer(config)), us: [] },
];

function cpuMicros(fn: () => void): number {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return d.user + d.system;
}

for (let w = 0; w < 3; w++) for (const v of variants) v.run(); // warm-up: let the JIT settle
for (let r = 0; r < rounds; r++) for (const v of variants) v.us.push(cpuMicros(v.run) / frames);

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
console.log(`node ${process.version}, ${frames} frames (${SECONDS} s) per round, ${rounds} interleaved rounds`);
console.log(`config: nFft ${config.nFft}, winLength ${config.winLength}, nMels ${config.nMels}, kind ${config.kind}` +
  (config.kind === 'mfcc' ? `, nMfcc ${config.nMfcc}` : ''));
for (const v of variants) {
  console.log(`${v.name.padEnd(40)} median ${median(v.us).toFixed(3)} µs/frame  (min ${Math.min(...v.us).toFixed(3)}, ` +
    `max ${Math.max(...v.us).toFixed(3)})  = ${(10000 / median(v.us)).toFixed(0)}× real time at a 10 ms hop`);
}
const ratio = (a: number[], b: number[], what: string) => {
  const r = a.map((u, i) => u / b[i]);
  console.log(`ratio JS / wasm, ${what}: ${(median(a) / median(b)).toFixed(2)}× (medians); per-round ratios ` +
    `${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}`);
};
const [js, wasm, stream, streamW, block] = variants;
ratio(js.us, wasm.us, 'per-frame stage');
ratio(stream.us, streamW.us, 'whole streaming path');
const r = block.us.map((u, i) => u / wasm.us[i]);
console.log(`ratio wasm blocks / wasm one frame at a time: ${(median(block.us) / median(wasm.us)).toFixed(3)} (medians); ` +
  `per-round ratios ${Math.min(...r).toFixed(3)}–${Math.max(...r).toFixed(3)}`);
console.log(`wasm module ${FRAME_WASM_BYTES} bytes; this config's tables + scratch ${wasmPlanBytes(config)} bytes; ` +
  `kernel memory ${wasmKernelMemoryBytes()} bytes (one instance per process)`);
if (sink === 42) console.log('');
