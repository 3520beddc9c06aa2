/**
 * The dialog policy's rules, as a JSON file (`config/policy.json` is the shipped default). One schema, validated
 * once at start-up: an error names the rule (by name and index), the field, its value and what is allowed.
 *
 * A rule fires when all of its conditions hold, at the event that made the last of them true. Conditions over the
 * emotion state count *speech* time (the audio each scored window added, times its share of speech), never silence,
 * so a caller who says one loud word and then waits does not trip a "3 s of anger" rule.
 */
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { deepFreeze, describeValue, valueAt } from '../util/values.js';
import { readJsonFile } from '../util/json-file.js';
import { allowedFromIssue, keysAt, unknownKeysText } from '../util/issues.js';
import { EMOTION_LABELS } from '../labels.js';
import type { ActionKind, Track } from '../stream/events.js';

/** The smoothed probability of a label (or the sum over several) held at or over a threshold for a time of speech. */
export interface EmotionCondition {
  /** One label, or several whose smoothed probabilities are summed (e.g. angry + disgust). */
  label: string | string[];
  /** Fires at or over this smoothed probability, (0, 1]. */
  above: number;
  /** …held for this much speech, ms (0 = at once). */
  forMs: number;
  /** Hysteresis: the held time resets, and a fired rule re-arms, only once the probability falls below this; default `above − 0.15`. */
  releaseBelow?: number;
}

/** A rising trend: the smoothed probability now minus its lowest value over the last `withinMs` of call time. */
export interface TrendCondition {
  label: string | string[];
  /** Rise needed, (0, 1]. */
  rise: number;
  /** Look-back in call time, ms. */
  withinMs: number;
}

/** The share of the track's speech so far whose windows' top label is negative. */
export interface NegativeShareCondition {
  /** Fires at or over this share, (0, 1]. */
  above: number;
  /** …once at least this much speech was heard, ms (a share of two seconds says little). */
  minSpeechMs: number;
  /** The labels counted as negative; default angry, disgust, fear, sad. */
  labels?: string[];
}

/** A custom parameter (`<Parameter>` in the TwiML, e.g. the customer's tier) as a gate. */
export interface ParameterCondition {
  name: string;
  /** Exactly this value. */
  equals?: string;
  /** One of these values. */
  in?: string[];
  /** Present (true) or absent (false). */
  present?: boolean;
}

/** When a rule fires: every given condition must hold; at least one of emotion, trend, negativeShare, dtmf. */
export interface RuleConditions {
  /** The track whose emotion the rule watches: the caller (`inbound`, default) or the bot/agent (`outbound`). */
  track: Track;
  emotion?: EmotionCondition;
  trend?: TrendCondition;
  negativeShare?: NegativeShareCondition;
  /** A key press (any of these digits) fires the rule at once, if the other conditions hold. */
  dtmf?: string[];
  parameters?: ParameterCondition[];
  /** Not before this call time, ms (let the model hear the caller first). */
  afterMs?: number;
}

/** What a rule does. */
export type RuleAction =
  /** Tell the callbot (event + webhook) to move to a gentler script or a better offer; level omitted = one step further each time (1, 2, … up to maxLevel). */
  | { action: 'soften_offer'; level?: number; maxLevel?: number }
  /** Hand the caller to a person: redirect the live call to `<Dial>` a number/SIP URI, to TwiML at a URL, or to raw TwiML; `say` first. */
  | { action: 'escalate'; dial?: string; url?: string; twiml?: string; say?: string }
  /** End the call politely: `say` a goodbye then hang up, or just complete it. Only ever when a policy file says so. */
  | { action: 'end_call'; say?: string }
  /** Tell the CRM about this customer (fewer calls, a retention offer): an event and a webhook. */
  | { action: 'flag_customer'; tags?: string[] }
  /** Call a handler registered through the plugin API under this name. */
  | { action: 'custom'; handler: string };

