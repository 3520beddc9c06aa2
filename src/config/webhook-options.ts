/**
 * CRM webhook options: one interface with a doc line per field, one frozen default, merged from a partial, validated
 * once with zod. They sit under the `webhooks` key of the server options and of a `--config` file. An invalid value
 * is a CallmoodError INVALID_OPTION naming the endpoint (index and name), the field, the value and what is allowed.
 * Secrets come from the environment (`secretEnv`); `secret` is for options passed in code.
 */
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { EVENT_TYPES, type ActionKind, type CallmoodEvent } from '../stream/events.js';

/** The policy's action kinds, for `action:<kind>` and `action-result:<kind>` routes. */
export const ACTION_KINDS = ['soften_offer', 'escalate', 'end_call', 'flag_customer', 'custom'] as const satisfies readonly ActionKind[];
// Fails to compile when events.ts gains an action kind this list lacks.
const _allKinds: Exclude<ActionKind, (typeof ACTION_KINDS)[number]> extends never ? true : never = true;
void _allKinds;

/** Retry timing: attempt n (1-based) waits min(maxMs, baseMs·2^(n-1)), shortened by up to `jitter` of itself at random. */
export interface BackoffOptions {
  /** Wait after the first failed attempt, ms. */
  baseMs: number;
  /** Longest wait between two attempts, ms. */
  maxMs: number;
  /** Share of each wait taken off at random, [0, 1]: spreads the retries of many calls after an outage. */
  jitter: number;
}

/** One CRM URL and what it receives. */
export interface WebhookEndpointOptions {
  /** Stable name: names the outbox subfolder, logs and metrics; letters, digits, `_` and `-`, at most 64. */
  name: string;
  /** http(s) URL the events are POSTed to; redirects are not followed. */
  url: string;
  /** Event types sent here (see EVENT_TYPES), or `action:<kind>` / `action-result:<kind>` for some policy actions only. */
  events: string[];
  /** HMAC-SHA256 signing secret (at least 16 characters); null = read from the variable named by `secretEnv`. */
  secret: string | null;
  /** Name of the environment variable holding the secret (the way to give it in a config file). */
  secretEnv: string | null;
  /** Most requests in flight at once to this endpoint (events of one call are always sent one at a time). */
  concurrency: number;
  /** Attempts before an event goes to the dead-letter file (counted since the process started). */
  maxAttempts: number;
  /** A request without a response within this time is aborted and retried, ms. */
  timeoutMs: number;
  /** Retry timing. */
  backoff: BackoffOptions;
  /** Extra request headers, e.g. the CRM's own API key (Content-Type and the Callmood-* headers cannot be replaced). */
  headers: Record<string, string>;
}

/** The webhook sink's options (the `webhooks` key). */
export interface WebhookOptions {
  /** Folder of the durable outbox: one subfolder per endpoint with its log and dead-letter file. */
  outboxDir: string;
  /** CRM endpoints; none = the sink does nothing and writes nothing. */
  endpoints: WebhookEndpointOptions[];
  /** Pending deliveries kept in memory per endpoint; beyond it they wait on disk only and are read back in order. */
  memoryWindow: number;
  /** The outbox log is rewritten without its delivered part once it is this large and more than half delivered, bytes. */
  compactAtBytes: number;
  /** close(): longest wait for requests in flight before they are cut (their events stay pending), ms. */
  closeTimeoutMs: number;
  /**
   * close(): how long to go on delivering pending events first (a shutdown's call-ends), ms; what is not delivered by
   * then stays in the outbox for the next start. 0 = keep everything for the next start.
   */
  drainTimeoutMs: number;
}

/** An endpoint as given: name, url and events required, the rest defaulted. */
export type WebhookEndpointInput = Pick<WebhookEndpointOptions, 'name' | 'url' | 'events'> &
  Partial<Omit<WebhookEndpointOptions, 'name' | 'url' | 'events' | 'backoff'>> & { backoff?: Partial<BackoffOptions> };

/** Options as given: any field may be left out. */
export type WebhookOptionsInput = Partial<Omit<WebhookOptions, 'endpoints'>> & { endpoints?: WebhookEndpointInput[] };

/** Defaults of every endpoint field but name, url and events. */
export const DEFAULT_WEBHOOK_ENDPOINT: Readonly<Omit<WebhookEndpointOptions, 'name' | 'url' | 'events'>> = deepFreeze({
  secret: null,
  secretEnv: null,
  concurrency: 4,
  // 1 s doubling to 10 min, 20 attempts: the last one comes about 1.6–1.9 h after the first (with 20% jitter), so a
  // CRM outage of an hour dead-letters nothing.
  maxAttempts: 20,
  timeoutMs: 10_000,
  backoff: { baseMs: 1000, maxMs: 600_000, jitter: 0.2 },
  headers: {},
});

