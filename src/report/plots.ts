/**
 * Report plots as SVG strings, drawn with Vega-Lite and rendered headlessly by Vega (no canvas, no browser).
 *
 * The SVG is self-contained: inline data only, generic font families (`sans-serif`), no external URLs, images or
 * style sheets; it can be written to a file, embedded in HTML, or opened directly.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { CallmoodError, ErrorCodes } from '../errors.js';

/** One epoch of training history. */
export interface HistoryEntry {
  epoch: number;
  loss: number;
  acc: number;
  valLoss: number;
  valAcc: number;
  /** Learning rate used in this epoch. */
  lr: number;
}

/** Rows = truth, columns = predicted, in `labels` order (as in `EvaluationResult.confusion`). */
export interface ConfusionInput {
  labels: readonly string[];
  matrix: readonly (readonly number[])[];
}

const FONT = 'sans-serif';
/** More learning-rate changes than this are drawn in the LR panel only, without rules. */
const MAX_LR_RULES = 8;
const TRAIN_COLOR = '#1f77b4';
const VAL_COLOR = '#ff7f0e';

const BASE_CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: '#ccc' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555', anchor: 'start' as const, offset: 12 },
};

function invalid(message: string): CallmoodError {
  return new CallmoodError(ErrorCodes.INVALID_OPTION, message);
}

/** Compiles a Vega-Lite spec and renders it to an SVG string without a canvas. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** A finite number, or null (Vega-Lite leaves nulls out instead of drawing them at 0). */
function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

function fmt3(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : String(x);
}

/**
 * Training curves: loss (top) and accuracy (middle), train vs validation, and the learning rate per epoch
 * (bottom, log scale when every rate is > 0). Epochs where the learning rate changes get a dashed vertical rule in
 * all three panels, labelled with the new rate in the bottom one (up to 8 changes; a schedule that changes more
 * often is shown by the bottom panel alone). The subtitle names the best validation accuracy and the lowest validation loss. NaN or infinite
 * values (a diverged run) are left out of the lines rather than rejected.
 *
 * @throws CallmoodError INVALID_OPTION when `history` is empty or its epochs are not finite and strictly increasing.
 */
