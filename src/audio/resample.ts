/**
 * Streaming sample-rate conversion by a rational factor with a polyphase windowed-sinc FIR.
 *
 * The output sample j is the band-limited value of the input at time j / outRate: the filter is centred on that
 * instant, so the output is not shifted against the input (no group delay to compensate downstream). A stream holds
 * back the last `halfTaps` input samples until the samples after them arrive; `flush()` treats the input as
 * followed by zeros. Every output sample is computed from the same input samples with the same coefficients in the
 * same order whatever the chunking, so streaming and whole-signal results are bit-identical.
 *
 * Filter: Kaiser-windowed sinc, cutoff at half the lower of the two rates, transition band 0.45–0.55 × the lower
 * rate, designed for 80 dB stopband attenuation (Kaiser's formulas, "Nonrecursive digital filter design using the
 * I0-sinh window function", 1974): 52 taps per phase at the lower rate (8 → 16 kHz: 52 taps, 48 → 16 kHz: 156).
 * 80 dB is 20 dB past the −60 dB we require and 40 dB below the quantisation noise of the μ-law audio a call
 * carries, and it runs on every live call, so the cheaper design ships over a 150 dB one (libsamplerate's best
 * quality). The tests (test/resample.test.ts) check the design; the speed comparison is in bench/RESULTS.md
 * ("Resampler", from bench/resample-compare.ts).
 *
 * Rows of the polyphase table that are a unit impulse (every L-th output when upsampling by an integer) are copies;
 * rows that are symmetric (the half-sample phase, and integer downsampling) fold their mirrored taps. For 8 → 16
 * kHz that leaves 26 multiplies per output pair.
 *
 * 8 → 16 kHz runs on every live call, so it has its own WebAssembly SIMD kernel (src/audio/wasm/upsample2.c): two
 * outputs per f64x2 operation, each lane doing this file's arithmetic in this file's order, so its output is
 * bit-identical to the JavaScript path (test/resample.test.ts compares them).
 */
import { Buffer } from 'node:buffer';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { UPSAMPLE2_WASM_BASE64 } from './wasm/upsample2-wasm.js';
import { assertFiniteSamples } from './validate.js';

/** Lowest sample rate accepted, in Hz (for either side). */
export const MIN_RATE = 4000;
/** Highest sample rate accepted, in Hz (for either side). */
export const MAX_RATE = 192000;

/** Stopband attenuation the filter is designed for, in dB: at the float32 output's own noise floor. */
const ATTENUATION_DB = 80;
/**
 * Half the filter length, in periods of the lower rate. With the 0.1 × lower-rate transition band, Kaiser's length
 * formula N = (A − 7.95) / (14.36 · Δf / fs) gives 51 taps (at the lower rate) for A = 80 dB.
 */
const HALF_WIDTH_LOW_RATE = 26;
/** Kaiser's β for A > 50 dB: 0.1102 · (A − 8.7). */
const KAISER_BETA = 0.1102 * (ATTENUATION_DB - 8.7);
/** A rate is taken as a fraction p/q (a continued-fraction convergent) with q up to this: exact for integer Hz and
 * for 24414.0625 = 390625/16. */
const MAX_RATE_DENOMINATOR = 65536;
/** The rational approximation of a rate must be this close (relative) to the number given. */
const RATE_TOLERANCE = 1e-9;
/** Above this many coefficients an exact per-phase table is not built; phases are interpolated from a finer table. */
const MAX_EXACT_COEFFICIENTS = 1 << 19;
/**
 * Phases per input sample of the interpolated table when upsampling (scaled down by the ratio when downsampling, as
 * the kernel gets smoother). Linear interpolation between 1024 phases errs by about (π/2)² / (8 · 1024²) per tap;
 * small against the 80 dB design (measured with the 150 dB design: a −131 dB residual for 44101 → 16000 Hz).
 */
const INTERPOLATED_PHASES = 1024;
/** Tables are shared by every stream with the same ratio; a few ratios are kept. */
const TABLE_CACHE_SIZE = 16;

