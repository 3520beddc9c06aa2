/**
 * The dialog policy, driven by scripted emotion streams: push events, check the actions (pipecat's run_test style).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY, PolicyEngine, loadPolicyFile, parsePolicy, type PolicyConfig } from '../src/policy/index.js';
import { CallmoodError } from '../src/errors.js';
import { EMOTION_LABELS } from '../src/labels.js';
import type { ActionEvent, CallmoodEvent, EmotionEvent, Track } from '../src/stream/events.js';

const HOP = 250;
const WINDOW = 1200;

/** A scripted track: emotion events every hop whose smoothed state is `p` of `label` (the rest neutral). */
class Script {
  readonly events: CallmoodEvent[] = [];
  t = WINDOW;
  constructor(
    readonly callSid = 'CA1',
    readonly params: Record<string, string> = {},
  ) {
    this.events.push({ type: 'call-start', callSid, streamSid: 'MZ1', timeMs: 0, customParameters: params, accountSid: null, tracks: ['inbound'] });
  }
  /** `ms` of windows (one per hop) with this state; speechRatio = share of speech in each. */
  emotion(ms: number, label: string, p: number, opts: { speechRatio?: number; track?: Track; top?: string } = {}): this {
    for (let n = 0; n < ms / HOP; n++) {
      const probs: Record<string, number> = Object.fromEntries(EMOTION_LABELS.map((l) => [l, 0]));
      probs[label] = p;
      probs.neutral += 1 - p;
      const top = opts.top ?? (p >= 0.5 ? label : 'neutral');
      const e: EmotionEvent = {
        type: 'emotion',
        callSid: this.callSid,
        streamSid: 'MZ1',
        timeMs: this.t,
        customParameters: this.params,
        track: opts.track ?? 'inbound',
        windowStartMs: this.t - WINDOW,
        speechRatio: opts.speechRatio ?? 1,
        probs,
        label: top,
        confidence: probs[top],
        state: { probs, label: top, confidence: probs[top] },
        latencyMs: 3,
      };
      this.events.push(e);
      this.t += HOP;
    }
    return this;
  }
  /** Silence: no emotion events, time moves on. */
  silence(ms: number): this {
    this.t += ms;
    return this;
  }
  dtmf(digit: string): this {
    this.events.push({ type: 'dtmf', callSid: this.callSid, streamSid: 'MZ1', timeMs: this.t, customParameters: this.params, track: 'inbound', digit });
    return this;
  }
}

function run(policy: PolicyConfig, events: CallmoodEvent[], dryRun = false): ActionEvent[] {
  const engine = new PolicyEngine(policy, { dryRun });
  return events.flatMap((e) => engine.observe(e));
}

const soften = (extra: Record<string, unknown> = {}) =>
  parsePolicy({ rules: [{ name: 'soften', when: { emotion: { label: 'angry', above: 0.5, forMs: 3000, releaseBelow: 0.35 } }, do: { action: 'soften_offer' }, cooldownMs: 20_000, ...extra }] });

test('three seconds of angry speech soften the offer once, at the window that completes them', () => {
  const s = new Script().emotion(2000, 'neutral', 0.9).emotion(6000, 'angry', 0.8);
  const actions = run(soften(), s.events);
  assert.equal(actions.length, 1, 'held anger fires once: the rule stays disarmed while anger continues');
  const a = actions[0];
  assert.equal(a.action, 'soften_offer');
  assert.equal(a.level, 1);
  assert.equal(a.rule, 'soften');
  assert.equal(a.track, 'inbound');
  assert.equal(a.dryRun, false);
  // The first angry window counts its whole 1.2 s; then 250 ms per window: 1200 + 8 × 250 = 3200 ≥ 3000.
  const firstAngry = (s.events.find((e) => e.type === 'emotion' && e.label === 'angry') as EmotionEvent).timeMs;
  assert.ok(a.timeMs > firstAngry && a.timeMs <= firstAngry + 3000, `fired at ${a.timeMs}, anger from ${firstAngry}`);
  assert.ok(Number(a.evidence.heldSpeechMs) >= 3000);
  assert.match(a.reason, /angry at 0\.8/);
  assert.equal(a.actionId, 'CA1:1:soften');
});

