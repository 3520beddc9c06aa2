/**
 * Concurrent-call runs for comparing server builds and settings in one sitting (this VM's speed drifts ~2× over
 * hours, so only figures from the same run are compared). Prints one JSON line per run, tagged with its label.
 *
 *   node --import tsx bench/calls-matrix.ts --calls 150,200,300,500 --seconds 20 \
 *     [--label after] [--root /tmp/base] [--model DIR] [--node-arg --cpu-prof] [--set stream.hopMs=500] [--set batch.maxBatch=128]
 *     [--provider telnyx]
 *
 * `--root` starts the server from another checkout (e.g. `git archive` of the previous commit with node_modules
 * linked), so "before" and "after" run back to back on the same machine state.
 */
import { benchCalls } from '../src/bench/calls.js';
import { setOption } from './options.js';

function parseArgs(argv: string[]) {
  const o = { calls: [150], seconds: 20, label: 'run', root: undefined as string | undefined, config: {} as Record<string, unknown>, model: undefined as string | undefined, nodeArgs: [] as string[], provider: 'twilio' as 'twilio' | 'telnyx' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--calls') o.calls = v.split(',').map(Number);
    else if (a === '--seconds') o.seconds = Number(v);
    else if (a === '--label') o.label = v;
    else if (a === '--root') o.root = v;
    else if (a === '--model') o.model = v;
    else if (a === '--node-arg') o.nodeArgs.push(v);
    else if (a === '--set') setOption(o.config, v);
    else if (a === '--provider') {
      if (v !== 'twilio' && v !== 'telnyx') throw new Error(`--provider ${v}: allowed twilio or telnyx`);
      o.provider = v;
    }
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const o = parseArgs(process.argv.slice(2));
for (const calls of o.calls) {
  const started = new Date().toISOString();
  const r = await benchCalls({ calls, seconds: o.seconds, config: o.config, serverRoot: o.root, modelDir: o.model, serverNodeArgs: o.nodeArgs, provider: o.provider });
  process.stdout.write(`${JSON.stringify({ label: o.label, provider: o.provider, started, config: o.config, ...r })}\n`);
}
