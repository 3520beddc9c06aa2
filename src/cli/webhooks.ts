/**
 * `callmood webhooks status | retry`: the CRM webhook outbox from the command line. The webhooks section comes from
 * `--config file.json` (the file `callmood serve --config` reads, key `webhooks`); `--outbox` overrides its folder.
 * `retry` opens the outbox for delivery, so the server using it must be stopped first (the outbox is locked).
 * With `--redis URL` (or the config file's `redis.url`, or CALLMOOD_REDIS_URL) both work on the Redis outbox the
 * servers of a many-node deployment share instead; there `retry` is safe while they run: it moves the dead letters
 * back and the servers deliver them.
 */
import type { Command } from 'commander';
import { integer } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { createLogger } from '../util/log.js';
import { DEFAULT_WEBHOOK_OPTIONS, type WebhookOptionsInput } from '../config/webhook-options.js';
import { loadRedisConfig, loadWebhookConfig, redisWebhookStatus, retryDeadLetters, retryRedisDeadLetters, webhookStatus, type RetrySummary } from '../sinks/webhook-admin.js';
import { redactUrl } from '../util/redis-url.js';
import type { RedisSettings } from '../config/options.js';

const timeout = integer('--timeout', 0, 3_600_000);

function webhooksInput(o: { config?: string; outbox?: string }): WebhookOptionsInput {
  const input: WebhookOptionsInput = o.config ? { ...loadWebhookConfig(o.config) } : {};
  if (o.outbox) input.outboxDir = o.outbox;
  return input;
}

/** The Redis settings when the commands work on a Redis outbox, else null. */
function redisOf(o: { config?: string; redis?: string; prefix?: string }): RedisSettings | null {
  const r = loadRedisConfig(o.config, { url: o.redis, prefix: o.prefix });
  return r.url ? r : null;
}

const endpointNames = (input: WebhookOptionsInput) => (input.endpoints ?? []).map((e) => e.name).filter((n): n is string => typeof n === 'string');

function printRetry(s: RetrySummary, json: boolean | undefined, kept: string): void {
  if (json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stdout.write(
      `webhooks retry: ${s.requeued} dead letter${s.requeued === 1 ? '' : 's'} sent again: ${s.delivered} delivered, ${s.deadAgain} dead again, ${s.pending} still pending (${kept})` +
        `${s.otherDelivered ? `; ${s.otherDelivered} other pending events delivered too` : ''}\n`,
    );
    for (const i of s.items) process.stdout.write(`  ${i.endpoint} ${i.id} ${i.outcome}\n`);
  }
  if (s.deadAgain > 0 || s.pending > 0) process.exitCode = 1;
}

