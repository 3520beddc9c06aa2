/**
 * Streaming regression deltas over a sequence of frame vectors, with the edges replicated (torchaudio's
 * `compute_deltas(mode='replicate')`): d[t] = Σ_{n=1..N} n (x[t+n] − x[t−n]) / (2 Σ n²).
 *
 * A stage carries a payload vector per frame and appends the delta of its last `dim` values, so stages chain:
 * [c] → [c, Δc] → [c, Δc, ΔΔc]. Each stage delays its output by N frames; `flush` emits the held frames.
 */
export class DeltaStage {
  /** Values per output frame: payload + dim. */
  readonly outDim: number;
  private readonly ring: Float64Array;
  private readonly out: Float64Array;
  private readonly size: number;
  private readonly denom: number;
  /** Logical sequence length pushed so far, counting the replicated left edge. */
  private count = 0;
  private readonly tail: Float64Array;

  constructor(
    private readonly payload: number,
    private readonly dim: number,
    private readonly n: number,
    private readonly emit: (frame: Float64Array) => void,
  ) {
    this.size = 2 * n + 1;
    this.ring = new Float64Array(this.size * payload);
    this.outDim = payload + dim;
    this.out = new Float64Array(this.outDim);
    this.tail = new Float64Array(payload);
    let s = 0;
    for (let i = 1; i <= n; i++) s += i * i;
    this.denom = 2 * s;
  }

  /** Takes one frame (`payload` values; copied). */
  push(frame: Float64Array): void {
    if (this.count === 0) for (let i = 0; i < this.n; i++) this.append(frame);
    this.append(frame);
  }

  /** Emits the last N frames by replicating the final one; then the stage is fresh again. */
  flush(): void {
    if (this.count > 0) {
      const lastSlot = ((this.count - 1) % this.size) * this.payload;
      this.tail.set(this.ring.subarray(lastSlot, lastSlot + this.payload));
      for (let i = 0; i < this.n; i++) this.append(this.tail);
    }
    this.count = 0;
  }

  private append(frame: Float64Array): void {
    const { payload, size, ring } = this;
    ring.set(frame.length === payload ? frame : frame.subarray(0, payload), (this.count % size) * payload);
    this.count++;
    if (this.count < size) return;
    // The centre frame is N behind the newest one.
    const centre = (this.count - 1 - this.n) % size;
    const { out, dim, n } = this;
    out.set(ring.subarray(centre * payload, centre * payload + payload), 0);
    const base = payload - dim;
    for (let j = 0; j < dim; j++) {
      let acc = 0;
      for (let k = 1; k <= n; k++) {
        const ahead = ((centre + k) % size) * payload + base + j;
        const behind = ((centre - k + size) % size) * payload + base + j;
        acc += k * (ring[ahead] - ring[behind]);
      }
      out[payload + j] = acc / this.denom;
    }
    this.emit(out);
  }
}
