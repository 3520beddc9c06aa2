/**
 * Draws the evaluation suites (models/suites.json) from a manifest: per corpus, seeded and balanced by gender,
 * speakers for `dev` (choosing) and `test` (the model card only), and whole corpora for `cross`. Rerunning it with
 * the same manifest and seed writes the same file. Usage:
 *   node --import tsx scripts/make-suites.ts [MANIFEST] [OUT]    (defaults: ../shared/data/manifest.csv, models/suites.json)
 *
 * Sizes per corpus (dev, test): TESS has two speakers, so one each and TESS is never trained on; CREMA-D always puts
 * crema-1071 in test (the committed floor-test clips are that actor's) and draws the rest. ASED draws only among
 * speakers with at least 20 clips, so each held-out speaker says something; smaller ones stay in training. URDU,
 * the only unacted corpus, is held out whole: the cross-language, cross-condition figure.
 */
import { writeFileSync } from 'node:fs';
import { readManifest } from '../src/data/manifest.js';
import { checkSuites, type Suites } from '../src/data/suites.js';
import { mulberry32 } from '../src/util/random.js';

const manifest = process.argv[2] ?? '../shared/data/manifest.csv';
const out = process.argv[3] ?? 'models/suites.json';
const SEED = 20261205;
const SIZES: Record<string, { dev: number; test: number; minClips: number; fixedTest?: string[] }> = {
  tess: { dev: 1, test: 1, minClips: 0, fixedTest: ['tess-YAF'] },
  ravdess: { dev: 4, test: 4, minClips: 0 },
  'crema-d': { dev: 8, test: 10, minClips: 0, fixedTest: ['crema-1071'] },
  ased: { dev: 6, test: 8, minClips: 20 },
  nemo: { dev: 2, test: 2, minClips: 0 },
};
const CROSS = ['urdu'];

const clips = readManifest(manifest);
const info = new Map<string, { corpus: string; gender: string; clips: number }>();
for (const c of clips) {
  const i = info.get(c.speaker) ?? { corpus: c.corpus, gender: c.gender, clips: 0 };
  i.clips++;
  info.set(c.speaker, i);
}
const rand = mulberry32(SEED);
const shuffle = <T>(xs: T[]): T[] => {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
};
/** n speakers alternating between genders (the larger group first), from shuffled lists. */
function draw(pool: Map<string, string[]>, n: number): string[] {
  const got: string[] = [];
  const genders = [...pool.keys()].sort((a, b) => pool.get(b)!.length - pool.get(a)!.length || a.localeCompare(b));
  for (let k = 0; got.length < n && genders.some((g) => pool.get(g)!.length > 0); k++) {
    const list = pool.get(genders[k % genders.length])!;
    if (list.length) got.push(list.shift()!);
  }
  return got.sort();
}

const speakers: Suites['speakers'] = { dev: [], test: [], cross: [] };
for (const [corpus, size] of Object.entries(SIZES)) {
  const fixed = size.fixedTest ?? [];
  const pool = new Map<string, string[]>();
  for (const [sp, i] of [...info.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    if (i.corpus !== corpus || i.clips < size.minClips || fixed.includes(sp)) continue;
    pool.set(i.gender, [...(pool.get(i.gender) ?? []), sp]);
  }
  for (const [g, list] of pool) pool.set(g, shuffle(list));
  // Fixed test speakers count towards their gender, so the drawn test speakers keep the balance.
  const test = [...fixed, ...drawBalanced(pool, size.test - fixed.length, fixed.map((s) => info.get(s)!.gender))];
  const dev = draw(pool, size.dev);
  speakers.test.push(...test.sort());
  speakers.dev.push(...dev);
}
for (const [sp, i] of [...info.entries()].sort((a, b) => a[0].localeCompare(b[0]))) if (CROSS.includes(i.corpus)) speakers.cross.push(sp);

/** Like draw, but counting the genders already taken, so the group ends balanced. */
function drawBalanced(pool: Map<string, string[]>, n: number, taken: string[]): string[] {
  const count = new Map<string, number>();
  for (const g of pool.keys()) count.set(g, 0);
  for (const g of taken) count.set(g, (count.get(g) ?? 0) + 1);
  const got: string[] = [];
  while (got.length < n) {
    const open = [...count.keys()].filter((g) => (pool.get(g) ?? []).length > 0);
    if (open.length === 0) break;
    open.sort((a, b) => count.get(a)! - count.get(b)! || pool.get(b)!.length - pool.get(a)!.length || a.localeCompare(b));
    const g = open[0];
    got.push(pool.get(g)!.shift()!);
    count.set(g, count.get(g)! + 1);
  }
  return got;
}

const suites: Suites = checkSuites({
  version: 1,
  speakers,
  crossCorpora: CROSS,
  madeBy: `node --import tsx scripts/make-suites.ts ${manifest} ${out} (seed ${SEED})`,
  rule: [
    'Written 2026-12-05, before any run that uses these suites.',
    'Score of a model on a suite, per regime (evaluate --adapt call and --adapt clip), telephone channel: the unweighted mean over the',
    "suite's corpora of clip accuracy; anger: the mean over those corpora of anger AUC.",
    'A recipe replaces the incumbent (the shipped recipe, retrained with these suites held out) only if, over at least 3 seeds each',
    '(seeds 1-3 for both), its mean dev score is higher in BOTH regimes by more than max(2 points, the incumbent\'s seed spread',
    'max-min in that regime), and its mean dev anger AUC is not lower by more than 0.01 in either regime.',
    'Test and cross figures are computed for the model card only, never to choose; dev speakers serve early stopping and choices only.',
  ].join(' '),
}, out);
writeFileSync(out, JSON.stringify(suites, null, 2) + '\n');
const n = (xs: string[]) => xs.reduce((s, sp) => s + info.get(sp)!.clips, 0);
process.stdout.write(`${out}: dev ${speakers.dev.length} speakers (${n(speakers.dev)} clips), test ${speakers.test.length} (${n(speakers.test)}), cross ${speakers.cross.length} (${n(speakers.cross)}); training keeps ${info.size - speakers.dev.length - speakers.test.length - speakers.cross.length} speakers\n`);
