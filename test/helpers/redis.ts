/**
 * A real redis-server for a test: its own loopback port, its own temporary folder, append-only file on, no RDB
 * snapshots; stopped (and its folder removed) by `stop()`. Never a Redis the machine happens to run.
 *
 * `pause()` shuts the server down keeping its folder, and `resume()` starts it again on the same port from the same
 * append-only file: Redis gone for a while, then an operator's restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER = process.env.CALLMOOD_REDIS_SERVER ?? '/usr/bin/redis-server';
export const REDIS_HINT = "install Debian's redis-server once, as root: apt-get update && apt-get install -y redis-server (.ci/run does this on CI)";

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  /** Shuts the server down (its data stays in `dir`). */
  pause(): Promise<void>;
  /** Starts it again on the same port and folder. */
  resume(): Promise<void>;
  /** Shuts it down and removes its folder. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    sock.setTimeout(500, () => { sock.destroy(); resolve(false); });
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) { sock.destroy(); resolve(got.startsWith('+PONG')); }
    });
  });
}

async function launch(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${err.trim()}`);
    if (await ping(port)) return child;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function shutdown(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Starts a redis-server for one test file. Throws, saying what to install, where redis-server is missing. */
export async function startRedis(): Promise<TestRedis> {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing; ${REDIS_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-redis-'));
  let port = 0;
  let child: ChildProcess | null = null;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir);
    } catch (err) {
      if (attempt === 4) throw err;
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    async pause() {
      await shutdown(child);
      child = null;
    },
    async resume() {
      if (child) return;
      child = await launch(port, dir);
    },
    async stop() {
      await shutdown(child);
      child = null;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
