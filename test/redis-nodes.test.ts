/**
 * Many nodes on one Redis: three real `callmood serve --redis` processes, a real redis-server started here on a
 * loopback port, calls from the Twilio-like simulator. A consumer on one node follows a call that lives on another,
 * catching up on what it missed; Redis stopped under live calls, then started again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { followEvents, simulateCall } from '../src/telephony/simulator.js';
import { createCallmood, type CallmoodServer } from '../src/telephony/server.js';
import type { CallmoodEvent } from '../src/stream/events.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { startServe, type ServeProcess } from './helpers/serve.js';
import { phoneClip } from './helpers/replay-audio.js';
import { assertCallmoodError, cli, waitFor } from './helpers.js';
import { FakeCrm } from './helpers/webhook-crm.js';
import { Redis } from 'ioredis';
import { resolveOptions } from '../src/config/options.js';
import { ErrorCodes } from '../src/errors.js';

const TOKEN = 'redis-nodes-auth-token';
const FEED = 'redis-nodes-feed-token';
const env = { TWILIO_AUTH_TOKEN: TOKEN, CALLMOOD_EVENTS_TOKEN: FEED };
const callSid = () => 'CA' + randomBytes(16).toString('hex');

let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

test('redis options: off by default, the URL from the option or CALLMOOD_REDIS_URL, a bad one named with what is allowed', async () => {
  const env = { TWILIO_AUTH_TOKEN: TOKEN };
  assert.equal(resolveOptions({}, env).redis.url, null);
  assert.equal(resolveOptions({}, { ...env, CALLMOOD_REDIS_URL: 'redis://10.0.0.5:6379' }).redis.url, 'redis://10.0.0.5:6379');
  assert.equal(resolveOptions({ redis: { url: 'rediss://u:p@r.example.com:6380/2' } }, { ...env, CALLMOOD_REDIS_URL: 'redis://other:1' }).redis.url, 'rediss://u:p@r.example.com:6380/2');
  assertCallmoodError(() => resolveOptions({ redis: { url: 'http://r:6379' } }, env), ErrorCodes.INVALID_OPTION, /redis\.url/, /allowed: null or redis:\/\/\[user:password@\]host:port/);
  assertCallmoodError(() => resolveOptions({ redis: { leaseMs: 10 } }, env), ErrorCodes.INVALID_OPTION, /redis\.leaseMs/, /\[1000, 600000\]/);
  const r = await cli('bench', 'calls', '--nodes', '3');
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--nodes 3 needs --redis/);
});

async function health(url: string): Promise<Record<string, any>> {
  const r = await fetch(`${url}/healthz`);
  return (await r.json()) as Record<string, any>;
}

/** Repeats a clip to `seconds` of audio. */
async function longClip(seconds: number): Promise<Float32Array> {
  const x = await phoneClip('YAF_back_angry.flac');
  const out = new Float32Array(Math.floor((seconds * 8000) / 160) * 160);
  for (let i = 0; i < out.length; i += x.length) out.set(x.subarray(0, Math.min(x.length, out.length - i)), i);
  return out;
}

