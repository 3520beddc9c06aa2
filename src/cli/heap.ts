/**
 * The command line's one V8 setting: how far the heap may grow past the live data before a full collection.
 *
 * V8 sizes the old generation's limit from the data that survived the last full collection times a growing
 * factor, and for a heap as small as this process's (the model, the code, the tables) that means frequent full
 * collections with incremental marking on V8's helper threads; a factor of 2 (`--heap-growing-percent=100`) halves
 * them and makes a replay cheaper (bench/heap-growing.ts; figures in bench/RESULTS.md, "V8's heap growing factor").
 * The price is memory: the heap may reach about twice its live size between collections.
 *
 * Only the `callmood` process sets it (a library must not change its host's V8 flags). CALLMOOD_HEAP_GROWING_PERCENT
 * overrides the value (0 leaves V8's own heuristics), and a `--heap-growing-percent` given to node itself wins.
 */
import v8 from 'node:v8';
import { CallmoodError, ErrorCodes } from '../errors.js';

/** The command line's heap growing percent: the heap may grow to (1 + 100/100) = 2× its live size. */
export const DEFAULT_HEAP_GROWING_PERCENT = 100;

/**
 * Sets V8's heap growing factor for this process; returns the percent set, 0 when V8's heuristics were left alone,
 * or null when node was given its own `--heap-growing-percent`. Throws INVALID_OPTION for a bad environment value.
 */
export function tuneHeap(env: NodeJS.ProcessEnv = process.env, nodeFlags: readonly string[] = [...process.execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)]): number | null {
  if (nodeFlags.some((f) => /^--heap[-_]growing[-_]percent\b/.test(f))) return null;
  const raw = env.CALLMOOD_HEAP_GROWING_PERCENT;
  const pct = raw === undefined || raw.trim() === '' ? DEFAULT_HEAP_GROWING_PERCENT : Number(raw);
  if (!(Number.isInteger(pct) && pct >= 0 && pct <= 1000)) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `CALLMOOD_HEAP_GROWING_PERCENT is ${JSON.stringify(raw)}; allowed: an integer in [0, 1000] (0 leaves V8's own heap sizing)`,
    );
  }
  if (pct > 0) v8.setFlagsFromString(`--heap-growing-percent=${pct}`);
  return pct;
}