export async function trainingCurvesSvg(history: readonly HistoryEntry[], title: string): Promise<string> {
  if (!Array.isArray(history as unknown) || history.length === 0) throw invalid('trainingCurvesSvg: history is empty; there is nothing to plot');
  for (let i = 0; i < history.length; i++) {
    const e = history[i].epoch;
    if (!Number.isFinite(e)) throw invalid(`trainingCurvesSvg: history[${i}].epoch is ${e}; epochs must be finite numbers`);
    if (i > 0 && !(e > history[i - 1].epoch)) {
      throw invalid(`trainingCurvesSvg: epochs must be strictly increasing, but history[${i}].epoch = ${e} follows ${history[i - 1].epoch}`);
    }
  }

  const curves: { epoch: number; metric: string; split: string; value: number | null }[] = [];
  for (const h of history) {
    curves.push({ epoch: h.epoch, metric: 'loss', split: 'train', value: finiteOrNull(h.loss) });
    curves.push({ epoch: h.epoch, metric: 'loss', split: 'validation', value: finiteOrNull(h.valLoss) });
    curves.push({ epoch: h.epoch, metric: 'accuracy', split: 'train', value: finiteOrNull(h.acc) });
    curves.push({ epoch: h.epoch, metric: 'accuracy', split: 'validation', value: finiteOrNull(h.valAcc) });
  }
  const lrRows = history.map((h) => ({ epoch: h.epoch, lr: finiteOrNull(h.lr) }));
  let lrChanges: { epoch: number; text: string }[] = [];
  for (let i = 1; i < history.length; i++) {
    if (history[i].lr !== history[i - 1].lr) lrChanges.push({ epoch: history[i].epoch, text: `lr ${history[i].lr.toExponential(1)}` });
  }
  // A schedule that changes the rate all the time (decay every epoch) would turn the rules into hatching: then the
  // bottom panel alone shows it.
  const continuousLr = lrChanges.length > MAX_LR_RULES;
  if (continuousLr) lrChanges = [];
  const distinctLr = [...new Set(history.map((h) => h.lr).filter((v) => Number.isFinite(v)))];
  const logLr = history.every((h) => Number.isFinite(h.lr) && h.lr > 0);

  const notes: string[] = [];
  const bestAcc = argBest(history, (h) => h.valAcc, (a, b) => a > b);
  const bestLoss = argBest(history, (h) => h.valLoss, (a, b) => a < b);
  if (bestAcc >= 0) notes.push(`best validation accuracy ${fmt3(history[bestAcc].valAcc)} at epoch ${history[bestAcc].epoch}`);
  if (bestLoss >= 0) notes.push(`lowest validation loss ${fmt3(history[bestLoss].valLoss)} at epoch ${history[bestLoss].epoch}`);
  if (lrChanges.length > 0) notes.push('dashed lines: learning-rate changes');
  if (continuousLr) notes.push('learning rate changes every few epochs: see the bottom panel');

  const width = 560;
  const first = history[0].epoch;
  const last = history[history.length - 1].epoch;
  // Ticks at whole epochs only, at most about 12 of them: left to Vega, two epochs get ticks at 1, 1.5 and 2, which
  // an integer format prints as "1, 2, 2". One epoch gets half an epoch of room on each side instead of no width.
  const step = Math.max(1, Math.ceil((Math.floor(last) - Math.ceil(first) + 1) / 12));
  const ticks: number[] = [];
  for (let e = Math.ceil(first); e <= last; e += step) ticks.push(e);
  const x = {
    field: 'epoch',
    type: 'quantitative' as const,
    title: 'epoch',
    scale: { domain: (first === last ? [first - 0.5, last + 0.5] : [first, last]) as [number, number], nice: false },
    axis: { values: ticks, format: 'd' },
  };
  const rules = {
    data: { values: lrChanges },
    mark: { type: 'rule' as const, color: '#888', strokeDash: [4, 3] },
    encoding: { x: { field: 'epoch', type: 'quantitative' as const } },
  };
  // The epoch axis title only under the bottom panel.
  const xNoTitle = { ...x, title: null };
  const curvePanel = (metric: string, yTitle: string) => ({
    width,
    height: 190,
    layer: [
      ...(lrChanges.length > 0 ? [rules] : []),
      {
        data: { values: curves.filter((c) => c.metric === metric) },
        mark: { type: 'line' as const, point: history.length <= 60 ? { size: history.length <= 3 ? 60 : 18 } : false, strokeWidth: 2 },
        encoding: {
          x: xNoTitle,
          y: { field: 'value', type: 'quantitative' as const, title: yTitle, scale: { zero: false } },
          color: {
            field: 'split',
            type: 'nominal' as const,
            title: null,
            scale: { domain: ['train', 'validation'], range: [TRAIN_COLOR, VAL_COLOR] },
            // Above the panel, not inside it: inside, it hid the validation curve's last epochs.
            legend: { orient: 'top' as const, direction: 'horizontal' as const },
          },
        },
      },
    ],
  });

  const spec: TopLevelSpec = {
    title: { text: title, subtitle: notes.length > 0 ? notes : undefined },
    config: BASE_CONFIG,
    spacing: 14,
    resolve: { scale: { x: 'shared', color: 'shared' } },
    vconcat: [
      curvePanel('loss', 'loss'),
      curvePanel('accuracy', 'accuracy'),
      {
        width,
        height: 80,
        layer: [
          ...(lrChanges.length > 0
            ? [
                rules,
                {
                  data: { values: lrChanges },
                  mark: { type: 'text' as const, align: 'left' as const, baseline: 'top' as const, dx: 3, y: 2, fontSize: 10, color: '#555' },
                  encoding: { x: { field: 'epoch', type: 'quantitative' as const }, text: { field: 'text', type: 'nominal' as const } },
                },
              ]
            : []),
          {
            data: { values: lrRows },
            // Points too: a single epoch has no line to draw.
            mark: { type: 'line' as const, interpolate: 'step-after' as const, color: '#2ca02c', strokeWidth: 2, point: history.length <= 60 ? { size: history.length <= 3 ? 60 : 18, color: '#2ca02c' } : false },
            encoding: {
              x,
              y: {
                field: 'lr',
                type: 'quantitative' as const,
                title: logLr ? 'lr (log)' : 'lr',
                scale: logLr ? { type: 'log' as const } : { zero: false },
                // Ticks at the rates actually used when there are few (a step schedule), else a few nice ones.
                axis: distinctLr.length <= 5 ? { format: '~e', values: distinctLr } : { format: '.0e', tickCount: 3 },
              },
            },
          },
        ],
      },
    ],
  };
  return renderSvg(spec);
}

