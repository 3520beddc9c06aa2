/** The policy callmood ships with. */
import { parsePolicy, type PolicyConfig } from './config.js';

/**
 * The shipped policy (`config/policy.json` holds the same): angry callers get a gentler script, one step per 3 s of
 * angry speech (at most 3 steps, 20 s apart), and the CRM is told about a customer who was angry or disgusted for
 * 40% of 15 s or more of speech. It never ends or moves a call.
 */
export const DEFAULT_POLICY: PolicyConfig = parsePolicy(
  {
    dryRun: false,
    rules: [
      {
        name: 'soften-on-anger',
        when: { track: 'inbound', emotion: { label: 'angry', above: 0.5, forMs: 3000, releaseBelow: 0.35 } },
        do: { action: 'soften_offer', maxLevel: 3 },
        once: false,
        cooldownMs: 20_000,
      },
      {
        name: 'flag-angry-customer',
        when: { track: 'inbound', negativeShare: { above: 0.4, minSpeechMs: 15_000, labels: ['angry', 'disgust'] } },
        do: { action: 'flag_customer', tags: ['angry-caller', 'fewer-calls', 'retention-offer'] },
        once: true,
        cooldownMs: 0,
      },
    ],
  },
  'the shipped policy',
);