test('one loud word does not trigger; nor does anger over silence', () => {
  const word = new Script().emotion(2000, 'neutral', 0.9).emotion(500, 'angry', 0.9).emotion(3000, 'neutral', 0.9);
  assert.deepEqual(run(soften(), word.events), []);
  // Angry windows that are mostly silence: 10% speech each, 12 s of them = about 1.3 s of speech, under 3 s.
  const quiet = new Script().emotion(12_000, 'angry', 0.9, { speechRatio: 0.1 });
  assert.deepEqual(run(soften(), quiet.events), []);
  // Gaps without windows (silence) add nothing either: short bursts of anger between silences, each scored by one
  // window that is a quarter speech (as the gate measures it: the rest of the window is the silence before).
  const burst = { speechRatio: 0.25 };
  const bursts = new Script().emotion(250, 'angry', 0.9, burst).silence(5000).emotion(250, 'angry', 0.9, burst).silence(5000).emotion(250, 'angry', 0.9, burst);
  assert.deepEqual(run(soften(), bursts.events), []);
});

test('hysteresis and cooldown: re-arms only after anger falls below the release level, and not within the cooldown', () => {
  // Dips to 0.4 (between release 0.35 and 0.5) do not re-arm.
  const dips = new Script().emotion(4000, 'angry', 0.8).emotion(1000, 'angry', 0.4).emotion(30_000, 'angry', 0.8);
  assert.equal(run(soften(), dips.events).length, 1);
  // A real release re-arms: the second episode fires with the next level, after the cooldown.
  const two = new Script().emotion(4000, 'angry', 0.8).emotion(2000, 'neutral', 0.9).emotion(25_000, 'angry', 0.8);
  const acts = run(soften(), two.events);
  assert.equal(acts.length, 2);
  assert.deepEqual(acts.map((a) => a.level), [1, 2]);
  assert.ok(acts[1].timeMs - acts[0].timeMs >= 20_000, 'cooldown respected');
  // Within the cooldown a re-armed rule waits.
  const soon = new Script().emotion(4000, 'angry', 0.8).emotion(1000, 'neutral', 0.9).emotion(5000, 'angry', 0.8);
  assert.equal(run(soften(), soon.events).length, 1);
  // Levels stop at maxLevel.
  let many = new Script();
  for (let i = 0; i < 6; i++) many = many.emotion(4000, 'angry', 0.8).emotion(20_000, 'neutral', 0.9);
  assert.deepEqual(run(soften({ do: { action: 'soften_offer', maxLevel: 2 } }), many.events).map((a) => a.level), [1, 2]);
});

test('once-per-call rules fire once; calls are independent', () => {
  const once = soften({ once: true, cooldownMs: 0 });
  const a = new Script('CA1').emotion(4000, 'angry', 0.8).emotion(2000, 'neutral', 0.9).emotion(4000, 'angry', 0.8);
  const b = new Script('CA2').emotion(4000, 'angry', 0.8);
  const engine = new PolicyEngine(once);
  // Interleave the two calls' events.
  const merged = [...a.events, ...b.events].sort((x, y) => x.timeMs - y.timeMs);
  const acts = merged.flatMap((e) => engine.observe(e));
  assert.deepEqual(acts.map((x) => x.callSid).sort(), ['CA1', 'CA2']);
  // call-end forgets the call.
  engine.observe({ type: 'call-end', callSid: 'CA1', streamSid: 'MZ1', timeMs: 99_000, customParameters: {}, reason: 'stop', durationMs: 99_000, summary: {}, stats: { mediaMessages: 0, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 } });
  assert.equal(engine.liveCalls, 1);
});

test('negative share over the speech so far, only once enough speech was heard', () => {
  const policy = parsePolicy({ rules: [{ name: 'flag', when: { negativeShare: { above: 0.4, minSpeechMs: 10_000 } }, do: { action: 'flag_customer', tags: ['angry'] }, once: true }] });
  // 5 s sad then 5 s neutral: share 0.5+ but fires only when 10 s of speech is reached.
  const s = new Script().emotion(5000, 'sad', 0.7).emotion(6000, 'neutral', 0.9);
  const acts = run(policy, s.events);
  assert.equal(acts.length, 1);
  assert.equal(acts[0].action, 'flag_customer');
  assert.ok(Number(acts[0].evidence.speechMs) >= 10_000);
  assert.ok(Number(acts[0].evidence.negativeShare) >= 0.4);
  // Mostly neutral: never.
  assert.deepEqual(run(policy, new Script().emotion(2000, 'angry', 0.9).emotion(20_000, 'neutral', 0.9).events), []);
  // Labels restrict what counts: sad does not count as angry+disgust.
  const narrow = parsePolicy({ rules: [{ name: 'flag', when: { negativeShare: { above: 0.4, minSpeechMs: 5000, labels: ['angry', 'disgust'] } }, do: { action: 'flag_customer' } }] });
  assert.deepEqual(run(narrow, s.events), []);
});

