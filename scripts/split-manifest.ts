/**
 * Writes a seeded random split of a manifest's clips into two manifests (paths rewritten relative to the new
 * files), for protocols that split by clip: the seed's TESS 80/10/10. Usage:
 *   node --import tsx scripts/split-manifest.ts MANIFEST OUT_DIR NAME TEST_SHARE SEED [corpus,...]
 * writes OUT_DIR/NAME-trainval.csv and OUT_DIR/NAME-test.csv.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { mulberry32 } from '../src/util/random.js';

const [manifest, outDir, name, testShareArg, seedArg, corporaArg] = process.argv.slice(2);
if (!manifest || !outDir || !name || !testShareArg || !seedArg) {
  process.stderr.write('usage: split-manifest.ts MANIFEST OUT_DIR NAME TEST_SHARE SEED [corpus,...]\n');
  process.exit(2);
}
const rows = parse(readFileSync(manifest), { columns: true }) as Record<string, string>[];
const corpora = corporaArg ? corporaArg.split(',') : null;
const kept = rows.filter((r) => !corpora || corpora.includes(r.corpus));
const rand = mulberry32(Number(seedArg));
const idx = kept.map((_, i) => i);
for (let i = idx.length - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  [idx[i], idx[j]] = [idx[j], idx[i]];
}
const nTest = Math.round(kept.length * Number(testShareArg));
const test = new Set(idx.slice(0, nTest));
mkdirSync(outDir, { recursive: true });
const rebase = (r: Record<string, string>) => ({ ...r, path: relative(outDir, resolve(dirname(manifest), r.path)) });
const columns = Object.keys(rows[0]);
const write = (file: string, part: Record<string, string>[]) => writeFileSync(join(outDir, file), stringify(part.map(rebase), { header: true, columns }));
write(`${name}-trainval.csv`, kept.filter((_, i) => !test.has(i)));
write(`${name}-test.csv`, kept.filter((_, i) => test.has(i)));
process.stdout.write(`${name}: ${kept.length - nTest} train+val, ${nTest} test clips\n`);
