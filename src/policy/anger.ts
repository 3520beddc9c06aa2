/**
 * Where a policy starts acting on a caller's anger: what the replay's reports call "angry", so that the word means on
 * a report what it means to the policy.
 */
import type { PolicyConfig } from './config.js';
import { DEFAULT_POLICY } from './default.js';

/** Where a policy starts acting on a caller's anger (see `angerThreshold`). */
export interface AngerThreshold {
  /** The smoothed angry probability the rule fires at or over, (0, 1]. */
  above: number;
  /** The rule's name. */
  rule: string;
  /** Which policy: its file, or "the shipped policy". */
  policy: string;
}

/**
 * The anger threshold of a policy: the lowest `emotion.above` of its rules that watch the caller's (inbound) anger
 * alone (`label: 'angry'`); null when no rule does. Reports call a caller angry by it, so that "angry" on a report
 * means what it means to the policy.
 */
export function angerThreshold(config: PolicyConfig, policy: string): AngerThreshold | null {
  let best: AngerThreshold | null = null;
  for (const r of config.rules) {
    const e = r.when.emotion;
    if (!e || r.when.track !== 'inbound') continue;
    const labels = Array.isArray(e.label) ? e.label : [e.label];
    if (labels.length !== 1 || labels[0] !== 'angry') continue;
    if (!best || e.above < best.above) best = { above: e.above, rule: r.name, policy };
  }
  return best;
}

/** The shipped policy's anger threshold (DEFAULT_POLICY, which config/policy.json repeats). */
export const SHIPPED_ANGER_THRESHOLD: Readonly<AngerThreshold> = Object.freeze(angerThreshold(DEFAULT_POLICY, 'the shipped policy')!);