/** One rule. */
export interface PolicyRule {
  /** Unique name; it appears in action events, logs and webhooks. */
  name: string;
  when: RuleConditions;
  do: RuleAction;
  /** Fire at most once per call. */
  once: boolean;
  /** After firing, not again for this much call time, ms. */
  cooldownMs: number;
}

/** A whole policy. */
export interface PolicyConfig {
  /** Decide and report, but carry nothing out (no REST calls, no handlers; webhooks still see the decisions, marked dryRun). */
  dryRun: boolean;
  rules: PolicyRule[];
}

/** The negative labels `negativeShare` counts by default. */
export const NEGATIVE_LABELS: readonly string[] = Object.freeze(['angry', 'disgust', 'fear', 'sad']);

const ACTIONS: readonly ActionKind[] = ['soften_offer', 'escalate', 'end_call', 'flag_customer', 'custom'];

// Each leaf carries its allowed text for the error message.
const label = z.enum(EMOTION_LABELS as unknown as [string, ...string[]]);
const labels = z.union([label, z.array(label).min(1)]);
const LABELS_TEXT = `a label (${EMOTION_LABELS.join(', ')}) or a non-empty array of them`;
const prob = z.number().gt(0).max(1);
const ms = z.number().int().min(0).max(24 * 3600 * 1000);

const conditions = z
  .strictObject({
    track: z.enum(['inbound', 'outbound']).default('inbound'),
    emotion: z.strictObject({ label: labels, above: prob, forMs: ms.default(0), releaseBelow: z.number().min(0).max(1).optional() }).optional(),
    trend: z.strictObject({ label: labels, rise: prob, withinMs: ms.min(250) }).optional(),
    negativeShare: z.strictObject({ above: prob, minSpeechMs: ms.default(10_000), labels: z.array(label).min(1).optional() }).optional(),
    dtmf: z.array(z.string().regex(/^[0-9*#A-D]$/)).min(1).optional(),
    parameters: z
      .array(
        z.strictObject({
          name: z.string().min(1).max(128),
          equals: z.string().optional(),
          in: z.array(z.string()).min(1).optional(),
          present: z.boolean().optional(),
        }),
      )
      .optional(),
    afterMs: ms.optional(),
  })
  .refine((c) => c.emotion || c.trend || c.negativeShare || c.dtmf, {
    message: 'a rule needs at least one of emotion, trend, negativeShare or dtmf to fire on',
  })
  .refine((c) => !c.emotion || c.emotion.releaseBelow === undefined || c.emotion.releaseBelow < c.emotion.above, {
    message: 'emotion.releaseBelow must be below emotion.above',
    path: ['emotion', 'releaseBelow'],
  });

const action = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('soften_offer'), level: z.number().int().min(1).max(10).optional(), maxLevel: z.number().int().min(1).max(10).optional() }),
  z
    .strictObject({
      action: z.literal('escalate'),
      dial: z.string().regex(/^(\+[1-9][0-9]{6,14}|sips?:[^\s<>"]+|client:[A-Za-z0-9_.-]+)$/).optional(),
      url: z.url({ protocol: /^https?$/ }).optional(),
      twiml: z.string().regex(/^\s*<Response[\s>]/).optional(),
      say: z.string().min(1).max(4096).optional(),
    })
    .refine((a) => [a.dial, a.url, a.twiml].filter((x) => x !== undefined).length === 1, {
      message: 'escalate needs exactly one of dial (+E.164 number, sip:…, client:…), url (http(s) TwiML URL) or twiml (<Response>…)',
    })
    .refine((a) => a.twiml === undefined || a.say === undefined, { message: 'escalate: put the <Say> inside your twiml; say goes with dial or url only' }),
  z.strictObject({ action: z.literal('end_call'), say: z.string().min(1).max(4096).optional() }),
  z.strictObject({ action: z.literal('flag_customer'), tags: z.array(z.string().min(1).max(64)).optional() }),
  z.strictObject({ action: z.literal('custom'), handler: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/) }),
]);

const rule = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/),
  when: conditions,
  do: action,
  once: z.boolean().default(false),
  cooldownMs: ms.default(30_000),
});

