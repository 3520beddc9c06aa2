/**
 * `callmood webhooks status | retry`: the CRM webhook outbox from the command line. The webhooks section comes from
 * `--config file.json` (the file `callmood serve --config` reads, key `webhooks`); `--outbox` overrides its folder.
 * `retry` opens the outbox for delivery, so the server using it must be stopped first (the outbox is locked).
 */
import type { Command } from 'commander';
import { integer } from './args.js';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { createLogger } from '../util/log.js';
import { DEFAULT_WEBHOOK_OPTIONS, resolveWebhookOptions, type WebhookOptionsInput } from '../config/webhook-options.js';
import { loadWebhookConfig, retryDeadLetters, webhookStatus } from '../sinks/webhook-admin.js';

const timeout = integer('--timeout', 0, 3_600_000);

function webhooksInput(o: { config?: string; outbox?: string }): WebhookOptionsInput {
  const input: WebhookOptionsInput = o.config ? { ...loadWebhookConfig(o.config) } : {};
  if (o.outbox) input.outboxDir = o.outbox;
  return input;
}

/** Registers `callmood webhooks status` and `callmood webhooks retry`. */
export function webhooksCommand(program: Command): void {
  const cmd = program.command('webhooks').description('the CRM webhook outbox: pending events and dead letters per endpoint, and sending dead letters again');

  cmd
    .command('status')
    .description('count pending events and dead letters per endpoint (safe while a server runs)')
    .option('--config <file>', 'JSON options file with a webhooks section')
    .option('--outbox <dir>', `outbox folder (default: the config's webhooks.outboxDir, else ${DEFAULT_WEBHOOK_OPTIONS.outboxDir})`)
    .option('--json', 'print JSON instead of a table')
    .action(async (o: { config?: string; outbox?: string; json?: boolean }) => {
      const input = webhooksInput(o);
      // Secrets are not needed to count: only names and the folder are read.
      const names = (input.endpoints ?? []).map((e) => e.name).filter((n): n is string => typeof n === 'string');
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
    .description('move dead letters (all, or --id) back into the outbox and deliver them; prints a summary. Stop the server using the outbox first.')
    .option('--config <file>', 'JSON options file with a webhooks section (endpoint URLs; secrets from the variables named by secretEnv)')
    .option('--outbox <dir>', "outbox folder (default: the config's webhooks.outboxDir)")
    .option('--id <id>', 'only the dead letter with this event id')
    .option('--endpoint <name>', "only this endpoint's dead letters")
    .option('--timeout <ms>', 'longest wait for delivery; what is not delivered by then stays in the outbox', timeout, 60_000)
    .option('--json', 'print the summary as JSON')
    .action(async (o: { config?: string; outbox?: string; id?: string; endpoint?: string; timeout: number; json?: boolean }) => {
      const input = webhooksInput(o);
      if (!input.endpoints || input.endpoints.length === 0) {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'webhooks retry needs --config with a webhooks section naming the endpoints (url, events, secretEnv)');
      }
      resolveWebhookOptions(input);
      const s = await retryDeadLetters(input, { id: o.id, endpoint: o.endpoint, timeoutMs: o.timeout, logger: createLogger({ format: 'text', destination: process.stderr }) });
      if (o.json) process.stdout.write(`${JSON.stringify(s)}\n`);
      else {
        process.stdout.write(
          `webhooks retry: ${s.requeued} dead letter${s.requeued === 1 ? '' : 's'} sent again: ${s.delivered} delivered, ${s.deadAgain} dead again, ${s.pending} still pending (kept in the outbox)` +
            `${s.otherDelivered ? `; ${s.otherDelivered} other pending events delivered too` : ''}\n`,
        );
        for (const i of s.items) process.stdout.write(`  ${i.endpoint} ${i.id} ${i.outcome}\n`);
      }
      if (s.deadAgain > 0 || s.pending > 0) process.exitCode = 1;
    });
}