/** Index of the best finite value of `get`, or -1 when none is finite. */
function argBest<T>(rows: readonly T[], get: (r: T) => number, better: (a: number, b: number) => boolean): number {
  let best = -1;
  for (let i = 0; i < rows.length; i++) {
    const v = get(rows[i]);
    if (Number.isFinite(v) && (best < 0 || better(v, get(rows[best])))) best = i;
  }
  return best;
}

/**
 * Confusion-matrix heatmap: true class on the y axis (with its item count), predicted class on the x axis, the count
 * in each cell, and the cell colour = the count as a share of its row (row-normalised, so the diagonal is each
 * class's recall; the share is also printed under the count). Rows with no items are left white.
 *
 * @throws CallmoodError INVALID_OPTION when labels are empty or repeated, the matrix is not labels × labels, or a
 *   count is negative or not finite.
 */
export async function confusionMatrixSvg(confusion: ConfusionInput, title: string): Promise<string> {
  const { labels, matrix } = confusion;
  // (Array.isArray on a readonly array type narrows it to any[], so the checks go through `unknown`.)
  if (!Array.isArray(labels as unknown) || labels.length === 0) throw invalid('confusionMatrixSvg: labels must be a non-empty array');
  if (new Set(labels).size !== labels.length) throw invalid(`confusionMatrixSvg: labels must be distinct, got [${labels.join(', ')}]`);
  const k = labels.length;
  if (!Array.isArray(matrix as unknown) || matrix.length !== k || matrix.some((row) => !Array.isArray(row as unknown) || row.length !== k)) {
    throw invalid(`confusionMatrixSvg: matrix must be ${k} × ${k} (labels × labels, rows = truth)`);
  }
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = matrix[i][j];
      if (!Number.isFinite(v) || v < 0) throw invalid(`confusionMatrixSvg: matrix[${i}][${j}] = ${v}; counts must be finite and ≥ 0`);
    }
  }

  const rowLabel = labels.map((l, i) => `${l} (${matrix[i].reduce((a, b) => a + b, 0)})`);
  const cells: { truth: string; predicted: string; count: number; share: number | null; shareText: string }[] = [];
  for (let i = 0; i < k; i++) {
    const total = matrix[i].reduce((a, b) => a + b, 0);
    for (let j = 0; j < k; j++) {
      const share = total > 0 ? matrix[i][j] / total : null;
      cells.push({
        truth: rowLabel[i],
        predicted: labels[j],
        count: matrix[i][j],
        share,
        shareText: share === null ? '' : `${Math.round(share * 100)}%`,
      });
    }
  }

  const cell = 62;
  const longest = Math.max(...labels.map((l) => l.length));
  const x = {
    field: 'predicted',
    type: 'nominal' as const,
    sort: [...labels],
    title: 'predicted',
    axis: { orient: 'bottom' as const, labelAngle: longest * 6.5 > cell - 6 ? -35 : 0, ticks: false, domain: false },
  };
  const y = { field: 'truth', type: 'nominal' as const, sort: rowLabel, title: 'true class (items)', axis: { ticks: false, domain: false } };
  const textColor = { condition: { test: 'datum.share > 0.5', value: 'white' }, value: '#222' };

  const spec: TopLevelSpec = {
    title: {
      text: title,
      subtitle: ['numbers: counts; colour and %: share of the row (row-normalised, diagonal = recall)'],
    },
    config: { ...BASE_CONFIG, view: { stroke: null } },
    width: cell * k,
    height: cell * k,
    data: { values: cells },
    encoding: { x, y },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
        encoding: {
          color: {
            field: 'share',
            type: 'quantitative',
            title: ['row share', '(recall on', 'the diagonal)'],
            // White at 0 so empty cells read as empty; dark blue at 1.
            scale: { domain: [0, 0.25, 0.5, 0.75, 1], range: ['#ffffff', '#c6dbef', '#6baed6', '#2171b5', '#08306b'], interpolate: 'lab' },
            legend: { format: '.0%', gradientLength: Math.max(120, cell * k - 60) },
          },
        },
      },
      {
        mark: { type: 'text', fontSize: 14, fontWeight: 'bold', dy: -6 },
        encoding: { text: { field: 'count', type: 'quantitative' }, color: textColor },
      },
      {
        mark: { type: 'text', fontSize: 10, dy: 10 },
        encoding: { text: { field: 'shareText', type: 'nominal' }, color: textColor },
      },
    ],
  };
  return renderSvg(spec);
}
