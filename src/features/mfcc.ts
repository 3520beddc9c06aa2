/**
 * The one MFCC / log-mel implementation: streaming. Push samples in chunks of any size and each frame comes out as
 * soon as its window is complete; batch is pushing a whole clip and flushing. Samples are pre-emphasised into a
 * stage and analysed a block of up to 32 frames per kernel call (with the wasm kernel both happen in its memory, so
 * JavaScript touches no sample one by one). Per frame it allocates nothing; per block, a few array views.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import { assertFiniteSamples } from '../audio/validate.js';
import { featureDims, frameCount, resolveFeatureConfig, type FeatureConfig } from './config.js';
import { DeltaStage } from './deltas.js';
import { RealFft } from './fft.js';
import { melFilterbank, type MelFilterbank } from './mel.js';
import { analysisWindow, blockFrames, foldedDctCoefficient, preemphasizeInto, stageCapacity } from './tables.js';
import { WasmFrameAnalyzer } from './kernel-wasm.js';

/** Which implementation runs the per-frame stage. */
export type FrameKernel = 'wasm' | 'js';

/**
 * Receives each frame's features. `features` is overwritten by later frames (without deltas, one array per frame of
 * a block, reused for the next block): copy it to keep it.
 */
export type FrameCallback = (features: Float32Array, frameIndex: number) => void;

/** DCT rows over the folded half of the mel axis (see foldedDctCoefficient), nMfcc × ⌈nMels/2⌉. */
function makeDct(c: FeatureConfig): Float64Array {
  const halfM = Math.ceil(c.nMels / 2);
  const dct = new Float64Array(c.nMfcc * halfM);
  for (let k = 0; k < c.nMfcc; k++) for (let m = 0; m < halfM; m++) dct[k * halfM + m] = foldedDctCoefficient(c, k, m);
  return dct;
}

/**
 * Pure per-frame stage: windowed frame → log-mel (and cepstra). Stateless between frames; owns its scratch.
 */
export class FrameAnalyzer {
  /** Static values per frame (nMfcc for `mfcc`, nMels for `logmel`). */
  readonly staticDims: number;
  /** Most frames one analyzeStage call takes. */
  readonly blockFrames: number;
  /** Samples the stage holds: winLength + (blockFrames − 1)·hop. */
  readonly stageCapacity: number;
  /** Index in stageData() of the stage's first sample. */
  readonly stageOffset = 0;
  private readonly stage: Float64Array;
  private readonly frameOut: Float64Array;
  private readonly window: Float64Array;
  private readonly fft: RealFft;
  private readonly fb: MelFilterbank;
  private readonly dct: Float64Array;
  private readonly power: Float64Array;
  private readonly logMel: Float64Array;
  /** Folded log-mel: sums in the first half, differences in the second (see makeDct). */
  private readonly folded: Float64Array;

  constructor(readonly config: Readonly<FeatureConfig>) {
    this.window = analysisWindow(config);
    this.fft = new RealFft(config.nFft);
    this.fb = melFilterbank(config);
    this.dct = makeDct(config);
    this.staticDims = config.kind === 'mfcc' ? config.nMfcc : config.nMels;
    this.power = new Float64Array(this.fft.bins);
    this.logMel = new Float64Array(config.nMels);
    this.folded = new Float64Array(2 * Math.ceil(config.nMels / 2));
    this.blockFrames = blockFrames(config);
    this.stageCapacity = stageCapacity(config);
    this.stage = new Float64Array(this.stageCapacity);
    this.frameOut = new Float64Array(this.staticDims);
  }

  /** The array the stage lives in (this analyzer's own). */
  stageData(): Float64Array {
    return this.stage;
  }

  /** Writes `count` samples of `src` from `from`, pre-emphasised (`prev` before the first), into the stage from `at`. */
  preemphasize(src: Float32Array | Float64Array, from: number, count: number, prev: number, at: number): void {
    preemphasizeInto(src, from, count, prev, this.config.preEmphasis, this.stage, at);
  }

  /**
   * Analyses `frames` (≤ blockFrames) frames of the stage, frame f from sample f·hop; frames × staticDims values to
   * `out` (rounded to float32 when it is a Float32Array).
   */
  analyzeStage(frames: number, out: Float64Array | Float32Array): void {
    const d = this.staticDims;
    const hop = this.config.hop;
    for (let f = 0; f < frames; f++) {
      this.analyze(this.stage, f * hop, this.frameOut);
      for (let i = 0; i < d; i++) out[f * d + i] = this.frameOut[i];
    }
  }

