import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readAudioFile } from '../src/audio/read.js';
import { computeFeatures } from '../src/features/mfcc.js';
import { NARROWBAND_FEATURE_CONFIG } from '../src/features/config.js';
import { loadChannels } from '../src/audio/load.js';
import { DEFAULT_HEAP_GROWING_PERCENT, tuneHeap } from '../src/cli/heap.js';
import { CallmoodError, ErrorCodes } from '../src/errors.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
const clip = join(root, 'test/fixtures/audio/YAF_back_angry.flac');

/** Runs the CLI from source, returning exit code and output (never throws on a non-zero exit). */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

test('every command has --help', async () => {
  for (const args of [['--help'], ['features', '--help'], ['bench', '--help'], ['bench', 'mfcc', '--help'], ['bench', 'resample', '--help']]) {
    const r = await cli(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: callmood/);
  }
});

test('features prints the same matrix the library computes, as CSV', async () => {
  const r = await cli('features', clip);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => l.split(',').map(Number));
  const expected = computeFeatures((await readAudioFile(clip)).channels[0]);
  assert.equal(rows.length, expected.frames);
  assert.ok(rows.every((row) => row.length === 40));
  let worst = 0;
  rows.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - expected.data[t * 40 + j])))));
  assert.ok(worst < 1e-4, `CSV rounding error ${worst}`);
});

test('features saves .npy and JSON, honours --set, and resamples other rates', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-cli-'));
  const npy = join(dir, 'f.npy');
  const r = await cli('features', join(root, 'test/fixtures/formats/pcm16_44k1.wav'), '--out', npy, '--set', 'nMfcc=13', '--set', 'deltaOrder=1');
  assert.equal(r.code, 0, r.stderr);
  const bytes = readFileSync(npy);
  assert.equal(bytes.subarray(1, 6).toString(), 'NUMPY');
  const header = bytes.subarray(10, 10 + bytes.readUInt16LE(8)).toString('latin1');
  // 0.5 s at 44.1 kHz → 8000 samples at 16 kHz → 48 frames of 13 + 13 deltas.
  assert.match(header, /'descr': '<f4'.*'shape': \(48, 26\)/);
  assert.equal(bytes.length, 10 + bytes.readUInt16LE(8) + 48 * 26 * 4);
  // The shipped model's 8 kHz config: 0.5 s → 4000 samples at 8 kHz → 48 frames of 200 samples every 80; --set still applies.
  const narrow = join(dir, 'n.npy');
  const r8 = await cli('features', join(root, 'test/fixtures/formats/pcm16_44k1.wav'), '--out', narrow, '--feature-rate', '8000', '--set', 'nMfcc=13');
  assert.equal(r8.code, 0, r8.stderr);
  const b8 = readFileSync(narrow);
  assert.match(b8.subarray(10, 10 + b8.readUInt16LE(8)).toString('latin1'), /'shape': \(48, 13\)/);
  const expected8 = computeFeatures((await loadChannels(join(root, 'test/fixtures/formats/pcm16_44k1.wav'), 8000, 0)).channels[0], { ...NARROWBAND_FEATURE_CONFIG, nMfcc: 13 });
  const got8 = new Float32Array(b8.buffer.slice(b8.byteOffset + 10 + b8.readUInt16LE(8), b8.byteOffset + b8.length));
  assert.deepEqual(got8, expected8.data);
  const json = await cli('features', join(root, 'test/fixtures/formats/stereo_inverted.wav'), '--channel', 'all', '--format', 'json');
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { channels: { frames: number; dims: number; rows: number[][] }[] };
  assert.equal(parsed.channels.length, 2);
  assert.equal(parsed.channels[0].rows.length, parsed.channels[0].frames);
});

test('bad input exits 2 with one line naming the problem', async () => {
  const cases: [string[], RegExp][] = [
    [['features', '/no/such/file.wav'], /CALLMOOD_ERR_FILE_READ: \/no\/such\/file.wav: .*no such file/],
    [['features', join(root, 'test/fixtures/formats/text.wav')], /CALLMOOD_ERR_UNSUPPORTED_FORMAT: .*text.wav.*supported containers/],
    [['features', clip, '--channel', '1'], /CALLMOOD_ERR_UNSUPPORTED_CHANNELS: .*channel 1 does not exist; the file has 1 channel/],
    [['features', clip, '--set', 'nFft=500'], /CALLMOOD_ERR_INVALID_OPTION: .*nFft: must be a power of two/],
    [['features', clip, '--format', 'npy'], /--format npy is binary: give --out FILE.npy/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace for input errors');
  }
  const unknown = await cli('features', clip, '--channel', 'left');
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /--channel must be a channel index/);
});

