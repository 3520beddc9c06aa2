import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCodes } from '../src/errors.js';
import { confusionMatrixSvg, trainingCurvesSvg, type HistoryEntry } from '../src/report/plots.js';
import { assertRejectsCallmood, findChromium } from './helpers.js';

const run = promisify(execFile);
const INVALID = ErrorCodes.INVALID_OPTION;

const LABELS = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'];
const MATRIX = [
  [40, 3, 2, 1, 5, 0, 1],
  [4, 20, 5, 2, 8, 3, 0],
  [2, 4, 25, 3, 6, 5, 4],
  [3, 1, 2, 45, 7, 1, 6],
  [5, 6, 4, 6, 80, 10, 2],
  [0, 3, 6, 1, 12, 38, 0],
  [0, 0, 0, 0, 0, 0, 0],
];

/** 30 epochs of plausible curves with a step learning-rate schedule (changes at epochs 11 and 21). */
function history(epochs = 30): HistoryEntry[] {
  return Array.from({ length: epochs }, (_, i) => {
    const e = i + 1;
    return {
      epoch: e,
      loss: 1.9 * Math.exp(-e / 8) + 0.3,
      valLoss: 1.9 * Math.exp(-e / 10) + 0.5 + 0.002 * e,
      acc: 0.9 - 0.6 * Math.exp(-e / 7),
      valAcc: 0.72 - 0.5 * Math.exp(-e / 6),
      lr: e <= 10 ? 1e-3 : e <= 20 ? 5e-4 : 1e-4,
    };
  });
}

/** Checks the SVG is one balanced `<svg>` element and refers to nothing outside itself. */
function assertSelfContainedSvg(svg: string): void {
  assert.ok(svg.startsWith('<svg'), svg.slice(0, 80));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:.-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClose] = m;
    if (selfClose) continue;
    if (close) assert.equal(stack.pop(), name, `unbalanced </${name}> at ${m.index}`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  assert.doesNotMatch(svg, /<!DOCTYPE|<image|<script|<style|@import|@font-face/i);
  assert.doesNotMatch(svg, /href=/, 'no links');
  for (const u of svg.matchAll(/url\(([^)]*)\)/g)) assert.match(u[1], /^#/, `external reference ${u[0]}`);
  for (const f of svg.matchAll(/font-family="([^"]*)"/g)) assert.equal(f[1], 'sans-serif');
}

