/**
 * Offline replay against the live path, with real parts: recordings written as WAV files from the committed clips,
 * the real model, the real server on loopback fed by the Twilio-like simulator, real worker threads, and the CLI run
 * as a child process.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS } from '../src/config/options.js';
import { createCallmood } from '../src/telephony/server.js';
import { simulateCall } from '../src/telephony/simulator.js';
import { ErrorCodes } from '../src/errors.js';
import type { CallmoodEvent } from '../src/stream/events.js';
import { loadReplayModel, replayFile, resolveReplayOptions, sortEvents, type ReplayModel } from '../src/replay/replay.js';
import { parseChannelSpec, resolveChannels } from '../src/replay/channels.js';
import { replayIds } from '../src/replay/ids.js';
import { runReplays } from '../src/replay/run.js';
import { assertCallmoodError } from './helpers.js';
import { AUDIO, phoneClip, trackContent, withoutWallClock, writeCall } from './helpers/replay-audio.js';
import { decodeMulaw } from '../src/audio/codecs.js';
import { clock, pct } from '../src/report/html.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const TOKEN = 'replay-test-token-123';
let model: ReplayModel;
let dir: string;
let angry: Float32Array;
let neutral: Float32Array;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'callmood-replay-'));
  model = await loadReplayModel();
  angry = await phoneClip('YAF_back_angry.flac');
  // The agent's clip is cut to the caller's length: a dual-channel recording has one length.
  neutral = await phoneClip('YAF_back_neutral.flac', angry.length / 8000);
});

after(async () => {
  await model?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A finer hop than the default, for more windows per short clip; replay and the live server get the same. */
const FINE = { ...DEFAULT_OPTIONS.stream, hopMs: 250, smoothing: 0.3 };

/** Streams `audio` to a real server as Twilio would and returns the events it published for the call. */
async function liveEvents(audio: { inbound: Float32Array; outbound?: Float32Array }, ids: { callSid: string; streamSid: string }): Promise<CallmoodEvent[]> {
  const server = createCallmood({ authToken: TOKEN, engine: 'in-process', stream: FINE }, { logger: () => {}, processMetrics: false, env: {} });
  const got: CallmoodEvent[] = [];
  server.on('event', (e) => got.push(e));
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    await simulateCall({ ...ids, accountSid: 'AC' + '1'.repeat(32), audio }, { url: `ws://127.0.0.1:${port}/media`, pace: 'fast', authToken: TOKEN });
    for (let i = 0; i < 600 && !got.some((e) => e.type === 'call-end'); i++) await new Promise((r) => setTimeout(r, 25));
  } finally {
    await server.close();
  }
  assert.ok(got.some((e) => e.type === 'call-end'), `no call-end from the live server: ${got.map((e) => e.type)}`);
  return got;
}

test('a μ-law recording replayed gives the events of the same audio streamed live through the Twilio handler (caller only, and both tracks)', async () => {
  for (const [file, channels] of [
    ['live-mono.wav', [angry]],
    ['live-dual.wav', [angry, neutral]],
  ] as const) {
    const path = writeCall(dir, file, [...channels]);
    const replayed = await replayFile(path, model, { accountSid: 'AC' + '1'.repeat(32), stream: FINE });
    const live = await liveEvents({ inbound: channels[0], ...(channels[1] ? { outbound: channels[1] } : {}) }, replayed);
    const emotions = replayed.events.filter((e) => e.type === 'emotion');
    assert.ok(emotions.length >= 4 * channels.length, `${file}: only ${emotions.length} emotion events`);
    assert.ok(emotions.some((e) => e.type === 'emotion' && e.track === 'inbound' && e.label === 'angry'), `${file}: the angry caller is never angry`);
    // Live, emotion events go out when their inference ends; compared in call-time order, every field but the wall clock.
    assert.deepEqual(replayed.events.map(withoutWallClock), sortEvents(live).map(withoutWallClock), `${file}: replay vs live`);
    assert.deepEqual(replayed.events, sortEvents(replayed.events), 'replay events come in call-time order');
  }
});

