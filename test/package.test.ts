/**
 * The package as users install it: every runtime dependency is one the shipped code (src/) imports, and every package
 * src/ imports is a runtime dependency; what only scripts, tests and benchmarks use is a devDependency. Imports are
 * read from the source text (static `from '…'`, dynamic `import('…')`, and the optional tfjs-node's spec string).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;

/** The package names imported by the .ts files under `dir` (relative imports and node built-ins left out). */
function importedPackages(dir: string): Set<string> {
  const out = new Set<string>();
  for (const file of readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(join(root, dir, file), 'utf8');
    for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|const spec = )'([^'./][^']*)'/g)) {
      const spec = m[1];
      // A package name (npm's rules: lower case, URL-safe); other quoted text after `from` is prose in a string.
      if (!/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/[\w./-]*)?$/.test(spec)) continue;
      if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0])) continue;
      const parts = spec.split('/');
      out.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
  }
  return out;
}

test('runtime dependencies are exactly what src/ imports; what only scripts, tests and benchmarks use is a devDependency', () => {
  const shipped = importedPackages('src');
  const runtime = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]);
  const unused = [...runtime].filter((d) => !shipped.has(d));
  assert.deepEqual(unused, [], `runtime dependencies nothing in src/ imports: ${unused.join(', ')}`);
  const undeclared = [...shipped].filter((d) => !runtime.has(d));
  assert.deepEqual(undeclared, [], `src/ imports packages that are not runtime dependencies: ${undeclared.join(', ')}`);
  const dev = new Set(Object.keys(pkg.devDependencies ?? {}));
  for (const dir of ['scripts', 'test', 'bench']) {
    const missing = [...importedPackages(dir)].filter((d) => !runtime.has(d) && !dev.has(d));
    assert.deepEqual(missing, [], `${dir}/ imports packages that are in no dependency list: ${missing.join(', ')}`);
  }
  // The lockfile says the same (npm ci installs from it).
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dependencies?: object; devDependencies?: object }> };
  assert.deepEqual(lock.packages[''].dependencies, pkg.dependencies);
  assert.deepEqual(lock.packages[''].devDependencies, pkg.devDependencies);
});
