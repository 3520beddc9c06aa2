import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EMOTION_LABELS } from '../src/labels.js';
import { ErrorCodes } from '../src/errors.js';
import { evaluatePredictions, formatEvaluationTable, recallAtFpr, rocAuc } from '../src/model/metrics.js';
import { assertCallmoodError, rng } from './helpers.js';

const INVALID = ErrorCodes.INVALID_OPTION;
const ABC = ['a', 'b', 'c'];

/** One-hot-ish rows: item i puts `hi` on class pred[i] and `lo` elsewhere. */
function probsFor(pred: number[], k: number, hi = 0.8, lo = 0.1): Float32Array {
  const p = new Float32Array(pred.length * k).fill(lo);
  pred.forEach((c, i) => (p[i * k + c] = hi));
  return p;
}

function close(actual: number | null, expected: number, msg?: string): void {
  assert.ok(actual !== null, msg ?? 'expected a number, got null');
  assert.ok(Math.abs(actual - expected) < 1e-12, `${msg ?? ''} ${actual} != ${expected}`);
}

/** AUC by comparing every positive with every negative. */
function bruteAuc(scores: ArrayLike<number>, pos: ArrayLike<number>): number {
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!pos[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (pos[j]) continue;
      pairs++;
      if (scores[i] > scores[j]) wins += 1;
      else if (scores[i] === scores[j]) wins += 0.5;
    }
  }
  return wins / pairs;
}

/** Best TPR over every threshold (each distinct score, and +Infinity) with FPR ≤ maxFpr, by recounting each time. */
function bruteRecallAtFpr(scores: ArrayLike<number>, pos: ArrayLike<number>, maxFpr: number): number {
  const P = Array.from(pos).filter(Boolean).length;
  const N = scores.length - P;
  let best = 0;
  for (const t of [...new Set(Array.from(scores)), Infinity]) {
    let tp = 0;
    let fp = 0;
    for (let i = 0; i < scores.length; i++) {
      if (scores[i] >= t) {
        if (pos[i]) tp++;
        else fp++;
      }
    }
    if (fp / N <= maxFpr) best = Math.max(best, tp / P);
  }
  return best;
}

test('perfect predictions: every metric is 1, confusion is diagonal', () => {
  const truth = [0, 1, 2, 0, 1, 2, 2];
  const r = evaluatePredictions({ labels: ABC, truth, probs: probsFor(truth, 3), positive: 'a' });
  assert.equal(r.n, 7);
  assert.equal(r.accuracy, 1);
  assert.equal(r.balancedAccuracy, 1);
  for (const l of ABC) {
    assert.deepEqual(r.perClass[l], { precision: 1, recall: 1, f1: 1, support: l === 'c' ? 3 : 2 });
  }
  assert.deepEqual(r.confusion, {
    labels: ABC,
    matrix: [
      [2, 0, 0],
      [0, 2, 0],
      [0, 0, 3],
    ],
  });
  assert.equal(r.anger.label, 'a');
  assert.equal(r.anger.auc, 1);
  assert.equal(r.anger.recallAt5pctFpr, 1);
  assert.equal(r.anger.positives, 2);
  assert.equal(r.anger.negatives, 5);
});

test('all wrong: accuracy 0, precision/recall/f1 0, AUC 0', () => {
  const truth = [0, 1, 2, 0];
  const pred = [1, 2, 0, 2];
  const r = evaluatePredictions({ labels: ABC, truth, probs: probsFor(pred, 3), positive: 'a' });
  assert.equal(r.accuracy, 0);
  assert.equal(r.balancedAccuracy, 0);
  for (const l of ABC) {
    assert.equal(r.perClass[l].precision, 0);
    assert.equal(r.perClass[l].recall, 0);
    assert.equal(r.perClass[l].f1, 0);
  }
  assert.deepEqual(r.confusion.matrix, [
    [0, 1, 1],
    [0, 0, 1],
    [1, 0, 0],
  ]);
  // 'a' scores: positives (items 0, 3) get 0.1; negatives: item 1 → 0.1 (tie), item 2 → 0.8.
  // Pairs: (0.1 vs 0.1) ½, (0.1 vs 0.8) 0, for each of two positives → 1 / 4.
  assert.equal(r.anger.auc, 0.25);
  // Any threshold that flags a positive (≤ 0.1) also flags both negatives: FPR 1.
  assert.equal(r.anger.recallAt5pctFpr, 0);
});

