#!/usr/bin/env node
/**
 * `callmood` command line. Each command is a thin layer over the library; errors with a CALLMOOD_ERR_* code end
 * the process with exit code 2 and one line saying what was wrong, anything else with exit code 1 and a stack.
 */
import { Command } from 'commander';
import { CallmoodError } from '../errors.js';
import { featuresCommand } from './features.js';
import { benchCommand } from './bench.js';
import { modelCommands } from './model.js';
import { serveCommand } from './serve.js';
import { simulateCommand } from './simulate.js';
import { replayCommand } from './replay.js';
import { policyCommands } from './policy.js';
import { webhooksCommand } from './webhooks.js';
import { tuneHeap } from './heap.js';

const program = new Command();
try {
  tuneHeap();
} catch (err) {
  process.stderr.write(`callmood: ${(err as CallmoodError).code}: ${(err as Error).message}\n`);
  process.exit(2);
}
program
  .name('callmood')
  .description('Hears, live, how a phone caller feels: streaming MFCC features and emotion events for callbots.')
  .version('0.1.0')
  .showHelpAfterError();

featuresCommand(program);
modelCommands(program);
simulateCommand(program);
replayCommand(program);
benchCommand(program);
serveCommand(program);
policyCommands(program);
webhooksCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CallmoodError) {
    process.stderr.write(`callmood: ${err.code}: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`callmood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});
