/**
 * Defects of the CRM webhook outbox found from outside (issue 16), with real processes, real file systems and a real
 * HTTP server standing in for the CRM: a stale lock whose PID lives on (a container's PID 1, in a real PID namespace),
 * the drain on shutdown (in process and through `callmood serve` and SIGTERM), a read-only outbox folder and a full
 * disk (real tmpfs mounts in a private mount namespace, so the machine's own mounts are never touched).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import twilio from 'twilio';
import { WebSocket } from 'ws';
import { WebhookSink } from '../src/sinks/webhooks.js';
import { resolveWebhookOptions } from '../src/config/webhook-options.js';
import { webhookStatus } from '../src/sinks/webhook-admin.js';
import { CallmoodError, ErrorCodes } from '../src/errors.js';
import { FakeCrm, checkOrder, markEvent } from './helpers/webhook-crm.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const SECRET = 'whsec_defects_0123456789abcdef';
const tmp = () => mkdtempSync(join(tmpdir(), 'callmood-defects-'));
const childEnv = { ...process.env, WEBHOOK_TEST_SECRET: SECRET };
const helper = join(root, 'test/helpers/outbox-child.ts');
const nodeArgs = (...args: string[]) => [process.execPath, '--import', 'tsx', helper, ...args];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `argv` to its end (bounded) and returns its output. */
function run(argv: string[], timeoutMs = 60_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0], argv.slice(1), { cwd: root, env: childEnv, encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The last JSON line a helper printed. */
function result<T>(r: { stdout: string; stderr: string; status: number | null }): T {
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`no result (exit ${r.status}): ${r.stdout}\n${r.stderr}`);
  }
}

