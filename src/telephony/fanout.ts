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
  // The destinations in order, each with its log code: built once, so an event costs no closures.
  const sends: Array<{ code: string; what: (e: CallmoodEvent) => string; send: (e: CallmoodEvent) => void }> = [];
  const add = (code: string, what: string | ((e: CallmoodEvent) => string), send: (e: CallmoodEvent) => void) =>
    sends.push({ code, what: typeof what === 'string' ? () => what : what, send });
  if (t.metrics) add('CALLMOOD_METRICS', 'metrics', (e) => t.metrics!.observe(e));
  add('CALLMOOD_LISTENER_ERROR', (e) => `an 'event' listener threw on ${e.type}`, (e) => t.emit('event', e));
  add('CALLMOOD_LISTENER_ERROR', (e) => `a '${e.type}' listener threw on ${e.type}`, (e) => t.emit(e.type, e));
  if (t.feed) add('CALLMOOD_FEED_ERROR', 'event feed', (e) => t.feed!.publish(e));
  if (t.bus) add('CALLMOOD_BUS_ERROR', 'event bus', (e) => t.bus!.publish(e));
  // Never waits: the outbox write and the delivery happen off this path.
  if (t.webhooks) add('CALLMOOD_WEBHOOKS_ERROR', 'webhooks', (e) => void t.webhooks!.enqueue(e).catch(() => undefined));
  const policy = t.policy ?? null;
  return (e) => {
    for (const d of sends) {
      try {
        d.send(e);
      } catch (err) {
        log('error', d.code, `${d.what(e)}: ${(err as Error).message}`, { callSid: e.callSid, streamSid: e.streamSid, err });
      }
    }
    policy?.observe(e);
  };
}
