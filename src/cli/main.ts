#!/usr/bin/env node
/**
 * `callmood` command line. Each command is a thin layer over the library. Exit codes: 0 done; 2 a usage error (an
 * unknown option or command, a bad or missing value or argument: one line saying what, and a hint to --help) or an
 * input error with a CALLMOOD_ERR_* code (one line with the code); 1 anything else (with its stack), or what a
 * command documents as 1 (e.g. replay: some recordings failed).
 */
import { Command } from 'commander';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { featuresCommand } from './features.js';
import { benchCommand } from './bench.js';
import { modelCommands } from './model.js';
import { serveCommand } from './serve.js';
import { simulateCommand } from './simulate.js';
import { replayCommand } from './replay.js';
import { policyCommands } from './policy.js';
import { webhooksCommand } from './webhooks.js';
import { queueCommands } from './queue.js';
import { tuneHeap } from './heap.js';
import { configureUsageErrors, exitCodeOf, helpHint, USAGE_EXIT_CODE } from './args.js';

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
  .version('0.1.0');

featuresCommand(program);
modelCommands(program);
simulateCommand(program);
replayCommand(program);
benchCommand(program);
serveCommand(program);
policyCommands(program);
webhooksCommand(program);
queueCommands(program);
configureUsageErrors(program);

let running: Command | null = null;
program.hook('preAction', (_program, command) => {
  running = command;
});

program.parseAsync(process.argv).catch((err: unknown) => {
  const usage = exitCodeOf(err);
  if (usage !== null) {
    process.exitCode = usage;
  } else if (err instanceof CallmoodError) {
    // A bad value of one of the command's own flags, found by the command itself, is a usage error like commander's:
    // the same hint. Errors in a config file or the environment are not, and --help would not explain them.
    const command: Command | null = running;
    const aboutAFlag = command !== null && err.code === ErrorCodes.INVALID_OPTION && command.options.some((opt) => opt.long !== undefined && err.message.startsWith(opt.long));
    const hint = aboutAFlag ? `${helpHint(command)}\n` : '';
    process.stderr.write(`callmood: ${err.code}: ${err.message}\n${hint}`);
    process.exitCode = USAGE_EXIT_CODE;
  } else {
    process.stderr.write(`callmood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});
