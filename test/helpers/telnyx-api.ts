/**
 * A real HTTP server on loopback standing in for Telnyx's Call Control API (POST /v2/calls/{id}/actions/{command}),
 * so TelnyxCallControl can be pointed at it: it records each request (method, path, bearer token, content type, JSON
 * body, arrival time) and answers from a script.
 */
import { startLoopbackApi, type FakeApi, type ScriptedAnswer } from './loopback-api.js';

/** One request the stand-in received. */
export interface TelnyxRequest {
  method: string;
  path: string;
  /** The bearer token, or null without `Authorization: Bearer`. */
  bearer: string | null;
  contentType: string | null;
  body: Record<string, unknown>;
  atMs: number;
}

/** An answer: HTTP status and JSON body (Telnyx's error shape: {errors: [{code, title, detail}]}). */
export type TelnyxAnswer = ScriptedAnswer;

/** When the script is empty, the stand-in answers 200 {"data":{"result":"ok"}}. */
export type FakeTelnyxApi = FakeApi<TelnyxRequest, TelnyxAnswer>;

export function startFakeTelnyxApi(): Promise<FakeTelnyxApi> {
  return startLoopbackApi<TelnyxRequest>(
    (req, raw) => {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch {
        body = { unparsed: raw.toString('utf8') };
      }
      const auth = req.headers.authorization ?? '';
      return {
        method: req.method ?? '',
        path: new URL(req.url ?? '/', 'http://x').pathname,
        bearer: auth.startsWith('Bearer ') ? auth.slice(7) : null,
        contentType: req.headers['content-type'] ?? null,
        body,
        atMs: Date.now(),
      };
    },
    () => ({ status: 200, body: { data: { result: 'ok' } } }),
  );
}

/** A Telnyx error answer. */
export const telnyxError = (status: number, code: string, title: string, detail: string): TelnyxAnswer => ({ status, body: { errors: [{ code, title, detail }] } });
