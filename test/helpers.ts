import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CallmoodError } from '../src/errors.js';

/** How to get the browser the browser tests need: said when it is missing. */
export const CHROMIUM_HINT =
  "install Debian's chromium once, as root: apt-get update && apt-get install -y chromium (.ci/run does this on CI), " +
  'or set CALLMOOD_CHROMIUM to a Chromium or Chrome binary';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * chromium's path for the browser tests (they drive it headless through puppeteer-core, which brings no browser of
 * its own): CALLMOOD_CHROMIUM if set, else `chromium` or `chromium-browser` on PATH. Tests never install anything:
 * where it is missing this throws, so the browser tests fail saying what to install rather than pass having checked
 * nothing.
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.CALLMOOD_CHROMIUM;
  if (given !== undefined && given !== '') {
    if (isExecutable(given)) return given;
    throw new Error(`CALLMOOD_CHROMIUM is ${JSON.stringify(given)}, which is not an executable file; ${CHROMIUM_HINT}`);
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const path = join(dir, name);
      if (isExecutable(path)) return path;
    }
  }
  throw new Error(`the browser tests need chromium, and there is none on PATH; ${CHROMIUM_HINT}`);
}

/** Asserts that `fn` throws a CallmoodError with `code` whose message matches every pattern. */
export function assertCallmoodError(fn: () => unknown, code: string, ...patterns: RegExp[]): CallmoodError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return checkError(caught, code, patterns);
}

/** Async variant of assertCallmoodError. */
export async function assertRejectsCallmood(p: Promise<unknown>, code: string, ...patterns: RegExp[]): Promise<CallmoodError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  return checkError(caught, code, patterns);
}

function checkError(caught: unknown, code: string, patterns: RegExp[]): CallmoodError {
  assert.ok(caught instanceof CallmoodError, `expected a CallmoodError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `wrong code for: ${caught.message}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

/** Deterministic PRNG (mulberry32) so tests with noise and random chunkings repeat exactly. */
export { mulberry32 as rng } from '../src/util/random.js';

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Splits `x` into consecutive chunks whose sizes come from `sizes()` until it is used up. */
export function chunked<T extends Float32Array>(x: T, sizes: () => number): T[] {
  const out: T[] = [];
  for (let i = 0; i < x.length; ) {
    const n = Math.max(1, Math.floor(sizes()));
    out.push(x.subarray(i, i + n) as T);
    i += n;
  }
  return out;
}

/** Polls `cond` every 10 ms until it returns something truthy, or throws after `timeoutMs` naming `what`. */
export async function waitFor<T>(cond: () => T | null | undefined | false, what: string | (() => string), timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs the CLI from source in the project root: exit code and output (never throws on a non-zero exit). */
export async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const root = fileURLToPath(new URL('../', import.meta.url));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
