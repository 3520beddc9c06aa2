/**
 * Node liveness on a real redis-server: a node that stops beating has its calls moved to one survivor, which ends
 * them as node-lost; a node that has just come back to Redis judges nobody until the others have had the time to beat.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { NodeLiveness, heldField, livenessKeys, withLivenessScripts, type HeldCall } from '../src/cluster/liveness.js';
import type { CallEndEvent } from '../src/stream/events.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { waitFor } from './helpers.js';

let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const TTL = 900;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node: its own connection, a switch for "connected", its calls, and what it was told to end. */
function node(name: string, prefix: string, logs: string[]) {
  const conn = new Redis(redis.url);
  withLivenessScripts(conn);
  const state = { since: Date.now() as number | null, held: new Map<string, HeldCall>(), lost: [] as CallEndEvent[] };
  const live = new NodeLiveness(
    name,
    { prefix, nodeTtlMs: TTL },
    {
      redis: conn,
      connectedSince: () => state.since,
      held: () => state.held.values(),
      lost: (events) => state.lost.push(...events),
    },
    (level, code, message) => logs.push(`${name} ${level} ${code} ${message}`),
  );
  const hold = async (callSid: string) => {
    const c: HeldCall = { callSid, streamSid: `MZ${callSid}`, customParameters: { who: callSid }, startedAt: Date.now() - 5000, startTimeMs: 120 };
    state.held.set(heldField(c), c);
    await conn.hset(livenessKeys.calls(prefix, name), heldField(c), JSON.stringify(c));
  };
  return { name, conn, state, live, hold };
}

/** Nodes of one fresh deployment (its own key prefix), logging into one list. */
function deployment(names: string[]) {
  const prefix = `p${randomBytes(3).toString('hex')}`;
  const logs: string[] = [];
  return { prefix, logs, nodes: names.map((n) => node(n, prefix, logs)) };
}

/** Stops each node's beats and closes its connection. */
async function stopAll(nodes: Array<ReturnType<typeof node>>): Promise<void> {
  for (const n of nodes) {
    await n.live.stop();
    n.conn.disconnect();
  }
}

test('a node that stops beating: one survivor ends its calls as node-lost, with their identity and times, and holds them until their call-ends are written', async () => {
  const { prefix, logs, nodes: [a, b, c] } = deployment(['a', 'b', 'c']);
  try {
    await c.hold('CA1');
    await c.hold('CA2');
    for (const n of [a, b, c]) n.live.start();
    await sleep(TTL + 400);
    assert.deepEqual([a, b].map((n) => n.state.lost.length), [0, 0], 'nobody is taken for dead while all beat');
    // c stops beating for good; it holds calls, so it stays listed (and its calls in its hash) for a survivor.
    await c.live.stop();
    assert.notEqual(await c.conn.zscore(livenessKeys.nodes(prefix), 'c'), null, 'a node that stops holding calls stays listed');
    await waitFor(() => a.state.lost.length + b.state.lost.length === 2, () => `c's two calls ended (a ${a.state.lost.length}, b ${b.state.lost.length})`, 5000);
    await sleep(TTL);
    const taker = a.state.lost.length > 0 ? a : b;
    assert.equal(a.state.lost.length + b.state.lost.length, 2, 'each call ended once, by one survivor');
    const ends = taker.state.lost.sort((x, y) => x.callSid.localeCompare(y.callSid));
    assert.deepEqual(ends.map((e) => [e.callSid, e.streamSid, e.reason, e.node, e.customParameters.who]), [
      ['CA1', 'MZCA1', 'node-lost', 'c', 'CA1'],
      ['CA2', 'MZCA2', 'node-lost', 'c', 'CA2'],
    ]);
    for (const e of ends) {
      assert.ok(e.durationMs >= 5000 && e.timeMs === 120 + e.durationMs, `times of ${JSON.stringify(e)}`);
      assert.deepEqual(e.summary, {});
    }
    // The calls moved to the taker's hash (its bus removes them when it writes their call-ends); c is gone.
    assert.deepEqual((await a.conn.hkeys(livenessKeys.calls(prefix, taker.name))).sort(), ['CA1/MZCA1', 'CA2/MZCA2']);
    assert.equal(await a.conn.exists(livenessKeys.calls(prefix, 'c')), 0);
    assert.deepEqual((await a.conn.zrange(livenessKeys.nodes(prefix), 0, -1)).sort(), ['a', 'b']);
    assert.equal(logs.filter((l) => l.includes('CALLMOOD_NODE_LOST')).length, 1, logs.join('\n'));
    assert.match(logs.find((l) => l.includes('CALLMOOD_NODE_LOST'))!, /node c has not beaten for \d+ ms \(redis.nodeTtlMs 900\): ending its 2 call\(s\) as node-lost/);
  } finally {
    await stopAll([a, b, c]);
  }
});

