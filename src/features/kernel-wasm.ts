/**
 * WasmFrameAnalyzer: the per-frame stage of FrameAnalyzer (window → FFT power → mel → log → DCT), and the
 * pre-emphasis and block framing StreamingFeatures drives it with, run by a WebAssembly kernel
 * (src/features/wasm/frame.c: float64, SIMD128, no imports). Same interface as FrameAnalyzer and
 * the same numbers to ~1e-14: the FFT, mel sums and DCT sums are the same IEEE operations in the same order as the
 * JavaScript; only the log differs (fdlibm's algorithm in C vs V8's Math.log), by an ulp or so.
 *
 * Every table is computed here from the FeatureConfig — the mel filters by melFilterbank(), the window and DCT by
 * tables.ts (shared with FrameAnalyzer; test/kernel-wasm.test.ts compares the two analyzers), the twiddles as
 * fft.ts computes them — and copied into the module's memory, so the config stays the single source
 * of truth and the C code holds no table.
 *
 * Memory: one WebAssembly instance per process (per worker thread), compiled synchronously on first use from the
 * bytes embedded as base64 in ./wasm/frame-wasm.ts (no file lookup, no download). Its memory starts at one 64 KiB
 * page (4 KiB stack, static data, then tables). Each distinct config gets one block of tables, scratch, and the
 * stage StreamingFeatures analyses a block of frames from (113,104 bytes for the 16 kHz default config, 77,776
 * for the 8 kHz one); all analyzers with an equal config share that block, which is safe because `analyze` and
 * `analyzeStage` run to completion synchronously and nothing stays in the block between calls. So hundreds of live calls on one config cost a few 64 KiB pages in total, and creating an analyzer after
 * the first allocates nothing in wasm. A block is never freed: the memory grows (in 64 KiB pages) with the number
 * of distinct configs used in the process.
 */
import { Buffer } from 'node:buffer';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { featureConfigKey, type FeatureConfig } from './config.js';
import { melFilterbank } from './mel.js';
import { analysisWindow, blockFrames, foldedDctCoefficient, preemphasizeInto, stageCapacity } from './tables.js';
import { FRAME_WASM_BASE64 } from './wasm/frame-wasm.js';