test('dual-channel: the caller comes from the left and the agent from the right; --channels swaps them; bad specs name what is allowed', async () => {
  const stereo = writeCall(dir, 'stereo.wav', [angry, neutral], 8000, 'pcm16');
  const left = writeCall(dir, 'left.wav', [angry], 8000, 'pcm16');
  const right = writeCall(dir, 'right.wav', [neutral], 8000, 'pcm16');
  const both = await replayFile(stereo, model);
  const swapped = await replayFile(stereo, model, { channels: 'caller=right,agent=left' });
  const a = (await replayFile(left, model)).events;
  const b = (await replayFile(right, model)).events;
  assert.deepEqual(both.channels, { inbound: 0, outbound: 1 });
  assert.deepEqual(swapped.channels, { inbound: 1, outbound: 0 });
  // The left channel alone and the caller of the stereo file: the same inbound events; the other way round when swapped.
  assert.ok(trackContent(a, 'inbound').length > 4);
  assert.notDeepEqual(trackContent(a, 'inbound'), trackContent(b, 'inbound'), 'the two clips must differ for this test to mean anything');
  assert.deepEqual(trackContent(both.events, 'inbound'), trackContent(a, 'inbound'));
  assert.deepEqual(trackContent(both.events, 'outbound'), trackContent(b, 'inbound'));
  assert.deepEqual(trackContent(swapped.events, 'inbound'), trackContent(b, 'inbound'));
  assert.deepEqual(trackContent(swapped.events, 'outbound'), trackContent(a, 'inbound'));
  // A mono file is the caller alone; asking for an agent channel it lacks is an error naming its channels.
  assert.deepEqual((await replayFile(left, model)).channels, { inbound: 0 });
  await assert.rejects(replayFile(left, model, { channels: 'caller=left,agent=right' }), (e: { code?: string; message: string }) => e.code === ErrorCodes.UNSUPPORTED_CHANNELS && /agent on channel 1.*1 channel\(s\)/.test(e.message));
  for (const bad of ['caller=middle', 'boss=left', 'caller=left,caller=right', 'caller=left,agent=left', 'caller', '', 'caller=-1']) {
    assertCallmoodError(() => parseChannelSpec(bad), ErrorCodes.INVALID_OPTION, /--channels/, /allowed: .*'caller' or 'agent'.*'left', 'right' or a 0-based index/);
  }
  assert.deepEqual(resolveChannels('caller=2', 3, 'x.wav'), { inbound: 2 });
  assert.deepEqual(resolveChannels(undefined, 1, 'x.wav'), { inbound: 0 });
  assertCallmoodError(() => resolveReplayOptions({ maxBatch: 0 }), ErrorCodes.INVALID_OPTION, /maxBatch is 0; allowed: an integer in \[1, 4096\]/);
});

test('callSid: stable from the file name, or the CallSid the name holds', () => {
  const a = replayIds('calls/monday/a.wav');
  assert.equal(a.callSid, replayIds('calls/monday/a.wav').callSid);
  assert.match(a.callSid, /^CA[0-9a-f]{32}$/);
  assert.match(a.streamSid, /^MZ[0-9a-f]{32}$/);
  assert.notEqual(a.callSid, replayIds('calls/tuesday/a.wav').callSid);
  const sid = 'CA' + '0123456789abcdef'.repeat(2);
  assert.equal(replayIds(`x/${sid}.wav`).callSid, sid);
  assert.equal(replayIds(`recording-${sid.toUpperCase()}-dual.flac`).callSid, sid);
});

test('event order: call-start first, call-end last, else call time, then speech-start, emotion, speech-end, inbound first', () => {
  const b = { callSid: 'CA1', streamSid: 'MZ1', customParameters: {} };
  const ev = (type: string, timeMs: number, track?: string) => ({ ...b, type, timeMs, ...(track ? { track } : {}) }) as unknown as CallmoodEvent;
  const shuffled = [
    ev('speech-end', 2010, 'inbound'),
    ev('call-end', 2000),
    ev('emotion', 1500, 'outbound'),
    ev('emotion', 1500, 'inbound'),
    ev('speech-start', 1500, 'inbound'),
    ev('speech-end', 1500, 'outbound'),
    ev('call-start', 0),
  ];
  assert.deepEqual(
    sortEvents(shuffled).map((e) => `${e.type}@${e.timeMs}${'track' in e ? `/${e.track}` : ''}`),
    ['call-start@0', 'speech-start@1500/inbound', 'emotion@1500/inbound', 'emotion@1500/outbound', 'speech-end@1500/outbound', 'speech-end@2010/inbound', 'call-end@2000'],
  );
});

