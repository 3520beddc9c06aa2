/**
 * A process that opens a webhook outbox, for the tests that need another process, another PID namespace or another
 * mount namespace (test/defects-webhooks.test.ts):
 *
 *   node --import tsx test/helpers/outbox-child.ts hold <outboxDir> <url>   open it, print `locked <pid>`, stay alive
 *   node --import tsx test/helpers/outbox-child.ts open <outboxDir> <url>   try to open it, print {ok, code, message}
 *   node --import tsx test/helpers/outbox-child.ts fill <outboxDir> <url> <fillerFile>
 *       enqueue ~1 KB events one flush at a time until the disk is full and 20 flushes more have failed; close;
 *       delete <fillerFile> (space for the start-up compaction), open the outbox again; print what was logged
 *
 * The secret comes from WEBHOOK_TEST_SECRET. Log lines go to stderr.
 */
import { rmSync } from 'node:fs';
import { WebhookSink } from '../../src/sinks/webhooks.js';
import type { WebhookOptionsInput } from '../../src/config/webhook-options.js';
import { markEvent } from './webhook-crm.js';

const [mode, outboxDir, url, filler] = process.argv.slice(2);
type Line = { level: string; code: string; message: string };
let lines: Line[] = [];
const logger = (level: string, code: string, message: string) => {
  lines.push({ level, code, message });
  process.stderr.write(`${level} ${code} ${message}\n`);
};
// A long backoff: with the CRM refusing, events stay pending and the outbox only grows.
const options: WebhookOptionsInput = {
  outboxDir,
  endpoints: [{ name: 'crm', url, events: ['mark'], secretEnv: 'WEBHOOK_TEST_SECRET', backoff: { baseMs: 60_000, maxMs: 60_000, jitter: 0 } }],
};

if (mode === 'hold') {
  await WebhookSink.open(options, { logger });
  process.stdout.write(`locked ${process.pid}\n`);
  setInterval(() => {}, 60_000);
} else if (mode === 'open') {
  try {
    const sink = await WebhookSink.open(options, { logger });
    await sink.close(0, 0);
    process.stdout.write(`${JSON.stringify({ ok: true, lines })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, code: (err as { code?: string }).code, message: (err as Error).message, lines })}\n`);
  }
} else if (mode === 'fill') {
  const sink = await WebhookSink.open(options, { logger });
  const pad = 'x'.repeat(1000);
  let durable = 0;
  let failed = 0;
  for (let n = 0; n < 1000 && failed < 20; n++) {
    const e = markEvent('CA1', n);
    if (e.type === 'mark') e.name = `${n} ${pad}`;
    try {
      // One event per flush: each failure below is one failed flush.
      await sink.enqueue(e);
      if (failed === 0) durable++;
    } catch {
      failed++;
    }
  }
  const whileFull = lines;
  lines = [];
  await sink.close(0, 0);
  rmSync(filler);
  const again = await WebhookSink.open(options, { logger });
  const pending = again.stats().crm.pending;
  await again.close(0, 0);
  process.stdout.write(`${JSON.stringify({ durable, failed, pending, whileFull, restart: lines })}\n`);
}