/**
 * The slice of the WebAssembly JS API used here, typed locally: the project compiles with lib ES2022 and
 * @types/node 20, neither of which declares the WebAssembly namespace.
 */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
}
const wasmApi = (): WasmApi => (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface KernelExports {
  memory: WasmMemory;
  __heap_base: { value: number };
  ctx_size(): number;
  analyze(ctx: number): void;
  analyze_frames(ctx: number, src: number, frames: number, hop: number, winLength: number, dims: number, dst: number, dst32: number): void;
  preemphasize(src: number, n: number, prev: number, a: number, dst: number): void;
}

/** The process's one kernel instance and a bump allocator over its memory. */
interface Kernel {
  exports: KernelExports;
  /** Views over the whole memory; replaced when it grows (growing detaches the old buffer). */
  f64: Float64Array;
  f32: Float32Array;
  i32: Int32Array;
  /** Next free byte. */
  top: number;
}

const CTX_BYTES = 104;
let kernel: Kernel | null = null;
const plans = new Map<string, Plan>();

function getKernel(): Kernel {
  if (kernel) return kernel;
  const bytes = Buffer.from(FRAME_WASM_BASE64, 'base64');
  const wa = wasmApi();
  const instance = new wa.Instance(new wa.Module(bytes), {});
  const exports = instance.exports as unknown as KernelExports;
  if (exports.ctx_size() !== CTX_BYTES) throw new Error(`frame.wasm Ctx is ${exports.ctx_size()} bytes, expected ${CTX_BYTES}`);
  const buf = exports.memory.buffer;
  kernel = { exports, f64: new Float64Array(buf), f32: new Float32Array(buf), i32: new Int32Array(buf), top: align(exports.__heap_base.value) };
  return kernel;
}

const align = (n: number) => (n + 15) & ~15;

/** Reserves `bytes` (16-byte aligned) in the kernel's memory, growing it if needed; returns the byte address. */
function alloc(k: Kernel, bytes: number): number {
  const at = k.top;
  k.top = align(at + bytes);
  const mem = k.exports.memory;
  if (k.top > mem.buffer.byteLength) {
    mem.grow(Math.ceil((k.top - mem.buffer.byteLength) / 65536));
    k.f64 = new Float64Array(mem.buffer);
    k.f32 = new Float32Array(mem.buffer);
    k.i32 = new Int32Array(mem.buffer);
  }
  return at;
}

/** Total bytes of the kernel's memory (all configs' tables, stack and static data). */
export function wasmKernelMemoryBytes(): number {
  return getKernel().exports.memory.buffer.byteLength;
}

/** Bytes of table and scratch one config takes in the kernel's memory (its Ctx included). */
export function wasmPlanBytes(config: Readonly<FeatureConfig>): number {
  return getPlan(config).bytes;
}

/**
 * The folded DCT (tables.ts) as ⌈nMels/2⌉ rows of `pairs` pairs: entry (m, j) = (row 2j at m, row 2j+1 at m), zero
 * for rows past nMfcc. The kernel multiplies entry (m, j) by the folded pair (sum m, difference m).
 */
function makeDctPairs(c: FeatureConfig, pairs: number): Float64Array {
  const halfM = Math.ceil(c.nMels / 2);
  const dct = new Float64Array(halfM * pairs * 2);
  for (let k = 0; k < c.nMfcc; k++) {
    for (let m = 0; m < halfM; m++) dct[(m * pairs + (k >> 1)) * 2 + (k & 1)] = foldedDctCoefficient(c, k, m);
  }
  return dct;
}

/** One config's block in the kernel's memory. Addresses are byte addresses; `*Idx` are Float64Array indices. */
interface Plan {
  ctx: number;
  xIdx: number;
  outIdx: number;
  winLength: number;
  hop: number;
  dims: number;
  /** The stage of a block (stageCapacity samples), its float32 input before pre-emphasis, and the block's results (blockFrames × dims). */
  stage: number;
  raw: number;
  stageCapacity: number;
  block: number;
  blockFrames: number;
  bytes: number;
}

function getPlan(config: Readonly<FeatureConfig>): Plan {
  const key = featureConfigKey(config);
  const cached = plans.get(key);
  if (cached) return cached;
  const plan = buildPlan(config);
  plans.set(key, plan);
  return plan;
}

function buildPlan(c: Readonly<FeatureConfig>): Plan {
  const n = c.nFft;
  if (!Number.isInteger(n) || n < 8 || (n & (n - 1)) !== 0 || n > 65536) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `FFT size must be a power of two in [8, 65536], got ${n}`);
  }
  if (!Number.isInteger(c.winLength) || c.winLength < 1 || c.winLength > n) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `winLength must be an integer in [1, nFft], got ${c.winLength}`);
  }
  const fb = melFilterbank(c);
  const window = analysisWindow(c);
  const half = n >> 1;
  const first = Math.log2(half) % 2 === 1 ? 2 : 4;
  const nMels = c.nMels;
  const halfM = Math.ceil(nMels / 2);
  const nOut = c.kind === 'mfcc' ? c.nMfcc : 0;
  const nPairs = 4 * Math.ceil(nOut / 8);
  const nBins = fb.binHi - fb.binLo;

  const k = getKernel();
  const start = k.top;
  const ctx = alloc(k, CTX_BYTES);
  const x = alloc(k, 8 * n);
  const win = alloc(k, 8 * n);
  const brev = alloc(k, 4 * half);
  let twCount = 0;
  for (let m = first; m < half; m *= 4) twCount += m;
  const tw = alloc(k, 144 * twCount);
  const split = alloc(k, 48 * nBins);
  // analyze_pair's scratch: n windowed sample pairs, the FFT's real and imaginary parts, power and mel pairs.
  const pair = alloc(k, 16 * (n + 2 * (half + 1) + nBins + nMels));
  const mstart = alloc(k, 4 * nMels);
  const mlen = alloc(k, 4 * nMels);
  const moff = alloc(k, 4 * nMels);
  const mw = alloc(k, 8 * fb.weights.length);
  const logmel = alloc(k, 8 * (nMels + 1));
  const folded = alloc(k, 16 * halfM);
  const dct = alloc(k, 16 * halfM * nPairs);
  const out = alloc(k, 16 * nPairs);
  const dims = nOut > 0 ? nOut : nMels;
  const stage = alloc(k, 8 * stageCapacity(c));
  const raw = alloc(k, 4 * stageCapacity(c));
  const block = alloc(k, 8 * blockFrames(c) * dims);
  const bytes = k.top - start;
  const { f64, i32 } = k; // views are current: every alloc is done
  // Bump allocation only ever hands out fresh (zero) memory; zeroing keeps the x tail and folded padding at 0 regardless.
  f64.fill(0, start / 8, k.top / 8);

  f64[ctx / 8] = c.logFloor;
  const ints = [half, first, fb.binLo, fb.binHi, nMels, halfM, nPairs, 0,
    x, win, brev, pair, tw, split, 0, mstart, mlen, moff, mw, logmel, folded, dct, out];
  i32.set(ints, ctx / 4 + 2);

  f64.set(window, win / 8);
  const bits = Math.log2(half);
  for (let i = 0; i < half; i++) {
    let r = 0;
    for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
    i32[brev / 4 + i] = 2 * r;
  }
  // Every table entry is a splat (the same value in both lanes), as analyze_pair runs one frame per lane.
  const splats = (at: number, values: number[]) => {
    for (const v of values) {
      f64[at++] = v;
      f64[at++] = v;
    }
    return at;
  };
  let t = tw / 8;
  for (let m = first; m < half; m *= 4) {
    for (let kk = 0; kk < m; kk++) {
      // Order in memory: W^2k, W^k, W^3k (the multipliers of the 2nd, 3rd and 4th input), each as r, −i, i.
      for (const p of [2, 1, 3]) {
        const a = (-2 * Math.PI * p * kk) / (4 * m);
        const wr = Math.cos(a), wi = Math.sin(a);
        t = splats(t, [wr, -wi, wi]);
      }
    }
  }
  t = split / 8;
  for (let kk = fb.binLo; kk < fb.binHi; kk++) {
    const cos = Math.cos((2 * Math.PI * kk) / n), sin = Math.sin((2 * Math.PI * kk) / n);
    t = splats(t, [sin, cos, -sin]);
  }
  for (let m = 0; m < nMels; m++) {
    i32[mstart / 4 + m] = fb.start[m] - fb.binLo;
    i32[mlen / 4 + m] = fb.length[m];
    i32[moff / 4 + m] = fb.offset[m];
  }
  f64.set(fb.weights, mw / 8);
  if (nOut > 0) f64.set(makeDctPairs(c, nPairs), dct / 8);

  return {
    ctx,
    xIdx: x / 8,
    outIdx: (nOut > 0 ? out : logmel) / 8,
    winLength: c.winLength,
    hop: c.hop,
    dims,
    stage,
    raw,
    stageCapacity: stageCapacity(c),
    block,
    blockFrames: blockFrames(c),
    bytes,
  };
}

