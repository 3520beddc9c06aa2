/**
 * A node of a many-node deployment, for test/redis-webhooks.test.ts: a RedisWebhookSink with its own node id that
 * enqueues numbered mark events of its calls and keeps delivering until SIGTERM (then closes) or SIGKILL.
 *
 *   node --import tsx test/helpers/redis-webhook-child.ts <redisUrl> <prefix> <crmUrl> <nodeId> <calls> <perCall> <leaseMs>
 *
 * One event per call is enqueued every 100 ms.
 *
 * Calls are `CA<nodeId>x<j>`. Prints one JSON line per fact: {ready}, {ok: [callSid, n]} once Redis accepted an
 * event (its enqueue promise resolved), {held: n} every 250 ms (partitions it delivers), {closed} after close().
 * The secret comes from WEBHOOK_TEST_SECRET; log lines go to stderr.
 */
import { RedisWebhookSink } from '../../src/sinks/redis-webhooks.js';
import { DEFAULT_OPTIONS } from '../../src/config/options.js';
import { markEvent } from './webhook-crm.js';

const [redisUrl, prefix, crmUrl, nodeId, calls, perCall, leaseMs] = process.argv.slice(2);
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sink = await RedisWebhookSink.open(
  { endpoints: [{ name: 'crm', url: crmUrl, events: ['mark'], secretEnv: 'WEBHOOK_TEST_SECRET', concurrency: 4, maxAttempts: 1000, backoff: { baseMs: 50, maxMs: 300, jitter: 0.5 } }] },
  { ...DEFAULT_OPTIONS.redis, url: redisUrl, prefix, leaseMs: Number(leaseMs) },
  { nodeId, logger: (level, code, message) => process.stderr.write(`${nodeId} ${level} ${code} ${message}\n`) },
);
say({ ready: true });
const held = setInterval(() => say({ held: sink.stats().crm.partitions }), 250);
process.on('SIGTERM', () => {
  clearInterval(held);
  void sink.close(2000, 2000).then(() => {
    say({ closed: true });
    process.exit(0);
  });
});
// One event per call every 100 ms, in order of n: a node killed mid-way has accepted some of its calls' events only.
for (let n = 0; n < Number(perCall); n++) {
  for (let j = 0; j < Number(calls); j++) {
    const call = `CA${nodeId}x${j}`;
    sink.enqueue(markEvent(call, n)).then(
      () => say({ ok: [call, n] }),
      () => undefined,
    );
  }
  await new Promise((r) => setTimeout(r, 100));
}
say({ enqueued: true });
