import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MANIFEST_COLUMNS, readManifest } from '../src/data/manifest.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError } from './helpers.js';

const DIR = new URL('./fixtures/manifests/', import.meta.url).pathname;
const AUDIO = new URL('./fixtures/audio/', import.meta.url).pathname;
const SHARED = new URL('../../shared/data/manifest.csv', import.meta.url).pathname;

test('reads the committed clips: absolute paths, every field, durations as numbers', () => {
  const clips = readManifest(DIR + 'clips.csv');
  assert.equal(clips.length, 8);
  assert.deepEqual(clips[0], {
    path: AUDIO + 'OAF_back_angry.flac',
    corpus: 'tess',
    speaker: 'tess-OAF',
    gender: 'female',
    label: 'angry',
    text: 'say the word back',
    intensity: '',
    durationS: 1.539,
  });
  assert.equal(clips[4].intensity, 'strong');
  assert.equal(clips[7].text, "don't forget a jacket");
  for (const c of clips) assert.ok(existsSync(c.path), c.path);
});

test('filters: corpus, speaker, excludeSpeaker and label combine', () => {
  const m = DIR + 'clips.csv';
  assert.deepEqual(readManifest(m, { corpus: ['ravdess'] }).map((c) => c.speaker), ['ravdess-21', 'ravdess-21', 'ravdess-22']);
  assert.equal(readManifest(m, { speaker: ['tess-YAF', 'crema-1062'] }).length, 4);
  assert.equal(readManifest(m, { excludeSpeaker: ['crema-1062'] }).length, 6);
  assert.equal(readManifest(m, { label: ['neutral'] }).length, 3);
  assert.deepEqual(
    readManifest(m, { corpus: ['tess', 'ravdess'], label: ['angry'], excludeSpeaker: ['tess-OAF'] }).map((c) => c.speaker),
    ['tess-YAF', 'ravdess-21', 'ravdess-22'],
  );
  // No rows left: said so, with the filter.
  assertCallmoodError(
    () => readManifest(m, { corpus: ['tess'], speaker: ['ravdess-21'] }),
    ErrorCodes.INVALID_OPTION,
    /no rows left after filtering \(8 rows before; filter corpus=\[tess\] speaker=\[ravdess-21\]\)/,
  );
  // A value that is in no row is a typo, not an empty selection: a mistyped held-out speaker would leak.
  assertCallmoodError(
    () => readManifest(m, { excludeSpeaker: ['crema-1026'] }),
    ErrorCodes.INVALID_OPTION,
    /excludeSpeaker value\(s\) 'crema-1026' do not occur/,
    /crema-1062/,
  );
  assertCallmoodError(() => readManifest(m, { label: ['calm'] }), ErrorCodes.INVALID_OPTION, /label value\(s\) 'calm'/);
  assertCallmoodError(
    () => readManifest(m, { actor: ['x'] } as unknown as { corpus: string[] }),
    ErrorCodes.INVALID_OPTION,
    /unknown field\(s\) actor/,
  );
});

test('columns in any order, a BOM, quoted fields with commas, quotes and newlines, blank lines', () => {
  const clips = readManifest(DIR + 'reordered.csv');
  assert.equal(clips.length, 2);
  assert.equal(clips[0].label, 'calm');
  assert.equal(clips[0].text, 'kids, talking\nby the door');
  assert.equal(clips[0].path, AUDIO + '03-01-01-01-01-01-21.flac');
  assert.equal(clips[1].text, 'say "the" word back');
  assert.equal(clips[1].durationS, 2.027);
});

test('wrong columns name the column and list the expected ones', () => {
  const expected = new RegExp(`expected exactly: ${MANIFEST_COLUMNS.join(',')}`);
  assertCallmoodError(() => readManifest(DIR + 'extra-column.csv'), ErrorCodes.INVALID_OPTION, /line 1/, /unexpected column\(s\) 'valence'/, expected);
  assertCallmoodError(
    () => readManifest(DIR + 'missing-column.csv'),
    ErrorCodes.INVALID_OPTION,
    /missing column\(s\) 'gender', 'intensity'/,
    expected,
  );
});

