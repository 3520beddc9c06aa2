/**
 * Reading a manifest CSV (`path,corpus,speaker,gender,label,text,intensity,duration_s`, paths relative to the
 * CSV's folder) into clip records, with filters for speaker-independent splits. Every problem is a CallmoodError
 * whose message names the file, the line and what is wrong.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { ClipRecord } from './types.js';

/** The manifest's columns, in the order the shared manifest has them. */
export const MANIFEST_COLUMNS = ['path', 'corpus', 'speaker', 'gender', 'label', 'text', 'intensity', 'duration_s'] as const;

/** Which rows to keep. Each list is "any of"; the lists combine with "and". Values must occur in the manifest. */
export interface ManifestFilter {
  corpus?: string[];
  speaker?: string[];
  /** Speakers to leave out (held-out test speakers). */
  excludeSpeaker?: string[];
  label?: string[];
}

/** Missing files listed by name in the error; the rest are counted. */
const MAX_LISTED_MISSING = 5;

/**
 * Reads a manifest and returns its clips, filtered, with absolute paths. Checks: the header has exactly the
 * manifest columns (any order); every row has a path, speaker and label and a non-negative `duration_s`; no path
 * appears twice; every filter value occurs in the manifest (a typo in `excludeSpeaker` would otherwise leak a test
 * speaker into training); the kept rows are not empty; every kept row's file exists (one stat each; files of rows
 * filtered out are not checked, so a manifest can be used with only some corpora present).
 */