test('train --speed-perturb refuses speeds out of range, repeated, or none, naming what is allowed', async () => {
  const out = join(tmpdir(), 'callmood-never-written');
  for (const [speeds, re] of [
    ['3', /--speed-perturb must be a number in \[0\.5, 2\], got '3'/],
    ['0.9,fast', /--speed-perturb must be a number in \[0\.5, 2\], got 'fast'/],
    [',', /--speed-perturb needs one or more speeds/],
  ] as const) {
    const r = await cli('train', '--out', out, '--manifest', join(root, 'test/fixtures/manifests/clips.csv'), '--speed-perturb', speeds);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, re);
  }
  const repeated = await cli('train', '--out', out, '--manifest', join(root, 'test/fixtures/manifests/clips.csv'), '--speed-perturb', '1,1.001');
  assert.equal(repeated.code, 2, repeated.stderr);
  assert.match(repeated.stderr, /CALLMOOD_ERR_INVALID_OPTION: speeds are \[1, 1\.001\]; allowed: one or more different speeds/);
  assert.ok(!existsSync(out), 'nothing written');
});

test('bench mfcc and bench resample print their figures as JSON', async () => {
  const m = await cli('bench', 'mfcc', '--json', '--seconds', '2', '--rounds', '1');
  assert.equal(m.code, 0, m.stderr);
  const mfcc = JSON.parse(m.stdout) as Record<string, number>;
  assert.ok(mfcc.realtimeFactor > 0 && mfcc.batchRealtimeFactor > 0 && mfcc.jsKernelRealtimeFactor > 0, m.stdout);
  const r = await cli('bench', 'resample', '--json', '--seconds', '5');
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as Record<string, number>;
  assert.ok(res.realtimeFactor > 0, r.stdout);
  assert.equal(res.inRate, 8000);
  assert.equal(res.outRate, 16000);
});

test('bench replay reports the median of its timed runs, and each run', async () => {
  const r = await cli('bench', 'replay', '--json', '--seconds', '20', '--runs', '3');
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { realtimeFactor: number; realtimeFactorRuns: number[]; windows: number; seconds: number; mainThreadShare: number };
  assert.equal(res.seconds, 20);
  // From /proc on Linux: the main thread's share of the timed runs' CPU; JSON null (NaN) where there is no /proc.
  if (process.platform === 'linux') assert.ok(res.mainThreadShare > 0 && res.mainThreadShare <= 1, r.stdout);
  else assert.equal(res.mainThreadShare, null);
  assert.equal(res.realtimeFactorRuns.length, 3);
  assert.ok(res.windows > 0, r.stdout);
  const sorted = [...res.realtimeFactorRuns].sort((a, b) => a - b);
  assert.ok(Math.abs(res.realtimeFactor - sorted[1]) < 1e-9 * sorted[1], r.stdout);
});

test('bench calls counts latency end to end, from the chunk that ends a window to its event at the client', async () => {
  const r = await cli('bench', 'calls', '--json', '--calls', '2', '--seconds', '4');
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as Record<string, number | boolean>;
  assert.equal(res.calls, 2);
  assert.equal(typeof res.realtime, 'boolean'); // whether 2 calls keep real time depends on the machine's load
  assert.ok((res.windows as number) > 0, r.stdout);
  // The client's interval holds the server's (the chunk is sent before its window forms; the event arrives after it
  // is emitted), so each quantile end to end is at least the server's own.
  for (const q of ['50', '99']) {
    const e2e = res[`p${q}Ms`] as number;
    const server = res[`serverP${q}Ms`] as number;
    assert.ok(Number.isFinite(e2e) && Number.isFinite(server) && server >= 0 && e2e >= server, r.stdout);
  }
});

test('the command line sets V8\'s heap growing factor: default, override, off, the user\'s own node flag, bad values', async () => {
  assert.equal(tuneHeap({}, []), DEFAULT_HEAP_GROWING_PERCENT);
  assert.equal(tuneHeap({ CALLMOOD_HEAP_GROWING_PERCENT: '50' }, []), 50);
  assert.equal(tuneHeap({ CALLMOOD_HEAP_GROWING_PERCENT: '0' }, []), 0);
  assert.equal(tuneHeap({ CALLMOOD_HEAP_GROWING_PERCENT: '50' }, ['--heap-growing-percent=20']), null);
  assert.equal(tuneHeap({}, ['--max-old-space-size=512', '--heap_growing_percent=30']), null);
  for (const bad of ['abc', '-1', '1001', '2.5']) {
    assert.throws(() => tuneHeap({ CALLMOOD_HEAP_GROWING_PERCENT: bad }, []), (e: unknown) =>
      e instanceof CallmoodError && e.code === ErrorCodes.INVALID_OPTION && e.message.includes(`is "${bad}"; allowed: an integer in [0, 1000]`));
  }
  tuneHeap({}, []); // leave this process as the command line would
  const r = await run(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), '--version'], {
    cwd: root,
    env: { ...process.env, CALLMOOD_HEAP_GROWING_PERCENT: 'lots' },
  }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /CALLMOOD_HEAP_GROWING_PERCENT is "lots"; allowed: an integer in \[0, 1000\]/);
});
