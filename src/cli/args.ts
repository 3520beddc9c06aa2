import { InvalidArgumentError, Option } from 'commander';
import { FEATURE_CONFIGS_BY_RATE } from '../features/config.js';

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

/** `--feature-rate <hz>`: which feature config (FEATURE_CONFIGS_BY_RATE) a command starts from. */
export const featureRateOption = (description: string, defaultRate: '8000' | '16000'): Option =>
  new Option('--feature-rate <hz>', description).choices(Object.keys(FEATURE_CONFIGS_BY_RATE)).default(defaultRate);
