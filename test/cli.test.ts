import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
import { readMetadata } from '../src/model/io.js';
import { cli } from './helpers.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));
const clip = join(root, 'test/fixtures/audio/YAF_back_angry.flac');


test('every command has --help', async () => {
  for (const args of [['--help'], ['features', '--help'], ['bench', '--help'], ['bench', 'mfcc', '--help'], ['bench', 'resample', '--help']]) {
    const r = await cli(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: callmood/);
  }
});

test('features prints the same matrix the library computes, as CSV', async () => {
  const r = await cli('features', clip, '--feature-rate', '16000');
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

test('bench calls counts latency end to end, from the chunk that ends a window to its event at the client; --provider telnyx streams the same calls as Telnyx', async () => {
  const r = await cli('bench', 'calls', '--json', '--calls', '2', '--seconds', '4');
  const telnyx = await cli('bench', 'calls', '--json', '--calls', '2', '--seconds', '4', '--provider', 'telnyx');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(telnyx.code, 0, telnyx.stderr);
  const t = JSON.parse(telnyx.stdout) as Record<string, number | boolean>;
  const w = JSON.parse(r.stdout) as Record<string, number | boolean>;
  // The same audio gives the same windows through either transport.
  assert.equal(t.windows, w.windows, `windows through Telnyx and Twilio: ${telnyx.stdout} ${r.stdout}`);
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

test("features without --feature-rate computes the shipped model's own features, as its metadata.json records them", async () => {
  const shipped = (await readMetadata(join(root, 'models/default'))).window.feature;
  const r = await cli('features', clip, '--format', 'json');
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { frames: number; dims: number; rows: number[][] };
  const expected = computeFeatures((await loadChannels(clip, shipped.sampleRate, 0)).channels[0], shipped);
  assert.equal(got.frames, expected.frames);
  assert.equal(got.dims, expected.dims);
  let worst = 0;
  got.rows.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - expected.data[t * expected.dims + j])))));
  assert.ok(worst < 1e-4, `JSON rounding error ${worst}`);
  // Not the 16 kHz default config (same frame rate, other band and window: other values).
  const wide = JSON.parse((await cli('features', clip, '--format', 'json', '--feature-rate', '16000')).stdout) as { rows: number[][] };
  assert.ok(Math.abs(wide.rows[50][1] - got.rows[50][1]) > 0.01, 'the 16 kHz config gives other features');
  const summary = await cli('features', clip, '--summary');
  assert.match(summary.stdout, new RegExp(`channel 0: ${expected.frames} frames × ${expected.dims} ${shipped.kind}`));
});

test('usage errors exit 2 with one line naming the command and a hint to its --help, never the whole help text', async () => {
  const cases: [string[], RegExp, string][] = [
    [['replay', '--frobnicate', clip], /^callmood replay: unknown option '--frobnicate'$/, 'callmood replay'],
    [['replay'], /^callmood replay: missing required argument 'path'$/, 'callmood replay'],
    [['replay', clip, '--workers', '0'], /^callmood replay: option '--workers <n>' argument '0' is invalid\. --workers must be an integer in \[1, 256\], got '0'$/, 'callmood replay'],
    [['replay', clip, '--report', 'a.html', '--report-dir', 'b'], /^callmood: CALLMOOD_ERR_INVALID_OPTION: --report and --report-dir: give one/, 'callmood replay'],
    [['features', clip, '--format', 'xml'], /^callmood features: option '--format <format>' argument 'xml' is invalid\. Allowed choices are csv, json, npy\.$/, 'callmood features'],
    [['bench', 'mfcc', '--rounds', 'abc'], /^callmood bench mfcc: option '--rounds <n>' argument 'abc' is invalid/, 'callmood bench mfcc'],
    [['policy', 'run'], /^callmood policy run: required option '--events <file>' not specified$/, 'callmood policy run'],
    [['bench'], /^callmood bench: a command is needed: mfcc, calls, model, replay, resample$/, 'callmood bench'],
    [['bench', 'mfc'], /^callmood bench: unknown command 'mfc' \(did you mean mfcc\?\); commands: mfcc, /, 'callmood bench'],
    [['replai', clip], /^callmood: unknown command 'replai' \(did you mean replay\?\)/, 'callmood'],
    [[], /^callmood: a command is needed: features, /, 'callmood'],
  ];
  const results = await Promise.all(cases.map(([args]) => cli(...args)));
  cases.forEach(([args, re, command], i) => {
    const r = results[i];
    assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0], re);
    assert.equal(lines[1], `Run '${command} --help' for its usage.`);
    assert.doesNotMatch(r.stderr, /Usage:|Options:/);
    assert.equal(r.stdout, '');
  });
  // What --help promises is what happens; help itself is not an error.
  const help = await cli('replay', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout.replace(/\s+/g, ' '), /2 for a usage error/);
  for (const args of [['help'], ['help', 'replay'], ['bench', 'help', 'mfcc'], ['--version']]) {
    const r = await cli(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stdout.length > 0);
  }
});

