/**
 * Which nodes are alive, and the calls of the ones that are not. Each node writes a heartbeat (its id in the sorted
 * set `{prefix}:nodes`, scored with Redis's own clock, so the nodes' clocks do not matter) every third of
 * `nodeTtlMs`, and keeps the calls it holds in the hash `{prefix}:node:{id}:calls` (written by the event bus in the
 * same pipeline as the call's call-start and call-end, so the hash follows the events in order).
 *
 * A node whose heartbeat is older than `nodeTtlMs` is dead. One survivor takes its calls in a single script (remove
 * the node, move its calls into the survivor's own hash) and ends each of them with a `call-end` whose reason is
 * `node-lost`, through its own fan-out: feed consumers on every node, the CRM's webhooks and the embedding process see
 * the call end rather than wait for it forever. The calls are moved, not deleted, and leave the survivor's hash only
 * when their call-ends are written to the bus, so a survivor that dies before that leaves them to the next one (at
 * least once on the bus). The CRM gets the call-end from the survivor's webhook outbox, written beside the bus: a
 * survivor that dies in the milliseconds between the two may leave the CRM without it.
 *
 * `nodeTtlMs` must exceed the longest time a node's event loop may be held (a long GC, a machine swapping): a node
 * starts beating only once its model is loaded (the server calls `startBeating` then), so a load does not count.
 *
 * Two guards against ending live calls:
 * - a node reaps only after it has itself been connected to Redis and beaten on time (no gap longer than two thirds
 *   of `nodeTtlMs` between its own beats, as Redis's clock saw them) for `nodeTtlMs`, so that after a Redis outage, or
 *   a Redis that froze, every live node has had the time to beat again before anyone judges it;
 * - a live node that finds it was taken for dead (a pause longer than `nodeTtlMs`: a stopped VM, a network partition;
 *   the reaper leaves a tombstone for it to find) logs it, puts its calls back, and goes on; its consumers have seen a
 *   `node-lost` call-end for calls that go on. A node that finds its beat gone without a tombstone (Redis lost its
 *   data: a restart without persistence, a failover) only puts its calls back.
 *
 * A draining node stops reaping (its outbox is closing) but beats until it leaves.
 *
 * Redis Cluster is not supported: the reaping script reaches keys it computes.
 */
import type { Redis } from 'ioredis';
import type { CallEndEvent, CallStartEvent } from '../stream/events.js';
import type { Logger } from '../util/log.js';

/** What a node keeps of a live call, enough to end it for the node if it dies. */
export interface HeldCall {
  callSid: string;
  streamSid: string;
  customParameters: Record<string, string>;
  /** When the call started, ms since the epoch (this node's clock). */
  startedAt: number;
  /** Its call time then (call-start's timeMs), so the call-end's timeMs continues it. */
  startTimeMs: number;
}

export const livenessKeys = {
  nodes: (prefix: string) => `${prefix}:nodes`,
  calls: (prefix: string, node: string) => `${prefix}:node:${node}:calls`,
  /** Left by the reaper for a node it took for dead, for an hour: that node, if alive, learns it on its next beat. */
  reaped: (prefix: string, node: string) => `${prefix}:node:${node}:reaped`,
};

/** How long a tombstone stays, ms. */
const TOMBSTONE_MS = 3_600_000;

const SCRIPTS = {
  /**
   * KEYS[1] nodes, KEYS[2] this node's tombstone; ARGV[1] node, ARGV[2] nodeTtlMs. Scores the node with Redis's clock
   * (ms). Returns {the ms since its previous beat; or -2 when it had none and a tombstone says it was taken for dead
   * (the tombstone is removed); or -1 when it had none otherwise (a new node, or Redis lost its data), the nodes
   * alive now}.
   */
  livenessBeat: `local t = redis.call('time')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local had = redis.call('zscore', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[1], ms, ARGV[1])
local live = redis.call('zcount', KEYS[1], ms - tonumber(ARGV[2]), '+inf')
if had then return {ms - tonumber(had), live} end
if redis.call('del', KEYS[2]) == 1 then return {-2, live} end
return {-1, live}`,
  /**
   * KEYS[1] nodes; ARGV[1] this node, ARGV[2] nodeTtlMs, ARGV[3] prefix, ARGV[4] tombstone ms. Takes one dead node
   * other than this one: removes it, leaves it a tombstone, and moves its calls into this node's hash (in chunks: Lua's
   * unpack has a limit). Returns {node, silentMs, field, value, …}, or false.
   */
  livenessReap: `local t = redis.call('time')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('zrangebyscore', KEYS[1], '-inf', ms - tonumber(ARGV[2]), 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #dead, 2 do
  local n = dead[i]
  if n ~= ARGV[1] then
    redis.call('zrem', KEYS[1], n)
    redis.call('set', ARGV[3] .. ':node:' .. n .. ':reaped', '1', 'PX', ARGV[4])
    local from = ARGV[3] .. ':node:' .. n .. ':calls'
    local calls = redis.call('hgetall', from)
    for k = 1, #calls, 1000 do
      local chunk = {}
      for j = k, math.min(k + 999, #calls) do chunk[#chunk + 1] = calls[j] end
      redis.call('hset', ARGV[3] .. ':node:' .. ARGV[1] .. ':calls', unpack(chunk))
    end
    redis.call('del', from)
    local out = {n, tostring(ms - tonumber(dead[i + 1]))}
    for j = 1, #calls do table.insert(out, calls[j]) end
    return out
  end
end
return false`,
  /** KEYS[1] nodes, KEYS[2] this node's calls; ARGV[1] node: leaves the set, if it holds no call. 1 when it left. */
  livenessLeave: `if redis.call('hlen', KEYS[2]) > 0 then return 0 end
redis.call('zrem', KEYS[1], ARGV[1]) return 1`,
} as const;

