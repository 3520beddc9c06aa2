/** Server options on the lab benchmarks' command lines (bench/calls-matrix.ts, bench/flood.ts). */

/** Sets one server option from `path.to.key=JSON` (the bench scripts' `--set`), creating nested objects. */
export function setOption(config: Record<string, unknown>, assignment: string): void {
  const at = assignment.indexOf('=');
  const keys = assignment.slice(0, at).split('.');
  let node = config;
  for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
  node[keys[keys.length - 1]] = JSON.parse(assignment.slice(at + 1));
}
