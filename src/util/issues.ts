/**
 * Validation errors in plain words, shared by every options schema: the field, its value, what is allowed, and for
 * a misspelt key the keys allowed there and the nearest one. zod's own issue text ("Invalid input: expected array,
 * received undefined") is written for developers of schemas, not for people editing a config file, so it is never
 * shown: each issue kind is put in words here, and a schema leaf may carry its own text (`allowedAt`).
 */
import type { z } from 'zod';
import { describeValue, valueAt } from './values.js';

/** Edit distance (insert, delete, substitute, swap two neighbours) between two short strings. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate nearest to `word`, or undefined when none is near: the same name in another case, else the closest
 * by edit distance within a third of the longer name (at least 1, at most 3), so `stallTimoutMs` finds
 * `stallTimeoutMs` and `port` finds nothing among unrelated names.
 */
export function nearestName(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const sameCase = candidates.find((c) => c.toLowerCase() === lower);
  if (sameCase !== undefined) return sameCase;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(lower, c.toLowerCase());
    const limit = Math.min(3, Math.max(1, Math.floor(Math.max(word.length, c.length) / 3)));
    if (dist <= limit && dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return best;
}

/** `unknown option a.b (did you mean a.c?); allowed here: c, d`: one sentence for keys a schema does not know. */
export function unknownKeysText(noun: string, prefix: string, keys: readonly string[], known: readonly string[]): string {
  const guesses = keys.map((k) => nearestName(k, known)).filter((g): g is string => g !== undefined);
  const guess = keys.length === 1 && guesses.length === 1 ? ` (did you mean ${prefix}${guesses[0]}?)` : '';
  const listed = known.length > 0 ? `; allowed here: ${known.join(', ')}` : '';
  return `unknown ${noun} ${keys.map((k) => prefix + k).join(', ')}${guess}${listed}`;
}

type Def = { type?: string; shape?: Record<string, z.ZodType>; element?: z.ZodType; innerType?: z.ZodType; options?: z.ZodType[] };
const defOf = (s: z.ZodType | undefined): Def | undefined => (s as unknown as { def?: Def } | undefined)?.def;

/** Unwraps nullable, optional and default wrappers. */
function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  let cur = s;
  for (let i = 0; i < 8 && cur; i++) {
    const d = defOf(cur);
    if (d && (d.type === 'nullable' || d.type === 'optional' || d.type === 'default' || d.type === 'prefault') && d.innerType) cur = d.innerType;
    else break;
  }
  return cur;
}

/** The sub-schema at `path` of an object/array/record schema, or undefined where the path leaves what it can follow. */
export function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (const key of path) {
    const d = defOf(unwrap(s));
    if (d?.type === 'object' && d.shape) s = d.shape[String(key)];
    else if (d?.type === 'array' && d.element) s = d.element;
    else return undefined;
  }
  return s;
}

/** The field names of the object schema at `path` (empty when it is not an object). */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const d = defOf(unwrap(schemaAt(schema, path)));
  return d?.type === 'object' && d.shape ? Object.keys(d.shape) : [];
}

const ARTICLE = (w: string) => (/^[aeiou]/i.test(w) ? `an ${w}` : `a ${w}`);
const bound = (inclusive: boolean | undefined, v: unknown, lo: boolean) => `${lo ? (inclusive === false ? '>' : '≥') : inclusive === false ? '<' : '≤'} ${String(v)}`;

/**
 * What an issue allows, in words, from the issue alone (for a leaf that carries no text of its own): the type
 * expected (for an object, with its fields), the bound, the values of an enum, the format.
 */
export function allowedFromIssue(issue: z.core.$ZodIssue, schema?: z.ZodType): string {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.expected === 'object' && schema) {
        const fields = keysAt(schema, issue.path);
        if (fields.length > 0) return `an object with the fields ${fields.join(', ')}`;
      }
      const nullable = schema && defOf(schemaAt(schema, issue.path))?.type === 'nullable';
      return `${nullable ? 'null or ' : ''}${ARTICLE(String(issue.expected))}`;
    }
    case 'too_small':
    case 'too_big': {
      const lo = issue.code === 'too_small';
      const limit = lo ? issue.minimum : issue.maximum;
      if (issue.origin === 'string') return `a text of ${lo ? 'at least' : 'at most'} ${String(limit)} characters`;
      if (issue.origin === 'array' || issue.origin === 'set') return `${lo ? 'at least' : 'at most'} ${String(limit)} item(s)`;
      return `a number ${bound(issue.inclusive, limit, lo)}`;
    }
    case 'invalid_value':
      return issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_format':
      return issue.format === 'regex' ? `text matching ${(issue as { pattern?: string }).pattern ?? 'the expected pattern'}` : `a valid ${issue.format}`;
    case 'not_multiple_of':
      return `a multiple of ${String(issue.divisor)}`;
    case 'invalid_union':
      return 'one of the forms the field takes';
    case 'invalid_key':
      return 'other key names';
    case 'invalid_element':
      return 'other values';
    case 'custom':
      // Our own refinements' messages are written for people.
      return issue.message;
    default:
      return 'another value';
  }
}

/** How an options schema's errors are put. */
export interface IssueFormat {
  /** The word before a field name, e.g. `option` or `replay option`. */
  noun: string;
  /** The allowed text a schema leaf carries, if any (e.g. 'an integer (ms) in [100, 600000]'). */
  allowedAt?: (path: readonly PropertyKey[]) => string | undefined;
  /** Fields whose values are secrets: shown as their length only. */
  secret?: (path: readonly PropertyKey[]) => boolean;
}

/** A path as the options' messages write it: `twiml.before.0.say`. */
export function fieldName(path: readonly PropertyKey[]): string {
  return path.map(String).join('.') || '(the options)';
}

/**
 * One sentence for the first issue of a failed parse of `input` against `schema`: `option stream.hopMs is 5;
 * allowed: ms in [10, 5000]`, `option paths is null; allowed: an object with the fields media, events, …`, or for a
 * misspelt key `unknown option stream.hopMS (did you mean stream.hopMs?); allowed here: hopMs, smoothing, …`.
 */
export function describeIssues(error: z.ZodError, input: unknown, schema: z.ZodType, format: IssueFormat): string {
  const issue = error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    const prefix = issue.path.length ? `${fieldName(issue.path)}.` : '';
    return unknownKeysText(format.noun, prefix, issue.keys, keysAt(schema, issue.path));
  }
  const value = valueAt(input, issue.path);
  const shown =
    format.secret?.(issue.path) && typeof value === 'string' ? `a secret of ${value.length} character(s)` : describeValue(value);
  const allowed = (issue.code !== 'custom' && format.allowedAt?.(issue.path)) || allowedFromIssue(issue, schema);
  return `${format.noun} ${fieldName(issue.path)} is ${shown}; allowed: ${allowed}`;
}