type LivenessRedis = Redis & { [K in keyof typeof SCRIPTS]: (numKeys: number, ...args: Array<string | number>) => Promise<unknown> };

/** Defines the liveness scripts on a connection (once per connection). */
export function withLivenessScripts(redis: Redis): void {
  for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { lua });
}

/** A HeldCall read back from Redis, or null when the entry is not one. */
function readHeld(text: string): HeldCall | null {
  try {
    const c = JSON.parse(text) as Partial<HeldCall> | null;
    if (!c || typeof c.callSid !== 'string' || typeof c.streamSid !== 'string' || typeof c.startedAt !== 'number' || typeof c.startTimeMs !== 'number') return null;
    return { callSid: c.callSid, streamSid: c.streamSid, startedAt: c.startedAt, startTimeMs: c.startTimeMs, customParameters: c.customParameters && typeof c.customParameters === 'object' ? c.customParameters : {} };
  } catch {
    return null;
  }
}

/** The field of a call in a node's hash. */
export const heldField = (c: { callSid: string; streamSid: string }) => `${c.callSid}/${c.streamSid}`;

export function heldCall(e: CallStartEvent, now = Date.now()): HeldCall {
  return { callSid: e.callSid, streamSid: e.streamSid, customParameters: e.customParameters, startedAt: now, startTimeMs: e.timeMs };
}

/** The call-end a survivor emits for a call of a dead node. Its summary and counters died with the node. */
export function lostCallEnd(c: HeldCall, node: string, now = Date.now()): CallEndEvent {
  const durationMs = Math.max(0, now - c.startedAt);
  return {
    type: 'call-end',
    callSid: c.callSid,
    streamSid: c.streamSid,
    customParameters: c.customParameters,
    timeMs: c.startTimeMs + durationMs,
    reason: 'node-lost',
    node,
    durationMs,
    summary: {},
    stats: { mediaMessages: 0, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 },
  };
}

export interface LivenessHost {
  /** The bus's writer connection, with the scripts defined. */
  redis: Redis;
  /** When the connection came up (ms since the epoch); null while it is down. */
  connectedSince(): number | null;
  /** The calls this node's hash must hold now: its own live calls, and taken-over ones whose call-ends are not written yet. */
  held(): Iterable<HeldCall>;
  /** Ends the calls of a dead node (`calls`, as taken over) through this node's fan-out. */
  lost(events: CallEndEvent[], node: string, silentMs: number, calls: HeldCall[]): void;
}

export class NodeLiveness {
  private timer: NodeJS.Timeout | null = null;
  /** Since when (this node's clock) its beats have come on time; null before the first beat. */
  private steadySince: number | null = null;
  /** Nodes alive at the last beat (this one included), null before the first; calls of dead nodes this node ended. */
  readonly counts: { nodes: number | null; takenOver: number } = { nodes: null, takenOver: 0 };
  private busy = false;
  private stopped = false;
  private reaping = true;
  private lastErrorLogAt = 0;
  private readonly nodesKey: string;
  /** This node's calls hash (the bus writes call-starts and call-ends to it), and its tombstone. */
  readonly callsKey: string;
  private readonly tombKey: string;

  constructor(
    readonly node: string,
    private readonly settings: { prefix: string; nodeTtlMs: number },
    private readonly host: LivenessHost,
    private readonly log: Logger,
  ) {
    this.nodesKey = livenessKeys.nodes(settings.prefix);
    this.callsKey = livenessKeys.calls(settings.prefix, node);
    this.tombKey = livenessKeys.reaped(settings.prefix, node);
  }

  /** Beats now and every third of nodeTtlMs, and looks for dead nodes at each beat. */
  start(): void {
    if (this.timer || this.stopped) return;
    const every = Math.max(100, Math.floor(this.settings.nodeTtlMs / 3));
    const tick = () => void this.tick();
    this.timer = setInterval(tick, every);
    this.timer.unref();
    tick();
  }

  /** Beats at once (once started): the bus calls it when Redis is back, so that the others see this node soon. */
  beatNow(): void {
    if (this.timer) void this.tick();
  }

  /** Beats on, but takes no dead node's calls any more (a draining node: its outbox is closing). */
  stopReaping(): void {
    this.reaping = false;
  }