test('after an outage longer than nodeTtlMs, the first node back judges nobody until the others have had nodeTtlMs to beat', async () => {
  const { prefix, logs, nodes: [a, b] } = deployment(['a', 'b']);
  try {
    await b.hold('CA9');
    a.live.start();
    b.live.start();
    await sleep(TTL / 2);
    // Both lose Redis for three TTLs (no beats), then a is back first and b 0.3 TTL later; each beats at once when
    // back, as the bus makes it. Without the guard a would take b for dead at its first beat.
    a.state.since = null;
    b.state.since = null;
    await sleep(3 * TTL);
    a.state.since = Date.now();
    a.live.beatNow();
    await sleep(0.3 * TTL);
    b.state.since = Date.now();
    b.live.beatNow();
    await sleep(2 * TTL);
    assert.equal(a.state.lost.length, 0, `a took b for dead after the outage: ${JSON.stringify(a.state.lost)}`);
    assert.equal(await a.conn.hlen(livenessKeys.calls(prefix, 'b')), 1, "b still holds its call");
    assert.deepEqual(logs.filter((l) => /NODE_(LOST|TAKEN)/.test(l)), []);
  } finally {
    await stopAll([a, b]);
  }
});

test('a node taken for dead while alive logs it once and puts its calls back; a clean stop leaves the set only without calls, or when told it holds nothing', async () => {
  const { prefix, logs, nodes: [a, b] } = deployment(['a', 'b']);
  try {
    await b.hold('CA7');
    a.live.start();
    b.live.start();
    await sleep(TTL + 400);
    // b freezes (no beats), long enough for a to end its call, then thaws.
    const saved = b.state.since;
    b.state.since = null;
    await waitFor(() => a.state.lost.length === 1, 'a ends the frozen node\'s call', 5000);
    b.state.since = saved;
    await waitFor(() => logs.some((l) => l.includes('CALLMOOD_NODE_TAKEN_FOR_DEAD')), 'b notices it was taken for dead', 5000);
    await sleep(TTL / 2);
    assert.deepEqual(await b.conn.hkeys(livenessKeys.calls(prefix, 'b')), ['CA7/MZCA7'], 'b holds its call again');
    assert.match(logs.find((l) => l.includes('TAKEN_FOR_DEAD'))!, /^b error .*ended its 1 live call\(s\) as node-lost; they go on here/);
    assert.equal(logs.filter((l) => l.includes('TAKEN_FOR_DEAD')).length, 1);
    // A stop with a call held keeps b in the set (a survivor will end the call); without calls it leaves.
    await b.live.stop();
    assert.notEqual(await a.conn.zscore(livenessKeys.nodes(prefix), 'b'), null, 'b stopped holding a call: still listed');
    // Told that every call's end was written, a stop removes an entry a race left behind, and leaves.
    await b.live.stop(true);
    assert.deepEqual([await a.conn.zscore(livenessKeys.nodes(prefix), 'b'), await a.conn.exists(livenessKeys.calls(prefix, 'b'))], [null, 0]);
    await a.conn.del(livenessKeys.calls(prefix, 'a'));
    await a.live.stop();
    assert.equal(await a.conn.zscore(livenessKeys.nodes(prefix), 'a'), null, 'a stopped without calls: gone from the set');
  } finally {
    await stopAll([a, b]);
  }
});

test('resync after an outage rewrites the calls hash from the calls the node holds: a stale entry goes, a missing one comes back', async () => {
  const { prefix, nodes: [a] } = deployment(['a']);
  try {
    await a.hold('CA1');
    // The outage's buffer dropped CA0's call-end (its entry stayed) and CA2's call-start (its entry never came).
    await a.conn.hset(livenessKeys.calls(prefix, 'a'), 'CA0/MZCA0', '{}');
    const c2: HeldCall = { callSid: 'CA2', streamSid: 'MZCA2', customParameters: {}, startedAt: Date.now(), startTimeMs: 0 };
    a.state.held.set(heldField(c2), c2);
    a.live.resync();
    let keys: string[] = [];
    for (let i = 0; i < 50; i++) {
      keys = (await a.conn.hkeys(livenessKeys.calls(prefix, 'a'))).sort();
      if (!keys.includes('CA0/MZCA0')) break;
      await sleep(20);
    }
    assert.deepEqual(keys, ['CA1/MZCA1', 'CA2/MZCA2']);
    assert.deepEqual(JSON.parse((await a.conn.hget(livenessKeys.calls(prefix, 'a'), 'CA2/MZCA2'))!), c2);
  } finally {
    await stopAll([a]);
  }
});

test('a beat gone without a tombstone (Redis lost its data) is no takeover: the node puts its calls back and says so at info level', async () => {
  const { prefix, logs, nodes: [a] } = deployment(['a']);
  try {
    await a.hold('CA5');
    a.live.start();
    await sleep(TTL / 2);
    // Redis loses everything of this deployment (a restart without persistence): the set and the hash are gone.
    await a.conn.del(livenessKeys.nodes(prefix), livenessKeys.calls(prefix, 'a'));
    await waitFor(() => logs.some((l) => l.includes('CALLMOOD_NODE_REREGISTERED')), () => `a notices its beat was gone: ${logs.join(' | ')}`, 5000);
    let keys: string[] = [];
    for (let i = 0; i < 50 && keys.length === 0; i++) {
      keys = await a.conn.hkeys(livenessKeys.calls(prefix, 'a'));
      if (keys.length === 0) await sleep(20);
    }
    assert.deepEqual(keys, ['CA5/MZCA5'], 'a holds its call again');
    assert.match(logs.find((l) => l.includes('REREGISTERED'))!, /^a info /);
    assert.deepEqual(logs.filter((l) => l.includes('TAKEN_FOR_DEAD')), [], 'no false claim that another node ended its calls');
  } finally {
    await stopAll([a]);
  }
});
