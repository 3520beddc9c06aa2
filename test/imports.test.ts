/**
 * The shape of src/: imports between its folders go one way, down a declared layer order, and no two files import
 * each other round a circle. Imports are read with TypeScript's own pre-processor (static `import`/`export … from`,
 * `import type`, and `import('…')` with a literal), plus the worker entry points that `new URL('./x.${ext}',
 * import.meta.url)` names. A top-level file of src/ (errors.ts, labels.ts, index.ts, lab.ts) is a layer of its own.
 * A worker entry point counts as an import for the folders' order, not for the files' cycles: the worker is
 * evaluated in its own thread, after the module that starts it has loaded, so it may import that module.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../', import.meta.url));
const src = join(root, 'src');

/**
 * The layers of src/, lowest first: a file may import from its own layer and from the layers before it, never from
 * one after it. Folders on one line do not import each other at all (either order would do).
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors', 'labels'],
  ['util'],
  ['audio'],
  ['features'],
  ['data'],
  ['model'],
  ['stream'],
  ['config'],
  ['sinks', 'cluster'],
  ['policy'],
  ['telephony'],
  ['report'],
  ['replay'],
  ['bench'],
  ['cli'],
  ['index', 'lab'],
];

/**
 * Edges allowed against the order above, each `from-file → to-folder` with the reason. Each is on its way out: delete
 * its line when the import goes.
 */
export const ALLOWED: readonly { from: string; to: string; why: string }[] = [];

/** Every .ts file under `dir`, as paths relative to the repository root with `/`. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => relative(root, join(dir, f)).split('\\').join('/'))
    .sort();
}

/** An import of one src/ file by another; `worker` when the target is started as a worker thread. */
export interface ImportEdge {
  from: string;
  to: string;
  worker: boolean;
}

