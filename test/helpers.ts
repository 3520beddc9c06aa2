import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CallmoodError } from '../src/errors.js';

/**
 * chromium's path for the browser tests, installing it with the project's script (scripts/setup-chromium.sh) when
 * missing; null and why when it cannot be had here, so the test can say so when it skips.
 */
export function findChromium(): { path: string } | { why: string } {
  const which = () => spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim();
  if (which()) return { path: which() };
  const script = fileURLToPath(new URL('../scripts/setup-chromium.sh', import.meta.url));
  const r = spawnSync('bash', [script], { encoding: 'utf8', timeout: 8 * 60_000 });
  if (which()) return { path: which() };
  return { why: `chromium is missing and scripts/setup-chromium.sh could not install it (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').pop()}` };
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
