/**
 * Evaluation metrics for the emotion classifier: pure functions over label indices and per-class scores, no TF.js.
 *
 * Everything here is exact (no sampling, no binning): the ROC AUC is the Mann–Whitney U statistic with average
 * ranks for tied scores, and recall at a false-positive-rate budget sweeps every distinct score as a threshold.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';

/** Precision, recall, F1 and support of one class. */
export interface ClassMetrics {
  /**
   * Of the items predicted as this class, the share that truly are. **0 when the class is never predicted**
   * (no predictions means no correct ones; the alternative, NaN, would poison averages).
   */
  precision: number;
  /** Of the items truly of this class, the share predicted as it. 0 when the class has no items (`support` 0). */
  recall: number;
  /** Harmonic mean of precision and recall; 0 when both are 0. */
  f1: number;
  /** Items whose true label is this class. */
  support: number;
}

/** A confusion matrix: `matrix[truth][predicted]` counts, rows and columns in `labels` order. */
export interface ConfusionMatrix {
  labels: string[];
  matrix: number[][];
}

/** One-vs-rest detection quality of the positive class (anger by default), scored by its probability. */
export interface PositiveClassMetrics {
  /** The positive label. */
  label: string;
  /** Items whose true label is the positive one. */
  positives: number;
  /** Items whose true label is any other. */
  negatives: number;
  /** Exact ROC AUC (ties count ½). `null` when there are no positives or no negatives. */
  auc: number | null;
  /**
   * Highest true-positive rate over thresholds whose false-positive rate is ≤ 5 %. `null` when there are no
   * positives or no negatives.
   */
  recallAt5pctFpr: number | null;
}

/** What {@link evaluatePredictions} returns. */
export interface EvaluationResult {
  /** Items evaluated. */
  n: number;
  /** Share of items whose argmax prediction is the true label. */
  accuracy: number;
  /** Mean recall over the classes that have at least one item (classes with support 0 are left out). */
  balancedAccuracy: number;
  /** Per-class metrics, keyed by label. */
  perClass: Record<string, ClassMetrics>;
  /** Rows = truth, columns = predicted. */
  confusion: ConfusionMatrix;
  /** One-vs-rest metrics of the positive label (`angry` unless `positive` says otherwise). */
  anger: PositiveClassMetrics;
}

/** Options of {@link evaluatePredictions}. */
export interface EvaluateOptions {
  /** Class labels; `probs` column j and truth index j mean `labels[j]`. */
  labels: readonly string[];
  /** True label index per item. */
  truth: Int32Array | readonly number[];
  /**
   * Scores, n × labels.length, row-major. Usually softmax probabilities, but any finite scores work: the
   * prediction is the argmax and the AUC depends only on the order of the positive column.
   */
  probs: Float32Array | Float64Array | readonly number[];
  /** The label scored one-vs-rest in `anger`. Default `angry`. */
  positive?: string;
}

/** The false-positive-rate budget of `recallAt5pctFpr`. */
export const ANGER_MAX_FPR = 0.05;

function invalid(message: string): CallmoodError {
  return new CallmoodError(ErrorCodes.INVALID_OPTION, message);
}

/**
 * Scores the predictions `probs` against `truth`: accuracy, balanced accuracy, per-class precision / recall / F1,
 * the confusion matrix, and the positive class's (anger's) one-vs-rest ROC AUC and recall at 5 % FPR.
 *
 * The predicted class of an item is the argmax of its row; ties go to the lowest index.
 *
 * @throws CallmoodError INVALID_OPTION when labels are empty or repeated, `positive` is not a label, the lengths of
 *   `truth` and `probs` disagree, a truth index is not an integer in range, or a score is NaN or infinite.
 */
