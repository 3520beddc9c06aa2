/**
 * `callmood policy check [FILE]`: validates a policy file and lists its rules (the shipped one without FILE).
 * `callmood policy run [FILE] --events events.jsonl`: runs the policy over recorded events (e.g. from
 * `callmood replay --json`) and prints the actions it would take: tuning thresholds without re-running the model.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { resolvePackagePath } from '../config/load.js';
import { DEFAULT_POLICY, PolicyEngine, loadPolicyFile, type PolicyConfig, type PolicyRule } from '../policy/index.js';
import { EVENT_TYPES, type ActionEvent, type CallmoodEvent } from '../stream/events.js';
import { formatEvent } from './simulate.js';
import { jsonOption, jsonTarget, openJsonOutput } from './args.js';

function load(file: string | undefined): PolicyConfig {
  return file ? loadPolicyFile(resolvePackagePath(file)) : DEFAULT_POLICY;
}

/** One line per rule, for people. */
export function describeRule(r: PolicyRule): string {
  const w = r.when;
  const parts: string[] = [`track ${w.track}`];
  const labels = (l: string | string[]) => (Array.isArray(l) ? l.join('+') : l);
  if (w.emotion) parts.push(`${labels(w.emotion.label)} ≥ ${w.emotion.above} for ${w.emotion.forMs} ms of speech`);
  if (w.trend) parts.push(`${labels(w.trend.label)} rising ${w.trend.rise} within ${w.trend.withinMs} ms`);
  if (w.negativeShare) parts.push(`negative share ≥ ${w.negativeShare.above} after ${w.negativeShare.minSpeechMs} ms of speech`);
  if (w.dtmf) parts.push(`key ${w.dtmf.join('|')}`);
  for (const p of w.parameters ?? []) parts.push(`parameter ${p.name}${p.equals !== undefined ? ` = ${p.equals}` : p.in ? ` in ${p.in.join('|')}` : p.present === false ? ' absent' : ' present'}`);
  if (w.afterMs !== undefined) parts.push(`after ${w.afterMs} ms`);
  const { action, ...args } = r.do;
  const how = [r.once ? 'once per call' : `cooldown ${r.cooldownMs} ms`];
  return `${r.name}: when ${parts.join(', ')} → ${action}${Object.keys(args).length ? ` ${JSON.stringify(args)}` : ''} (${how.join(', ')})`;
}

/** Runs a policy over a JSONL file of events; a line that is not an event is an error naming the line. */
export async function runPolicyOverEvents(policy: PolicyConfig, file: string): Promise<ActionEvent[]> {
  const engine = new PolicyEngine(policy, { dryRun: true });
  const out: ActionEvent[] = [];
  let n = 0;
  let lines;
  try {
    lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const line of lines) {
      n++;
      if (line.trim() === '') continue;
      let e: CallmoodEvent;
      try {
        e = JSON.parse(line) as CallmoodEvent;
      } catch (err) {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${file}:${n}: not JSON: ${(err as Error).message}`);
      }
      if (!e || typeof e !== 'object' || !(EVENT_TYPES as readonly string[]).includes(e.type) || typeof e.callSid !== 'string' || typeof e.timeMs !== 'number') {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${file}:${n}: not a callmood event (needs type in ${EVENT_TYPES.join('|')}, callSid, timeMs)`);
      }
      out.push(...engine.observe(e));
    }
  } catch (err) {
    if (err instanceof CallmoodError) throw err;
    throw new CallmoodError(ErrorCodes.FILE_READ, `events file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return out;
}

/** Registers `callmood policy check|run`. */
export function policyCommands(program: Command): void {
  const policy = program.command('policy').description('check a dialog policy file, or run one over recorded events');
  policy
    .command('check')
    .description('validate a policy file (default: the shipped one) and list its rules')
    .argument('[file]', 'policy JSON file')
    .action((file: string | undefined) => {
      const p = load(file);
      process.stdout.write(`${file ?? 'shipped policy (config/policy.json)'}: valid, ${p.rules.length} rule(s)${p.dryRun ? ', dry run' : ''}\n`);
      for (const r of p.rules) process.stdout.write(`  ${describeRule(r)}\n`);
    });
  policy
    .command('run')
    .description('run a policy over recorded events (JSONL, e.g. from `callmood replay --json`) and print the actions it decides')
    .argument('[file]', 'policy JSON file (default: the shipped one)')
    .requiredOption('--events <file>', 'events, one JSON object per line')
    .addOption(jsonOption('the action events (one per line)'))
    .action(async (file: string | undefined, o: { events: string; json?: string | boolean }) => {
      const policy = load(file);
      const target = jsonTarget(o.json);
      const out = target ? openJsonOutput(target) : null;
      const actions = await runPolicyOverEvents(policy, o.events);
      if (out) {
        for (const a of actions) out.write(`${JSON.stringify(a)}\n`);
        await out.close();
        // With the events in a file, the lines for people still go to stdout.
        if (out.stdout) return;
      }
      for (const a of actions) process.stdout.write(`${formatEvent(a)}\n`);
      process.stdout.write(`${actions.length} action(s)\n`);
    });
}
