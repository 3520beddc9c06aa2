/**
 * The dialog policy in a replay: the live server's PolicyEngine, forced to dry run (a replay never controls a live
 * call), watching each replayed call's events through the replay's observer hook. Each decision is followed by its
 * `action-result`, `skipped` as the live runtime reports dry runs, so a replay's event stream has the shape of a
 * live dry-run call's.
 */
import type { ActionEvent, ActionResultEvent } from '../stream/events.js';
import { loadPolicyFile, PolicyEngine, type PolicyConfig } from '../policy/index.js';
import { angerThreshold, SHIPPED_ANGER_THRESHOLD, type AngerThreshold } from '../policy/anger.js';
import { DRY_RUN_DETAIL, actionResult } from '../policy/runtime.js';
import type { EventObserver } from './replay.js';
import { resolvePackagePath } from '../config/load.js';


/** As the live runtime reports a dry-run decision; `atMs` is this replay's wall clock, not comparable across runs. */
function skipped(a: ActionEvent): ActionResultEvent {
  return actionResult(a, { outcome: 'skipped', attempts: 0, detail: DRY_RUN_DETAIL });
}

/** An observer over a policy: a fresh dry-run engine per call. */
export function policyObserver(config: PolicyConfig): () => EventObserver {
  return () => {
    const engine = new PolicyEngine(config, { dryRun: true });
    return (event) => engine.observe(event).flatMap((a) => [a, skipped(a)]);
  };
}

/** Loads a policy file (INVALID_POLICY names what is wrong) and returns the per-call observer factory. */
export async function policyObserverFactory(file: string): Promise<() => EventObserver> {
  return policyObserver(loadPolicyFile(file));
}

/**
 * The anger threshold a replay's reports use: the policy file's (when one is given and it has an anger rule), else
 * the shipped policy's (`config/policy.json`, the same rules as DEFAULT_POLICY).
 */
export function reportAngerThreshold(file: string | null): AngerThreshold {
  const own = file ? angerThreshold(loadPolicyFile(file), file) : null;
  if (own) return own;
  const shipped = resolvePackagePath('config/policy.json');
  return angerThreshold(loadPolicyFile(shipped), shipped) ?? SHIPPED_ANGER_THRESHOLD;
}