export function readManifest(csvPath: string, filter: ManifestFilter = {}): ClipRecord[] {
  const name = csvPath;
  let text: string;
  try {
    text = readFileSync(csvPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CallmoodError(
      ErrorCodes.FILE_READ,
      `${name}: cannot read the manifest (${code === 'ENOENT' ? 'no such file' : (err as Error).message})`,
      { cause: err, permanent: code === 'ENOENT' || code === 'EISDIR' },
    );
  }

  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { bom: true, info: true, skip_empty_lines: true, relax_column_count: true }) as unknown as {
      record: string[];
      info: { lines: number };
    }[];
  } catch (err) {
    const line = (err as { lines?: number }).lines;
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `${name}${line ? ` line ${line}` : ''}: not valid CSV: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (records.length === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, `${name}: the manifest is empty (no header, no rows)`);

  const header = records[0].record.map((h) => h.trim());
  const expected = MANIFEST_COLUMNS.join(',');
  const extra = header.filter((h) => !(MANIFEST_COLUMNS as readonly string[]).includes(h));
  const missing = MANIFEST_COLUMNS.filter((c) => !header.includes(c));
  const dup = header.filter((h, i) => header.indexOf(h) !== i);
  if (extra.length > 0 || missing.length > 0 || dup.length > 0) {
    const parts = [
      extra.length ? `unexpected column(s) ${extra.map((c) => `'${c}'`).join(', ')}` : '',
      missing.length ? `missing column(s) ${missing.map((c) => `'${c}'`).join(', ')}` : '',
      dup.length ? `repeated column(s) ${dup.map((c) => `'${c}'`).join(', ')}` : '',
    ].filter(Boolean);
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${name} line 1: ${parts.join('; ')}; expected exactly: ${expected}`);
  }
  const col = Object.fromEntries(MANIFEST_COLUMNS.map((c) => [c, header.indexOf(c)])) as Record<(typeof MANIFEST_COLUMNS)[number], number>;

  const root = dirname(resolve(csvPath));
  const all: { clip: ClipRecord; line: number }[] = [];
  const seen = new Map<string, number>();
  for (let r = 1; r < records.length; r++) {
    const { record, info } = records[r];
    const line = info.lines;
    const at = `${name} line ${line}`;
    if (record.length !== header.length) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${at}: ${record.length} fields; the header has ${header.length} (${expected})`);
    }
    const get = (c: (typeof MANIFEST_COLUMNS)[number]) => record[col[c]];
    for (const required of ['path', 'speaker', 'label'] as const) {
      if (get(required).trim() === '') throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${at}: '${required}' is empty`);
    }
    const durationText = get('duration_s').trim();
    const durationS = Number(durationText);
    if (durationText === '' || !Number.isFinite(durationS) || durationS < 0) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${at}: duration_s is '${get('duration_s')}'; allowed: a number of seconds ≥ 0`);
    }
    const path = resolve(root, get('path').trim());
    const before = seen.get(path);
    if (before !== undefined) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${at}: '${get('path')}' is listed again (first on line ${before})`);
    }
    seen.set(path, line);
    all.push({
      clip: {
        path,
        corpus: get('corpus').trim(),
        speaker: get('speaker').trim(),
        gender: get('gender').trim(),
        label: get('label').trim(),
        text: get('text'),
        intensity: get('intensity').trim(),
        durationS,
      },
      line,
    });
  }
  if (all.length === 0) throw new CallmoodError(ErrorCodes.EMPTY_AUDIO, `${name}: the manifest has a header but no rows`);

  const kept = applyFilter(name, all, filter);

  const absent: { path: string; line: number; why: string }[] = [];
  for (const { clip, line } of kept) {
    try {
      if (!statSync(clip.path).isFile()) absent.push({ path: clip.path, line, why: 'not a file' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      absent.push({ path: clip.path, line, why: code === 'ENOENT' ? 'missing' : (code ?? (err as Error).message) });
    }
  }
  if (absent.length > 0) {
    const listed = absent
      .slice(0, MAX_LISTED_MISSING)
      .map((a) => `line ${a.line}: ${a.path} (${a.why})`)
      .join('; ');
    const more = absent.length > MAX_LISTED_MISSING ? `; and ${absent.length - MAX_LISTED_MISSING} more` : '';
    throw new CallmoodError(
      ErrorCodes.FILE_READ,
      `${name}: ${absent.length} of ${kept.length} listed audio file(s) cannot be found: ${listed}${more}`,
    );
  }
  return kept.map((k) => k.clip);
}

function applyFilter(name: string, rows: { clip: ClipRecord; line: number }[], filter: ManifestFilter): { clip: ClipRecord; line: number }[] {
  const fields = { corpus: 'corpus', speaker: 'speaker', excludeSpeaker: 'speaker', label: 'label' } as const;
  const known = Object.keys(fields);
  const unknownKeys = Object.keys(filter).filter((k) => !known.includes(k));
  if (unknownKeys.length > 0) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `manifest filter: unknown field(s) ${unknownKeys.join(', ')}; allowed: ${known.join(', ')}`);
  }
  for (const key of known as (keyof ManifestFilter)[]) {
    const values = filter[key];
    if (values === undefined) continue;
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `manifest filter: ${key} must be an array of strings`);
    }
    const present = new Set(rows.map((r) => r.clip[fields[key]]));
    const absent = values.filter((v) => !present.has(v));
    if (absent.length > 0) {
      const sample = [...present].sort().slice(0, 12).join(', ');
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `manifest filter: ${key} value(s) ${absent.map((v) => `'${v}'`).join(', ')} do not occur in ${name}; ` +
          `its ${fields[key]} values: ${sample}${present.size > 12 ? `, … (${present.size} in all)` : ''}`,
      );
    }
  }
  const inList = (list: string[] | undefined, v: string) => list === undefined || list.includes(v);
  const kept = rows.filter(
    ({ clip }) =>
      inList(filter.corpus, clip.corpus) &&
      inList(filter.speaker, clip.speaker) &&
      inList(filter.label, clip.label) &&
      !(filter.excludeSpeaker ?? []).includes(clip.speaker),
  );
  if (kept.length === 0) {
    const used = (known as (keyof ManifestFilter)[])
      .filter((k) => filter[k] !== undefined)
      .map((k) => `${k}=[${(filter[k] as string[]).join(', ')}]`)
      .join(' ');
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `${name}: no rows left after filtering (${rows.length} rows before; filter ${used || '(none)'})`,
    );
  }
  return kept;
}
