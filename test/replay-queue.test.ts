/**
 * Distributed replay with real parts: a real redis-server on loopback (test/helpers/redis.ts), recordings written
 * from the committed clips, the shipped model, and `callmood replay --queue`, `callmood worker` and `callmood queue
 * status` run as child processes of the CLI. Locks are short (2 s) so that a killed worker's job comes back soon.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { waitFor } from './helpers.js';
import { phoneClip, writeCall } from './helpers/replay-audio.js';
import { replayIds } from '../src/replay/ids.js';
import type { CallmoodEvent } from '../src/stream/events.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const main = join(root, 'src/cli/main.ts');
let redis: TestRedis;
let dir: string;
let calls: string;
const children: ChildProcess[] = [];

before(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'callmood-replayq-'));
  calls = join(dir, 'calls');
  mkdirSync(calls);
  const clips = [await phoneClip('YAF_back_angry.flac'), await phoneClip('YAF_back_neutral.flac'), await phoneClip('OAF_back_angry.flac')];
  // Six calls of 1–2 minutes (a clip repeated): long enough that a replay is still running when its worker is killed.
  for (let i = 0; i < 6; i++) {
    const clip = clips[i % clips.length];
    const reps = Math.ceil((60 + 10 * i) / (clip.length / 8000));
    const x = new Float32Array(clip.length * reps);
    for (let r = 0; r < reps; r++) x.set(clip, r * clip.length);
    writeCall(calls, `call-${i}.wav`, [x]);
  }
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The CLI as a child process, killed after `timeoutMs`: exit code and output. */
function run(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', main, ...args], { cwd: root, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A `callmood worker` child process whose output lines are collected. */
function startWorker(prefix: string, extra: string[] = []): { child: ChildProcess; lines: string[]; id: string } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', main, 'worker', '--redis', redis.url, '--prefix', prefix, '--lock-duration', '2000', '--stalled-interval', '500', ...extra],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  const lines: string[] = [];
  let partial = '';
  const take = (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  return { child, lines, id: `${hostname()}:${child.pid}` };
}

const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)));

