/**
 * Reading a JSON config file (e.g. `config/default.json`) into options, and finding the model directory. A config
 * file may not hold secrets: they belong in the environment, where they stay out of repositories and images.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { CallmoodOptionsInput } from './options.js';
import { rejectWebhookSecrets } from './webhook-options.js';
import { readJsonFile } from '../util/json-file.js';

const SECRET_FIELDS: Record<string, string> = {
  authToken: 'TWILIO_AUTH_TOKEN',
  eventsToken: 'CALLMOOD_EVENTS_TOKEN',
  telnyxStreamToken: 'CALLMOOD_TELNYX_STREAM_TOKEN',
  telnyxApiKey: 'TELNYX_API_KEY',
};

/** Reads a JSON config file. Throws INVALID_OPTION (unreadable, not JSON, not an object, holds a secret). */
export function loadConfigFile(file: string): CallmoodOptionsInput {
  const raw = readJsonFile(file, ErrorCodes.INVALID_OPTION, 'config file');
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `config file ${file}: must hold a JSON object of options`);
  }
  const o = { ...(raw as Record<string, unknown>) };
  // A "$comment" key documents the file; it is not an option.
  delete o.$comment;
  for (const [field, env] of Object.entries(SECRET_FIELDS)) {
    if (field in o && o[field] !== null) {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `config file ${file}: ${field} is a secret and may not be in a config file; set ${env} in the environment`);
    }
  }
  rejectWebhookSecrets(o.webhooks, `config file ${file}`);
  return o as CallmoodOptionsInput;
}

/** The package's root folder (where package.json is), from source or compiled. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** A path to something the package ships (a model, a policy): absolute as given; relative to the working directory if it exists there, else to the package. */
export function resolvePackagePath(p: string): string {
  if (isAbsolute(p)) return p;
  const here = resolve(p);
  if (existsSync(here)) return here;
  const shipped = join(packageRoot(), p);
  return existsSync(shipped) ? shipped : here;
}

/** A model directory, found as `resolvePackagePath` finds it. */
export function resolveModelDir(dir: string): string {
  return resolvePackagePath(dir);
}
