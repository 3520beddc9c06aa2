/**
 * A process that owns a webhook outbox, for the crash test: `enqueue` mode enqueues `perCall` numbered mark events for
 * each of `calls` calls, prints `durable` once they are on disk, then delivers; `resume` mode only replays the outbox.
 * Either prints `drained` when nothing is pending. The test kills it with SIGKILL in between.
 *
 *   node --import tsx test/helpers/webhook-child.ts <enqueue|resume> <outboxDir> <url> <calls> <perCall>
 * The secret comes from WEBHOOK_TEST_SECRET.
 */
import { WebhookSink } from '../../src/sinks/webhooks.js';
import { markEvent } from './webhook-crm.js';

const [mode, outboxDir, url, calls, perCall] = process.argv.slice(2);
const sink = await WebhookSink.open(
  {
    outboxDir,
    // A small window and compaction threshold so the crash can land in spilled reads and compactions too.
    memoryWindow: 100,
    compactAtBytes: 16 * 1024,
    endpoints: [{ name: 'crm', url, events: ['mark'], secretEnv: 'WEBHOOK_TEST_SECRET', concurrency: 4, backoff: { baseMs: 20, maxMs: 200, jitter: 0.5 } }],
  },
  { logger: (level, code, message) => process.stderr.write(`${level} ${code} ${message}\n`) },
);
if (mode === 'enqueue') {
  let last: Promise<void> = Promise.resolve();
  for (let n = 0; n < Number(perCall); n++) {
    for (let c = 0; c < Number(calls); c++) last = sink.enqueue(markEvent(`CA${c}`, n));
  }
  await last;
  process.stdout.write('durable\n');
}
await sink.drain(60_000);
process.stdout.write('drained\n');
await sink.close();