test('imbalanced classes: accuracy differs from balanced accuracy, per-class numbers by hand', () => {
  // 8 × a (7 right, 1 → b), 2 × b (1 right, 1 → a), 2 × c (both → a).
  const truth = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2];
  const pred = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0];
  const r = evaluatePredictions({ labels: ABC, truth, probs: probsFor(pred, 3), positive: 'b' });
  assert.equal(r.accuracy, 8 / 12);
  close(r.balancedAccuracy, (7 / 8 + 1 / 2 + 0) / 3);
  // a: predicted 10 times, 7 right.
  close(r.perClass.a.precision, 7 / 10);
  close(r.perClass.a.recall, 7 / 8);
  close(r.perClass.a.f1, (2 * 0.7 * 0.875) / (0.7 + 0.875));
  assert.equal(r.perClass.a.support, 8);
  // b: predicted twice, once right.
  close(r.perClass.b.precision, 1 / 2);
  close(r.perClass.b.recall, 1 / 2);
  close(r.perClass.b.f1, 1 / 2);
  // c: never predicted → precision 0 by convention, recall 0, f1 0.
  assert.deepEqual(r.perClass.c, { precision: 0, recall: 0, f1: 0, support: 2 });
  assert.deepEqual(r.confusion.matrix, [
    [7, 1, 0],
    [1, 1, 0],
    [2, 0, 0],
  ]);
  assert.equal(r.anger.label, 'b');
  assert.equal(r.anger.positives, 2);
});

test('a class absent from the truth is left out of balanced accuracy, and a never-predicted class has precision 0', () => {
  // Only a and b occur; c has support 0 and is never predicted.
  const truth = [0, 0, 1, 1];
  const pred = [0, 1, 1, 1];
  const r = evaluatePredictions({ labels: ABC, truth, probs: probsFor(pred, 3), positive: 'a' });
  close(r.balancedAccuracy, (1 / 2 + 1) / 2);
  assert.deepEqual(r.perClass.c, { precision: 0, recall: 0, f1: 0, support: 0 });
  close(r.perClass.b.precision, 2 / 3);
});

test('argmax ties go to the lowest index', () => {
  const probs = new Float32Array([0.4, 0.4, 0.2, 0.1, 0.45, 0.45, 1 / 3, 1 / 3, 1 / 3]);
  const r = evaluatePredictions({ labels: ABC, truth: [0, 1, 0], probs, positive: 'a' });
  assert.deepEqual(r.confusion.matrix, [
    [2, 0, 0],
    [0, 1, 0],
    [0, 0, 0],
  ]);
});

test('the seven emotion labels, default positive "angry", Int32Array truth', () => {
  const k = EMOTION_LABELS.length;
  const truth = Int32Array.from([0, 4, 4, 3, 0, 5]);
  const probs = new Float32Array(truth.length * k).fill(0.05);
  // Anger scores: positives 0.7 and 0.3; negatives 0.3, 0.2, 0.1, 0.05 → AUC = (4 + (½ + 3)) / 8.
  const anger = [0.7, 0.3, 0.2, 0.1, 0.3, 0.05];
  anger.forEach((s, i) => (probs[i * k] = s));
  truth.forEach((c, i) => {
    if (c !== 0) probs[i * k + c] = 0.6;
  });
  const r = evaluatePredictions({ labels: EMOTION_LABELS, truth, probs });
  assert.equal(r.anger.label, 'angry');
  close(r.anger.auc, 7.5 / 8);
  // Threshold 0.7: TPR ½, FPR 0; threshold 0.3 flags a negative: FPR ¼ > 5 %.
  assert.equal(r.anger.recallAt5pctFpr, 0.5);
  assert.equal(r.accuracy, 1);
  assert.deepEqual(Object.keys(r.perClass), [...EMOTION_LABELS]);
});

