/**
 * `callmood train` on a terminal 80 columns wide (a real pseudo-terminal, through util-linux `script`): every
 * epoch's figures reach the screen whole, the validation pass counts its own clips, and log lines do not land on
 * the bar's line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

/**
 * What a terminal shows, for what these programs send: CSI sequences dropped; ESC 8 (restore the cursor saved by
 * ESC 7 at the start of the bar's line) taken as a carriage return; each line as left after the last redraw.
 */
function screenLines(raw: string): string[] {
  // eslint-disable-next-line no-control-regex
  const plain = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\x1b7/g, '').replace(/\x1b8/g, '\r');
  return plain.split('\n').map((l) => {
    const parts = l.split('\r').filter((p) => p.trim() !== '');
    return parts.length ? parts[parts.length - 1] : '';
  });
}

test('train at 80 columns: whole epoch lines, a bar per pass with its own total, log lines on lines of their own', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-progress-'));
  try {
    const suites = join(dir, 'suites.json');
    writeFileSync(suites, JSON.stringify({ version: 1, speakers: { dev: ['crema-1062', 'tess-OAF'], test: ['tess-YAF'], cross: ['ravdess-21', 'ravdess-22'] }, crossCorpora: ['ravdess'] }));
    const cmd = [
      'stty cols 80 rows 30;',
      'node --import tsx src/cli/main.ts train',
      `--manifest ${root}test/fixtures/manifests/suites-clips.csv --suites ${suites}`,
      `--epochs 2 --patience 2 --batch-size 8 --workers 0 --cache ${join(dir, 'cache')} --out ${join(dir, 'model')}`,
    ].join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const lines = screenLines(r.stdout);
    for (const e of [1, 2]) {
      const line = lines.find((l) => l.startsWith(`epoch ${e}/2:`));
      assert.ok(line, `no line for epoch ${e}:\n${lines.join('\n')}`);
      assert.match(line, /loss \d\.\d{3} acc \d\.\d{3} val_acc \d\.\d{3} val_uar \d\.\d{3} lr \d\.\de-\d/);
    }
    // 24 training clips (crema-1071), 3 validation clips (crema-1062 ×2, tess-OAF): each bar counts its own.
    assert.ok(lines.some((l) => /^features \(training\) \[.*\] 24\/24/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /^features \(validation\) \[.*\] 3\/3/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => /^features \(validation\).* \d+\/24/.test(l)), 'the validation bar shows the training total');
    assert.ok(lines.some((l) => l.startsWith('windows: ')), `the windows line shares a line:\n${lines.join('\n')}`);
    assert.ok(lines.some((l) => l.startsWith('saved ')), 'no saved line');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