const policy = z.strictObject({ $comment: z.string().optional(), dryRun: z.boolean().default(false), rules: z.array(rule) });

/** What is allowed where, for the error message (by the last named key of the issue's path). */
const ALLOWED: Record<string, string> = {
  rules: 'an array of rules, each {name, when, do}',
  when: 'an object of conditions (track, emotion, trend, negativeShare, dtmf, parameters, afterMs)',
  do: `an object {action, …} with action one of ${ACTIONS.join(', ')}`,
  name: 'letters, digits and _ . : - (1–64 characters)',
  track: "'inbound' (the caller) or 'outbound' (the bot or agent)",
  label: LABELS_TEXT,
  labels: `a non-empty array of labels (${EMOTION_LABELS.join(', ')})`,
  above: 'a probability in (0, 1]',
  rise: 'a number in (0, 1]',
  releaseBelow: 'a probability in [0, 1], below `above`',
  forMs: 'an integer number of ms ≥ 0',
  withinMs: 'an integer number of ms ≥ 250',
  minSpeechMs: 'an integer number of ms ≥ 0',
  afterMs: 'an integer number of ms ≥ 0',
  cooldownMs: 'an integer number of ms ≥ 0',
  dtmf: 'a non-empty array of single keys: 0-9, *, #, A-D',
  once: 'true or false',
  dryRun: 'true or false',
  action: ACTIONS.join(', '),
  level: 'an integer in [1, 10]',
  maxLevel: 'an integer in [1, 10]',
  dial: 'a +E.164 number, sip:… or client:…',
  url: 'an http(s) URL that answers TwiML',
  twiml: 'TwiML starting with <Response>',
  handler: 'a handler name: letters, digits and _ . : - (1–64 characters)',
};



/**
 * Validates a parsed policy (`source` names it in errors) and returns it with defaults filled and frozen. Throws
 * INVALID_POLICY naming the rule, the field, its value and what is allowed.
 */
export function parsePolicy(raw: unknown, source = 'policy'): PolicyConfig {
  const parsed = policy.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue.path;
    let where = source;
    let rest = path;
    if (path[0] === 'rules' && typeof path[1] === 'number') {
      const name = valueAt(raw, ['rules', path[1], 'name']);
      where = `${source}: rule ${typeof name === 'string' ? `'${name}' ` : ''}(rules[${path[1]}])`;
      rest = path.slice(2);
    }
    const field = rest.join('.') || (path.length ? '(the rule itself)' : '(the whole file)');
    if (issue.code === 'unrecognized_keys') {
      throw new CallmoodError(ErrorCodes.INVALID_POLICY, `${where}: ${unknownKeysText('field', rest.length ? `${rest.join('.')}.` : '', issue.keys, keysAt(policy, path))}`);
    }
    const key = [...rest].reverse().find((k) => typeof k === 'string') as string | undefined;
    const allowedText = issue.code === 'custom' ? issue.message : key && ALLOWED[key] ? ALLOWED[key] : allowedFromIssue(issue, policy);
    throw new CallmoodError(ErrorCodes.INVALID_POLICY, `${where}: ${field} is ${describeValue(valueAt(raw, path))}; allowed: ${allowedText}`);
  }
  const out = parsed.data as PolicyConfig & { $comment?: string };
  delete out.$comment;
  const seen = new Set<string>();
  for (const [i, r] of out.rules.entries()) {
    if (seen.has(r.name)) throw new CallmoodError(ErrorCodes.INVALID_POLICY, `${source}: rule '${r.name}' (rules[${i}]): name is used by an earlier rule; allowed: unique names`);
    seen.add(r.name);
  }
  return deepFreeze(out);
}

/** Reads and validates a policy JSON file. Throws INVALID_POLICY (unreadable, not JSON, breaks the schema). */
export function loadPolicyFile(file: string): PolicyConfig {
  const raw = readJsonFile(file, ErrorCodes.INVALID_POLICY, 'policy file');
  return parsePolicy(raw, `policy file ${file}`);
}