export function evaluatePredictions(opts: EvaluateOptions): EvaluationResult {
  const { labels, truth, probs } = opts;
  const positive = opts.positive ?? 'angry';
  if (!Array.isArray(labels) || labels.length === 0) throw invalid('evaluatePredictions: labels must be a non-empty array');
  const seen = new Set<string>();
  for (const l of labels) {
    if (typeof l !== 'string' || l === '') throw invalid(`evaluatePredictions: every label must be a non-empty string, got ${JSON.stringify(l)}`);
    if (seen.has(l)) throw invalid(`evaluatePredictions: label "${l}" appears twice in labels`);
    seen.add(l);
  }
  const posIdx = labels.indexOf(positive);
  if (posIdx < 0) {
    throw invalid(
      `evaluatePredictions: positive label "${positive}" is not one of the labels [${labels.join(', ')}]` +
        (opts.positive === undefined ? ' (it is the default; pass `positive` to choose another)' : ''),
    );
  }
  const k = labels.length;
  const n = truth.length;
  if (n === 0) throw invalid('evaluatePredictions: truth is empty; there is nothing to evaluate');
  if (probs.length !== n * k) {
    throw invalid(
      `evaluatePredictions: probs has ${probs.length} values but ${n} items × ${k} labels = ${n * k} were expected ` +
        '(probs is n × labels.length, row-major)',
    );
  }
  for (let i = 0; i < n; i++) {
    const t = truth[i];
    if (!Number.isInteger(t) || t < 0 || t >= k) {
      throw invalid(`evaluatePredictions: truth[${i}] = ${t} is not a label index (an integer in 0..${k - 1})`);
    }
  }
  for (let j = 0; j < probs.length; j++) {
    if (!Number.isFinite(probs[j])) {
      throw invalid(
        `evaluatePredictions: probs[${j}] (item ${Math.floor(j / k)}, label "${labels[j % k]}") is ${probs[j]}; scores must be finite`,
      );
    }
  }

  const matrix: number[][] = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const row = i * k;
    let best = 0;
    let bestScore = probs[row];
    for (let j = 1; j < k; j++) {
      if (probs[row + j] > bestScore) {
        bestScore = probs[row + j];
        best = j;
      }
    }
    matrix[truth[i]][best]++;
    if (best === truth[i]) correct++;
  }

  const perClass: Record<string, ClassMetrics> = {};
  let recallSum = 0;
  let classesWithSupport = 0;
  for (let c = 0; c < k; c++) {
    const tp = matrix[c][c];
    let support = 0;
    let predicted = 0;
    for (let j = 0; j < k; j++) {
      support += matrix[c][j];
      predicted += matrix[j][c];
    }
    const precision = predicted > 0 ? tp / predicted : 0;
    const recall = support > 0 ? tp / support : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    perClass[labels[c]] = { precision, recall, f1, support };
    if (support > 0) {
      recallSum += recall;
      classesWithSupport++;
    }
  }

  const scores = new Float64Array(n);
  const isPositive = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    scores[i] = probs[i * k + posIdx];
    isPositive[i] = truth[i] === posIdx ? 1 : 0;
  }
  let positives = 0;
  for (let i = 0; i < n; i++) positives += isPositive[i];

  return {
    n,
    accuracy: correct / n,
    balancedAccuracy: recallSum / classesWithSupport,
    perClass,
    confusion: { labels: [...labels], matrix },
    anger: {
      label: positive,
      positives,
      negatives: n - positives,
      auc: rocAuc(scores, isPositive),
      recallAt5pctFpr: recallAtFpr(scores, isPositive, ANGER_MAX_FPR),
    },
  };
}

/** Item indices sorted by score, ascending (ties in index order, which does not matter to the callers). */
function orderByScore(scores: ArrayLike<number>): Uint32Array {
  const order = new Uint32Array(scores.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  return order.sort((a, b) => scores[a] - scores[b]);
}

function checkBinary(fn: string, scores: ArrayLike<number>, isPositive: ArrayLike<number | boolean>): { pos: number; neg: number } {
  if (scores.length !== isPositive.length) {
    throw invalid(`${fn}: ${scores.length} scores but ${isPositive.length} positive flags`);
  }
  let pos = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i])) throw invalid(`${fn}: scores[${i}] is ${scores[i]}; scores must be finite`);
    if (isPositive[i]) pos++;
  }
  return { pos, neg: scores.length - pos };
}

/**
 * Exact ROC AUC of `scores` for the items flagged in `isPositive`: the probability that a random positive scores
 * above a random negative, a tie counting ½ (Mann–Whitney U with average ranks). `null` without positives or
 * without negatives.
 */
