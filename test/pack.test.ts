/**
 * The package as `npm pack` makes it: it holds what a user runs (the compiled src/, the shipped model and its card,
 * the default config) and nothing of the lab (tests, their helpers and fixtures, benchmark scripts, experiments);
 * and `callmood bench` works from it, installed where no clone is near. The build is `npm pack`'s own (`prepare`).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));

interface PackResult {
  filename: string;
  entryCount: number;
  files: { path: string }[];
}

/** `npm pack … --json`: the JSON array it prints (lifecycle scripts' output, if any, comes before it). */
async function npmPack(...args: string[]): Promise<PackResult> {
  const { stdout } = await run('npm', ['pack', '--json', ...args], { cwd: root, maxBuffer: 64 << 20 });
  return (JSON.parse(stdout.slice(stdout.indexOf('\n[') + 1 || stdout.indexOf('['))) as PackResult[])[0];
}

let dryRun: PackResult;
before(async () => {
  // Runs `prepare` (the TypeScript build) as publishing does, so dist/ is what would be published.
  dryRun = await npmPack('--dry-run');
});

test('npm pack lists only what a user runs: compiled src/, the shipped model and card, the config', () => {
  const paths = dryRun.files.map((f) => f.path);
  assert.equal(paths.length, dryRun.entryCount);
  const allowed = [
    /^package\.json$/,
    /^README\.md$/,
    /^LICENSE(\.md)?$/,
    /^dist\/src\/.+\.(js|d\.ts|js\.map)$/,
    /^models\/(default|commercial)\/[^/]+$/,
    /^models\/MODEL_CARD\.md$/,
    /^models\/suites\.json$/,
    /^config\/[^/]+\.json$/,
  ];
  const stray = paths.filter((p) => !allowed.some((re) => re.test(p)));
  assert.deepEqual(stray, [], `files a user does not run: ${stray.slice(0, 20).join(', ')}`);
  for (const lab of [/^test\//, /^dist\/test\//, /^bench\//, /^dist\/bench\//, /^scripts\//, /^models\/experiments\//, /^src\//]) {
    assert.ok(!paths.some((p) => lab.test(p)), `nothing under ${lab.source}`);
  }
  // Every compiled file comes from a source file that exists today (a stale build would ship deleted code).
  const orphans = paths
    .filter((p) => p.startsWith('dist/src/'))
    .map((p) => p.slice('dist/'.length).replace(/\.(js|d\.ts|js\.map)$/, '.ts'))
    .filter((src) => !existsSync(join(root, src)));
  assert.deepEqual([...new Set(orphans)], [], 'compiled files whose source is gone');
  // What the runtime needs is there: the CLI, the API, the model, its inference worker and the benchmarks it runs.
  for (const need of ['dist/src/cli/main.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/stream/engine-worker.js', 'models/default/model.json', 'models/default/metadata.json', 'models/commercial/model.json', 'models/commercial/weights.bin', 'config/default.json', 'dist/src/bench/calls.js', 'dist/src/bench/replay.js']) {
    assert.ok(paths.includes(need), `${need} is shipped`);
  }
});

test('callmood bench replay and bench calls run from the packed package, installed away from any clone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-pack-'));
  try {
    // dist/ was just built by the dry run; packing again without scripts packs that same build.
    const packed = await npmPack('--ignore-scripts', '--pack-destination', dir);
    assert.deepEqual(packed.files.map((f) => f.path).sort(), dryRun.files.map((f) => f.path).sort());
    await run('tar', ['-xzf', join(dir, packed.filename), '-C', dir]);
    const pkg = join(dir, 'package');
    // Its dependencies, as an install would provide them.
    symlinkSync(realpathSync(join(root, 'node_modules')), join(pkg, 'node_modules'), 'dir');
    // Run from an unrelated folder, as a user's project would be: nothing resolves against a clone.
    const cwd = mkdtempSync(join(dir, 'user-'));
    const cli = join(pkg, 'dist/src/cli/main.js');
    const env = { ...process.env, NODE_OPTIONS: '' };

    const replay = await run(process.execPath, [cli, 'bench', 'replay', '--seconds', '5', '--runs', '1', '--json', '-'], { cwd, env, timeout: 120_000 });
    const r = JSON.parse(replay.stdout) as { seconds: number; windows: number; realtimeFactor: number };
    assert.equal(r.seconds, 5);
    assert.ok(r.windows > 0 && r.realtimeFactor > 0, replay.stdout);

    const calls = await run(process.execPath, [cli, 'bench', 'calls', '--calls', '1', '--seconds', '3', '--json', '-'], { cwd, env, timeout: 120_000 });
    const c = JSON.parse(calls.stdout) as { calls: number; windows: number; maxEndLagMs: number };
    assert.equal(c.calls, 1);
    assert.ok(c.windows > 0, calls.stdout);
    assert.ok(Number.isFinite(c.maxEndLagMs), `the call ended: ${calls.stdout}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