/**
 * Drop-in for FrameAnalyzer: windowed frame → log-mel (and cepstra), stateless between frames, allocating nothing
 * per frame. The frame's winLength samples are copied into the kernel's memory and the staticDims results out.
 */
export class WasmFrameAnalyzer {
  /** Static values per frame (nMfcc for `mfcc`, nMels for `logmel`). */
  readonly staticDims: number;
  /** Most frames one analyzeStage call takes. */
  readonly blockFrames: number;
  /** Samples the stage holds: winLength + (blockFrames − 1)·hop. */
  readonly stageCapacity: number;
  /** Index in stageData() of the stage's first sample. */
  readonly stageOffset: number;
  private readonly plan: Plan;

  constructor(readonly config: Readonly<FeatureConfig>) {
    this.plan = getPlan(config);
    this.staticDims = this.plan.dims;
    this.blockFrames = this.plan.blockFrames;
    this.stageCapacity = this.plan.stageCapacity;
    this.stageOffset = this.plan.stage / 8;
  }

  /**
   * The array the stage lives in: the kernel's memory, shared by every analyzer of this config. Take it anew for
   * each block (the memory may have grown since, which replaces it) and fill the block and run analyzeStage with
   * no other stream's work in between.
   */
  stageData(): Float64Array {
    return kernel!.f64;
  }

  /**
   * Writes `count` samples of `src` from `from`, pre-emphasised (x − a·previous, `prev` before the first), into the
   * stage from index `at` of stageData(). Float32 input is copied into the kernel's memory and pre-emphasised there.
   */
  preemphasize(src: Float32Array | Float64Array, from: number, count: number, prev: number, at: number): void {
    const k = kernel!;
    const a = this.config.preEmphasis;
    if (src instanceof Float32Array) {
      const raw = this.plan.raw;
      k.f32.set(from === 0 && count === src.length ? src : src.subarray(from, from + count), raw / 4);
      k.exports.preemphasize(raw, count, prev, a, 8 * at);
      return;
    }
    preemphasizeInto(src, from, count, prev, a, k.f64, at);
  }

  /**
   * Analyses `frames` (≤ blockFrames) frames of the stage, frame f being the winLength samples from f·hop, exactly
   * as `analyze` would one by one; writes frames × staticDims values to `out`, rounded to float32 (as a
   * Float32Array store rounds them) when `out` is a Float32Array.
   */
  analyzeStage(frames: number, out: Float64Array | Float32Array): void {
    const { ctx, stage, hop, winLength, dims, block } = this.plan;
    const k = kernel!;
    const n = frames * dims;
    if (out instanceof Float32Array) {
      // The float32 results go where the float64 ones would, in the first half of the block.
      k.exports.analyze_frames(ctx, stage, frames, hop, winLength, dims, 0, block);
      out.set(k.f32.subarray(block / 4, block / 4 + n));
    } else {
      k.exports.analyze_frames(ctx, stage, frames, hop, winLength, dims, block, 0);
      out.set(k.f64.subarray(block / 8, block / 8 + n));
    }
  }

  /** `frame`: winLength pre-emphasised samples starting at `offset`. Writes staticDims values to `out`. */
  analyze(frame: Float64Array, offset: number, out: Float64Array): void {
    const { ctx, xIdx, outIdx, winLength, dims } = this.plan;
    const k = kernel!;
    const f64 = k.f64;
    // A frame that is exactly the window (StreamingFeatures' case) goes in as is; otherwise through a view, which
    // costs one small allocation but copies far faster than an element loop (bench/RESULTS.md, "Smaller measurements").
    if (offset === 0 && frame.length === winLength) f64.set(frame, xIdx);
    else if (offset >= 0 && offset + winLength <= frame.length) f64.set(frame.subarray(offset, offset + winLength), xIdx);
    else for (let i = 0; i < winLength; i++) f64[xIdx + i] = frame[offset + i];
    k.exports.analyze(ctx);
    for (let i = 0; i < dims; i++) out[i] = f64[outIdx + i];
  }
}
