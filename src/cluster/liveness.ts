/**
 * Which nodes are alive, and the calls of the ones that are not. Each node writes a heartbeat (its id in the sorted
 * set `{prefix}:nodes`, scored with Redis's own clock, so the nodes' clocks do not matter) every third of
 * `nodeTtlMs`, and keeps the calls it holds in the hash `{prefix}:node:{id}:calls` (written by the event bus in the
 * same pipeline as the call's call-start and call-end, so the hash follows the events in order).
 *
 * A node whose heartbeat is older than `nodeTtlMs` is dead. One survivor takes its calls in a single script (remove
 * the node, move its calls into the survivor's own hash) and ends each of them with a `call-end` whose reason is
 * `node-lost`, through its own fan-out: feed consumers on every node, the CRM's webhooks and the embedding process see
 * the call end rather than wait for it forever. The calls are moved, not deleted, so a survivor that dies before its
 * call-ends are written leaves them to the next one, and the call-ends go out once per survivor that took them (at
 * least once).
 *
 * `nodeTtlMs` must exceed the longest time a node's event loop may be held (a long GC, a machine swapping): a node
 * starts beating only once its model is loaded (the server calls `startBeating` then), so a load does not count.
 *
 * Two guards against ending live calls:
 * - a node reaps only after it has itself been connected to Redis and beaten on time (no gap longer than two thirds
 *   of `nodeTtlMs` between its own beats, as Redis's clock saw them) for `nodeTtlMs`, so that after a Redis outage, or
 *   a Redis that froze, every live node has had the time to beat again before anyone judges it;
 * - a live node that finds it was taken for dead (a pause longer than `nodeTtlMs`: a stopped VM, a network partition)
 *   logs it, puts its calls back, and goes on; its consumers have seen a `node-lost` call-end for calls that go on.
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
};

const SCRIPTS = {
  /**
   * KEYS[1] nodes; ARGV[1] node, ARGV[2] nodeTtlMs. Scores the node with Redis's clock (ms). Returns {the ms since its
   * previous beat, or -1 when it had none (a new node, or one someone took for dead); the nodes alive now}.
   */
  livenessBeat: `local t = redis.call('time')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local had = redis.call('zscore', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[1], ms, ARGV[1])
local live = redis.call('zcount', KEYS[1], ms - tonumber(ARGV[2]), '+inf')
if had then return {ms - tonumber(had), live} end
return {-1, live}`,
  /**
   * KEYS[1] nodes; ARGV[1] this node, ARGV[2] nodeTtlMs, ARGV[3] prefix. Takes one dead node other than this one:
   * removes it and moves its calls into this node's hash. Returns {node, silentMs, field, value, …}, or false.
   */
  livenessReap: `local t = redis.call('time')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('zrangebyscore', KEYS[1], '-inf', ms - tonumber(ARGV[2]), 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #dead, 2 do
  local n = dead[i]
  if n ~= ARGV[1] then
    redis.call('zrem', KEYS[1], n)
    local from = ARGV[3] .. ':node:' .. n .. ':calls'
    local calls = redis.call('hgetall', from)
    if #calls > 0 then
      redis.call('hset', ARGV[3] .. ':node:' .. ARGV[1] .. ':calls', unpack(calls))
      redis.call('del', from)
    end
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
  /** The calls this node holds now (to put back if it was taken for dead). */
  held(): Iterable<HeldCall>;
  /** Ends the calls of a dead node through this node's fan-out. */
  lost(events: CallEndEvent[], node: string, silentMs: number): void;
}

export class NodeLiveness {
  private timer: NodeJS.Timeout | null = null;
  private beaten = false;
  /** Since when (this node's clock) its beats have come on time; null before the first. */
  private steadySince: number | null = null;
  /** Nodes alive at the last beat (this one included), null before the first; calls of dead nodes this node ended. */
  readonly counts: { nodes: number | null; takenOver: number } = { nodes: null, takenOver: 0 };
  private busy = false;
  private stopped = false;
  private readonly nodesKey: string;

  constructor(
    readonly node: string,
    private readonly settings: { prefix: string; nodeTtlMs: number },
    private readonly host: LivenessHost,
    private readonly log: Logger,
  ) {
    this.nodesKey = livenessKeys.nodes(settings.prefix);
  }

  /** This node's calls hash. */
  get callsKey(): string {
    return livenessKeys.calls(this.settings.prefix, this.node);
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

  /** Stops beating; leaves the set of nodes when this node holds no call (else a survivor will end them). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.host.connectedSince() === null) return;
    try {
      await (this.host.redis as LivenessRedis).livenessLeave(2, this.nodesKey, this.callsKey, this.node);
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
      const [gapReply, live] = (await r.livenessBeat(1, this.nodesKey, this.node, this.settings.nodeTtlMs)) as [number, number];
      const gap = Number(gapReply);
      this.counts.nodes = Number(live);
      if (gap < 0 && this.beaten) await this.takenForDead(r);
      this.beaten = true;
      const now = Date.now();
      if (this.steadySince === null || gap < 0 || gap > (2 * this.settings.nodeTtlMs) / 3) this.steadySince = now;
      // Judge others only once every live node has had a full nodeTtlMs of connection and steady beats to beat in.
      if (now - Math.max(since, this.steadySince) < this.settings.nodeTtlMs) return;
      for (let i = 0; i < 16 && !this.stopped; i++) {
        const out = (await r.livenessReap(1, this.nodesKey, this.node, this.settings.nodeTtlMs, this.settings.prefix)) as string[] | null;
        if (!out) break;
        this.ended(out);
      }
    } catch {
      // Redis away: the bus says so in its state and logs; the next beat tries again.
    } finally {
      this.busy = false;
    }
  }

  private ended(out: string[]): void {
    const [node, silent] = out;
    const now = Date.now();
    const events: CallEndEvent[] = [];
    for (let i = 2; i + 1 < out.length; i += 2) {
      try {
        events.push(lostCallEnd(JSON.parse(out[i + 1]) as HeldCall, node, now));
      } catch {
        this.log('error', 'CALLMOOD_NODE_LOST', `node ${node}: an unreadable call entry ${out[i]} was dropped`);
      }
    }
    // A node that died without calls (or whose calls had all ended) leaves nothing to end and nothing to say.
    if (events.length === 0 && out.length <= 2) return;
    this.log('warn', 'CALLMOOD_NODE_LOST', `node ${node} has not beaten for ${silent} ms (redis.nodeTtlMs ${this.settings.nodeTtlMs}): ending its ${events.length} call(s) as node-lost`, { node, calls: events.length });
    this.counts.takenOver += events.length;
    this.host.lost(events, node, Number(silent));
  }

  /**
   * Rewrites this node's calls hash from what it holds: after an outage, whose bounded buffer may have dropped a
   * call-start or call-end and with them their change to the hash. Sent before the buffered events, which then apply
   * on top in order. Failing, it waits for the next reconnection.
   */
  resync(): void {
    const calls = [...this.host.held()];
    const m = this.host.redis.multi().del(this.callsKey);
    if (calls.length > 0) m.hset(this.callsKey, ...calls.flatMap((c) => [heldField(c), JSON.stringify(c)]));
    m.exec().catch(() => undefined);
  }

  /** This node was taken for dead while alive: its calls were ended elsewhere. Put them back and say so. */
  private async takenForDead(r: Redis): Promise<void> {
    const calls = [...this.host.held()];
    this.log(calls.length > 0 ? 'error' : 'warn', 'CALLMOOD_NODE_TAKEN_FOR_DEAD', `this node (${this.node}) did not beat for more than redis.nodeTtlMs (${this.settings.nodeTtlMs} ms) and another node ended its ${calls.length} live call(s) as node-lost; they go on here`, { node: this.node, calls: calls.length });
    if (calls.length === 0) return;
    await r.hset(this.callsKey, ...calls.flatMap((c) => [heldField(c), JSON.stringify(c)]));
  }
}