/** Registers `callmood webhooks status` and `callmood webhooks retry`. */
export function webhooksCommand(program: Command): void {
  const cmd = program.command('webhooks').description('the CRM webhook outbox: pending events and dead letters per endpoint, and sending dead letters again');

  cmd
    .command('status')
    .description('count pending events and dead letters per endpoint (safe while a server runs)')
    .option('--config <file>', 'JSON options file with a webhooks section')
    .option('--outbox <dir>', `outbox folder (default: the config's webhooks.outboxDir, else ${DEFAULT_WEBHOOK_OPTIONS.outboxDir})`)
    .option('--redis <url>', "the Redis outbox of a many-node deployment (default: the config's redis.url, else CALLMOOD_REDIS_URL)")
    .option('--prefix <prefix>', "key prefix in Redis (default: the config's redis.prefix, else callmood)")
    .option('--json', 'print JSON instead of a table')
    .action(async (o: { config?: string; outbox?: string; redis?: string; prefix?: string; json?: boolean }) => {
      const input = webhooksInput(o);
      // Secrets are not needed to count: only names and the folder are read.
      const names = endpointNames(input);
      const redis = redisOf(o);
      if (redis) {
        const rows = await redisWebhookStatus(redis, names);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(rows)}\n`);
          return;
        }
        if (rows.length === 0) {
          process.stdout.write(`no webhook outbox in Redis ${redactUrl(redis.url!)} under ${redis.prefix}\n`);
          return;
        }
        const w = Math.max(8, ...rows.map((r) => r.endpoint.length));
        process.stdout.write(`${'endpoint'.padEnd(w)}  pending  in delivery     dead\n`);
        for (const r of rows) {
          process.stdout.write(`${r.endpoint.padEnd(w)}  ${String(r.pending).padStart(7)}  ${String(r.inDelivery).padStart(11)}  ${String(r.dead).padStart(7)}\n`);
          const byOwner = new Map<string, number[]>();
          for (const p of r.partitions) {
            const owner = p.owner ?? '(no node)';
            byOwner.set(owner, [...(byOwner.get(owner) ?? []), p.partition]);
          }
          for (const [owner, ps] of byOwner) process.stdout.write(`  ${owner}: partitions ${ps.join(',')}\n`);
        }
        return;
      }
      const rows = await webhookStatus(input.outboxDir ?? DEFAULT_WEBHOOK_OPTIONS.outboxDir, names);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(rows)}\n`);
        return;
      }
      if (rows.length === 0) {
        process.stdout.write(`no webhook outbox in ${input.outboxDir ?? DEFAULT_WEBHOOK_OPTIONS.outboxDir}\n`);
        return;
      }
      const w = Math.max(8, ...rows.map((r) => r.endpoint.length));
      process.stdout.write(`${'endpoint'.padEnd(w)}  pending     dead${rows.some((r) => r.torn) ? '  damaged lines' : ''}\n`);
      for (const r of rows) {
        process.stdout.write(`${r.endpoint.padEnd(w)}  ${String(r.pending).padStart(7)}  ${String(r.dead).padStart(7)}${r.torn ? `  ${r.torn}` : ''}\n`);
      }
    });

  cmd
    .command('retry')
    .description('move dead letters (all, or --id) back into the outbox and deliver them; prints a summary. A folder outbox: stop the server using it first; a Redis outbox (--redis): safe while servers run, they deliver.')
    .option('--config <file>', 'JSON options file with a webhooks section (endpoint URLs; secrets from the variables named by secretEnv)')
    .option('--outbox <dir>', "outbox folder (default: the config's webhooks.outboxDir)")
    .option('--redis <url>', "the Redis outbox of a many-node deployment (default: the config's redis.url, else CALLMOOD_REDIS_URL); safe while its servers run, which deliver")
    .option('--prefix <prefix>', "key prefix in Redis (default: the config's redis.prefix, else callmood)")
    .option('--id <id>', 'only the dead letter with this event id')
    .option('--endpoint <name>', "only this endpoint's dead letters")
    .option('--timeout <ms>', 'longest wait for delivery; what is not delivered by then stays in the outbox', timeout, 60_000)
    .option('--json', 'print the summary as JSON')
    .action(async (o: { config?: string; outbox?: string; redis?: string; prefix?: string; id?: string; endpoint?: string; timeout: number; json?: boolean }) => {
      const input = webhooksInput(o);
      const redis = redisOf(o);
      if (redis) {
        const s = await retryRedisDeadLetters(redis, endpointNames(input), { id: o.id, endpoint: o.endpoint, timeoutMs: o.timeout });
        printRetry(s, o.json, 'kept in Redis; a running server delivers them');
        return;
      }
      if (!input.endpoints || input.endpoints.length === 0) {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'webhooks retry needs --config with a webhooks section naming the endpoints (url, events, secretEnv)');
      }
      // Invalid options throw INVALID_OPTION from the sink retryDeadLetters opens, before anything is touched.
      const s = await retryDeadLetters(input, { id: o.id, endpoint: o.endpoint, timeoutMs: o.timeout, logger: createLogger({ format: 'text', destination: process.stderr }) });
      printRetry(s, o.json, 'kept in the outbox');
    });
}