/** The defaults. */
export const DEFAULT_WEBHOOK_OPTIONS: Readonly<WebhookOptions> = deepFreeze({
  outboxDir: '.callmood/outbox',
  endpoints: [],
  // 10k pending deliveries hold a few MB (bodies of ~0.5 kB); an outage's backlog beyond that waits on disk.
  memoryWindow: 10_000,
  compactAtBytes: 16 * 1024 * 1024,
  closeTimeoutMs: 5000,
  // Delivering a few calls' last events takes well under a second with the CRM up; 5 s leaves room for a slow CRM
  // and, with the server's own drain, stays inside the 30 s a supervisor (Kubernetes, systemd) grants by default.
  drainTimeoutMs: 5000,
} satisfies WebhookOptions);

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Every value allowed in an endpoint's `events`. */
export const WEBHOOK_ROUTES: readonly string[] = [
  ...EVENT_TYPES,
  ...ACTION_KINDS.map((k) => `action:${k}`),
  ...ACTION_KINDS.map((k) => `action-result:${k}`),
];
const ROUTES_TEXT = `${EVENT_TYPES.join(', ')}, action:<kind> or action-result:<kind> with kind one of ${ACTION_KINDS.join(', ')}`;

const int = (lo: number, hi: number, unit = '') => ({ schema: z.number().int().min(lo).max(hi), text: `an integer${unit ? ` (${unit})` : ''} in [${lo}, ${hi}]` });

// Each leaf with the text of what is allowed, used in the error message.
const ENDPOINT_FIELDS = {
  name: { schema: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), text: 'a name of 1–64 letters, digits, _ or - (it names a folder)' },
  url: { schema: z.url({ protocol: /^https?$/ }), text: 'an http(s) URL' },
  events: { schema: z.array(z.string()).min(1), text: `a non-empty array of ${ROUTES_TEXT}` },
  secret: { schema: z.string().min(16).nullable(), text: 'null or a string of at least 16 characters' },
  secretEnv: { schema: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).nullable(), text: 'null or an environment variable name' },
  concurrency: int(1, 256),
  maxAttempts: int(1, 1000),
  timeoutMs: int(100, 600_000, 'ms'),
  backoff: { schema: z.strictObject({ baseMs: z.number(), maxMs: z.number(), jitter: z.number() }), text: '{baseMs, maxMs, jitter}' },
  headers: { schema: z.record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/), z.string().max(8192)), text: 'an object of header names to string values' },
} as const;
const BACKOFF_FIELDS = {
  baseMs: int(1, 3_600_000, 'ms'),
  maxMs: int(1, 86_400_000, 'ms'),
  jitter: { schema: z.number().min(0).max(1), text: 'a number in [0, 1]' },
} as const;
const TOP_FIELDS = {
  outboxDir: { schema: z.string().min(1), text: 'a folder path' },
  endpoints: { schema: z.array(z.unknown()), text: 'an array of endpoints' },
  memoryWindow: int(100, 10_000_000),
  compactAtBytes: int(4096, 1024 * 1024 * 1024, 'bytes'),
  closeTimeoutMs: int(0, 600_000, 'ms'),
  drainTimeoutMs: int(0, 600_000, 'ms'),
} as const;
// Headers the sink sets itself; letting config replace them would break signatures or the body's meaning.
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'connection', 'transfer-encoding', 'user-agent']);

const HIDDEN = Symbol('hidden');

function describe(v: unknown): string {
  if (v === HIDDEN) return '(hidden)';
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

const isPlain = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);

function bad(where: string, field: string, value: unknown, allowed: string): never {
  throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${where}${field} is ${describe(value)}; allowed: ${allowed}`);
}

function checkFields(where: string, obj: Record<string, unknown>, fields: Record<string, { schema: z.ZodType; text: string }>, hidden: string[] = []): void {
  const unknown = Object.keys(obj).filter((k) => !(k in fields) && k !== '$comment');
  if (unknown.length > 0) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${where}unknown option ${unknown.join(', ')}; known here: ${Object.keys(fields).join(', ')}`);
  }
  for (const [k, f] of Object.entries(fields)) {
    if (!f.schema.safeParse(obj[k]).success) bad(where, k, hidden.includes(k) && obj[k] !== null ? HIDDEN : obj[k], f.text);
  }
}

/**
 * Merges `input` over the defaults (each endpoint over DEFAULT_WEBHOOK_ENDPOINT, its backoff field by field), reads
 * each `secretEnv` from `env`, validates once and returns a frozen copy. Throws INVALID_OPTION naming the first bad
 * field as `webhooks.endpoints[i] (name).field`, its value and what is allowed.
 */
