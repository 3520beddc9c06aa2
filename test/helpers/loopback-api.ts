/**
 * A real HTTP server on loopback standing in for a carrier's REST API: each request is read whole, recorded as the
 * carrier's helper describes it, and answered with the next scripted answer (or the helper's usual success).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** An answer: HTTP status and JSON body. */
export interface ScriptedAnswer {
  status: number;
  body: Record<string, unknown>;
}

export interface FakeApi<Req, Ans extends ScriptedAnswer = ScriptedAnswer> {
  url: string;
  requests: Req[];
  /** Answers for the next requests, in order; when empty, the helper's usual success. */
  script: Ans[];
  close(): Promise<void>;
}

export async function startLoopbackApi<Req, Ans extends ScriptedAnswer = ScriptedAnswer>(
  record: (req: http.IncomingMessage, body: Buffer) => Req,
  success: (recorded: Req) => Ans,
): Promise<FakeApi<Req, Ans>> {
  const requests: Req[] = [];
  const script: Ans[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded = record(req, Buffer.concat(chunks));
      requests.push(recorded);
      const answer = script.shift() ?? success(recorded);
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