test('the observer hook: its events come right after the event that caused them; a policy file runs as a dry run', async () => {
  const path = writeCall(dir, 'observed.wav', [angry]);
  const seen: string[] = [];
  const r = await replayFile(path, model, {}, {
    observe: (e) => {
      seen.push(e.type);
      return e.type === 'speech-start' ? [{ ...e, type: 'mark', name: `after speech-start at ${e.timeMs}` }] : [];
    },
  });
  const i = r.events.findIndex((e) => e.type === 'speech-start');
  const next = r.events[i + 1];
  assert.ok(next.type === 'mark' && next.name === `after speech-start at ${r.events[i].timeMs}`);
  const marks = r.events.filter((e) => e.type === 'mark').length;
  assert.equal(marks, r.events.filter((e) => e.type === 'speech-start').length);
  assert.equal(seen.length, r.events.length - marks, 'the observer sees every stream event once, not its own');
  const policy = join(dir, 'policy.json');
  writeFileSync(
    policy,
    JSON.stringify({
      dryRun: false,
      rules: [{ name: 'soften:angry-caller', when: { track: 'inbound', emotion: { label: 'angry', above: 0.5, forMs: 300 } }, do: { action: 'soften_offer', maxLevel: 2 }, once: true, cooldownMs: 0 }],
    }),
  );
  const [out] = await runReplays([{ path, name: 'observed.wav', reportPath: join(dir, 'observed.html') }], { modelDir: 'models/default', replay: {}, policyFile: policy, keepEvents: true }, { workers: 1 });
  assert.ok(out.ok && out.events);
  const k = out.events.findIndex((e) => e.type === 'action');
  assert.ok(k > 0, 'the rule fired');
  const [cause, action, result] = out.events.slice(k - 1, k + 2);
  assert.ok(action.type === 'action' && result.type === 'action-result');
  assert.equal(cause.type, 'emotion');
  assert.equal(action.timeMs, cause.timeMs);
  assert.equal(action.dryRun, true, 'replay never acts: the file said dryRun false, the decision is a dry run');
  assert.equal(action.rule, 'soften:angry-caller');
  assert.equal(result.outcome, 'skipped');
  assert.equal(result.actionId, action.actionId);
  assert.equal(out.digest.actions.length, 1);
  const html = readFileSync(join(dir, 'observed.html'), 'utf8');
  assert.match(html, /<table id="actions">.*soften_offer 1.*soften:angry-caller.*<td>skipped<\/td>/s);
  // A policy file that breaks the schema fails the run at once, naming the field.
  writeFileSync(policy, JSON.stringify({ dryRun: false, rules: [{ name: 'x', when: { track: 'inbound', emotion: { label: 'furious', above: 0.5, forMs: 0 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 }] }));
  await assert.rejects(runReplays([{ path, name: 'o.wav', reportPath: null }], { modelDir: 'models/default', replay: {}, policyFile: policy, keepEvents: false }, { workers: 1 }), (e: { code?: string }) => e.code === ErrorCodes.INVALID_POLICY);
});

test('a folder with a corrupt file: the others are replayed in worker threads, the failure is listed with its reason, and the events do not depend on the number of workers', async () => {
  const folder = join(dir, 'calls');
  mkdirSync(join(folder, 'sub'), { recursive: true });
  writeCall(folder, 'a-dual.wav', [angry, neutral]);
  copyFileSync(join(AUDIO, '03-01-05-02-01-01-21.flac'), join(folder, 'sub', 'b 16k & <c>.flac'));
  copyFileSync(join(root, 'test/fixtures/formats/truncated.flac'), join(folder, 'broken.flac'));
  writeFileSync(join(folder, 'notes.txt'), 'not audio: skipped');
  const jobs = ['a-dual.wav', 'broken.flac', 'sub/b 16k & <c>.flac'].map((name) => ({ path: join(folder, name), name, reportPath: null }));
  const settings = { modelDir: 'models/default', replay: {}, policyFile: null, keepEvents: true };
  const one = await runReplays(jobs, settings, { workers: 1 });
  const two = await runReplays(jobs, settings, { workers: 2 });
  assert.deepEqual(one.map((o) => o.ok), [true, false, true]);
  const fail = two[1];
  assert.ok(!fail.ok);
  assert.equal(fail.error.code, ErrorCodes.CORRUPT_FILE);
  assert.match(fail.error.message, /broken\.flac: .*cut short or damaged/);
  for (const i of [0, 2]) {
    const [x, y] = [one[i], two[i]];
    assert.ok(x.ok && y.ok && x.events && y.events);
    assert.ok(x.events.filter((e) => e.type === 'emotion').length > 3);
    assert.deepEqual(y.events.map(withoutWallClock), x.events.map(withoutWallClock), `${x.name}: 1 vs 2 workers`);
  }

  // The command line over the same folder: exit code 1, every good call's events and report, the failure on the summary page.
  const reports = join(dir, 'reports');
  const events = join(dir, 'events.jsonl');
  // Worker threads are covered above; the usage errors run meanwhile.
  const [cli, bad, single, unwritable] = await Promise.all([
    run(['replay', folder, '--report-dir', reports, '--json', events, '--workers', '1', '--no-policy']),
    run(['replay', join(folder, 'a-dual.wav'), '--channels', 'caller=middle']),
    run(['replay', folder, '--report', join(dir, 'x.html')]),
    run(['replay', folder, '--json', join(dir, 'no-such-folder', 'e.jsonl')]),
  ]);
  assert.equal(cli.code, 1, cli.stderr);
  assert.match(cli.stdout, /broken\.flac {2}FAILED {2}CALLMOOD_ERR_CORRUPT_FILE/);
  assert.match(cli.stderr, /replayed 2 of 3 recording\(s\).*1 failed/);
  const lines = readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CallmoodEvent);
  const expected = one.flatMap((o) => (o.ok ? (o.events ?? []) : []));
  assert.deepEqual(lines.map(withoutWallClock), expected.map(withoutWallClock));
  const index = readFileSync(join(reports, 'index.html'), 'utf8');
  assert.match(index, /CALLMOOD_ERR_CORRUPT_FILE/);
  assert.match(index, /cut short or damaged/);
  assert.match(index, /href="a-dual\.wav\.html"/);
  assert.match(index, /href="sub__b_16k____c_\.flac\.html">sub\/b 16k &amp; &lt;c&gt;\.flac</);
  // A file that is not a recording is not a call, but it is listed as skipped, with the reason, here and on the console.
  const [calls, skippedTable] = index.split('<h2>Skipped</h2>');
  assert.doesNotMatch(calls, /notes\.txt/);
  assert.match(skippedTable ?? '', /<td>notes\.txt<\/td><td>&#39;\.txt&#39; is not an audio file name ending callmood reads<\/td>/);
  assert.match(cli.stderr, /replayed 2 of 3 recording\(s\).*; 1 other file\(s\) skipped/);
  assert.match(cli.stderr, /\n {2}skipped notes\.txt: '\.txt' is not an audio file name ending callmood reads\n/);
  assert.match(readFileSync(join(reports, 'a-dual.wav.html'), 'utf8'), /<svg/);

  // Usage errors exit with 2 and say what is allowed.
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /CALLMOOD_ERR_INVALID_OPTION: --channels 'caller=middle': 'middle' is not a channel; allowed: .*caller=left,agent=right/);
  assert.equal(single.code, 2);
  assert.match(single.stderr, /is a folder: use --report-dir/);
  assert.equal(unwritable.code, 2);
  assert.match(unwritable.stderr, /CALLMOOD_ERR_INVALID_OPTION: --json .*e\.jsonl: cannot write there: ENOENT/);
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('headerless G.711 (.ul, .al, .ulaw): replayed as the μ-law WAV of the same samples would be; --raw-channels 2 gives caller and agent', async () => {
  const RAW = join(root, 'test/fixtures/raw');
  const bytes = readFileSync(join(RAW, 'angry_8k.ul'));
  const asWav = writeCall(dir, 'angry_8k.wav', [decodeMulaw(bytes)]);
  const [raw, wav] = [await replayFile(join(RAW, 'angry_8k.ul'), model), await replayFile(asWav, model)];
  assert.deepEqual(raw.source, { container: 'raw', encoding: 'mulaw', sampleRate: 8000, channels: 1, durationS: bytes.length / 8000 });
  assert.ok(trackContent(raw.events, 'inbound').filter((e) => e.type === 'emotion').length > 3);
  assert.deepEqual(trackContent(raw.events, 'inbound'), trackContent(wav.events, 'inbound'));
  // Two interleaved channels: the caller's track is the mono file's (the agent's clip is the shorter, padded one).
  const dual = await replayFile(join(RAW, 'call_dual.ulaw'), model, { raw: { sampleRate: 8000, channels: 2 } });
  assert.deepEqual(dual.channels, { inbound: 0, outbound: 1 });
  assert.deepEqual(trackContent(dual.events, 'inbound'), trackContent(raw.events, 'inbound'));
  assert.ok(trackContent(dual.events, 'outbound').some((e) => e.type === 'emotion'));

  // The command line, as a user runs it on PBX files.
  const [al, ul2, bad] = await Promise.all([
    run(['replay', join(RAW, 'angry_8k.al'), '--no-policy', '--json', '-']),
    run(['replay', join(RAW, 'call_dual.ulaw'), '--raw-channels', '2', '--no-policy', '--json', '-']),
    run(['replay', join(RAW, 'angry_8k.ul'), '--raw-channels', '0']),
  ]);
  assert.equal(al.code, 0, al.stderr);
  const alEvents = al.stdout.trim().split('\n').map((l) => JSON.parse(l) as CallmoodEvent);
  assert.ok(alEvents.some((e) => e.type === 'emotion' && e.track === 'inbound'));
  assert.match(al.stderr, /angry_8k\.al {2}0:04\.4 {2}caller angry/);
  assert.equal(ul2.code, 0, ul2.stderr);
  const tracks = new Set(ul2.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { track?: string }).track).filter(Boolean));
  assert.deepEqual([...tracks].sort(), ['inbound', 'outbound']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--raw-channels must be an integer in \[1, 32\], got '0'/);
});

test("the console line of a recording names every track's anger: an angry agent is not left out", async () => {
  const path = writeCall(dir, 'angry agent.wav', [neutral, angry]);
  const events = join(dir, 'angry-agent.jsonl');
  const r = await run(['replay', path, '--no-policy', '--json', events]);
  assert.equal(r.code, 0, r.stderr);
  const end = readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CallmoodEvent).find((e) => e.type === 'call-end');
  assert.ok(end?.type === 'call-end' && end.summary.inbound && end.summary.outbound);
  const agent = end.summary.outbound;
  assert.ok(agent.anger.peak >= 0.5 && agent.anger.peakAtMs !== null, `the agent's clip is angry: ${JSON.stringify(agent.anger)}`);
  const part = (who: string, s: typeof agent) =>
    `${who} angry ${clock(s.anger.durationMs)} of ${clock(s.speechMs)} speech${s.anger.peakAtMs !== null ? `, peak ${pct(s.anger.peak)} at ${clock(s.anger.peakAtMs)}` : ''}`;
  // --json FILE: the per-call lines go to stdout.
  assert.equal(r.stdout.trim(), `angry agent.wav  ${clock(end.durationMs)}  ${part('caller', end.summary.inbound)}; ${part('agent', agent)}  actions 0`);
});

