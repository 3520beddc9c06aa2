import { createWriteStream, openSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { nearestName } from '../util/issues.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { FEATURE_CONFIGS_BY_RATE } from '../features/config.js';

/** Option parsers: each error names the option, the value and what is allowed. */

/** An integer in [min, max]. */
export const integer = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in [${min}, ${max}]`}, got '${v}'`);
  }
  return n;
};

/** A number in [lo, hi]. */
export const numberIn = (name: string, lo: number, hi: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi) throw new InvalidArgumentError(`${name} must be a number in [${lo}, ${hi}], got '${v}'`);
  return n;
};

/** A number > 0. */
export const positive = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'`);
  return n;
};

/** A comma-separated list. */
export const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

/** `--feature-rate <hz>`: which feature config (FEATURE_CONFIGS_BY_RATE) a command starts from. */
export const featureRateOption = (description: string, defaultRate: '8000' | '16000'): Option =>
  new Option('--feature-rate <hz>', description).choices(Object.keys(FEATURE_CONFIGS_BY_RATE)).default(defaultRate);

/**
 * `--json [file]`, the same in every command: write the JSON to this file, or to standard output when the value is
 * `-` or left out. The value is optional so that `--json` alone, as scripts and the README use it, keeps printing.
 * Read the parsed value with {@link jsonTarget}; open it with {@link openJsonOutput}.
 */
export const jsonOption = (what: string, note?: string): Option =>
  new Option('--json [file]', `write ${what} as JSON to this file ('-' or no value: standard output)${note ? `; ${note}` : ''}`);

/** Where `--json` goes: null when not given, '-' for standard output, else the file path. */
export function jsonTarget(value: string | boolean | undefined): string | null {
  if (value === undefined || value === false) return null;
  return value === true ? '-' : value;
}

/** A place `--json` output goes to. */
export interface JsonOutput {
  /** Whether it is standard output (a command then keeps its own lines for people off stdout). */
  readonly stdout: boolean;
  /** Writes text as given (add the newline yourself). */
  write(text: string): void;
  /** Flushes and closes a file; resolves at once for standard output. */
  close(): Promise<void>;
}

/**
 * Opens where `--json` goes (see {@link jsonTarget}). A file is created (emptied) at once, so that an unwritable
 * path is a usage error before any work is done: INVALID_OPTION naming the option, the path and the reason.
 */
export function openJsonOutput(target: string, option = '--json'): JsonOutput {
  if (target === '-') {
    return { stdout: true, write: (t) => void process.stdout.write(t), close: () => Promise.resolve() };
  }
  let fd: number;
  try {
    fd = openSync(target, 'w');
  } catch (err) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `${option} ${target}: cannot write there: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  const stream = createWriteStream('', { fd });
  // A write error (disk full) surfaces at close(), not as an unhandled 'error' event.
  const done = finished(stream);
  done.catch(() => {});
  return {
    stdout: false,
    write: (t) => void stream.write(t),
    close: () => {
      stream.end();
      return done;
    },
  };
}

/** Writes one JSON document (and a newline) where `--json` goes. */
export async function writeJson(target: string, value: unknown, option = '--json'): Promise<void> {
  const out = openJsonOutput(target, option);
  out.write(`${JSON.stringify(value)}\n`);
  await out.close();
}

/** Exit code of a usage error (unknown option or command, bad or missing value or argument), as POSIX utilities use. */
export const USAGE_EXIT_CODE = 2;

/** Every command under (and including) `cmd`. */
function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

/** A command's full name, e.g. `callmood bench mfcc`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The hint after a usage error. */
export const helpHint = (cmd: Command): string => `Run '${commandPath(cmd)} --help' for its usage.`;

/**
 * Makes every command registered on `program` report a usage error as one line naming the command, then a hint to
 * its --help, instead of commander's default of the whole help text and exit code 1; the full help is what --help
 * is for. Commander then throws a CommanderError instead of exiting (exitOverride): map it with {@link exitCodeOf}.
 * A command group run without a subcommand (`callmood bench`) is a usage error too. Call once, after every command is
 * registered (commander copies these settings only to commands created later).
 */
export function configureUsageErrors(program: Command): void {
  for (const cmd of allCommands(program)) {
    const name = commandPath(cmd);
    cmd.exitOverride();
    cmd.showHelpAfterError(helpHint(cmd));
    cmd.configureOutput({ outputError: (text, write) => write(`${name}: ${text.replace(/^error: /, '')}`) });
    if (cmd.commands.length > 0) {
      // Without an action, commander prints the whole help to stderr and exits 1 for a missing subcommand. With one it
      // drops the implicit `help` command unless asked to keep it.
      cmd.helpCommand(true);
      cmd.allowExcessArguments().action((_o: unknown, self: Command) => {
        const names = self.commands.map((c) => c.name());
        const given = self.args[0];
        if (given === undefined) self.error(`a command is needed: ${names.join(', ')}`, { code: 'commander.missingCommand', exitCode: USAGE_EXIT_CODE });
        const near = nearestName(given, names);
        self.error(`unknown command '${given}'${near ? ` (did you mean ${near}?)` : ''}; commands: ${names.join(', ')}`, { code: 'commander.unknownCommand', exitCode: USAGE_EXIT_CODE });
      });
    }
  }
}

/**
 * The exit code for an error out of `program.parseAsync` under {@link configureUsageErrors}, or null when it is not
 * commander's: 0 after --help and --version, USAGE_EXIT_CODE for every usage error (commander's message and the hint
 * are already written).
 */
export function exitCodeOf(err: unknown): number | null {
  if (!(err instanceof CommanderError)) return null;
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
  if (err.code === 'commander.help') return err.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
  return USAGE_EXIT_CODE;
}