async function status(prefix: string): Promise<{ counts: Record<string, number>; failed: { name: string; attempts: number; error: string }[] }> {
  const r = await run(['queue', 'status', '--redis', redis.url, '--prefix', prefix, '--json']);
  assert.equal(r.code, 0, `queue status: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const recordings = () => readdirSync(calls).filter((f) => f.endsWith('.wav')).sort().map((f) => join(calls, f));

test('two workers replay a queue; one is SIGKILLed mid-file and its file is replayed by the other, every file once, completely', { timeout: 90_000 }, async () => {
  const prefix = 'kill';
  const out = join(dir, 'out-kill');
  const files = recordings();
  const queued = await run(['replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', out, '--no-wait', ...files]);
  assert.equal(queued.code, 0, queued.stderr);
  assert.match(queued.stderr, new RegExp(`^enqueued ${files.length} recording\\(s\\) on ${redis.url} \\(prefix kill\\); 0 already there$`, 'm'));

  // A starts first, so that it surely has a job (B could otherwise replay all six before A is up). When A says its
  // first job is active (its replay thread is still loading the model then), B is started and A is killed at once.
  const a = startWorker(prefix, ['--concurrency', '1']);
  const activeLine = await waitFor(() => a.lines.find((l) => / active call-\d\.wav job r[0-9a-f]{32} /.test(l)), () => `worker A to take a job: ${a.lines.join('\n')}`, 40_000);
  const b = startWorker(prefix, ['--concurrency', '1']);
  a.child.kill('SIGKILL');
  await exited(a.child);
  const killedJob = /job (r[0-9a-f]{32})/.exec(activeLine)![1];
  const killedName = /active (call-\d\.wav)/.exec(activeLine)![1];

  // Enqueuing the same files again adds nothing, and follows the jobs to the end.
  const followed = await run(['replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', out, ...files], 60_000);
  assert.equal(followed.code, 0, `replay --queue: ${followed.stderr}`);
  assert.match(followed.stderr, new RegExp(`^enqueued 0 recording\\(s\\) .*; ${files.length} already there$`, 'm'));
  assert.match(followed.stderr, new RegExp(`^queue: done ${files.length}/${files.length}, failed 0, active 0, waiting 0$`, 'm'));
  assert.match(followed.stderr, new RegExp(`^replayed ${files.length} of ${files.length} recording\\(s\\); reports in `, 'm'));

  // The killed job was put back (stalled) and finished by B; no job was finished twice.
  const queue = new Queue('replay', { connection: { host: '127.0.0.1', port: redis.port }, prefix });
  try {
    const job = await queue.getJob(killedJob);
    assert.ok(job, `job ${killedJob} is in the queue`);
    assert.equal(job.returnvalue?.worker, b.id, `${killedName} was finished by worker B`);
    assert.ok(job.stalledCounter >= 1, `${killedName} was found stalled after A was killed (stalledCounter ${job.stalledCounter})`);
  } finally {
    await queue.close();
  }
  const done = [...a.lines, ...b.lines].filter((l) => / done /.test(l)).map((l) => /job (r[0-9a-f]{32})/.exec(l)![1]);
  assert.equal(done.length, files.length, `one 'done' per file: ${done.join(' ')}`);
  assert.equal(new Set(done).size, files.length, 'no job done twice');
  assert.ok(!a.lines.some((l) => / done /.test(l)), 'A finished nothing before it was killed');

  // Every output is there once, complete: events from call-start to call-end, a whole report, index.html.
  const finals = readdirSync(out).filter((f) => !f.startsWith('.')).sort();
  assert.deepEqual(finals, [...files.flatMap((_, i) => [`call-${i}.wav.events.jsonl`, `call-${i}.wav.html`]), 'index.html'].sort());
  for (let i = 0; i < files.length; i++) {
    const events = readFileSync(join(out, `call-${i}.wav.events.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CallmoodEvent);
    assert.equal(events[0].type, 'call-start', `call-${i}: call-start first`);
    assert.equal(events.at(-1)!.type, 'call-end', `call-${i}: call-end last`);
    assert.ok(events.filter((e) => e.type === 'emotion').length > 50, `call-${i}: emotion events`);
    assert.ok(events.every((e) => e.callSid === replayIds(`call-${i}.wav`).callSid), `call-${i}: its own callSid`);
    assert.match(readFileSync(join(out, `call-${i}.wav.html`), 'utf8'), /<\/html>\s*$/, `call-${i}: a whole report`);
  }
  const index = readFileSync(join(out, 'index.html'), 'utf8');
  for (let i = 0; i < files.length; i++) assert.ok(index.includes(`href="call-${i}.wav.html"`), `index.html links call-${i}`);

  const s = await status(prefix);
  assert.deepEqual({ ...s.counts }, { waiting: 0, active: 0, delayed: 0, completed: files.length, failed: 0, paused: 0 });

  // SIGTERM: B closes and exits 0.
  b.child.kill('SIGTERM');
  assert.equal(await exited(b.child), 0, `worker B exits 0 on SIGTERM: ${b.lines.slice(-3).join('\n')}`);
  assert.ok(b.lines.some((l) => / SIGTERM: taking no more jobs/.test(l)) && b.lines.at(-1)!.endsWith(' closed'), `B says it closes: ${b.lines.slice(-3).join('\n')}`);
});

