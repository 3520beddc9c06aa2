/**
 * What one Redis 7 on this machine takes of many-node mode's load, for the README's sizing estimate: a redis-server
 * started on a loopback port in a temporary folder (AOF, appendfsync everysec, as the README asks), then
 *   - pipelined writes of a real emotion event, as a node's bus writes them (per event: XADD to the call's stream
 *     with MINID ~, PEXPIRE, XADD MAXLEN ~ to the stream of all calls): events per second of wall time, and per
 *     second of Redis's own CPU (one client on the same 2 cores limits the first; Redis's one core the second);
 *   - memory: one call's stream holding a minute of events (150), and the stream of all calls at its default bound.
 * Prints one JSON line (append it to bench/results/redis.jsonl).
 *
 *   node --import tsx scripts/redis-capacity.ts [--events 200000] [--calls 2000]
 */
import { Redis } from 'ioredis';
import { startRedis } from '../test/helpers/redis.js';
import { DEFAULT_OPTIONS } from '../src/config/options.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const EVENTS = arg('--events', 200_000);
const CALLS = arg('--calls', 2000);
// An emotion event of the shipped model as the bus carries it (380 bytes on average over a replayed call).
const event = (callSid: string, t: number) =>
  JSON.stringify({
    callSid,
    streamSid: 'MZ78285d6e8d989f315337065b5a16020c',
    customParameters: {},
    timeMs: t,
    type: 'emotion',
    track: 'inbound',
    windowStartMs: t - 1200,
    speechRatio: 0.8833333333333333,
    probs: { angry: 0.8704823851585388, disgust: 0.017904886975884438, fear: 0.019581833854317665, happy: 0.08933590352535248, neutral: 0.0004293753008823842, sad: 0.0018774347845464945, surprise: 0.0003882427990902215 },
    label: 'angry',
    confidence: 0.8704823851585388,
    state: { probs: { angry: 0.87, disgust: 0.018, fear: 0.0196, happy: 0.0893, neutral: 0.0004, sad: 0.0019, surprise: 0.0004 }, label: 'angry', confidence: 0.87 },
    latencyMs: 21.376013000000057,
  });

const redis = await startRedis();
const r = new Redis(redis.url);
try {
  const sid = (i: number) => `CA${String(i).padStart(32, '0')}`;
  const all = 'bench:events';
  const maxLen = DEFAULT_OPTIONS.redis.eventsMaxLen;
  const redisCpu = async () => {
    const info = await r.info('cpu');
    const v = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
    return v('used_cpu_sys') + v('used_cpu_user');
  };
  const cpu0 = await redisCpu();
  const t0 = performance.now();
  for (let done = 0; done < EVENTS; ) {
    const p = r.pipeline();
    for (let k = 0; k < 512 && done < EVENTS; k++, done++) {
      const callSid = sid(done % CALLS);
      const key = `bench:call:${callSid}`;
      p.xadd(key, 'MINID', '~', Date.now() - 60_000, '*', 'n', 'node-1', 'e', event(callSid, done));
      p.pexpire(key, 60_000);
      p.xadd(all, 'MAXLEN', '~', maxLen, '*', 'n', 'node-1', 'e', event(callSid, done));
    }
    await p.exec();
  }
  const seconds = (performance.now() - t0) / 1000;
  const redisCpuSeconds = (await redisCpu()) - cpu0;
  // One call's stream with a minute of a talkative call (2.5 events a second).
  const one = 'bench:one-call';
  const p = r.pipeline();
  for (let k = 0; k < 150; k++) p.xadd(one, '*', 'n', 'node-1', 'e', event(sid(0), k));
  await p.exec();
  const oneCallBytes = Number(await r.call('MEMORY', 'USAGE', one, 'SAMPLES', '0'));
  const allBytes = Number(await r.call('MEMORY', 'USAGE', all, 'SAMPLES', '0'));
  const allLen = await r.xlen(all);
  process.stdout.write(
    `${JSON.stringify({
      started: new Date(Date.now() - seconds * 1000).toISOString().slice(0, 19) + 'Z',
      loadBefore: null,
      events: EVENTS,
      calls: CALLS,
      eventBytes: event(sid(0), 0).length,
      busEventsPerSecond: Math.round(EVENTS / seconds),
      // Redis's own CPU: what one Redis core takes, whatever the one client on the same cores could send.
      redisCpuShare: Math.round((redisCpuSeconds / seconds) * 100) / 100,
      eventsPerRedisCpuSecond: Math.round(EVENTS / redisCpuSeconds),
      oneCallStreamKb: Math.round(oneCallBytes / 1024),
      allCallsStreamMb: Math.round((allBytes / 1024 / 1024) * 10) / 10,
      allCallsStreamEntries: allLen,
    })}\n`,
  );
} finally {
  r.disconnect();
  await redis.stop();
}