  /** `frame`: winLength pre-emphasised samples starting at `offset`. Writes staticDims values to `out`. */
  analyze(frame: Float64Array, offset: number, out: Float64Array): void {
    const { window, power, logMel, fb, config } = this;
    this.fft.power(frame, offset, window, window.length, power, fb.binLo, fb.binHi);
    const floor = config.logFloor;
    const { start, length, offset: wOff, weights } = fb;
    for (let m = 0; m < logMel.length; m++) {
      let e = 0;
      const s = start[m];
      const o = wOff[m];
      for (let j = 0, n = length[m]; j < n; j++) e += power[s + j] * weights[o + j];
      logMel[m] = Math.log(e > floor ? e : floor);
    }
    if (config.kind === 'logmel') {
      out.set(logMel);
      return;
    }
    const { dct, folded } = this;
    const nMels = logMel.length;
    const halfM = folded.length >> 1;
    for (let m = 0; m < halfM; m++) {
      const a = logMel[m];
      const b = logMel[nMels - 1 - m];
      folded[m] = a + b;
      folded[halfM + m] = a - b;
    }
    for (let k = 0; k < this.staticDims; k++) {
      let acc = 0;
      const row = k * halfM;
      const src = (k & 1) * halfM;
      for (let m = 0; m < halfM; m++) acc += dct[row + m] * folded[src + m];
      out[k] = acc;
    }
  }
}

/**
 * Streaming features for one audio stream (one call track, one clip). `push` and `flush` call `onFrame` for every
 * frame that completes; frame k covers samples [k·hop, k·hop + winLength). With deltas, frames come out
 * N·deltaOrder frames late and `flush` emits the held ones with the last frame replicated.
 */
export class StreamingFeatures {
  /** Values per frame. */
  readonly dims: number;
  readonly config: Readonly<FeatureConfig>;
  private readonly analyzer: FrameAnalyzer | WasmFrameAnalyzer;
  /** Pre-emphasised samples carried to the next block (fewer than winLength). */
  private readonly buf: Float64Array;
  private filled = 0;
  /** Samples still to drop before the next window starts (only when hop > winLength). */
  private skip = 0;
  private prev = 0;
  private framesIn = 0;
  private framesOut = 0;
  private readonly stat: Float64Array;
  /**
   * The frames of the block being delivered, blockFrames × staticDims: float64 statics for the delta stages, or,
   * without deltas, the float32 features themselves, handed to the callback through `views` (one per frame of the
   * block) without a copy.
   */
  private readonly block: Float64Array | Float32Array;
  private readonly views: Float32Array[] = [];
  private readonly out: Float32Array;
  private readonly stages: DeltaStage[] = [];
  private onFrame: FrameCallback | null = null;
  private closed = false;