/** A polyphase filter bank for one reduced ratio L/M (output rate / input rate). Immutable, shared. */
interface PolyphaseTable {
  /** Upsampling factor (output rate / gcd). */
  readonly up: number;
  /** Downsampling factor (input rate / gcd). */
  readonly down: number;
  /** Input samples each side of the output instant that the filter reads; `taps` = 2 · `half`. */
  readonly half: number;
  /** Coefficients per phase (a multiple of 4, so the unrolled loops need no remainder). */
  readonly taps: number;
  /** True: one row per phase p/L. False: `phases` + 1 rows on a uniform grid, linearly interpolated. */
  readonly exact: boolean;
  /** Rows in the table (L when exact; else the interpolation grid, plus one closing row). */
  readonly phases: number;
  /** Row-major coefficients: row φ, tap r weighs input sample n − half + 1 + r for the output at n + φ. */
  readonly coeffs: Float64Array;
  /** Exact tables only: per row, ROW_GENERAL, ROW_IMPULSE or ROW_SYMMETRIC. */
  readonly rowKind: Uint8Array;
  /** Exact tables only: per row, the first and last non-zero taps. */
  readonly rowFirst: Int32Array;
  readonly rowLast: Int32Array;
  /**
   * The folded coefficients of the half-sample row when the table has the shape the 2× kernel computes (L/M = 2,
   * an impulse row, a symmetric 52-tap row); null otherwise.
   */
  readonly up2: Float64Array | null;
}

const tableCache = new Map<string, PolyphaseTable>();

function rateError(name: string, value: unknown, why: string): CallmoodError {
  return new CallmoodError(
    ErrorCodes.UNSUPPORTED_RATE,
    `${name} ${String(value)} is not supported: ${why} (allowed: finite numbers from ${MIN_RATE} to ${MAX_RATE} Hz)`,
  );
}