/** The src/ files `file` imports (relative specifiers only; `.js` resolved to the `.ts` beside it). */
export function importsOf(file: string, text = readFileSync(join(root, file), 'utf8')): ImportEdge[] {
  const specs = ts.preProcessFile(text, true, true).importedFiles.map((f) => ({ spec: f.fileName, worker: false }));
  // Worker entry points: new URL('./worker.js', import.meta.url) or new URL(`./worker.${ext}`, import.meta.url).
  for (const m of text.matchAll(/new URL\(\s*[`'"](\.{1,2}\/[^`'"]+)[`'"]\s*,\s*import\.meta\.url\s*\)/g)) {
    specs.push({ spec: m[1].replace(/\$\{[^}]*\}/g, 'ts'), worker: true });
  }
  const out = new Map<string, ImportEdge>();
  for (const { spec, worker } of specs) {
    if (!spec.startsWith('.')) continue;
    const abs = join(dirname(join(root, file)), spec).replace(/\.js$/, '.ts');
    const to = relative(root, abs).split('\\').join('/');
    if (!to.startsWith('src/')) continue;
    if (!existsSync(abs)) throw new Error(`${file} imports ${spec}, which is not a file`);
    // A file both imported and started as a worker counts as imported.
    if (!out.has(to) || !worker) out.set(to, { from: file, to, worker });
  }
  return [...out.values()].sort((a, b) => a.to.localeCompare(b.to));
}

/** The folder (layer name) of a src/ file: its first folder under src/, or a top-level file's name without `.ts`. */
export function folderOf(file: string): string {
  const parts = file.replace(/^src\//, '').split('/');
  return parts.length === 1 ? parts[0].replace(/\.ts$/, '') : parts[0];
}

/** Cycles of a directed graph, one per strongly connected component with more than one node or a self-loop. */
export function cycles(graph: Map<string, Set<string>>): string[][] {
  // Tarjan's strongly connected components.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)?.has(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

/** Every file-level import edge of src/. */
export function fileEdges(): ImportEdge[] {
  return sourceFiles(src).flatMap((from) => importsOf(from));
}

const edges = fileEdges();
const crossFolder = edges.filter((e) => folderOf(e.from) !== folderOf(e.to));
const allowed = (e: { from: string; to: string }) => ALLOWED.some((a) => a.from === e.from && a.to === folderOf(e.to));
const rank = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

/** `from → to` lines for those of `list` whose ends both belong to `members` (by `key`). */
const between = (list: ImportEdge[], members: string[], key: (f: string) => string) =>
  list
    .filter((e) => members.includes(key(e.from)) && members.includes(key(e.to)))
    .map((e) => `  ${e.from} → ${e.to}`)
    .join('\n');

test('every folder and top-level file of src/ has a place in the layer order', () => {
  const folders = [...new Set(sourceFiles(src).map(folderOf))].sort();
  const missing = folders.filter((f) => !rank.has(f));
  assert.deepEqual(missing, [], `folders of src/ missing from LAYERS in test/imports.test.ts: ${missing.join(', ')}`);
  const stale = [...rank.keys()].filter((f) => !folders.includes(f));
  assert.deepEqual(stale, [], `LAYERS names folders src/ does not have: ${stale.join(', ')}`);
});

test('no import cycle between folders of src/ (outside the allowlist)', () => {
  const graph = new Map<string, Set<string>>();
  for (const e of crossFolder) {
    if (allowed(e)) continue;
    const set = graph.get(folderOf(e.from)) ?? new Set<string>();
    set.add(folderOf(e.to));
    graph.set(folderOf(e.from), set);
  }
  const found = cycles(graph);
  const text = found.map((c) => `${c.join(' ↔ ')}:\n${between(crossFolder.filter((e) => !allowed(e)), c, folderOf)}`).join('\n');
  assert.equal(found.length, 0, `folder cycles in src/:\n${text}`);
});

test('imports between folders of src/ go down the layer order', () => {
  const bad = crossFolder.filter((e) => !allowed(e) && rank.get(folderOf(e.from))! <= rank.get(folderOf(e.to))!);
  const text = bad.map((e) => `  ${e.from} → ${e.to} (${folderOf(e.from)} may not import ${folderOf(e.to)})`).join('\n');
  assert.equal(bad.length, 0, `imports against the layer order (see LAYERS in test/imports.test.ts):\n${text}`);
});

test('only the command line imports src/bench (the benchmarks ship as `callmood bench`, and nothing else runs them)', () => {
  const bad = crossFolder.filter((e) => folderOf(e.to) === 'bench' && folderOf(e.from) !== 'cli');
  assert.deepEqual(bad.map((e) => `${e.from} → ${e.to}`), [], 'src/ files outside src/cli that import src/bench');
});

test('the allowlist holds only edges that still exist', () => {
  const stale = ALLOWED.filter((a) => !crossFolder.some((e) => e.from === a.from && folderOf(e.to) === a.to));
  assert.deepEqual(stale, [], `ALLOWED in test/imports.test.ts lists imports that are gone; delete their lines: ${stale.map((a) => `${a.from} → ${a.to}`).join(', ')}`);
});

test('no import cycle between files of src/', () => {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.worker) continue;
    const set = graph.get(e.from) ?? new Set<string>();
    set.add(e.to);
    graph.set(e.from, set);
  }
  const found = cycles(graph);
  const text = found.map((c) => `${c.join(' ↔ ')}:\n${between(edges.filter((e) => !e.worker), c, (f) => f)}`).join('\n');
  assert.equal(found.length, 0, `file cycles in src/:\n${text}`);
});

test('the reader finds static, type-only, dynamic and worker imports', () => {
  const text = [
    "import { a } from './a.js';",
    "import type { B } from '../b/b.js';",
    "export * from './c.js';",
    "const d = await import('./d.js');",
    "const w = new URL(`./worker.${ext}`, import.meta.url);",
    "import x from 'node:fs';",
  ].join('\n');
  const specs = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
  assert.deepEqual(specs.sort(), ['../b/b.js', './a.js', './c.js', './d.js', 'node:fs']);
  // On a real file: the replay folder starts its worker through new URL(…, import.meta.url).
  const worker = importsOf('src/replay/run.ts').find((e) => e.to === 'src/replay/worker.ts');
  assert.ok(worker?.worker, 'src/replay/run.ts starting src/replay/worker.ts as a worker is found');
  assert.equal(folderOf('src/errors.ts'), 'errors');
  assert.equal(folderOf('src/stream/track.ts'), 'stream');
});