export function rocAuc(scores: ArrayLike<number>, isPositive: ArrayLike<number | boolean>): number | null {
  const { pos, neg } = checkBinary('rocAuc', scores, isPositive);
  if (pos === 0 || neg === 0) return null;
  const order = orderByScore(scores);
  let positiveRankSum = 0;
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && scores[order[end]] === scores[order[start]]) end++;
    // Ranks start+1 … end (1-based) share their average.
    const avgRank = (start + 1 + end) / 2;
    for (let i = start; i < end; i++) if (isPositive[order[i]]) positiveRankSum += avgRank;
    start = end;
  }
  const u = positiveRankSum - (pos * (pos + 1)) / 2;
  return u / (pos * neg);
}

/**
 * Highest true-positive rate over the rules "positive when score ≥ t", t at each distinct score (and above the
 * highest, which flags nothing), whose false-positive rate is ≤ `maxFpr`. Items with equal scores are always
 * flagged together. `null` without positives or without negatives.
 */
export function recallAtFpr(scores: ArrayLike<number>, isPositive: ArrayLike<number | boolean>, maxFpr: number): number | null {
  if (!(maxFpr >= 0 && maxFpr <= 1)) throw invalid(`recallAtFpr: maxFpr must be in [0, 1], got ${maxFpr}`);
  const { pos, neg } = checkBinary('recallAtFpr', scores, isPositive);
  if (pos === 0 || neg === 0) return null;
  const order = orderByScore(scores);
  let tp = 0;
  let fp = 0;
  let best = 0;
  // Lower the threshold one distinct score at a time; TPR and FPR only grow, so stop at the first FPR over budget.
  for (let end = order.length; end > 0; ) {
    let start = end - 1;
    while (start > 0 && scores[order[start - 1]] === scores[order[end - 1]]) start--;
    for (let i = start; i < end; i++) {
      if (isPositive[order[i]]) tp++;
      else fp++;
    }
    if (fp / neg > maxFpr) break;
    best = tp / pos;
    end = start;
  }
  return best;
}

function fmt(x: number | null, digits = 3): string {
  return x === null ? 'n/a' : x.toFixed(digits);
}

/**
 * The result as a plain-text report for a terminal: summary lines, a per-class table, and the confusion matrix
 * (rows = truth, columns = predicted). ASCII only, no colours.
 */
export function formatEvaluationTable(result: EvaluationResult): string {
  const labels = result.confusion.labels;
  const lines: string[] = [];
  const a = result.anger;
  lines.push(`items              ${result.n}`);
  lines.push(`accuracy           ${fmt(result.accuracy)}`);
  lines.push(`balanced accuracy  ${fmt(result.balancedAccuracy)}  (mean recall over classes with support > 0)`);
  const why = a.auc === null ? (a.positives === 0 ? `  (no "${a.label}" items)` : `  (only "${a.label}" items)`) : '';
  lines.push(`${a.label} vs rest: AUC ${fmt(a.auc)}, recall @ FPR <= 5% ${fmt(a.recallAt5pctFpr)}` + `  (${a.positives} positives, ${a.negatives} negatives)${why}`);
  lines.push('');

  const lw = Math.max(5, ...labels.map((l) => l.length));
  const head = ['precision', 'recall', 'f1', 'support'];
  const cw = head.map((h) => Math.max(h.length, 7));
  lines.push(['label'.padEnd(lw), ...head.map((h, i) => h.padStart(cw[i]))].join('  '));
  for (const l of labels) {
    const m = result.perClass[l];
    const cells = [fmt(m.precision), fmt(m.recall), fmt(m.f1), String(m.support)];
    lines.push([l.padEnd(lw), ...cells.map((c, i) => c.padStart(cw[i]))].join('  '));
  }
  lines.push('');

  lines.push('confusion matrix (rows = truth, columns = predicted)');
  const corner = 'truth \\ pred';
  const rw = Math.max(corner.length, lw);
  const colW = labels.map((l, j) => Math.max(l.length, ...result.confusion.matrix.map((row) => String(row[j]).length)));
  lines.push([corner.padEnd(rw), ...labels.map((l, j) => l.padStart(colW[j]))].join('  '));
  result.confusion.matrix.forEach((row, i) => {
    lines.push([labels[i].padEnd(rw), ...row.map((v, j) => String(v).padStart(colW[j]))].join('  '));
  });
  return lines.join('\n') + '\n';
}