test('three nodes: a consumer on node A follows a call on node C, catching up on its call-start, and gets what C\'s own consumer gets', async () => {
  const nodes: ServeProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(await startServe({ engine: 'in-process', policy: { enabled: false }, redis: { url: redis.url, catchUpMs: 60_000 } }, env));
    }
    const [a, , c] = nodes;
    for (const n of nodes) {
      const h = await health(n.url);
      assert.equal(h.redis?.state, 'connected', `node ${n.port} health: ${JSON.stringify(h.redis)}`);
    }
    const ids = new Set(await Promise.all(nodes.map(async (n) => (await health(n.url)).redis.node as string)));
    assert.equal(ids.size, 3, 'every node has its own id');

    const sid = callSid();
    const onC: CallmoodEvent[] = [];
    const onA: CallmoodEvent[] = [];
    const local = await followEvents(`ws://127.0.0.1:${c.port}/events`, { token: FEED, callSid: sid, onEvent: (e) => onC.push(e) });
    let remote: { close: () => void } | null = null;
    let subscribing: Promise<void> | null = null;
    const audio = await longClip(5);
    const call = simulateCall(
      { audio: { inbound: audio }, callSid: sid },
      {
        url: `ws://127.0.0.1:${c.port}/media`,
        pace: 'realtime',
        authToken: TOKEN,
        // Node A's consumer connects two seconds into the call: call-start is long gone by then.
        onChunk: (i) => {
          if (i === 100 && !subscribing) {
            subscribing = followEvents(`ws://127.0.0.1:${a.port}/events`, { token: FEED, callSid: sid, onEvent: (e) => onA.push(e) }).then((f) => {
              remote = f;
            });
          }
        },
      },
    );
    await call;
    await subscribing;
    await waitFor(() => onA.some((e) => e.type === 'call-end') && onC.some((e) => e.type === 'call-end'), () => `call-end on both consumers (A has ${onA.length}, C has ${onC.length})`, 20_000);
    local.close();
    (remote as { close: () => void } | null)?.close();
    assert.equal(onA[0]?.type, 'call-start', `the first event A's consumer got: ${JSON.stringify(onA[0])}; A's feed logs: ${JSON.stringify(a.records().filter((r) => String(r.code).includes('FEED')))}`);
    const emotions = onA.filter((e) => e.type === 'emotion').length;
    assert.ok(emotions >= 5, `A's consumer got ${emotions} emotion events`);
    // The same events, in the same order, wherever the consumer is.
    assert.deepEqual(onA.map((e) => JSON.stringify(e)), onC.map((e) => JSON.stringify(e)), 'A and C consumers saw different sequences');
    const hc = await health(c.url);
    assert.ok(hc.redis.published >= onC.length, `C published ${hc.redis.published} events to Redis, its consumer saw ${onC.length}`);
    // A node reads only what its consumers follow: B has none and read nothing, A read C's call and nothing else.
    const hb = await health(nodes[1].url);
    assert.equal(hb.redis.received, 0, `node B, without consumers, read ${hb.redis.received} events from Redis`);
    const ha = await health(a.url);
    assert.ok(ha.redis.received > 0 && ha.redis.received <= onC.length, `node A read ${ha.redis.received} events for a call of ${onC.length}`);
  } finally {
    for (const n of nodes) n.child.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exit));
  }
});

