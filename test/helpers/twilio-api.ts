/**
 * A real HTTP server on loopback standing in for Twilio's REST API (the calls resource), so the `twilio` client can
 * be pointed at it: it records each request (method, path, form fields, Basic auth) and answers from a script.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the stand-in received. */
export interface ApiRequest {
  method: string;
  path: string;
  form: Record<string, string>;
  auth: string | null;
}

/** An answer: HTTP status and JSON body (Twilio's error shape: {code, message, status}). */
export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface FakeTwilioApi {
  url: string;
  requests: ApiRequest[];
  /** Answers for the next requests, in order; when empty, 200 with a call resource. */
  script: ApiAnswer[];
  close(): Promise<void>;
}

export async function startFakeTwilioApi(): Promise<FakeTwilioApi> {
  const requests: ApiRequest[] = [];
  const script: ApiAnswer[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      const auth = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString('utf8') : null;
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      requests.push({ method: req.method ?? '', path, form, auth });
      const sid = /\/Calls\/([^/.]+)\.json$/.exec(path)?.[1] ?? 'CA0';
      const answer = script.shift() ?? { status: 200, body: { sid, status: form.Status ?? 'in-progress' } };
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A Twilio error answer. */
export const twilioError = (status: number, code: number, message: string): ApiAnswer => ({ status, body: { code, message, status, more_info: `https://www.twilio.com/docs/errors/${code}` } });
