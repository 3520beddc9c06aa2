/**
 * .ci/run, run for real with `apt-get` and `npm` replaced by stubs on PATH that record their arguments: it installs
 * the system packages only where missing and ends with exactly `npm ci` then `npm test`. Nothing is installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

test('.ci/run installs chromium and redis-server only where missing, then runs exactly npm ci and npm test', () => {
  const stubs = mkdtempSync(join(tmpdir(), 'callmood-ci-'));
  const log = join(stubs, 'calls.log');
  try {
    for (const tool of ['apt-get', 'npm']) {
      writeFileSync(join(stubs, tool), `#!/bin/sh\necho "${tool} $*" >> "${log}"\n`);
      chmodSync(join(stubs, tool), 0o755);
    }
    execFileSync('bash', [join(root, '.ci/run')], { env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` }, stdio: 'pipe' });
    const calls = readFileSync(log, 'utf8').trim().split('\n');
    const missing = [['chromium', '/usr/bin/chromium'], ['redis-server', '/usr/bin/redis-server']].filter(([, bin]) => !existsSync(bin)).map(([pkg]) => pkg);
    const expected = [...(missing.length > 0 ? ['apt-get update', `apt-get install -y ${missing.join(' ')}`] : []), 'npm ci', 'npm test'];
    assert.deepEqual(calls, expected);
  } finally {
    rmSync(stubs, { recursive: true, force: true });
  }
});

