/**
 * The HTTP routes: the incoming-call webhook answering TwiML, the stream status callback, `/healthz` and `/metrics`.
 * Twilio's webhooks are signature-checked; health and metrics are not (put them behind your network's rules).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCodes, type CallmoodError } from '../errors.js';
import type { CallmoodOptions } from '../config/options.js';
import type { Logger } from '../util/log.js';
import type { CallmoodMetrics } from './metrics.js';
import { publicBaseUrl, type SignatureGuard, type WebhookParams } from './signature.js';
import { HttpError, buildTwiml, describeStreamStatus, formParams, readForm, send } from './twiml.js';

/** A request listener for the webhook routes: returns false (after calling `next`, if given) for other paths. */
export type CallmoodHandler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => boolean;

/** What the routes need from the server around them. */
export interface RoutesHost {
  readonly options: Readonly<CallmoodOptions>;
  readonly log: Logger;
  readonly metrics: CallmoodMetrics;
  readonly guard: SignatureGuard;
  /** The `/healthz` body and whether it is healthy (200) or not (503). */
  health(): { ok: boolean };
  readonly modelLoaded: boolean;
  readonly draining: boolean;
}

export function pathnameOf(url: string | undefined): string | null {
  try {
    return new URL(url ?? '/', 'http://localhost').pathname;
  } catch {
    return null;
  }
}

type Route = 'twiml' | 'status' | 'health' | 'metrics';

export class HttpRoutes {
  constructor(private readonly host: RoutesHost) {}

  /** The webhook routes as a node request listener, mountable in an existing app (see CallmoodHandler). */
  readonly handler: CallmoodHandler = (req, res, next) => {
    const path = pathnameOf(req.url);
    const p = this.host.options.paths;
    const route: Route | null = path === p.twiml ? 'twiml' : path === p.status ? 'status' : path === p.health ? 'health' : path === p.metrics ? 'metrics' : null;
    if (!route) {
      next?.();
      return false;
    }
    this.route(route, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) this.host.log('error', (err as CallmoodError).code ?? 'CALLMOOD_HTTP_ERROR', `${req.method} ${path}: ${(err as Error).message}`);
      else this.host.log('warn', 'CALLMOOD_HTTP_REJECTED', `${req.method} ${path}: ${status} ${(err as Error).message}`);
      this.reply(res, route, status, status === 500 ? 'internal error' : (err as Error).message);
      // An unread body would otherwise keep the connection busy.
      if (status !== 500) req.resume();
    });
    return true;
  };

  /** Answers and counts one request (`route` labels the metric; `other` for paths that are not ours). */
  reply(res: ServerResponse, route: string, status: number, body: string, contentType?: string, headers: Record<string, string> = {}): void {
    this.host.metrics.webhooks.inc({ route, status: String(status) });
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    send(res, status, body, contentType);
  }

  private async route(route: Route, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { options, log, guard } = this.host;
    const method = req.method ?? 'GET';
    if (route === 'health' || route === 'metrics') {
      if (method !== 'GET' && method !== 'HEAD') return this.reply(res, route, 405, 'method not allowed', undefined, { allow: 'GET, HEAD' });
      if (route === 'health') {
        const h = this.host.health();
        return this.reply(res, route, h.ok ? 200 : 503, JSON.stringify(h), 'application/json');
      }
      const { contentType, body } = await this.host.metrics.text();
      return this.reply(res, route, 200, body, contentType);
    }
    const allowed = route === 'twiml' ? ['POST', 'GET'] : ['POST'];
    if (!allowed.includes(method)) return this.reply(res, route, 405, 'method not allowed', undefined, { allow: allowed.join(', ') });
    // Twilio signs the POST fields; a GET's fields are in the (signed) URL itself.
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const signed: WebhookParams = method === 'POST' ? await readForm(req, options.maxBodyBytes) : {};
    const sig = guard.check(req, 'http', signed);
    if (!sig.ok) {
      log('warn', ErrorCodes.SIGNATURE, `${method} ${req.url?.split('?')[0]} refused: ${sig.reason}`, { remote: req.socket.remoteAddress });
      return this.reply(res, route, 403, 'invalid X-Twilio-Signature');
    }
    const params = method === 'POST' ? signed : formParams(query);
    if (route === 'status') {
      const s = describeStreamStatus(params);
      log(s.isError ? 'warn' : 'info', 'CALLMOOD_STREAM_STATUS', s.line, s.fields);
      return this.reply(res, route, 204, '');
    }
    // Twilio takes a 503 as a failed webhook and uses the number's fallback URL.
    if (this.host.draining) return this.reply(res, route, 503, 'server shutting down');
    if (!this.host.modelLoaded) return this.reply(res, route, 503, 'model not loaded yet');
    const base = publicBaseUrl(req, options.publicUrl);
    if (!base) return this.reply(res, route, 400, 'no Host header and no publicUrl configured');
    const xml = buildTwiml(
      options.twiml,
      {
        stream: base.replace(/^http(s?):/, 'ws$1:') + options.paths.media,
        status: options.twiml.statusCallback ? base + options.paths.status : null,
      },
      params,
    );
    return this.reply(res, route, 200, xml, 'text/xml; charset=utf-8');
  }
}