export function resolveWebhookOptions(input: WebhookOptionsInput = {}, env: NodeJS.ProcessEnv = process.env): Readonly<WebhookOptions> {
  if (!isPlain(input)) bad('', 'option webhooks', input, 'an object');
  const top: Record<string, unknown> = { ...DEFAULT_WEBHOOK_OPTIONS, endpoints: [] };
  for (const [k, v] of Object.entries(input)) if (v !== undefined && k !== '$comment') top[k] = v;
  if (input.endpoints === undefined) top.endpoints = [];
  checkFields('option webhooks.', top, TOP_FIELDS);
  const endpoints: WebhookEndpointOptions[] = [];
  const names = new Map<string, number>();
  for (const [i, raw] of (top.endpoints as unknown[]).entries()) {
    const rawName = isPlain(raw) && typeof raw.name === 'string' ? ` (${raw.name})` : '';
    const where = `option webhooks.endpoints[${i}]${rawName}.`;
    if (!isPlain(raw)) bad(`option webhooks.`, `endpoints[${i}]`, raw, 'an object {name, url, events, secretEnv, ...}');
    const e: Record<string, unknown> = structuredClone({ ...DEFAULT_WEBHOOK_ENDPOINT }) as Record<string, unknown>;
    for (const [k, v] of Object.entries(raw)) if (v !== undefined) e[k] = v;
    if (isPlain(raw.backoff)) e.backoff = { ...DEFAULT_WEBHOOK_ENDPOINT.backoff, ...raw.backoff };
    checkFields(where, e, ENDPOINT_FIELDS, ['secret']);
    checkFields(`${where}backoff.`, e.backoff as Record<string, unknown>, BACKOFF_FIELDS);
    const ep = e as unknown as WebhookEndpointOptions;
    if (ep.backoff.maxMs < ep.backoff.baseMs) bad(where, 'backoff.maxMs', ep.backoff.maxMs, `at least backoff.baseMs (${ep.backoff.baseMs})`);
    for (const [j, route] of ep.events.entries()) {
      if (!WEBHOOK_ROUTES.includes(route)) bad(where, `events[${j}]`, route, ROUTES_TEXT);
    }
    for (const h of Object.keys(ep.headers)) {
      const lower = h.toLowerCase();
      if (RESERVED_HEADERS.has(lower) || lower.startsWith('callmood-')) bad(where, `headers.${h}`, ep.headers[h], 'a header other than Content-Type, Content-Length, Host, Connection, Transfer-Encoding, User-Agent and Callmood-*');
    }
    const twin = names.get(ep.name);
    if (twin !== undefined) bad(where, 'name', ep.name, `a name no other endpoint has (endpoints[${twin}] has it)`);
    names.set(ep.name, i);
    // Both set is what resolving leaves behind (the secret read from secretEnv): resolving again is a no-op.
    const resolvedBefore = ep.secret !== null && ep.secretEnv !== null && env[ep.secretEnv] === ep.secret;
    if (!resolvedBefore && (ep.secret === null) === (ep.secretEnv === null)) {
      bad(where, 'secret', ep.secret === null ? null : HIDDEN, 'exactly one of secret (in code) or secretEnv (the name of an environment variable holding it)');
    }
    if (ep.secretEnv !== null) {
      const value = env[ep.secretEnv];
      if (value === undefined || value.length < 16) {
        bad(where, 'secretEnv', ep.secretEnv, `the name of an environment variable that holds a secret of at least 16 characters (${value === undefined ? 'it is not set' : 'it is shorter'})`);
      }
      ep.secret = value;
    }
    endpoints.push(ep);
  }
  return deepFreeze({ ...(top as unknown as WebhookOptions), endpoints });
}

/**
 * Throws INVALID_OPTION when a `webhooks` section read from a file (`where` names it) holds an endpoint `secret`:
 * files name the environment variable (`secretEnv`) instead. For `loadConfigFile` to call on the `webhooks` key.
 */
export function rejectWebhookSecrets(webhooks: unknown, where: string): void {
  const eps = (webhooks as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(eps)) return;
  for (const [i, e] of eps.entries()) {
    if (e && typeof e === 'object' && 'secret' in e && (e as { secret: unknown }).secret !== null) {
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `${where}: webhooks.endpoints[${i}].secret is a secret and may not be in a config file; put it in an environment variable and name that variable in secretEnv`,
      );
    }
  }
}

/** The compiled routing of one endpoint: which events it takes. */
export function routeMatcher(routes: readonly string[]): (e: CallmoodEvent) => boolean {
  const types = new Set(routes.filter((r) => !r.includes(':')));
  const actions = new Set(routes.filter((r) => r.startsWith('action:')).map((r) => r.slice('action:'.length)));
  const results = new Set(routes.filter((r) => r.startsWith('action-result:')).map((r) => r.slice('action-result:'.length)));
  return (e) => {
    if (types.has(e.type)) return true;
    if (e.type === 'action') return actions.has(e.action);
    if (e.type === 'action-result') return results.has(e.action);
    return false;
  };
}