/** Starts `argv` and waits for a stdout line matching `ready`. */
async function start(argv: string[], ready: RegExp): Promise<{ p: ChildProcess; match: RegExpExecArray; err: () => string }> {
  const p = spawn(argv[0], argv.slice(1), { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${ready} within 60 s: ${out} ${err}`)), 60_000);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    p.on('exit', (code) => reject(new Error(`exited ${code} before ${ready}: ${out} ${err}`)));
  });
  return { p, match, err: () => err };
}

/** Field `n` (1-based, as in proc(5)) of /proc/<pid>/stat; the command name in field 2 may hold spaces. */
function statField(pid: number | string, n: number): string | undefined {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[n - 3];
}

/** Host PIDs of the children of `ppid` (field 4 of /proc/<pid>/stat). */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(statField(d, 4)) === ppid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function requireTool(argv: string[], what: string): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `${what} is not permitted here (${argv.join(' ')}: ${r.stderr.trim() || r.error?.message}); this test needs root on Linux with util-linux`);
}

/** The PID a lock file names (its first number, whatever the format). */
const lockPid = (dir: string) => Number(/\d+/.exec(readFileSync(join(dir, 'lock'), 'utf8'))?.[0]);

type OpenResult = { ok: boolean; code?: string; message?: string; lines: Array<{ code: string; message: string }> };

// ---------------------------------------------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------------------------------------------

test('a container restart: the lock left by a killed PID 1 is taken over by the next PID 1 (unshare --pid --fork --mount-proc)', async () => {
  requireTool(['unshare', '--pid', '--fork', '--mount-proc', 'true'], 'a PID namespace');
  const dir = tmp();
  const url = 'http://127.0.0.1:9/hook';
  const ns = (...args: string[]) => ['unshare', '--pid', '--fork', '--mount-proc', ...nodeArgs(...args)];
  const first = await start(ns('hold', dir, url), /locked (\d+)/);
  try {
    assert.equal(first.match[1], '1', 'callmood is PID 1 in its namespace');
    assert.equal(lockPid(dir), 1, 'the lock names PID 1');
    // The crash: SIGKILL to the namespace's PID 1 (its host PID is the child of unshare); it leaves its lock behind.
    const [pid1] = childrenOf(first.p.pid!);
    assert.ok(pid1 > 0, 'found the namespace init on the host');
    process.kill(pid1, 'SIGKILL');
    await new Promise((r) => first.p.once('exit', r));
  } finally {
    first.p.kill('SIGKILL');
  }
  assert.equal(lockPid(dir), 1, 'the lock outlived its holder');
  // The restarted container: PID 1 again, and PID 1 is alive (it is the new process itself).
  const again = result<OpenResult>(run(ns('open', dir, url)));
  assert.equal(again.ok, true, `the restart was refused: ${again.message}`);
});

test('a lock whose PID now belongs to another live process is taken over; a live holder still refuses; an old PID-only lock of our own PID too', async () => {
  const dir = tmp();
  const url = 'http://127.0.0.1:9/hook';
  const holder = await start(nodeArgs('hold', dir, url), /locked (\d+)/);
  let lockText: string;
  try {
    const pid = Number(holder.match[1]);
    assert.throws(() => new WebhookSink({ outboxDir: dir, endpoints: [{ name: 'crm', url, events: ['mark'], secret: SECRET }] }), (e: unknown) => {
      assert.ok(e instanceof CallmoodError);
      assert.match(e.message, new RegExp(`in use by process ${pid};`));
      return true;
    });
    lockText = readFileSync(join(dir, 'lock'), 'utf8');
    assert.equal(JSON.parse(lockText).startTime, statField(pid, 22), 'the lock names its holder by PID and start time');
  } finally {
    holder.p.kill('SIGKILL');
    await new Promise((r) => holder.p.once('exit', r));
  }
  // PID reuse, for real: the lock of the dead holder now names a PID that a live process (started later) holds.
  const other = spawn('sleep', ['30']);
  try {
    await sleep(50);
    assert.notEqual(statField(other.pid!, 22), JSON.parse(lockText!).startTime);
    writeFileSync(join(dir, 'lock'), lockText!.replace(/"pid":\d+/, `"pid":${other.pid}`));
    const r = result<OpenResult>(run(nodeArgs('open', dir, url)));
    assert.equal(r.ok, true, `refused although process ${other.pid} is not the holder: ${r.message}`);
  } finally {
    other.kill('SIGKILL');
  }
  // A lock written by an older version (the PID alone) naming this very process cannot be this process's.
  writeFileSync(join(dir, 'lock'), `${process.pid}\n`);
  const sink = await WebhookSink.open({ outboxDir: dir, endpoints: [{ name: 'crm', url, events: ['mark'], secret: SECRET }] });
  await sink.close(0, 0);
});

// ---------------------------------------------------------------------------------------------------------------
// The drain on shutdown
// ---------------------------------------------------------------------------------------------------------------

test('close() with the CRM up delivers what is pending first (in order per call); with the CRM down it keeps the rest at once', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = () => ({ status: 200, delayMs: 20 });
  const dir = tmp();
  const lines: Array<{ code: string; message: string }> = [];
  const options = { outboxDir: dir, endpoints: [{ name: 'crm', url: crm.url, events: ['mark'], secret: SECRET, concurrency: 2 }] };
  const sink = await WebhookSink.open(options, { logger: (_l, code, message) => lines.push({ code, message }) });
  for (let n = 0; n < 15; n++) for (const c of ['CA1', 'CA2', 'CA3']) sink.enqueue(markEvent(c, n));
  // 45 events one at a time per call at 20 ms each: about 300 ms of delivering, all of it after close() was called.
  const t0 = Date.now();
  await sink.close();
  const took = Date.now() - t0;
  assert.equal(checkOrder(crm.received, ['CA1', 'CA2', 'CA3'], 15), null);
  assert.deepEqual((await webhookStatus(dir)).map((r) => r.pending), [0]);
  assert.ok(took < 5000, `close took ${took} ms`);
  assert.ok(lines.some((l) => l.code === 'CALLMOOD_WEBHOOK_DRAIN' && /45 of 45 pending events delivered/.test(l.message)), JSON.stringify(lines));

  // The CRM down: every event fails and waits a backoff longer than the drain; close does not wait for nothing.
  crm.respond = () => ({ status: 503 });
  const down = await WebhookSink.open({ ...options, drainTimeoutMs: 3000, endpoints: [{ ...options.endpoints[0], backoff: { baseMs: 10_000, maxMs: 10_000, jitter: 0 } }] });
  for (let n = 0; n < 5; n++) down.enqueue(markEvent('CA9', n));
  await crm.until(() => crm.received.some((r) => r.callSid === 'CA9'));
  const t1 = Date.now();
  await down.close();
  assert.ok(Date.now() - t1 < 1000, `close waited ${Date.now() - t1} ms for retries that come after the drain`);
  assert.deepEqual((await webhookStatus(dir)).map((r) => r.pending), [5]);
  await crm.stop();
});

test('webhooks.drainTimeoutMs is validated like the other options', () => {
  assert.equal(resolveWebhookOptions({}).drainTimeoutMs, 5000);
  assert.equal(resolveWebhookOptions({ drainTimeoutMs: 0 }).drainTimeoutMs, 0);
  for (const bad of [-1, 1.5, 600_001, '5000']) {
    assert.throws(
      () => resolveWebhookOptions({ drainTimeoutMs: bad as number }),
      (e: unknown) => e instanceof CallmoodError && e.code === ErrorCodes.INVALID_OPTION && /option webhooks\.drainTimeoutMs is .*; allowed: an integer \(ms\) in \[0, 600000\]/.test(e.message),
    );
  }
});

test('SIGTERM to callmood serve with the CRM up: the call-ends of the calls it cut are delivered before it exits', async () => {
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = () => ({ status: 200, delayMs: 30 });
  const dir = tmp();
  const token = 'sigterm-drain-token-0123456789';
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      engine: 'in-process',
      policy: { enabled: false },
      webhooks: { outboxDir: join(dir, 'outbox'), endpoints: [{ name: 'crm', url: crm.url, events: ['call-start', 'call-end'], secretEnv: 'WEBHOOK_TEST_SECRET' }] },
    }),
  );
  const serve = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', '--port', '0', '--host', '127.0.0.1', '--config', config], {
    cwd: root,
    env: { ...childEnv, TWILIO_AUTH_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  serve.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => serve.on('exit', (code) => r(code)));
  // The logs: pino JSON records on stdout.
  let out = '';
  try {
    const port = await new Promise<number>((resolve, reject) => {
      serve.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      serve.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
    const url = `ws://127.0.0.1:${port}/media`;
    const calls = ['CA' + 'a'.repeat(32), 'CA' + 'b'.repeat(32), 'CA' + 'c'.repeat(32)];
    const sockets = await Promise.all(
      calls.map(async (callSid) => {
        const ws = new WebSocket(url, { headers: { 'X-Twilio-Signature': twilio.getExpectedTwilioSignature(token, url, {}) } });
        ws.on('error', () => {});
        await new Promise((r) => ws.once('open', r));
        ws.send(JSON.stringify({ event: 'start', streamSid: `MZ${callSid}`, start: { callSid, tracks: ['inbound'], mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } } }));
        for (let k = 0; k < 10; k++) ws.send(JSON.stringify({ event: 'media', media: { track: 'inbound', timestamp: String(k * 20), payload: Buffer.alloc(160, 0xff).toString('base64') } }));
        return ws;
      }),
    );
    await crm.until(() => calls.every((c) => crm.delivered().some((r) => r.callSid === c && r.type === 'call-start')), 20_000, 'the call-starts');
    serve.kill('SIGTERM');
    assert.equal(await Promise.race([exited, sleep(30_000).then(() => 'still running')]), 0, err);
    for (const ws of sockets) ws.terminate();
    for (const c of calls) {
      const end = crm.delivered().find((r) => r.callSid === c && r.type === 'call-end');
      assert.ok(end, `call-end of ${c} not delivered before exit: ${crm.received.length} requests\n${err}`);
      assert.equal(JSON.parse(end.raw).event.reason, 'shutdown');
    }
    assert.deepEqual((await webhookStatus(join(dir, 'outbox'))).map((r) => r.pending), [0]);
    const drain = out.trim().split('\n').map((l) => JSON.parse(l) as { code: string; msg: string }).filter((r) => r.code === 'CALLMOOD_WEBHOOK_DRAIN');
    assert.ok(drain.some((r) => /^close: (\d+) of \1 pending events delivered/.test(r.msg)), JSON.stringify(drain));
  } finally {
    serve.kill('SIGKILL');
    await crm.stop();
  }
});

