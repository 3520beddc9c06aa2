/** Reading a JSON file the user gave (a config, a policy), with errors that say which file and what is wrong. */
import { readFileSync } from 'node:fs';
import { CallmoodError, type ErrorCode } from '../errors.js';

/** Reads and parses `file`; an unreadable file or bad JSON is a CallmoodError with `code`, naming the file as `what FILE`. */
export function readJsonFile(file: string, code: ErrorCode, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CallmoodError(code, `${what} ${file}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CallmoodError(code, `${what} ${file}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
