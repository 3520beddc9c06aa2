/**
 * `callmood evaluate` from the command line: the shipped model by default, the regime in the JSON, the JSON alone
 * on stdout with `--json -`, and usage errors that exit 2 before any work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const HELD_OUT = join(root, 'test/fixtures/heldout/manifest.csv');


test('evaluate --json - prints the JSON alone on stdout, with the regime and the contract fields; the table goes to stderr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-evaluate-'));
  try {
    const r = await cli('evaluate', '--manifest', HELD_OUT, '--adapt', 'clip', '--cache', join(dir, 'cache'), '--json', '-');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.regime, { adapt: 'clip', callSeconds: null });
    for (const k of ['accuracy', 'balancedAccuracy', 'perClass']) assert.ok(k in report, k);
    assert.equal(typeof report.anger.auc, 'number');
    assert.ok('recallAt5pctFpr' in report.anger, 'anger.recallAt5pctFpr');
    assert.equal(report.confusion.labels.length, 7);
    assert.match(report.model, /models[/\\]default$/, 'the shipped model by default');
    assert.match(r.stderr, /regime: adapt clip, clean channel/);
    assert.match(r.stderr, /accuracy/);
    // A file: the JSON there, its confusion matrix beside it, the table on stdout.
    const file = join(dir, 'out.json');
    const f = await cli('evaluate', '--manifest', HELD_OUT, '--cache', join(dir, 'cache'), '--call-seconds', '30', '--json', file);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).regime, { adapt: 'call', callSeconds: 30 });
    assert.ok(existsSync(join(dir, 'out.confusion.svg')));
    assert.match(f.stdout, /regime: adapt call \(calls of 30 s\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluate usage errors exit 2 with one line, before any work', async () => {
  for (const [args, pattern] of [
    [['--adapt', 'session'], /--adapt.*session.*call, clip/],
    [['--call-seconds', '0'], /--call-seconds/],
    [['--suite', 'val'], /--suite.*val.*dev, test, cross/],
    [['--json', '/nonexistent-dir/x.json'], /--json \/nonexistent-dir\/x\.json: cannot write there/],
  ] as const) {
    const r = await cli('evaluate', '--manifest', HELD_OUT, ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.ok(r.stderr.trim().split('\n').length <= 2, r.stderr);
  }
});