test('a broken file fails after its retries with its error shown; the others are replayed; mended, queue retry puts it back and it is replayed; killed attempts\' temporary files are swept', { timeout: 90_000 }, async () => {
  const prefix = 'broken';
  const out = join(dir, 'out-broken');
  const src = join(dir, 'with-broken');
  mkdirSync(src);
  const clip = await phoneClip('YAF_back_angry.flac');
  writeCall(src, 'a.wav', [clip]);
  writeCall(src, 'b.wav', [clip]);
  writeFileSync(join(src, 'broken.wav'), 'RIFF, but no audio in it');
  // What killed attempts leave: a temporary report of a.wav written an hour ago is swept; b.wav's, as recent as a
  // live attempt's, stays.
  mkdirSync(out, { recursive: true });
  const stale = join(out, '.a.wav.html.4242-dead.tmp');
  const recent = join(out, '.b.wav.html.4343-live.tmp');
  writeFileSync(stale, '<html');
  writeFileSync(recent, '<html');
  const hourAgo = new Date(Date.now() - 3600_000);
  utimesSync(stale, hourAgo, hourAgo);
  const later = new Date(Date.now() + 3600_000);
  utimesSync(recent, later, later);
  const w = startWorker(prefix, ['--concurrency', '2']);
  const r = await run(['replay', '--queue', redis.url, '--prefix', prefix, '--attempts', '2', '--report-dir', out, src]);
  assert.equal(r.code, 1, `exit code 1 when a job failed: ${r.stderr}`);
  assert.match(r.stderr, /^broken\.wav {2}FAILED after 2 attempt\(s\): CALLMOOD_ERR_\w+: .*broken\.wav/m);
  assert.match(r.stderr, /^replayed 2 of 3 recording\(s\); 1 failed; reports in /m);
  assert.match(r.stderr, new RegExp(`^once mended: callmood queue retry --redis ${redis.url} --prefix broken puts the failed back$`, 'm'));
  assert.ok(w.lines.some((l) => / failed broken\.wav job r[0-9a-f]{32} attempt 1\/2, will retry: CALLMOOD_ERR_/.test(l)), `the worker retried: ${w.lines.join('\n')}`);
  for (const name of ['a', 'b']) assert.match(readFileSync(join(out, `${name}.wav.html`), 'utf8'), /<\/html>\s*$/, `${name}: a whole report`);
  assert.ok(!readdirSync(out).includes('broken.wav.html'), 'no report for the broken file');
  const s = await status(prefix);
  assert.equal(s.counts.completed, 2);
  assert.equal(s.counts.failed, 1);
  assert.equal(s.failed[0].name, 'broken.wav');
  assert.equal(s.failed[0].attempts, 2);
  assert.match(s.failed[0].error, /^CALLMOOD_ERR_\w+: .*broken\.wav/);
  const files = readdirSync(out);
  assert.ok(!files.includes('.a.wav.html.4242-dead.tmp') && files.includes('.b.wav.html.4343-live.tmp'), `the stale temporary file swept, the recent one kept: ${files.join(' ')}`);
  assert.ok(w.lines.some((l) => / swept 1 temporary file\(s\) of a\.wav left by killed attempts$/.test(l)), `the sweep is logged: ${w.lines.join('\n')}`);

  // Retrying a name that has no failed job puts nothing back; once the file is mended, its job is put back with its
  // attempts anew and replayed by the running worker.
  const none = await run(['queue', 'retry', '--redis', redis.url, '--prefix', prefix, '--name', 'a.wav']);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /put back 0 failed job\(s\), left 1 that did not match\n {2}no failed job is named or numbered a\.wav/);
  writeCall(src, 'broken.wav', [clip]);
  const linesBefore = w.lines.length;
  const retried = await run(['queue', 'retry', '--redis', redis.url, '--prefix', prefix, '--json', '-']);
  assert.equal(retried.code, 0, retried.stderr);
  const put = JSON.parse(retried.stdout) as { retried: { name: string; error: string }[]; left: number; refused: unknown[] };
  assert.deepEqual(put.retried.map((f) => f.name), ['broken.wav']);
  assert.deepEqual([put.left, put.refused.length], [0, 0]);
  assert.match(put.retried[0].error, /^CALLMOOD_ERR_\w+: .*broken\.wav/, 'the error it had is reported');
  await waitFor(() => w.lines.some((l) => / done broken\.wav job /.test(l)), () => `the mended file replayed: ${w.lines.slice(-5).join('\n')}`, 40_000);
  assert.ok(w.lines.slice(linesBefore).some((l) => / active broken\.wav job r[0-9a-f]{32} attempt 1\/2$/.test(l)), `the retried job starts again at attempt 1: ${w.lines.slice(linesBefore).join('\n')}`);
  const after = await status(prefix);
  assert.deepEqual([after.counts.completed, after.counts.failed], [3, 0]);
  assert.match(readFileSync(join(out, 'broken.wav.html'), 'utf8'), /<\/html>\s*$/, 'the mended file has its whole report');
  w.child.kill('SIGTERM');
  assert.equal(await exited(w.child), 0, 'the worker exits 0 on SIGTERM');
});

