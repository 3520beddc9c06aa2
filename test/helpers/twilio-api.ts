/**
 * A real HTTP server on loopback standing in for Twilio's REST API (the calls resource), so the `twilio` client can
 * be pointed at it: it records each request (method, path, form fields, Basic auth) and answers from a script.
 */
import { startLoopbackApi, type FakeApi, type ScriptedAnswer } from './loopback-api.js';

/** One request the stand-in received. */
export interface ApiRequest {
  method: string;
  path: string;
  form: Record<string, string>;
  auth: string | null;
}

/** An answer: HTTP status and JSON body (Twilio's error shape: {code, message, status}). */
export type ApiAnswer = ScriptedAnswer;

/** When the script is empty, the stand-in answers 200 with a call resource. */
export type FakeTwilioApi = FakeApi<ApiRequest, ApiAnswer>;

export function startFakeTwilioApi(): Promise<FakeTwilioApi> {
  return startLoopbackApi<ApiRequest>(
    (req, body) => {
      const form = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
      const auth = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString('utf8') : null;
      return { method: req.method ?? '', path: new URL(req.url ?? '/', 'http://x').pathname, form, auth };
    },
    ({ path, form }) => ({ status: 200, body: { sid: /\/Calls\/([^/.]+)\.json$/.exec(path)?.[1] ?? 'CA0', status: form.Status ?? 'in-progress' } }),
  );
}

/** A Twilio error answer. */
export const twilioError = (status: number, code: number, message: string): ApiAnswer => ({ status, body: { code, message, status, more_info: `https://www.twilio.com/docs/errors/${code}` } });
