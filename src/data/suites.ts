/**
 * Evaluation suites: which speakers are held out of training, and what each held-out group may be used for.
 *
 * - `dev`: speakers for choosing (early stopping during training, and every comparison between recipes);
 * - `test`: speakers for the model card only, never for a choice;
 * - `cross`: whole corpora never trained on (a language and a recording condition the model never met), for the
 *   model card only.
 *
 * The three never meet, and a model trained with a suites file hears none of their speakers: the file
 * (`models/suites.json`) is written down before the runs that use it, so a choice cannot drift towards the test.
 */
import { readFileSync } from 'node:fs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { ClipRecord } from './types.js';

/** The held-out groups of a suites file. */
export const SUITE_NAMES = ['dev', 'test', 'cross'] as const;
/** One of the held-out groups. */
export type SuiteName = (typeof SUITE_NAMES)[number];

/** A suites file (`models/suites.json`). */
export interface Suites {
  version: 1;
  /** Speakers of each group. */
  speakers: Record<SuiteName, string[]>;
  /** Corpora held out whole (their speakers are `cross`). */
  crossCorpora: string[];
  /** How the groups were drawn (a command someone can rerun). */
  madeBy?: string;
  /** The decision rule, written before the runs that use it. */
  rule?: string;
}

const fail = (where: string, why: string) => new CallmoodError(ErrorCodes.INVALID_OPTION, `${where}: ${why}`);

/** Checks a parsed suites object: every group a list of distinct speaker ids, no speaker in two groups. */
export function checkSuites(value: unknown, where = 'suites'): Suites {
  if (typeof value !== 'object' || value === null) throw fail(where, 'not a JSON object');
  const v = value as Partial<Suites>;
  if (v.version !== 1) throw fail(where, `version is ${JSON.stringify(v.version)}; allowed: 1`);
  if (typeof v.speakers !== 'object' || v.speakers === null) throw fail(where, `'speakers' must be an object with ${SUITE_NAMES.join(', ')}`);
  const seen = new Map<string, SuiteName>();
  for (const name of SUITE_NAMES) {
    const list = (v.speakers as Record<string, unknown>)[name];
    if (!Array.isArray(list) || list.some((s) => typeof s !== 'string' || s === '')) {
      throw fail(where, `speakers.${name} must be a list of speaker ids`);
    }
    for (const s of list as string[]) {
      const other = seen.get(s);
      if (other) throw fail(where, `speaker '${s}' is in both '${other}' and '${name}'; the groups must never meet`);
      seen.set(s, name);
    }
  }
  const extra = Object.keys(v.speakers).filter((k) => !(SUITE_NAMES as readonly string[]).includes(k));
  if (extra.length) throw fail(where, `unknown group(s) ${extra.join(', ')} in speakers; allowed: ${SUITE_NAMES.join(', ')}`);
  if (!Array.isArray(v.crossCorpora) || v.crossCorpora.some((c) => typeof c !== 'string')) throw fail(where, `'crossCorpora' must be a list of corpus names`);
  return v as Suites;
}

/** Reads and checks a suites file. */
export function readSuites(path: string): Suites {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CallmoodError(ErrorCodes.FILE_READ, `${path}: cannot read the suites file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw fail(path, `not valid JSON: ${(err as Error).message}`);
  }
  return checkSuites(parsed, path);
}

/** Every held-out speaker (dev, test and cross). */
export function heldOutSpeakers(s: Suites): Set<string> {
  return new Set([...s.speakers.dev, ...s.speakers.test, ...s.speakers.cross]);
}

/**
 * Checks the suites against a manifest's clips: every listed speaker occurs (a typo would leak a speaker into
 * training; `checkPresence` false skips this for clips already filtered, once checked on the whole manifest), every speaker of a cross corpus is in `cross` and only there. Returns the clips, split: `train` (no
 * held-out speaker), `dev`, and the clips of `test` and `cross` (never to be trained or validated on).
 */
export function splitBySuites(clips: ClipRecord[], s: Suites, where = 'suites', checkPresence = true): Record<'train' | SuiteName, ClipRecord[]> {
  const present = new Set(clips.map((c) => c.speaker));
  for (const name of checkPresence ? SUITE_NAMES : []) {
    const missing = s.speakers[name].filter((sp) => !present.has(sp));
    if (missing.length) throw fail(where, `${name} speaker(s) ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''} do not occur in the manifest`);
  }
  const group = new Map<string, SuiteName>();
  for (const name of SUITE_NAMES) for (const sp of s.speakers[name]) group.set(sp, name);
  const cross = new Set(s.crossCorpora);
  const out: Record<'train' | SuiteName, ClipRecord[]> = { train: [], dev: [], test: [], cross: [] };
  for (const c of clips) {
    const g = group.get(c.speaker);
    if (cross.has(c.corpus) && g !== 'cross') throw fail(where, `speaker '${c.speaker}' of cross corpus '${c.corpus}' is not in the cross group`);
    if (g === 'cross' && !cross.has(c.corpus)) throw fail(where, `speaker '${c.speaker}' is in the cross group but corpus '${c.corpus}' is not in crossCorpora`);
    out[g ?? 'train'].push(c);
  }
  return out;
}
