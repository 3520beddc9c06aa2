/**
 * The command line's one V8 setting: how far the heap may grow past the live data before a full collection.
 *
 * V8 sizes the old generation's limit from the data that survived the last full collection times a growing
 * factor, and for a heap as small as this process's (about 45 MB live: the model, the code, the tables) it left
 * little room: `callmood bench replay --runs 5` ran 14–19 full collections, one every 0.1–0.4 s, each with
 * incremental marking (concurrent work on V8's helper threads, and a write barrier on every pointer store
 * meanwhile), and only 75–79% of the CPU was on the main thread. With a factor of 2 (`--heap-growing-percent=100`)
 * the same runs made 7–8 full collections with 83–90% on the main thread, and the peak RSS went from 195–206 to
 * 207–231 MB. Switching the factor in one process round by round (`node dist/bench/heap-growing.js 8`), a replay
 * took 500 against 537 ms of CPU (median; 60 against 97 ms on the helper threads), 0.91 of it round by round (0.88
 * in an earlier run). The price is memory: the heap may reach about twice its live size between collections.
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
