/**
 * Event fan-out: every event of every call goes, in this order, to the metrics, the embedding process's listeners
 * (`'event'` and its type), the `/events` feed, the CRM webhooks and, last, the dialog policy, so an action follows
 * the event that caused it everywhere. Each destination is wrapped: a throwing listener is logged and never stops
 * the feed, the metrics, the webhooks or the call.
 */
import type { CallmoodEvent } from '../stream/events.js';
import type { Logger } from '../util/log.js';

/** Where events go; each is optional but the emitter. */
export interface FanoutTargets {
  log: Logger;
  metrics?: { observe(e: CallmoodEvent): void };
  /** The embedding API: emits on 'event' and on the event's type. */
  emit(name: string, e: CallmoodEvent): unknown;
  feed?: { publish(e: CallmoodEvent): void };
  /** Enqueues never wait; a failed write is the sink's to log. Null when no endpoint is configured. */
  webhooks?: { enqueue(e: CallmoodEvent): Promise<void> } | null;
  /** The shared bus of many-node mode. */
  bus?: { publish(e: CallmoodEvent): void } | null;
  policy?: { observe(e: CallmoodEvent): void } | null;
}

/** Returns the publish function the media path and the policy call for every event. */
export function createFanout(t: FanoutTargets): (e: CallmoodEvent) => void {
  const { log } = t;
  const guarded = (code: string, what: string, e: CallmoodEvent, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      log('error', code, `${what}: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
    }
  };
  return (e) => {
    if (t.metrics) guarded('CALLMOOD_METRICS', 'metrics', e, () => t.metrics!.observe(e));
    for (const name of ['event', e.type] as const) {
      guarded('CALLMOOD_LISTENER_ERROR', `a '${name}' listener threw on ${e.type}`, e, () => t.emit(name, e));
    }
    if (t.feed) guarded('CALLMOOD_FEED_ERROR', 'event feed', e, () => t.feed!.publish(e));
    if (t.bus) guarded('CALLMOOD_BUS_ERROR', 'event bus', e, () => t.bus!.publish(e));
    // Never waits: the outbox write and the delivery happen off this path.
    if (t.webhooks) guarded('CALLMOOD_WEBHOOKS_ERROR', 'webhooks', e, () => void t.webhooks!.enqueue(e).catch(() => undefined));
    if (t.policy) t.policy.observe(e);
  };
}