test("a folder's index.html counts angry callers by the anger threshold of the policy the replay ran, and says it", async () => {
  const folder = join(dir, 'threshold-calls');
  mkdirSync(folder, { recursive: true });
  writeCall(folder, 'angry.wav', [angry]);
  writeCall(folder, 'calm.wav', [neutral]);
  const policy = join(dir, 'threshold-policy.json');
  writeFileSync(policy, JSON.stringify({ dryRun: true, rules: [{ name: 'early-anger', when: { track: 'inbound', emotion: { label: 'angry', above: 0.3, forMs: 0 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 }] }));
  const reports = join(dir, 'threshold-reports');
  const events = join(dir, 'threshold.jsonl');
  const r = await run(['replay', folder, '--policy', policy, '--report-dir', reports, '--json', events, '--workers', '1']);
  assert.equal(r.code, 0, r.stderr);
  const peaks = readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CallmoodEvent).flatMap((e) => (e.type === 'call-end' ? [e.summary.inbound!.anger.peak] : []));
  const expected = peaks.filter((p) => p >= 0.3).length;
  assert.deepEqual([peaks.length, expected], [2, 1], `caller peaks ${peaks}`);
  const index = readFileSync(join(reports, 'index.html'), 'utf8');
  assert.match(index, new RegExp(`the caller was angry in ${expected} call\\(s\\) \\(peak anger at or over 30%, the policy's threshold\\)`));
  assert.match(index, /<code>early-anger<\/code> \([^)]*threshold-policy\.json\)/);
});