  /**
   * Stops beating; leaves the set of nodes when its hash holds no call (else a survivor will end them). `holdsNothing`:
   * the caller knows every call's end was written, so an entry left in the hash by a race is stale; it goes too.
   */
  async stop(holdsNothing = false): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.host.connectedSince() === null) return;
    try {
      if (holdsNothing) await this.host.redis.multi().del(this.callsKey).zrem(this.nodesKey, this.node).exec();
      else await (this.host.redis as LivenessRedis).livenessLeave(2, this.nodesKey, this.callsKey, this.node);
    } catch {
      // Redis gone: the entry ages out, and a survivor ends what the hash still holds.
    }
  }

  private async tick(): Promise<void> {
    const since = this.host.connectedSince();
    if (this.busy || this.stopped || since === null) return;
    this.busy = true;
    const r = this.host.redis as LivenessRedis;
    try {
      const [gapReply, live] = (await r.livenessBeat(2, this.nodesKey, this.tombKey, this.node, this.settings.nodeTtlMs)) as [number, number];
      const gap = Number(gapReply);
      this.counts.nodes = Number(live);
      const beatBefore = this.steadySince !== null;
      if (gap === -2) this.takenForDead();
      else if (gap === -1 && beatBefore) this.log('info', 'CALLMOOD_NODE_REREGISTERED', `this node's beat was gone from Redis without a tombstone (Redis lost its data?); putting its calls back`, { node: this.node });
      if (gap < 0 && beatBefore) await this.resync();
      const now = Date.now();
      const steadySince = !beatBefore || gap < 0 || gap > (2 * this.settings.nodeTtlMs) / 3 ? now : this.steadySince!;
      this.steadySince = steadySince;
      // Judge others only once every live node has had a full nodeTtlMs of connection and steady beats to beat in.
      if (now - Math.max(since, steadySince) < this.settings.nodeTtlMs) return;
      for (let i = 0; i < 16 && !this.stopped && this.reaping; i++) {
        const out = (await r.livenessReap(1, this.nodesKey, this.node, this.settings.nodeTtlMs, this.settings.prefix, TOMBSTONE_MS)) as string[] | null;
        if (!out) break;
        await this.ended(out);
      }
    } catch (err) {
      // Redis away: the bus says so in its state and logs; the next beat tries again. Anything else, once a minute.
      if (this.host.connectedSince() !== null && Date.now() - this.lastErrorLogAt > 60_000) {
        this.lastErrorLogAt = Date.now();
        this.log('warn', 'CALLMOOD_NODE_LIVENESS', `node liveness: ${(err as Error).message}`, { node: this.node });
      }
    } finally {
      this.busy = false;
    }
  }

  private async ended(out: string[]): Promise<void> {
    const [node, silent] = out;
    const now = Date.now();
    const calls: HeldCall[] = [];
    const bad: string[] = [];
    for (let i = 2; i + 1 < out.length; i += 2) {
      const c = readHeld(out[i + 1]);
      if (c) calls.push(c);
      else bad.push(out[i]);
    }
    if (bad.length > 0) {
      this.log('error', 'CALLMOOD_NODE_LOST', `node ${node}: ${bad.length} unreadable call entr${bad.length === 1 ? 'y' : 'ies'} dropped (${bad.slice(0, 3).join(', ')})`);
      await this.host.redis.hdel(this.callsKey, ...bad);
    }
    // A node that died without calls (or whose calls had all ended) leaves nothing to end and nothing to say.
    if (calls.length === 0) return;
    const events = calls.map((c) => lostCallEnd(c, node, now));
    this.log('warn', 'CALLMOOD_NODE_LOST', `node ${node} has not beaten for ${silent} ms (redis.nodeTtlMs ${this.settings.nodeTtlMs}): ending its ${events.length} call(s) as node-lost`, { node, calls: events.length });
    this.counts.takenOver += events.length;
    this.host.lost(events, node, Number(silent), calls);
  }

  /**
   * Rewrites this node's calls hash from what it must hold (its live calls and the taken-over ones not yet ended):
   * after an outage, or events dropped by the bounded buffer, either of which may have lost a call's change to the
   * hash; after a beat that found this node gone. Sent before the buffered events, which then apply on top in order.
   * Resolves false when Redis refused it (the caller tries again later).
   */
  async resync(): Promise<boolean> {
    const calls = [...this.host.held()];
    const m = this.host.redis.multi().del(this.callsKey);
    if (calls.length > 0) m.hset(this.callsKey, ...calls.flatMap((c) => [heldField(c), JSON.stringify(c)]));
    try {
      const res = await m.exec();
      return !!res && res.every(([err]) => !err);
    } catch {
      return false;
    }
  }

  /** This node was taken for dead while alive: its calls were ended elsewhere. Say so (resync puts them back). */
  private takenForDead(): void {
    const calls = [...this.host.held()].length;
    this.log(calls > 0 ? 'error' : 'warn', 'CALLMOOD_NODE_TAKEN_FOR_DEAD', `this node (${this.node}) did not beat for more than redis.nodeTtlMs (${this.settings.nodeTtlMs} ms) and another node ended its ${calls} live call(s) as node-lost; they go on here`, { node: this.node, calls });
  }
}