test('enqueuing the same files twice adds no job; a changed file is a new job; SIGTERM finishes the active job; usage errors say what is allowed', { timeout: 60_000 }, async () => {
  const prefix = 'twice';
  const out = join(dir, 'out-twice');
  const files = recordings();
  const args = ['replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', out, '--no-wait', '--json', '-'];
  const first = await run([...args, calls]);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(JSON.parse(first.stdout), { queue: redis.url, prefix, recordings: files.length, enqueued: files.length, already: 0, skipped: [] });
  const second = await run([...args, ...files]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(JSON.parse(second.stdout).already, files.length, second.stdout);
  assert.equal((await status(prefix)).counts.waiting, files.length);
  // A file whose modification time changed is replayed again.
  const t = new Date(Date.now() + 5000);
  utimesSync(files[0], t, t);
  const third = await run([...args, calls]);
  assert.deepEqual({ enqueued: JSON.parse(third.stdout).enqueued, already: JSON.parse(third.stdout).already }, { enqueued: 1, already: files.length - 1 });
  assert.equal((await status(prefix)).counts.waiting, files.length + 1);

  // SIGTERM while a job is active: the worker finishes it, takes no other, and exits 0.
  const w = startWorker(prefix, ['--concurrency', '1']);
  const active = await waitFor(() => w.lines.find((l) => / active call-\d\.wav job /.test(l)), () => `a job taken: ${w.lines.join('\n')}`, 40_000);
  w.child.kill('SIGTERM');
  assert.equal(await exited(w.child), 0, `exit 0 after SIGTERM: ${w.lines.join('\n')}`);
  const job = /job (r[0-9a-f]{32})/.exec(active)![1];
  assert.ok(w.lines.some((l) => l.includes(` done call-`) && l.includes(job)), `the active job was finished: ${w.lines.join('\n')}`);
  assert.equal(w.lines.filter((l) => /Z active /.test(l)).length, 1, `no job taken after SIGTERM: ${w.lines.join('\n')}`);
  const after = (await status(prefix)).counts;
  assert.deepEqual({ completed: after.completed, waiting: after.waiting, active: after.active }, { completed: 1, waiting: files.length, active: 0 });

  for (const [argv, pattern] of [
    [['replay', '--queue', 'http://localhost:6379', '--report-dir', out, calls], /^callmood replay: option '--queue <url>' argument 'http:\/\/localhost:6379' is invalid\. --queue must be redis:\/\/\[user:password@\]host:port\[\/db\] \(or rediss:\/\/\), got/],
    [['replay', '--queue', redis.url, calls], /^callmood: CALLMOOD_ERR_INVALID_OPTION: --queue needs --report-dir DIR/],
    [['replay', '--prefix', 'p', calls], /^callmood: CALLMOOD_ERR_INVALID_OPTION: --prefix goes with --queue/],
    [['replay', files[0], files[1]], /^callmood: CALLMOOD_ERR_INVALID_OPTION: 2 paths given: replay takes one file or folder, several only with --queue/],
    [['worker', '--redis', 'redis://127.0.0.1:1', '--prefix', prefix], /^callmood: CALLMOOD_ERR_INVALID_OPTION: --redis redis:\/\/127\.0\.0\.1:1: cannot reach Redis: ECONNREFUSED$/m],
    [['queue', 'status', '--redis', redis.url, '--prefix', 'a b'], /^callmood queue status: option '--prefix <p>' argument 'a b' is invalid\. --prefix must be letters, digits/],
  ] as const) {
    const r = await run([...argv]);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
  }
});

test('a follower that loses Redis waits for it and finishes once it is back: the jobs were safe in Redis', { timeout: 90_000 }, async () => {
  const prefix = 'outage';
  const out = join(dir, 'out-outage');
  const src = join(dir, 'outage');
  mkdirSync(src);
  writeCall(src, 'a.wav', [await phoneClip('YAF_back_angry.flac')]);
  const follower = spawn(process.execPath, ['--import', 'tsx', main, 'replay', '--queue', redis.url, '--prefix', prefix, '--report-dir', out, src], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(follower);
  let err = '';
  follower.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  follower.stdout!.resume();
  // No worker yet: the job waits in Redis while Redis itself goes away.
  await waitFor(() => /^enqueued 1 recording/m.test(err), () => `the follower to enqueue: ${err}`, 30_000);
  await redis.pause();
  try {
    await waitFor(() => /^queue: lost Redis \(/m.test(err), () => `the follower to say it lost Redis: ${err}`, 30_000);
    assert.equal(follower.exitCode, null, `the follower is still waiting: ${err}`);
  } finally {
    await redis.resume();
  }
  const w = startWorker(prefix);
  assert.equal(await exited(follower), 0, `the follower finishes: ${err}`);
  assert.match(err, /^queue: Redis is back$/m);
  assert.match(err, /^replayed 1 of 1 recording\(s\); reports in /m);
  assert.match(readFileSync(join(out, 'a.wav.html'), 'utf8'), /<\/html>\s*$/, 'a whole report');
  assert.doesNotMatch(err, /ECONNREFUSED[\s\S]*errno/, 'connection errors are said in words, without stacks');
  w.child.kill('SIGTERM');
  assert.equal(await exited(w.child), 0, 'the worker exits 0 on SIGTERM');
});