// ---------------------------------------------------------------------------------------------------------------
// The disk
// ---------------------------------------------------------------------------------------------------------------

/** Runs the helper in a private mount namespace with a fresh tmpfs at `mnt` (mounted with `mountOpts`). */
function inTmpfs(mnt: string, mountOpts: string, pre: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = `set -e; mount -t tmpfs -o ${mountOpts} callmood-test ${q(mnt)}; ${pre} exec ${nodeArgs(...args).map(q).join(' ')}`;
  return run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script]);
}

test('a read-only outbox folder is reported as EROFS (read-only file system), not ENOENT', () => {
  requireTool(['unshare', '--mount', 'true'], 'a mount namespace');
  const mnt = tmp();
  const r = result<OpenResult>(inTmpfs(mnt, 'ro,size=1m', '', ['open', join(mnt, 'callmood/outbox'), 'http://127.0.0.1:9/hook']));
  assert.equal(r.ok, false);
  assert.equal(r.code, ErrorCodes.FILE_READ);
  assert.match(r.message!, /cannot create the webhook outbox folder .*callmood\/outbox: EROFS \(read-only file system\)/);
  assert.doesNotMatch(r.message!, /ENOENT/);
});

test('a full disk: one log line while writes fail (not one per flush), nothing half-written, and the next start blames no crash', async () => {
  requireTool(['unshare', '--mount', 'true'], 'a mount namespace');
  const crm = new FakeCrm(SECRET);
  await crm.start();
  crm.respond = () => ({ status: 503 });
  const mnt = tmp();
  const filler = join(mnt, 'filler');
  try {
    // 256 KiB, a quarter of it taken by a file the helper deletes before its restart (an operator freeing space).
    const r = inTmpfs(mnt, 'size=256k', `head -c 65536 /dev/zero > '${filler}';`, ['fill', join(mnt, 'outbox'), crm.url, filler]);
    const out = result<{ durable: number; failed: number; pending: number; whileFull: Array<{ code: string; message: string }>; restart: Array<{ code: string; message: string }> }>(r);
    assert.ok(out.durable >= 50, `${out.durable} events written before the disk filled`);
    assert.equal(out.failed, 20, 'twenty flushes failed');
    const failures = out.whileFull.filter((l) => /FAILED|DISK/.test(l.code));
    assert.equal(failures.length, 1, JSON.stringify(failures));
    assert.equal(failures[0].code, 'CALLMOOD_WEBHOOK_WRITE_FAILED');
    assert.match(failures[0].message, /ENOSPC \(no space left on device\)/);
    assert.deepEqual(out.restart.filter((l) => /TORN|crash/i.test(`${l.code} ${l.message}`)), [], 'the next start finds no damaged line');
    assert.equal(out.pending, out.durable, 'every event reported durable is pending after the restart, and no other');
  } finally {
    await crm.stop();
  }
});