test('no positives or no negatives: anger metrics are null, not NaN', () => {
  const r1 = evaluatePredictions({ labels: ABC, truth: [1, 2, 1], probs: probsFor([1, 2, 2], 3), positive: 'a' });
  assert.equal(r1.anger.auc, null);
  assert.equal(r1.anger.recallAt5pctFpr, null);
  assert.equal(r1.anger.positives, 0);
  const r2 = evaluatePredictions({ labels: ABC, truth: [0, 0], probs: probsFor([0, 1], 3), positive: 'a' });
  assert.equal(r2.anger.auc, null);
  assert.equal(r2.anger.recallAt5pctFpr, null);
  assert.match(formatEvaluationTable(r1), /AUC n\/a/);
  assert.match(formatEvaluationTable(r1), /no "a" items/);
  assert.match(formatEvaluationTable(r2), /only "a" items/);
});

test('AUC with heavy ties matches brute-force pairwise counting on random data', () => {
  const rand = rng(7);
  for (let trial = 0; trial < 60; trial++) {
    const n = 2 + Math.floor(rand() * 200);
    // Few distinct values so ties are common; sometimes continuous.
    const levels = trial % 3 === 0 ? 0 : 2 + Math.floor(rand() * 8);
    const scores = new Float64Array(n);
    const pos = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      pos[i] = rand() < 0.3 ? 1 : 0;
      const base = levels ? Math.floor(rand() * levels) / levels : rand();
      scores[i] = pos[i] ? Math.min(1, base + 0.2 * rand() * (levels ? 0 : 1)) : base;
    }
    if (!pos.includes(1) || !pos.includes(0)) {
      assert.equal(rocAuc(scores, pos), null);
      continue;
    }
    close(rocAuc(scores, pos), bruteAuc(scores, pos), `trial ${trial} (n ${n}, levels ${levels})`);
  }
});

test('recall at 5 % FPR matches a brute-force threshold sweep on random data, ties moving together', () => {
  const rand = rng(11);
  for (let trial = 0; trial < 80; trial++) {
    const n = 2 + Math.floor(rand() * 300);
    const levels = trial % 4 === 0 ? 0 : 3 + Math.floor(rand() * 20);
    const scores = new Float32Array(n);
    const pos = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      pos[i] = rand() < 0.25 ? 1 : 0;
      const x = pos[i] ? rand() * 0.6 + 0.4 : rand() * 0.7;
      scores[i] = levels ? Math.round(x * levels) / levels : x;
    }
    if (!pos.includes(1) || !pos.includes(0)) continue;
    for (const maxFpr of [0, 0.05, 0.2]) {
      close(recallAtFpr(scores, pos, maxFpr), bruteRecallAtFpr(scores, pos, maxFpr), `trial ${trial} maxFpr ${maxFpr}`);
    }
  }
});

test('recall at 5 % FPR: exactly 5 % is allowed, a tied negative above the budget is not', () => {
  // 20 negatives, 4 positives. One negative at 0.9 (FPR 1/20 = 5 % exactly), positives at 0.95, 0.9, 0.5, 0.5:
  // threshold 0.5 flags all positives and that one negative.
  const scores = [0.95, 0.9, 0.5, 0.5, 0.9, ...new Array<number>(19).fill(0.1)];
  const pos = [1, 1, 1, 1, ...new Array<number>(20).fill(0)];
  assert.equal(recallAtFpr(scores, pos, 0.05), 1);
  // Budget just under 5 %: the 0.9 threshold is out, so only the positive at 0.95 is caught.
  assert.equal(recallAtFpr(scores, pos, 0.049), 0.25);
  // Put a second negative at 0.9: the 0.9 threshold now costs FPR 10 %, so only the 0.95 positive counts.
  const scores2 = [...scores];
  scores2[5] = 0.9;
  assert.equal(recallAtFpr(scores2, pos, 0.05), 0.25);
  // And if the top score is a tie between a positive and two negatives, nothing can be flagged.
  assert.equal(recallAtFpr([0.9, 0.9, 0.9, ...new Array<number>(18).fill(0.1)], [1, 0, 0, ...new Array<number>(18).fill(0)], 0.05), 0);
});