/** The rate as an exact fraction [p, q], by continued fractions. */
function rateToFraction(name: string, rate: unknown): [number, number] {
  if (typeof rate !== 'number' || !Number.isFinite(rate)) throw rateError(name, rate, 'not a finite number');
  if (rate < MIN_RATE || rate > MAX_RATE) throw rateError(name, rate, 'out of range');
  let hPrev = 0;
  let h = 1;
  let kPrev = 1;
  let k = 0;
  let v = rate;
  for (let iter = 0; iter < 64; iter++) {
    const a = Math.floor(v);
    const hNext = a * h + hPrev;
    const kNext = a * k + kPrev;
    if (kNext > MAX_RATE_DENOMINATOR) break;
    hPrev = h;
    h = hNext;
    kPrev = k;
    k = kNext;
    const rest = v - a;
    if (h / k === rate || rest === 0) break;
    v = 1 / rest;
  }
  if (k === 0 || Math.abs(h / k - rate) > rate * RATE_TOLERANCE) {
    throw rateError(name, rate, `not close to a fraction with denominator up to ${MAX_RATE_DENOMINATOR}`);
  }
  return [h, k];
}

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/** Modified Bessel function of the first kind, order 0, by its power series (converges fast for β ≤ 20). */
function besselI0(x: number): number {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/** sin(πx)/(πx) for x ≠ 0. */
function sincNonZero(x: number): number {
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** How a row of an exact table is evaluated. */
const ROW_GENERAL = 0;
/** A unit impulse: the output is one input sample, copied (every L-th output when upsampling by an integer). */
const ROW_IMPULSE = 1;
/** Symmetric about its centre: pairs of inputs are added before the multiply, halving the multiplies. */
const ROW_SYMMETRIC = 2;

function buildTable(up: number, down: number): PolyphaseTable {
  const low = Math.min(up, down);
  // Cutoff in cycles per input sample: half the lower rate.
  const fc = (0.5 * low) / down;
  let half = Math.ceil((HALF_WIDTH_LOW_RATE * Math.max(up, down)) / up);
  half += half % 2; // taps a multiple of 4: the unrolled loops need no remainder
  const taps = 2 * half;
  const exact = up * taps <= MAX_EXACT_COEFFICIENTS;
  const phases = exact ? up : Math.max(64, Math.ceil((INTERPOLATED_PHASES * low) / down));
  const rows = exact ? phases : phases + 1;
  const coeffs = new Float64Array(rows * taps);
  const i0Beta = besselI0(KAISER_BETA);
  for (let row = 0; row < rows; row++) {
    let sum = 0;
    for (let r = 0; r < taps; r++) {
      // Distance from the input sample this tap weighs to the output instant, in input samples: num / phases.
      // Integer arithmetic keeps mirrored taps bit-identical and the sinc's zeros exact.
      const num = row + (half - 1 - r) * phases;
      const u = num / (phases * half);
      // At the window's edge (|u| = 1) the tap would be 1/I0(β) ≈ 2.6e-3 times a sinc tail ≈ 1/(π·26): below −90 dB.
      // Dropping it makes the integer-phase rows symmetric.
      if (u * u >= 1) continue;
      const w = besselI0(KAISER_BETA * Math.sqrt(1 - u * u)) / i0Beta;
      let s: number;
      if (num === 0) s = 1;
      else if (exact && (num * low) % (phases * down) === 0) s = 0; // exact mode: num·low < 2^19 · 1.3e10 < 2^53
      else s = sincNonZero(exact ? (num * low) / (phases * down) : (num / phases) * 2 * fc);
      const c = 2 * fc * s * w;
      coeffs[row * taps + r] = c;
      sum += c;
    }
    // Unit DC gain for every phase: otherwise the tiny per-phase gain differences modulate a DC input.
    for (let r = 0; r < taps; r++) coeffs[row * taps + r] /= sum;
  }
  const rowKind = new Uint8Array(exact ? rows : 0);
  const rowFirst = new Int32Array(exact ? rows : 0);
  const rowLast = new Int32Array(exact ? rows : 0);
  for (let row = 0; exact && row < rows; row++) {
    const base = row * taps;
    let first = 0;
    while (first < taps - 1 && coeffs[base + first] === 0) first++;
    let last = taps - 1;
    while (last > first && coeffs[base + last] === 0) last--;
    rowFirst[row] = first;
    rowLast[row] = last;
    if (first === last && coeffs[base + first] === 1) {
      rowKind[row] = ROW_IMPULSE;
      continue;
    }
    let mirrored = true;
    for (let a = first, b = last; a < b; a++, b--) {
      if (coeffs[base + a] !== coeffs[base + b]) {
        mirrored = false;
        break;
      }
    }
    rowKind[row] = mirrored ? ROW_SYMMETRIC : ROW_GENERAL;
  }
  const up2 =
    up === 2 && down === 1 && exact && taps === 2 * UP2_PAIRS &&
    rowKind[0] === ROW_IMPULSE && rowFirst[0] === half - 1 &&
    rowKind[1] === ROW_SYMMETRIC && rowFirst[1] === 0 && rowLast[1] === taps - 1
      ? coeffs.slice(taps, taps + UP2_PAIRS)
      : null;
  return { up, down, half, taps, exact, phases, coeffs, rowKind, rowFirst, rowLast, up2 };
}

/** Pairs of taps of the 2× kernel's half-sample row (src/audio/wasm/upsample2.c: PAIRS). */
const UP2_PAIRS = 26;
/** Output pairs the 2× kernel computes per call; longer pushes run in blocks. */
const UP2_BLOCK = 2048;

/** The slice of the WebAssembly JS API used here (lib ES2022 and @types/node 20 do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
}

interface Up2Kernel {
  up2(s: number, count: number, out: number, c: number): void;
  f32: Float32Array;
  f64: Float64Array;
  /** Float32 indices of the input and output blocks; Float64 index of the coefficients. */
  inIdx: number;
  outIdx: number;
  coefIdx: number;
}

let up2Kernel: Up2Kernel | null = null;

/** The process's (this thread's) one 2× kernel: 4.9 KB, compiled on first use; its memory holds one block. */
function getUp2Kernel(): Up2Kernel {
  if (up2Kernel) return up2Kernel;
  const wa = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  const instance = new wa.Instance(new wa.Module(Buffer.from(UPSAMPLE2_WASM_BASE64, 'base64')), {});
  const ex = instance.exports as unknown as {
    memory: { buffer: ArrayBuffer; grow(pages: number): number };
    __heap_base: { value: number };
    up2: Up2Kernel['up2'];
  };
  const coef = (ex.__heap_base.value + 15) & ~15;
  const input = coef + 8 * UP2_PAIRS;
  const output = (input + 4 * (UP2_BLOCK + 2 * UP2_PAIRS) + 15) & ~15;
  const end = output + 8 * UP2_BLOCK;
  if (end > ex.memory.buffer.byteLength) ex.memory.grow(Math.ceil((end - ex.memory.buffer.byteLength) / 65536));
  const buf = ex.memory.buffer;
  up2Kernel = { up2: ex.up2, f32: new Float32Array(buf), f64: new Float64Array(buf), inIdx: input / 4, outIdx: output / 4, coefIdx: coef / 8 };
  return up2Kernel;
}

function tableFor(up: number, down: number): PolyphaseTable {
  const key = `${up}/${down}`;
  let table = tableCache.get(key);
  if (table !== undefined) {
    tableCache.delete(key); // re-insert: the Map's order is the recency order
  } else {
    table = buildTable(up, down);
    if (tableCache.size >= TABLE_CACHE_SIZE) {
      const oldest = tableCache.keys().next().value;
      if (oldest !== undefined) tableCache.delete(oldest);
    }
  }
  tableCache.set(key, table);
  return table;
}

/** The reduced ratio [L, M] with outRate / inRate = L / M exactly (rates taken as fractions, see `rateToFraction`). */
export function resampleRatio(inRate: number, outRate: number): [number, number] {
  const [inP, inQ] = rateToFraction('inRate', inRate);
  const [outP, outQ] = rateToFraction('outRate', outRate);
  // Both products stay below 192000 · 65536 < 2^53, so they are exact.
  const up = outP * inQ;
  const down = inP * outQ;
  const g = gcd(up, down);
  return [up / g, down / g];
}

/**
 * Number of output samples for `inputLength` input samples: the output instants j / outRate that fall before the
 * end of the input, i.e. ⌈inputLength · outRate / inRate⌉ computed with the exact ratio. Streaming (all pushes plus
 * the flush) and `resample()` produce exactly this many.
 * @throws CallmoodError INVALID_OPTION for a negative or fractional length; UNSUPPORTED_RATE for a bad rate
 */
export function resampledLength(inputLength: number, inRate: number, outRate: number): number {
  if (!Number.isSafeInteger(inputLength) || inputLength < 0) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `inputLength must be a whole number ≥ 0, got ${inputLength}`);
  }
  const [up, down] = resampleRatio(inRate, outRate);
  // Whole multiples of `down` keep the products small and exact for long signals.
  const whole = Math.floor(inputLength / down);
  const rest = inputLength - whole * down;
  return whole * up + Math.ceil((rest * up) / down);
}

