/** Small helpers for validated configuration values: freezing them, and quoting a bad value in an error message. */

/** Freezes an object and everything in it, so a validated config cannot change under the code that checked it. */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The value at a path of keys, or undefined where the path leaves the object. */
export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** A value as an error message shows it: JSON, cut at 80 characters; `missing` for undefined. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