test('three nodes with a CRM: a node SIGKILLed mid-call while the CRM is down, never restarted; once the CRM is back the others deliver every event it had put in the outbox, in order per call, signed, then end its calls as node-lost', async () => {
  const SECRET = 'redis-nodes-crm-secret-0123456789';
  const crm = new FakeCrm(SECRET);
  let up = false;
  crm.respond = () => (up ? { status: 200 } : { status: 503 });
  await crm.start();
  const prefix = `k${randomBytes(3).toString('hex')}`;
  const config = {
    engine: 'in-process',
    policy: { enabled: false },
    // A TTL well above any pause of a loaded test machine's event loop, well below the waits below.
    redis: { url: redis.url, prefix, leaseMs: 1500, catchUpMs: 0, nodeTtlMs: 5000 },
    webhooks: { endpoints: [{ name: 'crm', url: crm.url, secretEnv: 'CRM_SECRET', events: ['call-start', 'speech-start', 'speech-end', 'emotion', 'call-end'], backoff: { baseMs: 100, maxMs: 400 } }] },
  };
  const nodes: ServeProcess[] = [];
  const client = new Redis(redis.url);
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startServe(config, { ...env, CRM_SECRET: SECRET }));
    const audio = await longClip(8);
    // Two calls on each node; node C's are cut by the kill.
    const calls = nodes.flatMap((n, i) =>
      [0, 1].map((k) => {
        const sid = callSid();
        return { sid, node: i, done: simulateCall({ audio: { inbound: audio }, callSid: sid }, { url: `ws://127.0.0.1:${n.port}/media`, pace: 'realtime', authToken: TOKEN }).catch(() => null), k };
      }),
    );
    const killed = nodes[2];
    const killedSids = calls.filter((c) => c.node === 2).map((c) => c.sid);
    // A consumer on node A follows one of node C's calls: it must see that call end although C never says so.
    const onA: CallmoodEvent[] = [];
    const follower = await followEvents(`ws://127.0.0.1:${nodes[0].port}/events`, { token: FEED, callSid: killedSids[0], onEvent: (e) => onA.push(e) });
    const killedNode = (await health(killed.url)).redis.node as string;
    // Three seconds into the calls node C has put call-starts and emotions in the outbox, and the CRM refused them all.
    await waitFor(() => crm.received.filter((r) => killedSids.includes(r.callSid)).length >= 4, 'attempts of node C\'s calls at the CRM', 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    killed.child.kill('SIGKILL');
    await killed.exit;
    // What node C had put in Redis's outbox: nothing was acknowledged yet (the CRM refused everything), so it is all
    // still in the partition streams, in order.
    const keys = await client.keys(`${prefix}:wh:crm:p*`);
    const outboxed = new Map<string, string[]>();
    for (const key of keys.filter((k) => /:p\d+$/.test(k))) {
      for (const [, fields] of (await client.xrange(key, '-', '+')) as [string, string[]][]) {
        const body = JSON.parse(fields[fields.indexOf('body') + 1] ?? '{}') as { id: string; callSid: string; type: string };
        // A survivor's node-lost call-end may already be there, after C's own events: it is checked below.
        if (killedSids.includes(body.callSid) && body.type !== 'call-end') outboxed.set(body.callSid, [...(outboxed.get(body.callSid) ?? []), body.id]);
      }
    }
    for (const sid of killedSids) assert.ok((outboxed.get(sid)?.length ?? 0) >= 3, `node C's call ${sid} had ${outboxed.get(sid)?.length ?? 0} events in the outbox`);
    up = true;
    await Promise.all(calls.filter((c) => c.node !== 2).map((c) => c.done));
    const delivered = (sid: string) => crm.received.filter((r) => r.callSid === sid && r.status === 200);
    await waitFor(
      () => killedSids.every((sid) => outboxed.get(sid)!.every((id) => delivered(sid).some((r) => r.id === id))),
      () => `every outboxed event of node C delivered (${killedSids.map((sid) => `${new Set(delivered(sid).map((r) => r.id)).size}/${outboxed.get(sid)!.length}`).join(', ')})`,
      30_000,
    );
    for (const sid of killedSids) {
      const got = delivered(sid);
      assert.ok(got.every((r) => r.signatureOk), `unsigned or badly signed deliveries for ${sid}`);
      // In order: the first delivery of each event follows the outbox order, and the call ends last, as node-lost.
      await waitFor(() => delivered(sid).some((r) => r.type === 'call-end'), `the node-lost call-end of ${sid} at the CRM`, 20_000);
      const firsts = [...new Set(delivered(sid).map((r) => r.id))];
      assert.deepEqual(firsts.slice(0, -1), outboxed.get(sid), `call ${sid}: delivered out of order`);
      const end = delivered(sid).find((r) => r.type === 'call-end')!;
      assert.equal(end.id, firsts.at(-1), `call ${sid}: its call-end was not the last event delivered`);
      const ended = (JSON.parse(end.raw) as { event: CallmoodEvent }).event;
      assert.ok(ended.type === 'call-end' && ended.reason === 'node-lost' && ended.node === killedNode, `call ${sid} ended as ${end.raw}`);
      assert.ok(end.signatureOk, 'the node-lost call-end is signed');
      const dups = delivered(sid).length - firsts.length;
      console.log(`call ${sid} of the killed node: ${firsts.length} events delivered by the survivors (node-lost call-end included), ${dups} duplicate(s)`);
    }
    // The consumer on A saw the call end too, once; one survivor ended the calls and logged it.
    await waitFor(() => onA.some((e) => e.type === 'call-end'), 'the node-lost call-end on node A\'s feed', 20_000);
    follower.close();
    const ends = onA.filter((e) => e.type === 'call-end');
    assert.equal(ends.length, 1, `A's consumer got ${ends.length} call-ends`);
    assert.ok(ends[0].type === 'call-end' && ends[0].reason === 'node-lost', `A's consumer got ${JSON.stringify(ends[0])}`);
    const reaped = nodes.slice(0, 2).flatMap((n) => n.records().filter((r) => r.code === 'CALLMOOD_NODE_LOST'));
    assert.equal(reaped.length, 1, `CALLMOOD_NODE_LOST lines of the survivors: ${JSON.stringify(reaped)}`);
    assert.match(String(reaped[0].msg), new RegExp(`node ${killedNode} has not beaten .* ending its 2 call\\(s\\) as node-lost`));
    // The survivors' own calls were not taken for dead.
    for (const n of nodes.slice(0, 2)) assert.equal(n.records().filter((r) => r.code === 'CALLMOOD_NODE_TAKEN_FOR_DEAD').length, 0);
    // Health and metrics say it: two nodes alive, once each survivor has beaten since C's last beat is a TTL old
    // (the other survivor's last beat may precede that), and the survivor that took the calls over counted them.
    let hs = await Promise.all(nodes.slice(0, 2).map((n) => health(n.url)));
    for (let i = 0; i < 100 && hs.some((h) => h.redis.nodes !== 2); i++) {
      await new Promise((r) => setTimeout(r, 100));
      hs = await Promise.all(nodes.slice(0, 2).map((n) => health(n.url)));
    }
    assert.deepEqual(hs.map((h) => h.redis.nodes), [2, 2], `live nodes as the survivors see them: ${JSON.stringify(hs.map((h) => h.redis))}`);
    assert.equal(hs[0].redis.takenOver + hs[1].redis.takenOver, 2, 'the two calls were taken over once');
    const taker = nodes[hs[0].redis.takenOver === 2 ? 0 : 1];
    const metrics = await (await fetch(`${taker.url}/metrics`)).text();
    assert.match(metrics, /^callmood_bus_calls_taken_over_total 2$/m);
    assert.match(metrics, /^callmood_bus_nodes_live 2$/m);
    assert.match(metrics, /^callmood_call_ends_total\{reason="node-lost"\} 2$/m);
    // The survivors' own calls are complete too, call-end included.
    for (const c of calls.filter((c) => c.node !== 2)) {
      await waitFor(() => delivered(c.sid).some((r) => r.type === 'call-end'), `call-end of ${c.sid} at the CRM`, 20_000);
    }
  } finally {
    for (const n of nodes) n.child.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exit));
    client.disconnect();
    await crm.stop();
  }
});