test('bad rows are reported with their line numbers', () => {
  assertCallmoodError(() => readManifest(DIR + 'bad-rows.csv'), ErrorCodes.INVALID_OPTION, /bad-rows\.csv line 3: duration_s is 'two'/);
  assertCallmoodError(() => readManifest(DIR + 'short-row.csv'), ErrorCodes.INVALID_OPTION, /short-row\.csv line 4: 6 fields; the header has 8/);
  assertCallmoodError(() => readManifest(DIR + 'duplicate.csv'), ErrorCodes.INVALID_OPTION, /line 3: .* is listed again \(first on line 2\)/);
});

test('missing audio files: up to five listed with their lines, the rest counted', () => {
  const err = assertCallmoodError(
    () => readManifest(DIR + 'missing-files.csv'),
    ErrorCodes.FILE_READ,
    /7 of 8 listed audio file\(s\) cannot be found/,
    /line 3: .*gone-1\.flac \(missing\)/,
    /line 6: .*audio \(not a file\)/,
    /and 2 more/,
  );
  assert.doesNotMatch(err.message, /gone-6/);
  // Rows filtered out are not checked.
  assert.equal(readManifest(DIR + 'missing-files.csv', { speaker: ['tess-YAF'] }).length, 1);
});

test('empty manifests and unreadable files', () => {
  assertCallmoodError(() => readManifest(DIR + 'header-only.csv'), ErrorCodes.EMPTY_AUDIO, /header but no rows/);
  const tmp = mkdtempSync(join(tmpdir(), 'callmood-manifest-'));
  try {
    writeFileSync(join(tmp, 'empty.csv'), '');
    assertCallmoodError(() => readManifest(join(tmp, 'empty.csv')), ErrorCodes.EMPTY_AUDIO, /empty/);
    writeFileSync(join(tmp, 'broken.csv'), 'path,corpus\n"unterminated,x\n');
    assertCallmoodError(() => readManifest(join(tmp, 'broken.csv')), ErrorCodes.INVALID_OPTION, /not valid CSV/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  assertCallmoodError(() => readManifest(DIR + 'nope.csv'), ErrorCodes.FILE_READ, /nope\.csv: cannot read the manifest \(no such file\)/);
});

test('the shared training manifest', { skip: existsSync(SHARED) ? false : 'no ../shared/data here' }, () => {
  const clips = readManifest(SHARED);
  // Six corpora since 2026-12-05 (ASED, nEMO and URDU added; TESS stored as Ogg Opus): see ../shared/data/README.md.
  assert.equal(clips.length, 17398);
  const count = (f: (c: (typeof clips)[number]) => string) => {
    const m = new Map<string, number>();
    for (const c of clips) m.set(f(c), (m.get(f(c)) ?? 0) + 1);
    return m;
  };
  assert.deepEqual(Object.fromEntries(count((c) => c.corpus)), { tess: 2800, ravdess: 1440, 'crema-d': 5803, ased: 2474, nemo: 4481, urdu: 400 });
  assert.equal(count((c) => c.speaker).size, 200);
  assert.equal(count((c) => c.label).get('calm'), 192);
  assert.ok(clips.filter((c) => c.corpus === 'tess').every((c) => c.path.endsWith('.opus')), 'TESS is stored as Ogg Opus');
  const heldOut = Array.from({ length: 10 }, (_, i) => `crema-${1062 + i}`);
  const train = readManifest(SHARED, { excludeSpeaker: heldOut });
  const test_ = readManifest(SHARED, { speaker: heldOut });
  assert.equal(train.length + test_.length, 17398);
  assert.ok(test_.every((c) => c.corpus === 'crema-d'));
});