test('a rising trend fires; a flat high level does not', () => {
  const policy = parsePolicy({ rules: [{ name: 'rising', when: { trend: { label: ['angry', 'disgust'], rise: 0.3, withinMs: 5000 } }, do: { action: 'soften_offer', level: 2 } }] });
  const rising = new Script().emotion(3000, 'angry', 0.1).emotion(1000, 'angry', 0.3).emotion(1000, 'angry', 0.6);
  const acts = run(policy, rising.events);
  assert.equal(acts.length, 1);
  assert.equal(acts[0].level, 2);
  assert.ok(Number(acts[0].evidence.rise) >= 0.3);
  assert.deepEqual(run(policy, new Script().emotion(10_000, 'angry', 0.7).events), []);
  // A rise spread over more than the look-back does not count.
  const slow = new Script().emotion(4000, 'angry', 0.1).emotion(8000, 'angry', 0.25).emotion(8000, 'angry', 0.38);
  assert.deepEqual(run(policy, slow.events), []);
});

test('DTMF fires at the key press, gated by custom parameters and the emotion state', () => {
  const policy = parsePolicy({
    rules: [
      { name: 'agent-on-zero', when: { dtmf: ['0'], parameters: [{ name: 'tier', in: ['gold', 'platinum'] }] }, do: { action: 'escalate', dial: '+15005550006' }, cooldownMs: 0 },
      { name: 'angry-star', when: { dtmf: ['*'], emotion: { label: 'angry', above: 0.5, forMs: 0 } }, do: { action: 'custom', handler: 'crm.note' }, cooldownMs: 0 },
    ],
  });
  const gold = new Script('CAg', { tier: 'gold' }).emotion(1000, 'neutral', 0.9).dtmf('5').dtmf('0');
  const acts = run(policy, gold.events);
  assert.equal(acts.length, 1);
  assert.equal(acts[0].action, 'escalate');
  assert.equal(acts[0].evidence.digit, '0');
  assert.equal(acts[0].track, null);
  assert.deepEqual(run(policy, new Script('CAb', { tier: 'basic' }).dtmf('0').events), [], 'parameter gate');
  // '*' needs anger at the time of the press.
  assert.deepEqual(run(policy, new Script().emotion(1000, 'neutral', 0.9).dtmf('*').events), []);
  const angry = run(policy, new Script().emotion(1000, 'angry', 0.9).dtmf('*').events);
  assert.equal(angry.length, 1);
  assert.equal(angry[0].handler, 'crm.note');
});

test('after escalate or end_call nothing more is decided for the call; dry run decides and marks', () => {
  const policy = parsePolicy({
    rules: [
      { name: 'end', when: { emotion: { label: 'angry', above: 0.5, forMs: 2000 } }, do: { action: 'end_call', say: 'Goodbye.' } },
      { name: 'soft', when: { emotion: { label: 'angry', above: 0.5, forMs: 4000 } }, do: { action: 'soften_offer' } },
    ],
  });
  const s = new Script().emotion(10_000, 'angry', 0.9);
  const live = run(policy, s.events);
  assert.deepEqual(live.map((a) => a.action), ['end_call']);
  const dry = run(policy, s.events, true);
  assert.deepEqual(dry.map((a) => a.action), ['end_call', 'soften_offer'], 'a dry run goes on deciding: the call was not really ended');
  assert.ok(dry.every((a) => a.dryRun));
  // The track filter: outbound anger does not fire an inbound rule.
  assert.deepEqual(run(policy, new Script().emotion(10_000, 'angry', 0.9, { track: 'outbound' }).events), []);
  // afterMs holds a rule back.
  const late = parsePolicy({ rules: [{ name: 'late', when: { afterMs: 8000, emotion: { label: 'angry', above: 0.5 } }, do: { action: 'flag_customer' } }] });
  const acts = run(late, s.events);
  assert.equal(acts.length, 1);
  assert.ok(acts[0].timeMs >= 8000);
});

test('the shipped policy: config/policy.json equals DEFAULT_POLICY, never ends or moves a call, and softens on sustained anger', () => {
  const file = loadPolicyFile(new URL('../config/policy.json', import.meta.url).pathname);
  assert.deepEqual(file, DEFAULT_POLICY);
  assert.ok(DEFAULT_POLICY.rules.every((r) => r.do.action !== 'end_call' && r.do.action !== 'escalate'));
  const acts = run(DEFAULT_POLICY, new Script().emotion(20_000, 'angry', 0.8).events);
  assert.deepEqual(acts.map((a) => a.action), ['soften_offer', 'flag_customer']);
  assert.deepEqual(run(DEFAULT_POLICY, new Script().emotion(60_000, 'neutral', 0.8).events), []);
});

