/**
 * A real HTTP server on loopback standing in for Telnyx's Call Control API (POST /v2/calls/{id}/actions/{command}),
 * so TelnyxCallControl can be pointed at it: it records each request (method, path, bearer token, content type, JSON
 * body, arrival time) and answers from a script.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

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
export interface TelnyxAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface FakeTelnyxApi {
  url: string;
  requests: TelnyxRequest[];
  /** Answers for the next requests, in order; when empty, 200 {"data":{"result":"ok"}}. */
  script: TelnyxAnswer[];
  close(): Promise<void>;
}

export async function startFakeTelnyxApi(): Promise<FakeTelnyxApi> {
  const requests: TelnyxRequest[] = [];
  const script: TelnyxAnswer[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        body = { unparsed: Buffer.concat(chunks).toString('utf8') };
      }
      const auth = req.headers.authorization ?? '';
      requests.push({
        method: req.method ?? '',
        path: new URL(req.url ?? '/', 'http://x').pathname,
        bearer: auth.startsWith('Bearer ') ? auth.slice(7) : null,
        contentType: req.headers['content-type'] ?? null,
        body,
        atMs: Date.now(),
      });
      const answer = script.shift() ?? { status: 200, body: { data: { result: 'ok' } } };
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

/** A Telnyx error answer. */
export const telnyxError = (status: number, code: string, title: string, detail: string): TelnyxAnswer => ({ status, body: { errors: [{ code, title, detail }] } });
