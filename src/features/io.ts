import type { FeatureMatrix } from './mfcc.js';

/** Output formats for feature matrices. */
export type MatrixFormat = 'csv' | 'json' | 'npy';

/** CSV: one frame per line, values with 7 significant digits (float32 precision). */
export function matrixToCsv(m: FeatureMatrix): string {
  const lines: string[] = [];
  for (let t = 0; t < m.frames; t++) {
    const row: string[] = [];
    for (let j = 0; j < m.dims; j++) row.push(Number(m.data[t * m.dims + j].toPrecision(7)).toString());
    lines.push(row.join(','));
  }
  return lines.join('\n') + (lines.length ? '\n' : '');
}

/** Plain object for JSON output: config, shape and rows. */
export function matrixToJson(m: FeatureMatrix): { config: object; frames: number; dims: number; rows: number[][] } {
  const rows: number[][] = [];
  for (let t = 0; t < m.frames; t++) rows.push(Array.from(m.data.subarray(t * m.dims, (t + 1) * m.dims), (v) => Number(v.toPrecision(7))));
  return { config: m.config, frames: m.frames, dims: m.dims, rows };
}

/** NumPy .npy (format 1.0), little-endian float32, shape (frames, dims): `numpy.load` reads it directly. */
export function matrixToNpy(m: FeatureMatrix): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${m.frames}, ${m.dims}), }`;
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and a newline to a multiple of 64.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(total + m.data.length * 4);
  out.set([0x93, ...Buffer.from('NUMPY'), 1, 0], 0);
  out[8] = header.length & 0xff;
  out[9] = header.length >> 8;
  out.set(Buffer.from(header, 'latin1'), 10);
  const view = new DataView(out.buffer);
  for (let i = 0; i < m.data.length; i++) view.setFloat32(total + 4 * i, m.data[i], true);
  return out;
}