test('--json is the same in every command: a file, or standard output with - or no value; an unwritable file fails before any work', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-json-'));
  const file = join(dir, 'resample.json');
  const [toFile, dash, bare] = await Promise.all([
    cli('bench', 'resample', '--seconds', '2', '--json', file),
    cli('bench', 'resample', '--seconds', '2', '--json', '-'),
    cli('bench', 'resample', '--json', '--seconds', '2'),
  ]);
  for (const r of [toFile, dash, bare]) assert.equal(r.code, 0, r.stderr);
  assert.equal(toFile.stdout, '');
  assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { inRate: number }).inRate, 8000);
  assert.equal((JSON.parse(dash.stdout) as { seconds: number }).seconds, 2);
  assert.equal((JSON.parse(bare.stdout) as { seconds: number }).seconds, 2);

  // policy run: the actions as JSON lines to the file (the lines for people stay on stdout), or to stdout alone.
  const policy = join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({ rules: [{ name: 'key-zero', when: { dtmf: ['0'] }, do: { action: 'flag_customer', tags: ['asked-for-agent'] } }] }));
  const events = join(dir, 'events.jsonl');
  const base = { callSid: 'CA' + '0'.repeat(32), streamSid: 'MZ1', customParameters: {} };
  writeFileSync(events, [{ ...base, type: 'dtmf', timeMs: 1000, track: 'inbound', digit: '0' }].map((e) => JSON.stringify(e)).join('\n') + '\n');
  const actions = join(dir, 'actions.jsonl');
  const [pFile, pDash] = await Promise.all([cli('policy', 'run', policy, '--events', events, '--json', actions), cli('policy', 'run', policy, '--events', events, '--json', '-')]);
  assert.equal(pFile.code, 0, pFile.stderr);
  const written = readFileSync(actions, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; rule: string });
  assert.deepEqual(written.map((a) => [a.type, a.rule]), [['action', 'key-zero']]);
  assert.match(pFile.stdout, /^ +1\.00 s CA00000000… action flag_customer \(dry run\): .*\n1 action\(s\)\n$/);
  assert.equal(pDash.code, 0, pDash.stderr);
  assert.deepEqual(pDash.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { rule: string }).rule), ['key-zero']);

  // A path that cannot be written is a usage error at once: bench calls would otherwise run for a minute first.
  const t0 = Date.now();
  const bad = await cli('bench', 'calls', '--calls', '50', '--seconds', '60', '--json', join(dir, 'no-such-folder', 'calls.json'));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^callmood: CALLMOOD_ERR_INVALID_OPTION: --json .*no-such-folder\/calls\.json: cannot write there: ENOENT\nRun 'callmood bench calls --help' for its usage\.\n$/);
  assert.ok(Date.now() - t0 < 30_000, 'refused before the bench ran');
});

test('features reads headerless G.711: 8 kHz mono by default, --raw-channels 2 for a dual-channel call', async () => {
  const raw = join(root, 'test/fixtures/raw');
  const [mono, dual, bad] = await Promise.all([
    cli('features', join(raw, 'angry_8k.al'), '--summary'),
    cli('features', join(raw, 'call_dual.ulaw'), '--raw-channels', '2', '--channel', 'all', '--summary'),
    cli('features', join(raw, 'angry_8k.ul'), '--raw-rate', '80'),
  ]);
  assert.equal(mono.code, 0, mono.stderr);
  assert.match(mono.stdout, /angry_8k\.al: raw\/alaw, 8000 Hz, 1 channel\(s\), 4\.371 s/);
  assert.equal(dual.code, 0, dual.stderr);
  assert.match(dual.stdout, /call_dual\.ulaw: raw\/mulaw, 8000 Hz, 2 channel\(s\), 4\.371 s\n.*channel 0: .*\n(.*\n){2}channel 1: /);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--raw-rate must be an integer in \[1000, 192000\], got '80'/);
});
