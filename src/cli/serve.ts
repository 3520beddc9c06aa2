/**
 * `callmood serve`: the standalone server. Options come from the defaults, then `--config file.json`, then the flags;
 * secrets from the environment (TWILIO_AUTH_TOKEN, CALLMOOD_EVENTS_TOKEN). Logs go to stdout, one record a line: pino's
 * JSON by default (pipe it to pino-pretty, or a log shipper), human text with `--log-format text`. The first record
 * once the port is bound is `CALLMOOD_LISTENING` ("listening on http://host:port …", with `url`, `host`, `port`
 * fields), so a supervisor or test can read the port of `--port 0`. Usage and start-up errors go to stderr. SIGTERM or
 * SIGINT drains (live calls end as `shutdown`) and exits 0; a second signal exits at once with 1.
 */
import { Command, Option } from 'commander';
import { integer } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import type { CallmoodOptionsInput } from '../config/options.js';
import { createCallmood } from '../telephony/server.js';
import { createLogger, toLogger, type LogFormat, type LogLevel } from '../util/log.js';

const port = integer('--port', 0, 65535);

/** Registers `callmood serve`. */
export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('serve Twilio media streams live: TwiML and status webhooks, the media WebSocket, the /events feed, /healthz and /metrics')
    .option('--port <n>', 'TCP port (0 = any free port; the bound one is printed)', port, 8080)
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--config <file>', 'JSON options file (see config/default.json); flags override it')
    .option('--model <dir>', 'model directory (default models/default)')
    .option('--policy <file>', 'dialog policy JSON file (default: the shipped config/policy.json)')
    .option('--no-policy', 'run no dialog policy at all')
    .option('--dry-run', 'the policy decides and reports actions but carries none out')
    .option('--redis <url>', 'many nodes on one Redis: redis://host:port (or CALLMOOD_REDIS_URL); see README "Running many nodes"')
    .option('--no-validate-signatures', 'DEVELOPMENT ONLY: accept requests without a valid X-Twilio-Signature')
    .addOption(new Option('--log-format <format>', 'log records as JSON lines (pino) or human text').choices(['json', 'text']).default('json'))
    .addOption(new Option('--log-level <level>', 'least severity logged').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .action(async (o: { port: number; host: string; config?: string; model?: string; policy?: string | boolean; dryRun?: boolean; validateSignatures: boolean; redis?: string; logFormat: LogFormat; logLevel: LogLevel }) => {
      const input: CallmoodOptionsInput = o.config ? loadConfigFile(o.config) : {};
      if (o.model) input.modelDir = o.model;
      if (o.redis) input.redis = { ...input.redis, url: o.redis };
      if (!o.validateSignatures) input.validateSignatures = false;
      if (typeof o.policy === 'string') input.policy = { ...input.policy, file: o.policy };
      if (o.policy === false) input.policy = { ...input.policy, enabled: false };
      if (o.dryRun) input.policy = { ...input.policy, dryRun: true };
      const pinoLogger = createLogger({ format: o.logFormat, level: o.logLevel });
      const logger = toLogger(pinoLogger);
      const server = createCallmood(input, { logger: pinoLogger });
      try {
        // listen() logs CALLMOOD_LISTENING with the bound address.
        await server.listen(o.port, o.host);
      } catch (err) {
        // The model's worker thread would keep the process alive: stop it before reporting.
        await server.close();
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
          throw new CallmoodError(ErrorCodes.INVALID_OPTION, `cannot listen on ${o.host}:${o.port}: ${code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : 'no such address here'}`);
        }
        throw err;
      }

      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          logger('error', 'CALLMOOD_FORCED_EXIT', `${signal} again while draining: exiting now`);
          process.exit(1);
        }
        stopping = true;
        logger('info', 'CALLMOOD_SIGNAL', `${signal}: draining`);
        server.close().then(
          () => {
            process.exitCode = 0;
            // Everything is closed; should a stray handle keep the loop alive, do not hang the supervisor.
            setTimeout(() => process.exit(0), 2000).unref();
          },
          (err: unknown) => {
            logger('error', 'CALLMOOD_DRAIN_FAILED', `drain failed: ${(err as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // A stray rejection must not take every live call down with it; it is a bug, logged with its stack.
      process.on('unhandledRejection', (err) => {
        logger('error', 'CALLMOOD_UNHANDLED_REJECTION', `unhandled rejection: ${(err as Error)?.message ?? String(err)}`, { err });
      });
    });
}