/** The text of every `<text>` element (each `<tspan>` line of a multi-line one on its own), unescaped. */
function texts(svg: string): string[] {
  const out: string[] = [];
  for (const m of svg.matchAll(/<text[^>]*>(.*?)<\/text>/g)) {
    const lines = m[1].includes('<tspan') ? [...m[1].matchAll(/<tspan[^>]*>([^<]*)<\/tspan>/g)].map((t) => t[1]) : [m[1]];
    for (const l of lines) {
      out.push(l.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&'));
    }
  }
  return out;
}

test('training curves: a self-contained SVG with both splits, both metrics, the LR panel and escaped title', async () => {
  const svg = await trainingCurvesSvg(history(), 'cnn-v1 <run 3> & co');
  assertSelfContainedSvg(svg);
  const t = texts(svg);
  for (const s of ['train', 'validation', 'loss', 'accuracy', 'lr (log)', 'epoch', 'lr 5.0e-4', 'lr 1.0e-4']) {
    assert.ok(t.includes(s), `missing text "${s}"`);
  }
  assert.ok(t.includes('cnn-v1 <run 3> & co'), 'title');
  assert.match(svg, /cnn-v1 &lt;run 3&gt; &amp; co/);
  assert.ok(t.includes('best validation accuracy 0.717 at epoch 30'), t.join(' | '));
  assert.ok(t.includes('dashed lines: learning-rate changes'));
  // The LR axis is labelled at the three rates used.
  for (const s of ['1e-3', '5e-4', '1e-4']) assert.ok(t.includes(s), `LR tick ${s}`);
  // Two dashed rules per LR change in each of the three panels.
  assert.equal(svg.match(/stroke-dasharray="4,3"/g)?.length, 6);
});

test('training curves: one epoch, constant LR, a diverged (NaN) epoch and a zero LR still render', async () => {
  const one = await trainingCurvesSvg([{ epoch: 0, loss: 1, acc: 0.2, valLoss: 1.1, valAcc: 0.18, lr: 1e-3 }], 'one');
  assertSelfContainedSvg(one);
  assert.ok(!texts(one).includes('dashed lines: learning-rate changes'));

  const h = history(8).map((e) => ({ ...e, lr: 1e-3 }));
  h[5] = { ...h[5], loss: NaN, valLoss: Infinity, valAcc: NaN };
  const diverged = await trainingCurvesSvg(h, 'diverged');
  assertSelfContainedSvg(diverged);
  assert.doesNotMatch(diverged, /NaN/);

  const decay = await trainingCurvesSvg(history(20).map((e) => ({ ...e, lr: 1e-3 * 0.9 ** e.epoch })), 'decay');
  assertSelfContainedSvg(decay);
  assert.equal(decay.match(/stroke-dasharray/g), null, 'no rules for a per-epoch schedule');
  assert.ok(texts(decay).includes('learning rate changes every few epochs: see the bottom panel'));

  const zeroLr = await trainingCurvesSvg(history(5).map((e, i) => ({ ...e, lr: i === 4 ? 0 : 1e-3 })), 'lr to zero');
  assertSelfContainedSvg(zeroLr);
  assert.ok(texts(zeroLr).includes('lr') && !texts(zeroLr).includes('lr (log)'), 'linear LR axis when a rate is 0');
});

test('training curves: input validation', async () => {
  await assertRejectsCallmood(trainingCurvesSvg([], 't'), INVALID, /history is empty/);
  const h = history(4);
  h[2] = { ...h[2], epoch: 2 };
  await assertRejectsCallmood(trainingCurvesSvg(h, 't'), INVALID, /strictly increasing.*history\[2\]\.epoch = 2 follows 2/);
  await assertRejectsCallmood(trainingCurvesSvg([{ ...h[0], epoch: NaN }], 't'), INVALID, /history\[0\]\.epoch is NaN/);
});

test('confusion matrix: labels, counts, shares and the colour legend as text', async () => {
  const svg = await confusionMatrixSvg({ labels: LABELS, matrix: MATRIX }, 'test set, telephone channel');
  assertSelfContainedSvg(svg);
  const t = texts(svg);
  for (const l of LABELS) assert.ok(t.includes(l), `predicted label ${l}`);
  for (const s of ['angry (52)', 'neutral (113)', 'surprise (0)']) assert.ok(t.includes(s), `true label ${s}`);
  for (const s of ['40', '20', '25', '45', '80', '38', '12']) assert.ok(t.includes(s), `count ${s}`);
  // 40 / 52 = 77 %, 80 / 113 = 71 %.
  for (const s of ['77%', '71%']) assert.ok(t.includes(s), `share ${s}`);
  assert.ok(t.includes('predicted') && t.includes('true class (items)'));
  assert.ok(t.some((s) => /row-normalised, diagonal = recall/.test(s)), 'subtitle says what the colour is');
  assert.ok(t.includes('row share'), 'legend title');
  // One coloured rect per cell, except in the empty row (no share to colour), which stays white.
  assert.equal(svg.match(/aria-roledescription="rect mark"/g)?.length, 42);
  // Near-zero shares are near white, the diagonal's 77 % is a saturated blue.
  const fill = (aria: string) => svg.match(new RegExp(`aria-label="${aria}"[^>]*fill="rgb\\((\\d+), (\\d+), (\\d+)\\)"`))?.slice(1).map(Number);
  const low = fill('predicted: happy; true class \\(items\\): angry \\(52\\); row share, \\(recall on, the diagonal\\): 2%');
  const high = fill('predicted: angry; true class \\(items\\): angry \\(52\\); row share, \\(recall on, the diagonal\\): 77%');
  assert.ok(low && high, 'cell fills found');
  assert.ok(Math.min(...low) > 220, `2 % cell is ${low}`);
  assert.ok(high[0] < 80 && high[2] > 120, `77 % cell is ${high}`);
});

test('confusion matrix: input validation', async () => {
  await assertRejectsCallmood(confusionMatrixSvg({ labels: [], matrix: [] }, 't'), INVALID, /labels must be a non-empty/);
  await assertRejectsCallmood(confusionMatrixSvg({ labels: ['a', 'a'], matrix: [[1, 0], [0, 1]] }, 't'), INVALID, /distinct/);
  await assertRejectsCallmood(confusionMatrixSvg({ labels: ['a', 'b'], matrix: [[1, 0]] }, 't'), INVALID, /must be 2 × 2/);
  await assertRejectsCallmood(confusionMatrixSvg({ labels: ['a', 'b'], matrix: [[1, 0], [0]] }, 't'), INVALID, /must be 2 × 2/);
  await assertRejectsCallmood(confusionMatrixSvg({ labels: ['a', 'b'], matrix: [[1, -1], [0, 1]] }, 't'), INVALID, /matrix\[0\]\[1\] = -1/);
  await assertRejectsCallmood(confusionMatrixSvg({ labels: ['a', 'b'], matrix: [[1, 0], [NaN, 1]] }, 't'), INVALID, /matrix\[1\]\[0\] = NaN/);
});

/**
 * Screenshots each plot in headless Chromium and checks the PNGs carry real content: over 20 KB and over 10× a
 * screenshot of an empty page of the same size (about 4 KB). Set CALLMOOD_PLOT_DIR to keep the HTML and PNGs there.
 */
test('the SVGs render in headless Chromium', { timeout: 600_000 }, async (t) => {
  // Fails, saying what to install, where there is no chromium: a browser test that skips checks nothing.
  const chromium = findChromium();
  const keep = process.env.CALLMOOD_PLOT_DIR;
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'callmood-plots-'));
  mkdirSync(dir, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'callmood-chromium-'));
  try {
    const plots: [string, string][] = [
      ['blank', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'],
      ['training-curves', await trainingCurvesSvg(history(), 'cnn-v1 training')],
      ['confusion-matrix', await confusionMatrixSvg({ labels: LABELS, matrix: MATRIX }, 'test set, telephone channel')],
    ];
    const sizes: Record<string, number> = {};
    for (const [name, svg] of plots) {
      const html = join(dir, `${name}.html`);
      const png = join(dir, `${name}.png`);
      writeFileSync(html, `<!doctype html><html><body style="margin:8px;background:white">${svg}</body></html>`);
      await run(
        chromium,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--hide-scrollbars',
          `--user-data-dir=${profile}`,
          `--screenshot=${png}`,
          '--window-size=820,800',
          `file://${html}`,
        ],
        { timeout: 60_000 },
      );
      const bytes = readFileSync(png);
      assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], `${png} is a PNG`);
      assert.equal(bytes.readUInt32BE(16), 820, 'PNG width');
      sizes[name] = statSync(png).size;
      t.diagnostic(`${png}: ${sizes[name]} bytes`);
    }
    for (const name of ['training-curves', 'confusion-matrix']) {
      assert.ok(sizes[name] > 20_000, `${name}.png is only ${sizes[name]} bytes`);
      assert.ok(sizes[name] > 10 * sizes.blank, `${name}.png (${sizes[name]} B) vs blank page (${sizes.blank} B)`);
    }
  } finally {
    rmSync(profile, { recursive: true, force: true });
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
});
