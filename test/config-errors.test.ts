/**
 * Config errors in plain words: a secret from the environment is named by its variable, a misspelt key gets the
 * allowed keys and the nearest one, and zod's own issue text never reaches the user (options, replay options,
 * policy files, and through the command line).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { resolveOptions } from '../src/config/options.js';
import { nearestName } from '../src/util/issues.js';
import { resolveReplayOptions } from '../src/replay/replay.js';
import { parsePolicy } from '../src/policy/config.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const TOKEN = 'a-long-enough-token';
/** Wording zod uses in its own issue messages; none of it may reach a user. */
const ZOD_TEXT = /Invalid input|expected \w+, received|Unrecognized key|Too (small|big)|Invalid (option|string|element)|received undefined/;

test('a short TWILIO_AUTH_TOKEN or CALLMOOD_EVENTS_TOKEN names the variable, its length (never its value) and what is allowed', () => {
  const e = assertCallmoodError(() => resolveOptions({}, { TWILIO_AUTH_TOKEN: 'abc' }), ErrorCodes.INVALID_OPTION, /^TWILIO_AUTH_TOKEN \(from the environment\) is 3 character\(s\) long; allowed: at least 8 characters/);
  assert.doesNotMatch(e.message, /abc|authToken/);
  assertCallmoodError(() => resolveOptions({}, { TWILIO_AUTH_TOKEN: TOKEN, CALLMOOD_EVENTS_TOKEN: 'xyz' }), ErrorCodes.INVALID_OPTION, /^CALLMOOD_EVENTS_TOKEN \(from the environment\) is 3 character\(s\) long/);
  // Given in code, the option is the name the caller used, and the value stays hidden.
  const inCode = assertCallmoodError(() => resolveOptions({ authToken: 'short' }, {}), ErrorCodes.INVALID_OPTION, /^option authToken is a secret of 5 character\(s\); allowed: null or a string of at least 8 characters/);
  assert.doesNotMatch(inCode.message, /short"/);
});

test('a misspelt key lists the keys allowed there and suggests the nearest one', () => {
  assertCallmoodError(
    () => resolveOptions({ stallTimoutMs: 5000 } as never, { TWILIO_AUTH_TOKEN: TOKEN }),
    ErrorCodes.INVALID_OPTION,
    /^unknown option stallTimoutMs \(did you mean stallTimeoutMs\?\); allowed here: modelDir, engine, publicUrl, .*stallTimeoutMs/,
  );
  assertCallmoodError(
    () => resolveOptions({ stream: { hopMS: 250 } } as never, { TWILIO_AUTH_TOKEN: TOKEN }),
    ErrorCodes.INVALID_OPTION,
    /^unknown option stream\.hopMS \(did you mean stream\.hopMs\?\); allowed here: hopMs, smoothing, minSpeechMs, minSpeechRatio$/,
  );
  // Nothing near: the list alone, no guess.
  const far = assertCallmoodError(() => resolveOptions({ colour: 'red' } as never, { TWILIO_AUTH_TOKEN: TOKEN }), ErrorCodes.INVALID_OPTION, /^unknown option colour; allowed here: modelDir/);
  assert.doesNotMatch(far.message, /did you mean/);
  assertCallmoodError(() => resolveReplayOptions({ segmentSeconds: 5 } as never), ErrorCodes.INVALID_OPTION, /unknown replay option segmentSeconds; allowed here: channels, stream, maxBatch, segmentS/);
  assertCallmoodError(
    () => parsePolicy({ rules: [{ name: 'r', when: { emotoin: { label: 'angry', above: 0.5 } }, do: { action: 'soften_offer' } }] }),
    ErrorCodes.INVALID_POLICY,
    /rule 'r' \(rules\[0\]\): unknown field when\.emotoin \(did you mean when\.emotion\?\); allowed here: track, emotion, trend/,
  );
  assert.equal(nearestName('hopms', ['hopMs', 'smoothing']), 'hopMs');
  assert.equal(nearestName('cooldown', ['name', 'cooldownMs']), 'cooldownMs');
  assert.equal(nearestName('port', ['modelDir', 'engine', 'paths']), undefined);
});

test("zod's own issue text never reaches the user: every kind of bad value is put in words", () => {
  const env = { TWILIO_AUTH_TOKEN: TOKEN };
  const cases: Array<[() => unknown, RegExp]> = [
    [() => resolveOptions({ paths: null } as never, env), /option paths is null; allowed: an object with the fields media, events, twiml/],
    [() => resolveOptions({ stream: 'fast' } as never, env), /option stream is "fast"; allowed: an object with the fields hopMs, smoothing/],
    [() => resolveOptions({ twiml: { forwardParams: 'From' } } as never, env), /option twiml\.forwardParams is "From"; allowed: an array of webhook parameter names/],
    [() => resolveReplayOptions({ stream: { hopMS: 3 } } as never), /unknown replay option stream\.hopMS \(did you mean stream\.hopMs\?\)/],
    [() => resolveReplayOptions({ maxBatch: 0 }), /replay option maxBatch is 0; allowed: an integer in \[1, 4096\]/],
    [() => parsePolicy({}), /rules is missing; allowed: an array of rules, each \{name, when, do\}/],
    [() => parsePolicy([]), /\(the whole file\) is \[\]; allowed: an object with the fields \$comment, dryRun, rules/],
    [() => parsePolicy({ rules: [{ name: 'r', when: { emotion: { label: 'angry', above: 0.5 } } }] }), /do is missing; allowed: an object \{action, …\} with action one of soften_offer/],
    [() => parsePolicy({ rules: [{ name: 'r', when: [], do: { action: 'soften_offer' } }] }), /when is \[\]; allowed: an object of conditions/],
  ];
  for (const [fn, pattern] of cases) {
    let message = '';
    try {
      fn();
    } catch (e) {
      message = (e as Error).message;
    }
    assert.match(message, pattern);
    assert.doesNotMatch(message, ZOD_TEXT, message);
  }
});

test('serve reports a short TWILIO_AUTH_TOKEN and a misspelt config key in one line, exit code 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-config-errors-'));
  const config = join(dir, 'callmood.json');
  writeFileSync(config, JSON.stringify({ maxCall: 10 }));
  const serve = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', '--port', '0', ...args], {
      cwd: root,
      env: { ...process.env, CALLMOOD_EVENTS_TOKEN: '', ...env },
      timeout: 60_000,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
  const short = await serve({ TWILIO_AUTH_TOKEN: 'abc' });
  assert.equal(short.code, 2, short.stderr);
  assert.match(short.stderr, /^callmood: CALLMOOD_ERR_INVALID_OPTION: TWILIO_AUTH_TOKEN \(from the environment\) is 3 character\(s\) long; allowed: at least 8 characters/);
  assert.equal(short.stderr.trim().split('\n').length, 1, short.stderr);
  const misspelt = await serve({ TWILIO_AUTH_TOKEN: TOKEN }, '--config', config);
  assert.equal(misspelt.code, 2, misspelt.stderr);
  assert.match(misspelt.stderr, /unknown option maxCall \(did you mean maxCalls\?\); allowed here: modelDir, .*maxCalls/);
  assert.doesNotMatch(misspelt.stderr, ZOD_TEXT);
});
