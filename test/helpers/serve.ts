/**
 * `callmood serve` as a real child process on a free loopback port: its config written to a temporary folder, the
 * port read from its CALLMOOD_LISTENING record (JSON logs on stdout), its output kept for assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'src/cli/main.ts');

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  url: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  /** The JSON log records printed so far. */
  records(): Array<Record<string, unknown> & { code?: string; msg?: string }>;
}

/** The environment a child gets: this one without the test runner's markers, plus `extra`. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

function jsonRecords(out: string): Array<Record<string, unknown> & { code?: string; msg?: string }> {
  const recs = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      recs.push(JSON.parse(line));
    } catch {
      // A line still being written.
    }
  }
  return recs;
}

/** The port of a CALLMOOD_LISTENING record among JSON logs, or null before it. */
export function jsonListeningPort(out: string): number | null {
  const rec = jsonRecords(out).find((r) => r.code === 'CALLMOOD_LISTENING');
  return rec ? (rec.port as number) : null;
}

/**
 * Starts `callmood serve --port 0 --config <config> …extra` and resolves once `portOf` finds the port in its stdout
 * (default: the CALLMOOD_LISTENING record of JSON logs).
 */
export async function startServe(
  config: object,
  env: NodeJS.ProcessEnv,
  extra: string[] = [],
  timeoutMs = 90_000,
  portOf: (stdout: string) => number | null = jsonListeningPort,
): Promise<ServeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-serve-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--port', '0', '--host', '127.0.0.1', '--config', join(dir, 'config.json'), ...extra], {
    cwd: ROOT,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const port = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${err}\n${out.slice(-2000)}`);
      return portOf(out);
    },
    () => `the port in serve's stdout (stdout so far: ${JSON.stringify(out.slice(-500))}; stderr: ${JSON.stringify(err.slice(-500))})`,
    timeoutMs,
  );
  return { child, port, url: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, exit, records: () => jsonRecords(out) };
}