test('a node frozen (SIGSTOP) longer than nodeTtlMs is taken for dead: the other ends its call as node-lost; thawed, it says so, takes the call back, and the call goes on to its own end', async () => {
  const prefix = `f${randomBytes(3).toString('hex')}`;
  // The stall timeout outlasts the freeze: the thawed node finds its media waiting, not a silent stream.
  const config = { engine: 'in-process', policy: { enabled: false }, stallTimeoutMs: 30_000, redis: { url: redis.url, prefix, catchUpMs: 0, nodeTtlMs: 3000 } };
  const nodes: ServeProcess[] = [];
  const client = new Redis(redis.url);
  try {
    for (let i = 0; i < 2; i++) nodes.push(await startServe(config, env));
    const [a, b] = nodes;
    const bNode = (await health(b.url)).redis.node as string;
    const sid = callSid();
    const onA: CallmoodEvent[] = [];
    const follower = await followEvents(`ws://127.0.0.1:${a.port}/events`, { token: FEED, callSid: sid, onEvent: (e) => onA.push(e) });
    const call = simulateCall({ audio: { inbound: await longClip(16) }, callSid: sid }, { url: `ws://127.0.0.1:${b.port}/media`, pace: 'realtime', authToken: TOKEN });
    await waitFor(() => onA.some((e) => e.type === 'emotion'), 'an emotion of the call on A\'s feed', 20_000);
    assert.equal(await client.hlen(`${prefix}:node:${bNode}:calls`), 1, 'B keeps its live call in Redis');
    b.child.kill('SIGSTOP');
    await waitFor(() => onA.some((e) => e.type === 'call-end'), 'the node-lost call-end on A\'s feed while B is frozen', 9_000);
    b.child.kill('SIGCONT');
    const lost = onA.find((e) => e.type === 'call-end')!;
    assert.ok(lost.type === 'call-end' && lost.reason === 'node-lost' && lost.node === bNode, `A's consumer got ${JSON.stringify(lost)}`);
    assert.equal(lost.durationMs >= 3000 && lost.timeMs >= lost.durationMs, true, `a node-lost call-end's times: ${JSON.stringify(lost)}`);
    const atLoss = onA.length;
    await call;
    await waitFor(() => onA.filter((e) => e.type === 'call-end').length === 2, () => `the call's own call-end on A (${onA.length} events)`, 20_000);
    follower.close();
    const end = onA.filter((e) => e.type === 'call-end')[1];
    assert.ok(end.type === 'call-end' && end.reason === 'stop', `the call ended as ${JSON.stringify(end)}`);
    assert.ok(onA.slice(atLoss).some((e) => e.type === 'emotion'), 'the call went on after B thawed: more emotions reached A');
    const taken = b.records().filter((r) => r.code === 'CALLMOOD_NODE_TAKEN_FOR_DEAD');
    assert.equal(taken.length, 1, `B's CALLMOOD_NODE_TAKEN_FOR_DEAD lines: ${JSON.stringify(taken)}`);
    assert.match(String(taken[0].msg), /ended its 1 live call\(s\) as node-lost; they go on here/);
    // The call ended for real: nobody holds it any more, so nobody will end it again.
    const aNode = (await health(a.url)).redis.node as string;
    const heldNow = async () => (await client.hlen(`${prefix}:node:${bNode}:calls`)) + (await client.hlen(`${prefix}:node:${aNode}:calls`));
    for (let i = 0; i < 50 && (await heldNow()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await heldNow(), 0, 'both nodes\' call hashes are empty once the call ended');
    assert.equal(a.records().filter((r) => r.code === 'CALLMOOD_NODE_LOST').length, 1, 'A ended the frozen node\'s call once');
  } finally {
    for (const n of nodes) {
      n.child.kill('SIGCONT');
      n.child.kill('SIGKILL');
    }
    await Promise.all(nodes.map((n) => n.exit));
    client.disconnect();
  }
});

test('Redis stopped for 10 s under live calls: the calls go on, events wait in memory, and reach the other node and the CRM once Redis is back', async () => {
  const SECRET = 'redis-outage-crm-secret-0123456789';
  const crm = new FakeCrm(SECRET);
  await crm.start();
  const TYPES = ['call-start', 'speech-start', 'speech-end', 'emotion', 'call-end'];
  const opts = () => ({
    engine: 'in-process' as const,
    policy: { enabled: false },
    authToken: TOKEN,
    eventsToken: FEED,
    // A node TTL far shorter than the outage: nobody may take the other for dead when Redis comes back.
    redis: { url: redis.url, catchUpMs: 0, prefix: `o${randomBytes(3).toString('hex')}`, nodeTtlMs: 2000 },
    webhooks: { endpoints: [{ name: 'crm', url: crm.url, secret: SECRET, events: TYPES, backoff: { baseMs: 100, maxMs: 500 } }] },
  });
  const servers: CallmoodServer[] = [];
  const logs: string[] = [];
  try {
    const o = opts();
    for (let i = 0; i < 2; i++) {
      const s = createCallmood(o, { logger: (level, code, message) => logs.push(`${i} ${level} ${code} ${message}`), processMetrics: false });
      servers.push(s);
    }
    const [holder, other] = servers;
    const addrs = await Promise.all(servers.map((s) => s.listen(0, '127.0.0.1')));
    const seen: CallmoodEvent[] = [];
    const feed = await followEvents(`ws://127.0.0.1:${addrs[1].port}/events`, { token: FEED, onEvent: (e) => seen.push(e) });
    const local: CallmoodEvent[] = [];
    holder.on('event', (e) => local.push(e));
    const sids = [callSid(), callSid()];
    const audio = await longClip(16);
    const calls = sids.map((sid) => simulateCall({ audio: { inbound: audio }, callSid: sid }, { url: `ws://127.0.0.1:${addrs[0].port}/media`, pace: 'realtime', authToken: TOKEN }));
    await waitFor(() => seen.filter((e) => e.type === 'call-start').length === 2, () => `both call-starts on the other node (holder ${JSON.stringify(holder.health().redis)}, other ${JSON.stringify(other.health().redis)}, seen ${seen.length}, local ${local.length})`, 20_000);
    await redis.pause();
    const stoppedAt = Date.now();
    await waitFor(() => holder.health().redis?.state === 'down', () => `the holder to see Redis down: ${JSON.stringify(holder.health().redis)}`, 10_000);
    const seenAtStop = seen.length;
    await waitFor(() => (holder.health().redis?.buffered ?? 0) > 0, 'events buffered while Redis is down', 10_000);
    assert.equal(holder.health().ok, true, 'a node without Redis stays healthy: its calls go on');
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
    const buffered = holder.health().redis!.buffered;
    const localDuring = local.length;
    await redis.resume();
    await Promise.all(calls);
    await waitFor(() => seen.filter((e) => e.type === 'call-end').length === 2, () => `both call-ends on the other node (seen ${seen.length})`, 30_000);
    feed.close();
    const st = holder.health().redis!;
    assert.equal(st.state, 'connected', JSON.stringify(st));
    assert.equal(st.dropped, 0, 'nothing dropped: the buffer was large enough');
    assert.equal(st.buffered, 0, 'the buffer was written out');
    // Every event of the two calls that the holder emitted reached the other node, in order per call.
    for (const sid of sids) {
      const mine = local.filter((e) => e.callSid === sid).map((e) => JSON.stringify(e));
      const theirs = seen.filter((e) => e.callSid === sid).map((e) => JSON.stringify(e));
      assert.deepEqual(theirs, mine, `call ${sid}: the other node's feed differs from the holder's events`);
    }
    // The CRM got every event of both calls, once Redis was back, in order per call, signed.
    for (const sid of sids) {
      const mine = local.filter((e) => e.callSid === sid && TYPES.includes(e.type)).map((e) => JSON.stringify(e));
      await waitFor(() => new Set(crm.received.filter((r) => r.callSid === sid && r.status === 200).map((r) => r.id)).size >= mine.length, () => `all ${mine.length} events of ${sid} at the CRM`, 30_000);
      const got = crm.received.filter((r) => r.callSid === sid && r.status === 200);
      assert.ok(got.every((r) => r.signatureOk), 'every delivery signed');
      const firstOf = new Map<string, string>();
      for (const r of got) if (!firstOf.has(r.id)) firstOf.set(r.id, JSON.stringify((JSON.parse(r.raw) as { event: unknown }).event));
      assert.deepEqual([...firstOf.values()], mine, `call ${sid}: the CRM's events differ from the holder's`);
      console.log(`call ${sid}: ${mine.length} events delivered across the outage, ${got.length - firstOf.size} duplicate(s)`);
    }
    assert.ok(buffered >= 10 && localDuring > seenAtStop, `events were buffered during the outage (${buffered})`);
    assert.ok(logs.some((l) => l.includes('CALLMOOD_BUS_DOWN')) && logs.some((l) => l.includes('CALLMOOD_BUS_UP')), `the outage and the recovery are logged: ${logs.filter((l) => l.includes('BUS')).join(' | ')}`);
    assert.deepEqual(logs.filter((l) => /CALLMOOD_NODE_(LOST|TAKEN_FOR_DEAD)/.test(l)), [], 'a Redis outage longer than nodeTtlMs made no node take another for dead');
    void other;
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await crm.stop();
  }
});
