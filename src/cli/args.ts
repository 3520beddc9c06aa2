import { InvalidArgumentError } from 'commander';

/** Option parsers: each error names the option, the value and what is allowed. */

/** An integer in [min, max]. */
export const integer = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in [${min}, ${max}]`}, got '${v}'`);
  }
  return n;
};

/** A number in [lo, hi]. */
export const numberIn = (name: string, lo: number, hi: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi) throw new InvalidArgumentError(`${name} must be a number in [${lo}, ${hi}], got '${v}'`);
  return n;
};

/** A number > 0. */
export const positive = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'`);
  return n;
};

/** A comma-separated list. */
export const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);