const INITIAL_OUTPUT_CAPACITY = 1024;
/** Views of `out` kept for reuse, by length: steady-state streams produce only a few distinct lengths. */
const VIEW_CACHE_SIZE = 8;

/**
 * A stateful resampler for one stream (one call, one track). Cheap to create: the filter table is shared by all
 * streams with the same ratio.
 *
 * `push()` and `flush()` return a view into a buffer the resampler owns and reuses: it is valid until the next call
 * on this resampler. Copy it (`slice()`) to keep it. After warm-up no buffer is allocated per push (the 2× kernel
 * makes two short-lived views); the internal buffers grow (geometrically) only when a larger chunk than any before
 * arrives.
 */
export class StreamingResampler {
  /** Input rate in Hz, as given. */
  readonly inRate: number;
  /** Output rate in Hz, as given. */
  readonly outRate: number;
  /** Input samples read on each side of an output instant; a stream holds this many samples back until flush. */
  readonly halfTaps: number;

  private readonly table: PolyphaseTable;
  /** The 2× kernel, when this stream's ratio has one and the wasm kernel is in use. */
  private readonly up2: Up2Kernel | null;
  /** floor(M / L) and M mod L: how far the next output instant is, in whole input samples and in 1/L steps. */
  private readonly stepWhole: number;
  private readonly stepFrac: number;