test('input validation', () => {
  const probs = probsFor([0, 1], 3);
  assertCallmoodError(() => evaluatePredictions({ labels: [], truth: [], probs: new Float32Array(0) }), INVALID, /labels must be a non-empty/);
  assertCallmoodError(() => evaluatePredictions({ labels: ['a', 'b', 'a'], truth: [0, 1], probs, positive: 'a' }), INVALID, /"a" appears twice/);
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 1], probs }), INVALID, /"angry" is not one of the labels \[a, b, c\]/, /default/);
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 1], probs, positive: 'x' }), INVALID, /"x" is not one of/);
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [], probs: new Float32Array(0), positive: 'a' }), INVALID, /truth is empty/);
  assertCallmoodError(
    () => evaluatePredictions({ labels: ABC, truth: [0, 1, 2], probs, positive: 'a' }),
    INVALID,
    /probs has 6 values but 3 items × 3 labels = 9/,
  );
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 3], probs, positive: 'a' }), INVALID, /truth\[1\] = 3 is not a label index/);
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 1.5], probs, positive: 'a' }), INVALID, /truth\[1\] = 1.5/);
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [-1, 0], probs, positive: 'a' }), INVALID, /truth\[0\] = -1/);
  const nan = probs.slice();
  nan[4] = NaN;
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 1], probs: nan, positive: 'a' }), INVALID, /probs\[4\] \(item 1, label "b"\) is NaN/);
  const inf = probs.slice();
  inf[0] = Infinity;
  assertCallmoodError(() => evaluatePredictions({ labels: ABC, truth: [0, 1], probs: inf, positive: 'a' }), INVALID, /is Infinity/);
  assertCallmoodError(() => rocAuc([0.1, 0.2], [1]), INVALID, /2 scores but 1 positive flags/);
  assertCallmoodError(() => rocAuc([0.1, NaN], [1, 0]), INVALID, /scores\[1\] is NaN/);
  assertCallmoodError(() => recallAtFpr([0.1, 0.2], [1, 0], 1.5), INVALID, /maxFpr must be in \[0, 1\]/);
});

test('formatEvaluationTable shows the summary, per-class rows and the confusion matrix', () => {
  const truth = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2];
  const pred = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0];
  const r = evaluatePredictions({ labels: ['angry', 'neutral', 'surprise'], truth, probs: probsFor(pred, 3) });
  const s = formatEvaluationTable(r);
  assert.match(s, /accuracy\s+0\.667/);
  assert.match(s, /balanced accuracy\s+0\.458/);
  assert.match(s, /angry vs rest: AUC \d\.\d{3}, recall @ FPR <= 5% \d\.\d{3}/);
  assert.match(s, /^label\s+precision\s+recall\s+f1\s+support$/m);
  assert.match(s, /^angry\s+0\.700\s+0\.875\s+0\.778\s+8$/m);
  assert.match(s, /^surprise\s+0\.000\s+0\.000\s+0\.000\s+2$/m);
  assert.match(s, /rows = truth, columns = predicted/);
  assert.match(s, /^truth \\ pred\s+angry\s+neutral\s+surprise$/m);
  assert.match(s, /^surprise\s+2\s+0\s+0$/m);
  // Columns line up: every confusion row is as wide as its header.
  const conf = s.split('\n').slice(s.split('\n').findIndex((l) => l.startsWith('truth')), -1);
  assert.equal(new Set(conf.map((l) => l.length)).size, 1, conf.join('\n'));
  assert.ok(/^[\x20-\x7e\n]*$/.test(s), 'ASCII only');
});