  /**
   * @param config feature config (merged over the default, validated)
   * @param options.kernel per-frame stage: `wasm` (default; faster, see bench/RESULTS.md) or `js` (the readable
   *   reference); both give the same numbers to ~1e-14.
   */
  constructor(config: Partial<FeatureConfig> = {}, options: { kernel?: FrameKernel } = {}) {
    this.config = resolveFeatureConfig(config);
    const kernel = options.kernel ?? 'wasm';
    if (kernel !== 'wasm' && kernel !== 'js') {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `kernel is '${String(kernel)}'; allowed: 'wasm' or 'js'`);
    }
    this.analyzer = kernel === 'wasm' ? new WasmFrameAnalyzer(this.config) : new FrameAnalyzer(this.config);
    this.dims = featureDims(this.config);
    this.buf = new Float64Array(this.config.winLength);
    this.stat = new Float64Array(this.analyzer.staticDims);
    const d0 = this.analyzer.staticDims;
    if (this.config.deltaOrder === 0) {
      const block = new Float32Array(this.analyzer.blockFrames * d0);
      this.block = block;
      for (let f = 0; f < this.analyzer.blockFrames; f++) this.views.push(block.subarray(f * d0, (f + 1) * d0));
    } else {
      this.block = new Float64Array(this.analyzer.blockFrames * d0);
    }
    this.out = new Float32Array(this.dims);
    const d = this.analyzer.staticDims;
    const final = (v: Float64Array) => this.deliver(v);
    for (let order = this.config.deltaOrder; order >= 1; order--) {
      const next = this.stages[0];
      const sink = next ? (v: Float64Array) => next.push(v) : final;
      this.stages.unshift(new DeltaStage(d * order, d, this.config.deltaWindow, sink));
    }
  }

  /** Frames analysed so far (not counting those held back for deltas). */
  get framesAnalyzed(): number {
    return this.framesIn;
  }

  /** Adds samples (floats, at config.sampleRate). Throws INVALID_AUDIO on NaN/Infinity, before any state changes. */
  push(samples: Float32Array | Float64Array, onFrame: FrameCallback): void {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, 'feature stream used after close()');
    assertFiniteSamples(samples, 'feature stream input');
    this.onFrame = onFrame;
    const { buf, config, analyzer, block } = this;
    const { winLength: win, hop } = config;
    const d = analyzer.staticDims;
    const capacity = analyzer.stageCapacity;
    let prev = this.prev;
    let i = 0;
    const n = samples.length;
    // Block by block: the carried samples and as many new ones as fit go into the stage, pre-emphasised; every frame
    // complete in it is analysed in one call; the samples the next frame needs are carried over. The stage may be
    // shared with other streams (the wasm kernel's), so nothing stays in it between blocks and no frame callback
    // runs while it is in use.
    while (i < n) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, n - i);
        this.skip -= k;
        i += k;
        prev = samples[i - 1];
        continue;
      }
      const stage = analyzer.stageData();
      const at = analyzer.stageOffset;
      let len = this.filled;
      if (len > 0) stage.set(buf.subarray(0, len), at);
      const take = Math.min(capacity - len, n - i);
      analyzer.preemphasize(samples, i, take, prev, at + len);
      prev = samples[i + take - 1];
      len += take;
      i += take;
      const frames = len >= win ? Math.floor((len - win) / hop) + 1 : 0;
      if (frames > 0) analyzer.analyzeStage(frames, block);
      const next = frames * hop;
      if (next <= len) {
        if (next < len) buf.set(stage.subarray(at + next, at + len));
        this.filled = len - next;
      } else {
        this.filled = 0;
        this.skip = next - len;
      }
      for (let f = 0; f < frames; f++) this.completeFrame(f, d);
    }
    this.prev = prev;
    this.onFrame = null;
  }

  /** Ends the stream: emits frames held for deltas, then resets so the object can take a new stream. */
  flush(onFrame: FrameCallback): void {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, 'feature stream used after close()');
    this.onFrame = onFrame;
    if (this.stages.length > 0) this.stages[0].flush();
    for (let s = 1; s < this.stages.length; s++) this.stages[s].flush();
    this.onFrame = null;
    this.reset();
  }

  /** Drops all state; the next sample starts a new stream at frame 0. */
  reset(): void {
    this.filled = 0;
    this.skip = 0;
    this.prev = 0;
    this.framesIn = 0;
    this.framesOut = 0;
    for (const s of this.stages) s.flush(); // emits nothing: onFrame is null, deliver ignores
  }

  /** After close, push/flush throw CLOSED. */
  close(): void {
    this.closed = true;
  }

  /** Frame `framesIn`, frame f of the block (`d` static values each). */
  private completeFrame(f: number, d: number): void {
    this.framesIn++;
    if (this.stages.length === 0) {
      if (this.onFrame) this.onFrame(this.views[f], this.framesOut++);
      return;
    }
    const { stat, block } = this;
    const offset = f * d;
    for (let i = 0; i < stat.length; i++) stat[i] = block[offset + i];
    this.stages[0].push(stat);
  }

  private deliver(v: Float64Array): void {
    if (!this.onFrame) return;
    const out = this.out;
    for (let i = 0; i < out.length; i++) out[i] = v[i];
    this.onFrame(out, this.framesOut++);
  }
}

/** A frames × dims matrix, row-major. */
export interface FeatureMatrix {
  data: Float32Array;
  frames: number;
  dims: number;
  config: Readonly<FeatureConfig>;
}

/** Features of a whole clip: exactly what streaming the clip in any chunking yields. */
export function computeFeatures(
  samples: Float32Array,
  config: Partial<FeatureConfig> = {},
  options: { kernel?: FrameKernel } = {},
): FeatureMatrix {
  const stream = new StreamingFeatures(config, options);
  const frames = frameCount(stream.config, samples.length);
  const data = new Float32Array(frames * stream.dims);
  const collect: FrameCallback = (f, k) => data.set(f, k * stream.dims);
  stream.push(samples, collect);
  stream.flush(collect);
  return { data, frames, dims: stream.dims, config: stream.config };
}