  private closed = false;
  /**
   * Input history, starting with the zeros before the signal that the first outputs' filters reach back to.
   * Positions are kept relative to this buffer (not since the start of the call), so they stay small integers
   * however long the stream runs.
   */
  private buf: Float32Array;
  /** Samples in `buf`. */
  private bufLen = 0;
  /** Next output instant, in input samples from `buf[0]`: `nextWhole` + `nextFrac` / L. */
  private nextWhole = 0;
  private nextFrac = 0;
  private out: Float32Array;
  /** Views of `out` by length, so that a steady-state push allocates not even the view it returns. */
  private views = new Map<number, Float32Array>();

  /**
   * @param inRate input sample rate in Hz, 4000–192000 (fractional rates such as 24414.0625 are taken exactly)
   * @param outRate output sample rate in Hz, 4000–192000
   * @param options.kernel `wasm` (default): 8 → 16 kHz runs on the WebAssembly kernel; `js`: always JavaScript (the
   *   readable reference). Both give bit-identical output.
   * @throws CallmoodError UNSUPPORTED_RATE for a rate that is not a finite number in range
   */
  constructor(inRate: number, outRate: number, options: { kernel?: 'wasm' | 'js' } = {}) {
    const [up, down] = resampleRatio(inRate, outRate);
    this.inRate = inRate;
    this.outRate = outRate;
    this.table = tableFor(up, down);
    const kernel = options.kernel ?? 'wasm';
    if (kernel !== 'wasm' && kernel !== 'js') {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `kernel is '${String(kernel)}'; allowed: 'wasm' or 'js'`);
    }
    this.up2 = kernel === 'wasm' && this.table.up2 !== null ? getUp2Kernel() : null;
    this.halfTaps = this.table.half;
    this.stepWhole = Math.floor(down / up);
    this.stepFrac = down - this.stepWhole * up;
    this.buf = new Float32Array(4 * this.table.taps);
    this.out = new Float32Array(INITIAL_OUTPUT_CAPACITY);
    this.reset();
  }

  /**
   * Feeds input samples; returns the output samples that became complete. The returned array is a view of an
   * internal buffer, valid until the next call on this resampler.
   * @throws CallmoodError INVALID_AUDIO if a sample is NaN or infinite (the chunk is then ignored whole);
   *   CLOSED after `close()`
   */
  push(chunk: Float32Array): Float32Array {
    this.assertOpen('push');
    const count = chunk.length;
    if (count === 0) return this.view(0);
    this.reserveInput(count);
    const buf = this.buf;
    const base = this.bufLen;
    // The sum of finite float32 values cannot overflow a double, so a non-finite sum means a non-finite sample.
    let sum = 0;
    for (let i = 0; i < count; i++) {
      const v = chunk[i];
      buf[base + i] = v;
      sum += v;
    }
    if (!Number.isFinite(sum)) {
      let bad = 0;
      while (Number.isFinite(chunk[bad])) bad++;
      throw new CallmoodError(
        ErrorCodes.INVALID_AUDIO,
        `sample ${bad} of the chunk is ${chunk[bad]}: audio samples must be finite numbers`,
      );
    }
    this.bufLen += count;
    // An output is complete once the input sample `half` after its instant has arrived.
    return this.produce(this.bufLen - this.table.half);
  }

  /**
   * Ends the signal: returns the remaining output samples, computed as if the input were followed by zeros, so the
   * total output length is `resampledLength(totalIn, inRate, outRate)`. The resampler is then in its fresh state,
   * ready for a new signal. The returned view is valid until the next call on this resampler.
   * @throws CallmoodError CLOSED after `close()`
   */
  flush(): Float32Array {
    this.assertOpen('flush');
    const half = this.table.half;
    this.reserveInput(half);
    const end = this.bufLen;
    this.buf.fill(0, end, end + half);
    this.bufLen += half;
    // Every output instant before the end of the input, the zeros after it filling the filters' reach.
    const tail = this.produce(end);
    this.reset();
    return tail;
  }

  /** Forgets the signal so far: the next push starts a new signal at time 0. Keeps the buffers. */
  reset(): void {
    this.assertOpen('reset');
    // Input time 0 sits after the zeros that the first outputs' filters reach back to.
    const lead = this.table.half - 1;
    this.buf.fill(0, 0, lead);
    this.bufLen = lead;
    this.nextWhole = lead;
    this.nextFrac = 0;
  }

  /** Releases the buffers. Later push/flush/reset calls throw CLOSED; closing twice is harmless. */
  close(): void {
    this.closed = true;
    this.buf = new Float32Array(0);
    this.out = new Float32Array(0);
    this.views.clear();
  }

  private assertOpen(op: string): void {
    if (this.closed) {
      throw new CallmoodError(ErrorCodes.CLOSED, `StreamingResampler.${op}() called after close()`);
    }
  }

  /** Makes room for `count` more input samples: first drops history no output needs, then grows if still short. */
  private reserveInput(count: number): void {
    if (this.bufLen + count <= this.buf.length) return;
    // The next output's first tap; everything before it is done with.
    const drop = this.nextWhole - this.table.half + 1;
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.bufLen);
      this.bufLen -= drop;
      this.nextWhole -= drop;
    }
    const needed = this.bufLen + count;
    if (needed > this.buf.length) {
      const grown = new Float32Array(Math.max(needed, 2 * this.buf.length));
      grown.set(this.buf.subarray(0, this.bufLen));
      this.buf = grown;
    }
  }

  /** Computes every output whose instant's whole part (a `buf` index) is below `limit`; returns them as a view. */
  private produce(limit: number): Float32Array {
    let n = this.nextWhole;
    if (n >= limit) return this.view(0);
    const { up, down, taps, half, coeffs, exact, phases } = this.table;
    // Outputs with instants in [n, limit): at most ⌈(limit − n) · L / M⌉ (+2 covers the rounding of this estimate).
    const maxCount = Math.ceil(((limit - n) * up) / down) + 2;
    if (maxCount > this.out.length) {
      this.out = new Float32Array(Math.max(maxCount, 2 * this.out.length));
      this.views.clear();
    }
    const out = this.out;
    const buf = this.buf;
    const stepWhole = this.stepWhole;
    const stepFrac = this.stepFrac;
    // buf index of the first tap for the output at n.
    const offset = 1 - half;
    let p = this.nextFrac;
    let o = 0;
    if (this.up2 !== null && p === 0) {
      // Every output pair from n to limit: the even sample is buf[n], the odd one the half-sample row around it.
      const k = this.up2;
      const { f32, inIdx, outIdx } = k;
      k.f64.set(this.table.up2!, k.coefIdx);
      while (n < limit) {
        const count = Math.min(limit - n, UP2_BLOCK);
        // Copies through set(subarray) cost two small views per block; element loops measured slower
        // (bench/resample-kernel.ts; figures in bench/RESULTS.md, "Resampler").
        const from = n + offset;
        const inputs = count + 2 * UP2_PAIRS - 1;
        f32.set(buf.subarray(from, from + inputs), inIdx);
        k.up2(4 * inIdx, count, 4 * outIdx, 8 * k.coefIdx);
        const produced = 2 * count;
        out.set(f32.subarray(outIdx, outIdx + produced), o);
        o += produced;
        n += count;
      }
    } else if (exact) {
      const { rowKind, rowFirst, rowLast } = this.table;
      while (n < limit) {
        const i = n + offset;
        const k = p * taps;
        const kind = rowKind[p];
        if (kind === ROW_IMPULSE) {
          out[o++] = buf[i + rowFirst[p]];
        } else if (kind === ROW_SYMMETRIC) {
          // Mirrored taps share a coefficient: add the two inputs first. The order is fixed per row, so the result
          // does not depend on how the input was chunked.
          const pairs = (rowLast[p] - rowFirst[p] + 1) >> 1;
          let x = i + rowFirst[p];
          let y = i + rowLast[p];
          let c = k + rowFirst[p];
          const cVec = c + (pairs & ~3);
          const cEnd = c + pairs;
          let a0 = 0;
          let a1 = 0;
          let a2 = 0;
          let a3 = 0;
          for (; c < cVec; c += 4, x += 4, y -= 4) {
            a0 += (buf[x] + buf[y]) * coeffs[c];
            a1 += (buf[x + 1] + buf[y - 1]) * coeffs[c + 1];
            a2 += (buf[x + 2] + buf[y - 2]) * coeffs[c + 2];
            a3 += (buf[x + 3] + buf[y - 3]) * coeffs[c + 3];
          }
          for (; c < cEnd; c++, x++, y--) a0 += (buf[x] + buf[y]) * coeffs[c];
          if (x === y) a1 += buf[x] * coeffs[c];
          out[o++] = a0 + a1 + (a2 + a3);
        } else {
          // Four partial sums break the add dependency chain.
          let a0 = 0;
          let a1 = 0;
          let a2 = 0;
          let a3 = 0;
          for (let r = 0; r < taps; r += 4) {
            a0 += buf[i + r] * coeffs[k + r];
            a1 += buf[i + r + 1] * coeffs[k + r + 1];
            a2 += buf[i + r + 2] * coeffs[k + r + 2];
            a3 += buf[i + r + 3] * coeffs[k + r + 3];
          }
          out[o++] = a0 + a1 + (a2 + a3);
        }
        n += stepWhole;
        p += stepFrac;
        if (p >= up) {
          p -= up;
          n++;
        }
      }
    } else {
      const scale = phases / up;
      while (n < limit) {
        const pos = p * scale;
        const row = Math.floor(pos);
        const t = pos - row;
        let i = n + offset;
        let k = row * taps;
        const end = k + taps;
        let a0 = 0;
        let a1 = 0;
        let b0 = 0;
        let b1 = 0;
        for (; k < end; k += 2, i += 2) {
          const x0 = buf[i];
          const x1 = buf[i + 1];
          a0 += x0 * coeffs[k];
          a1 += x1 * coeffs[k + 1];
          b0 += x0 * coeffs[k + taps];
          b1 += x1 * coeffs[k + taps + 1];
        }
        const a = a0 + a1;
        out[o++] = a + t * (b0 + b1 - a);
        n += stepWhole;
        p += stepFrac;
        if (p >= up) {
          p -= up;
          n++;
        }
      }
    }
    this.nextWhole = n;
    this.nextFrac = p;
    return this.view(o);
  }

  /** `out.subarray(0, length)`, reused when a view of that length was handed out before. */
  private view(length: number): Float32Array {
    let v = this.views.get(length);
    if (v === undefined) {
      if (this.views.size >= VIEW_CACHE_SIZE) this.views.clear();
      v = this.out.subarray(0, length);
      this.views.set(length, v);
    }
    return v;
  }
}

/**
 * Resamples a whole signal: the same as a fresh `StreamingResampler` fed `x` and flushed, in a new array of
 * `resampledLength(x.length, inRate, outRate)` samples.
 * @throws CallmoodError UNSUPPORTED_RATE, INVALID_AUDIO
 */
export function resample(x: Float32Array, inRate: number, outRate: number): Float32Array {
  // Equal rates: the filter's taps fall on its zeros except the centre one, so the output is the input bit for bit.
  const [up, down] = resampleRatio(inRate, outRate);
  if (up === down) {
    assertFiniteSamples(x, 'resampler input');
    return x.slice();
  }
  const r = new StreamingResampler(inRate, outRate);
  const body = r.push(x).slice(); // the next call reuses the view's buffer
  const tail = r.flush();
  const all = new Float32Array(body.length + tail.length);
  all.set(body, 0);
  all.set(tail, body.length);
  r.close();
  return all;
}