test('bad policies: the error names the rule, the field, the value and what is allowed', () => {
  const bad = (raw: unknown, re: RegExp) =>
    assert.throws(() => parsePolicy(raw, 'p.json'), (e: unknown) => e instanceof CallmoodError && e.code === 'CALLMOOD_ERR_INVALID_POLICY' && re.test(e.message), String(re));
  const ok = { name: 'r', when: { emotion: { label: 'angry', above: 0.5 } }, do: { action: 'soften_offer' } };
  bad({ rules: [ok, { ...ok, name: 'x', when: { emotion: { label: 'furious', above: 0.5 } } }] }, /rule 'x' \(rules\[1\]\): when\.emotion\.label is "furious"; allowed: a label \(angry, disgust/);
  bad({ rules: [{ ...ok, when: { emotion: { label: 'angry', above: 1.5 } } }] }, /when\.emotion\.above is 1\.5; allowed: a probability in \(0, 1\]/);
  bad({ rules: [{ ...ok, do: { action: 'hang_up' } }] }, /do\.action is "hang_up"; allowed: soften_offer, escalate, end_call, flag_customer, custom/);
  bad({ rules: [{ ...ok, do: { action: 'escalate' } }] }, /escalate needs exactly one of dial/);
  bad({ rules: [{ ...ok, do: { action: 'escalate', dial: '555-1234' } }] }, /do\.dial is "555-1234"; allowed: a \+E\.164 number/);
  bad({ rules: [{ ...ok, when: { track: 'inbound' } }] }, /needs at least one of emotion, trend, negativeShare or dtmf/);
  bad({ rules: [{ ...ok, when: { emotion: { label: 'angry', above: 0.5, releaseBelow: 0.6 } } }] }, /releaseBelow must be below emotion\.above/);
  bad({ rules: [{ ...ok, cooldown: 5 }] }, /rule 'r' \(rules\[0\]\): unknown field cooldown/);
  bad({ rules: [ok, ok] }, /rule 'r' \(rules\[1\]\): name is used by an earlier rule/);
  bad({ rules: [{ ...ok, when: { dtmf: ['00'] } }] }, /when\.dtmf\.0 is "00"; allowed: a non-empty array of single keys/);
  bad({ rules: 'none' }, /p\.json: rules is "none"/);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-policy-'));
  writeFileSync(join(dir, 'broken.json'), '{ "rules": [ ');
  assert.throws(() => loadPolicyFile(join(dir, 'broken.json')), /policy file .*broken\.json: not valid JSON/);
  assert.throws(() => loadPolicyFile(join(dir, 'missing.json')), /policy file .*missing\.json: cannot read it: ENOENT/);
  // The shipped file itself is valid JSON the loader accepts (checked above); its $comment is documentation.
  assert.ok(JSON.parse(readFileSync(new URL('../config/policy.json', import.meta.url), 'utf8')).$comment);
});

test('policy run: a policy over recorded events (JSONL) decides what the engine decides; bad lines name their number', async () => {
  const { runPolicyOverEvents, describeRule } = await import('../src/cli/policy.js');
  const dir = mkdtempSync(join(tmpdir(), 'callmood-policy-run-'));
  const s = new Script().emotion(2000, 'neutral', 0.9).emotion(6000, 'angry', 0.8);
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, s.events.map((e) => JSON.stringify(e)).join('\n') + '\n');
  const fromFile = await runPolicyOverEvents(soften(), file);
  assert.deepEqual(fromFile, run(soften(), s.events, true));
  assert.equal(fromFile.length, 1);
  writeFileSync(file, `${JSON.stringify(s.events[0])}\n{"type":"nope","callSid":"x","timeMs":0}\n`);
  await assert.rejects(runPolicyOverEvents(soften(), file), /events\.jsonl:2: not a callmood event/);
  writeFileSync(file, `${JSON.stringify(s.events[0])}\n\n{oops\n`);
  await assert.rejects(runPolicyOverEvents(soften(), file), /events\.jsonl:3: not JSON/);
  await assert.rejects(runPolicyOverEvents(soften(), join(dir, 'missing.jsonl')), /missing\.jsonl: ENOENT/);
  assert.equal(describeRule(DEFAULT_POLICY.rules[0]), 'soften-on-anger: when track inbound, angry ≥ 0.5 for 3000 ms of speech → soften_offer {"maxLevel":3} (cooldown 20000 ms)');
});
