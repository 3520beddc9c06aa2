/**
 * `callmood replay` as main.ts runs it (same error handling and exit codes), for tests to spawn with
 * `node --import tsx test/helpers/replay-cli.ts replay ARGS` until main.ts registers the command.
 */
import { Command } from 'commander';
import { CallmoodError } from '../../src/errors.js';
import { replayCommand } from '../../src/cli/replay.js';

const program = new Command().name('callmood').showHelpAfterError();
replayCommand(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CallmoodError) {
    process.stderr.write(`callmood: ${err.code}: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`callmood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
});
