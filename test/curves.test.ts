/**
 * Training curves read right for short runs: whole-epoch ticks without repeats, something drawn for a single
 * epoch in every panel, and the legend outside the panels so it hides no curve.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trainingCurvesSvg, type HistoryEntry } from '../src/report/plots.js';

const history = (n: number): HistoryEntry[] =>
  Array.from({ length: n }, (_, i) => ({ epoch: i + 1, loss: 1 - i * 0.1, acc: 0.3 + i * 0.05, valLoss: 1.1 - i * 0.05, valAcc: 0.25 + i * 0.04, lr: i > 1 ? 5e-4 : 1e-3 }));

/** Tick labels of each x axis, in order (the three panels each have one). */
function xTickLabels(svg: string): string[][] {
  const out: string[][] = [];
  const re = /aria-label="X-axis[^"]*"[\s\S]*?role-axis-label"[^>]*>([\s\S]*?)<\/g>/g;
  for (const m of svg.matchAll(re)) out.push([...m[1].matchAll(/>([^<]*)<\/text>/g)].map((t) => t[1]));
  return out;
}

test('x ticks: whole epochs, none repeated (two epochs once read "1, 2, 2"); long runs thinned to about 12', async () => {
  for (const [n, want] of [[1, ['1']], [2, ['1', '2']], [5, ['1', '2', '3', '4', '5']]] as const) {
    const axes = xTickLabels(await trainingCurvesSvg(history(n), `${n}`));
    assert.equal(axes.length, 3, `${n} epochs: three panels`);
    for (const labels of axes) assert.deepEqual(labels, want, `${n} epochs`);
  }
  const long = xTickLabels(await trainingCurvesSvg(history(40), '40'))[0];
  assert.ok(long.length >= 8 && long.length <= 13, `${long.length} ticks`);
  assert.equal(new Set(long).size, long.length);
  assert.ok(long.every((l) => /^\d+$/.test(l)), long.join(','));
});

test('one epoch: every panel draws its point, the learning rate included', async () => {
  const svg = await trainingCurvesSvg(history(1), 'one');
  // Vega draws line points as symbol marks: loss (2 splits), accuracy (2 splits), learning rate (1).
  const symbols = [...svg.matchAll(/class="mark-symbol role-mark[^"]*"[^>]*>([\s\S]*?)<\/g>/g)].map((m) => (m[1].match(/<path/g) ?? []).length);
  assert.deepEqual(symbols, [2, 2, 1]);
});

test('the legend sits above the first panel, outside every plot area', async () => {
  const svg = await trainingCurvesSvg(history(14), 'fourteen');
  const legends = [...svg.matchAll(/class="mark-group role-legend"[^>]*><g transform="translate\(([-\d.]+),([-\d.]+)\)"/g)];
  assert.equal(legends.length, 1);
  assert.ok(Number(legends[0][2]) < 0, `legend at y=${legends[0][2]}, inside the panel`);
});
