/**
 * The media-stream server's options: one interface with a doc line per field, one frozen default, merged from a
 * partial (nested objects merge field by field), validated once with zod. An invalid value is a CallmoodError
 * INVALID_OPTION that names the field, the value and the allowed range. Secrets (the Twilio auth token, the events
 * token, the Telnyx stream token) come from the environment unless passed in code; `config/default.json` is this default, shipped.
 */
import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { deepFreeze, describeValue, valueAt } from '../util/values.js';
import { describeIssues } from '../util/issues.js';
import { DEFAULT_WEBHOOK_OPTIONS, resolveWebhookOptions, type WebhookOptions, type WebhookOptionsInput } from './webhook-options.js';

/** A TwiML verb that may run before or after the `<Stream>` verb (built with twilio's VoiceResponse, so escaped). */
export type TwimlVerb =
  /** `<Say>`: speak a text (voice and language as Twilio names them). */
  | { say: string; voice?: string; language?: string }
  /** `<Pause length>`: wait this many seconds (1–3600; Twilio ends the call when the TwiML runs out). */
  | { pause: number }
  /** `<Redirect>`: hand the call to other TwiML, e.g. the customer's own bot. */
  | { redirect: string; method?: 'GET' | 'POST' }
  /** `<Hangup/>`. */
  | { hangup: true };

/** How the `/twiml` webhook answers an incoming call. */
export interface TwimlOptions {
  /**
   * `connect`: `<Connect><Stream>`, two-way, the caller's track only; the call waits on the stream and the TwiML
   * after it runs once the socket closes. `start`: `<Start><Stream track>`, one-way, and the call goes on at once with
   * the `after` verbs (e.g. a redirect to the customer's bot).
   */
  mode: 'connect' | 'start';
  /** Tracks a `start` stream carries (a `connect` stream always carries the caller's, `inbound`). */
  track: 'inbound_track' | 'outbound_track' | 'both_tracks';
  /** `<Parameter name value/>`s sent with the stream; they come back in every event's `customParameters`. */
  parameters: Record<string, string>;
  /** Webhook parameters copied into `<Parameter>`s under the same name, e.g. `From`, `To`, `CallSid`. */
  forwardParams: string[];
  /** Verbs before the stream (e.g. a greeting). */
  before: TwimlVerb[];
  /** Verbs after the stream. */
  after: TwimlVerb[];
  /** Ask Twilio to POST the stream's status changes to the status path. */
  statusCallback: boolean;
}

/** URL paths the server answers on. */
export interface PathOptions {
  /** WebSocket: Twilio's media stream. */
  media: string;
  /** WebSocket: the event feed for a callbot in another process. */
  events: string;
  /** POST (or GET): the incoming-call webhook answering TwiML. */
  twiml: string;
  /** POST: the stream status callback. */
  status: string;
  /** GET: liveness and readiness JSON. */
  health: string;
  /** GET: Prometheus metrics. */
  metrics: string;
  /** WebSocket: Telnyx's media stream (checked with `telnyxStreamToken`); null = off. */
  telnyxMedia: string | null;
}

/** Per-stream protocol limits (see MediaSession). */
export interface SessionLimits {
  /** Largest decoded media payload accepted, bytes (Twilio sends 160 = 20 ms); larger ones are dropped as errors. */
  maxPayloadBytes: number;
  /** Longest gap in media timestamps filled with silence, ms. */
  maxGapFillMs: number;
  /** Protocol errors tolerated on one stream before it is closed (1008). */
  maxProtocolErrors: number;
  /**
   * Windows one track may have waiting for the model; more are skipped, counted and reported as one INFERENCE error
   * per run of skips (null = no cap). Bounds the memory and latency one runaway stream can cost the other calls.
   */
  maxPendingWindows: number | null;
  /** A stream whose audio runs this far ahead of the wall clock (sent faster than real time) has its socket paused, ms. */
  maxLeadMs: number;
}

/** Per-track emotion stream settings (see EmotionTrack). */
export interface StreamSettings {
  /** A window is scored every this many ms of audio. */
  hopMs: number;
  /** Weight of each new window in the smoothed per-call state, (0, 1]. */
  smoothing: number;
  /** A run of speech is reported once it lasts this long, ms. */
  minSpeechMs: number;
  /** Minimum share of speech frames for a window to be scored; null = the model's own. */
  minSpeechRatio: number | null;
}

/** Micro-batching of windows from all calls into the one shared model. */
export interface BatchSettings {
  /**
   * Largest batch run at once. 32: on wasm the shipped model costs less per window in batches of 32 than of 48 or 64
   * (`bench/batch-size.ts`, CPU µs per window, medians of 4 interleaved rounds: 146 at 32, 216 at 48, 219 at 64,
   * 282 at 16; a second run 129, 191, 208 and 207).
   */
  maxBatch: number;
  /** Longest a window waits for others before its batch runs, ms. */
  maxWaitMs: number;
}

/** The `/events` feed. */
export interface FeedSettings {
  /**
   * A consumer whose unsent data passes this many bytes is closed with 1013 (try again later) and counted: a callbot
   * that silently missed events would act on a stale view of the call, a closed socket tells it to reconnect.
   */
  maxBufferedBytes: number;
  /** Ping interval, ms; a consumer that has not answered the previous ping is dropped. */
  heartbeatMs: number;
}

/** The dialog policy (see src/policy). */
export interface PolicySettings {
  /** Run a policy at all. */
  enabled: boolean;
  /** Policy file (JSON); relative to the working directory, else to the package; null = the shipped `config/policy.json` rules. */
  file: string | null;
  /** Decide and report, carry nothing out (overrides the file's `dryRun` when true). */
  dryRun: boolean;
  /** Longest a custom action handler may run before its action counts as failed, ms. */
  handlerTimeoutMs: number;
}

/**
 * Changing live calls for escalate and end_call: through Twilio's REST API (the auth token is `authToken`), and, for
 * calls that came over the Telnyx media path, through Telnyx Call Control (the API key is `telnyxApiKey`). The retry
 * settings apply to both.
 */
export interface ControlSettings {
  /** Account SID (AC…); null = TWILIO_ACCOUNT_SID, else the account each call's stream names. */
  accountSid: string | null;
  /** REST API base URL; null = Twilio's own. For an egress proxy, or a stand-in server in tests. */
  apiBaseUrl: string | null;
  /** Telnyx API base URL (the part before `/v2`); null = Telnyx's own (https://api.telnyx.com). For an egress proxy, or a stand-in server in tests. */
  telnyxApiBaseUrl: string | null;
  /** Requests per change at most, counting the first (429, 5xx and network errors are retried). */
  maxAttempts: number;
  /** Wait before the first retry, ms; doubles per retry with ±50% jitter. */
  baseBackoffMs: number;
  /** Longest wait between retries, ms. */
  maxBackoffMs: number;
  /** Per request, ms. */
  timeoutMs: number;
}

/**
 * Many nodes sharing one Redis (see README "Running many nodes"). With `url` null, the default, callmood is one
 * process and needs no Redis: events fan out in memory and the webhook outbox is a folder on this node's disk.
 */
export interface RedisSettings {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`); null = CALLMOOD_REDIS_URL, else one process, no Redis. */
  url: string | null;
  /** Prefix of every key callmood writes, so several deployments can share one Redis. */
  prefix: string;
  /** The stream of all calls keeps about this many events (XADD MAXLEN ~); each call's own stream keeps its last minute (or catchUpMs) and expires a minute after its last event. */
  eventsMaxLen: number;
  /** A feed consumer asking for one call gets that call's events of the last this many ms first (catch-up). */
  catchUpMs: number;
  /** Events held in memory while Redis is unreachable, per node; more are dropped, counted and logged. */
  bufferMaxEvents: number;
  /** Webhook partitions: a call's events go to partition hash(callSid) mod this; one node delivers a partition at a time. */
  outboxPartitions: number;
  /** A node holds a partition's lease this long without renewing it; a dead node's partitions move after it, ms. */
  leaseMs: number;
  /** A node that has not beaten (every third of this) for this long is dead: a survivor ends its calls as `node-lost`, ms. */
  nodeTtlMs: number;
}

/** Everything `createCallmood` and `callmood serve` take. */
export interface CallmoodOptions {
  /** Model directory (TF.js files + metadata.json), loaded once and shared by every call; relative to the working directory, else to the package. */
  modelDir: string;
  /** Where the model runs: `worker` (a worker thread, keeps the event loop free for audio) or `in-process`. */
  engine: 'worker' | 'in-process';
  /** Public base URL Twilio reaches this server at (http(s)://host[:port][/prefix]), needed behind a proxy; null = from Host and X-Forwarded-Proto. */
  publicUrl: string | null;
  /** Check X-Twilio-Signature on every webhook and media upgrade. false is for local development only and is logged on every request. */
  validateSignatures: boolean;
  /** Twilio auth token (the HMAC key of the signatures); null = from TWILIO_AUTH_TOKEN. Never put it in a config file. */
  authToken: string | null;
  /** Bearer token of the event feed; null = from CALLMOOD_EVENTS_TOKEN; with neither the feed is off. Never put it in a config file. */
  eventsToken: string | null;
  /** Shared secret a Telnyx media upgrade carries (its `stream_auth_token`, or `?token=`); null = from CALLMOOD_TELNYX_STREAM_TOKEN. Never put it in a config file. */
  telnyxStreamToken: string | null;
  /** Telnyx API key (Call Control for calls on the Telnyx media path); null = from TELNYX_API_KEY. Never put it in a config file. */
  telnyxApiKey: string | null;
  /** URL paths. */
  paths: PathOptions;
  /** The incoming-call TwiML. */
  twiml: TwimlOptions;
  /** A media stream silent this long (no message at all) is ended as `stalled` and closed with 1001, ms. */
  stallTimeoutMs: number;
  /** Largest WebSocket message accepted on the media path, bytes; a larger one closes the socket with 1009. */
  maxMessageBytes: number;
  /** Most media streams at once; more are refused with HTTP 503 before the socket opens. */
  maxCalls: number;
  /** Largest webhook body read, bytes; larger gets HTTP 413. */
  maxBodyBytes: number;
  /** On close(): longest wait for calls to end and events to flush before sockets are cut, ms. */
  drainTimeoutMs: number;
  /** Per-stream protocol limits. */
  session: SessionLimits;
  /** Per-track emotion stream settings. */
  stream: StreamSettings;
  /** Micro-batching. */
  batch: BatchSettings;
  /** The event feed. */
  feed: FeedSettings;
  /** The dialog policy. */
  policy: PolicySettings;
  /** Call control for the policy's escalate and end_call. */
  control: ControlSettings;
  /** CRM webhooks: which events go to which URL, signed, through a durable outbox (see src/sinks/README.md). */
  webhooks: WebhookOptions;
  /** Many nodes on one Redis; off by default. */
  redis: RedisSettings;
}

/** Options as given: any field may be left out, nested objects too. */
export type CallmoodOptionsInput = Partial<{
  [K in Exclude<keyof CallmoodOptions, 'webhooks'>]: CallmoodOptions[K] extends Record<string, string> | unknown[] | string | number | boolean | null
    ? CallmoodOptions[K]
    : Partial<CallmoodOptions[K]>;
}> & { webhooks?: WebhookOptionsInput };

/** The defaults: `config/default.json` holds the same values. */
export const DEFAULT_OPTIONS: Readonly<CallmoodOptions> = deepFreeze({
  modelDir: 'models/default',
  engine: 'worker',
  publicUrl: null,
  validateSignatures: true,
  authToken: null,
  eventsToken: null,
  telnyxStreamToken: null,
  telnyxApiKey: null,
  paths: { media: '/media', events: '/events', twiml: '/twiml', status: '/status', health: '/healthz', metrics: '/metrics', telnyxMedia: null },
  twiml: { mode: 'connect', track: 'inbound_track', parameters: {}, forwardParams: ['From', 'To'], before: [], after: [], statusCallback: true },
  stallTimeoutMs: 10_000,
  // Twilio's media messages are about 400 bytes; 64 KiB leaves room for anything sane and nothing absurd.
  maxMessageBytes: 64 * 1024,
  maxCalls: 500,
  maxBodyBytes: 64 * 1024,
  drainTimeoutMs: 15_000,
  session: { maxPayloadBytes: 8000, maxGapFillMs: 10_000, maxProtocolErrors: 100, maxPendingWindows: 8, maxLeadMs: 2000 },
  // A 500 ms hop halves inference against 250 ms; smoothing 0.51 keeps the 250 ms run's time constant (bench/hop.ts:
  // smoothed-label changes within ±250 ms of it).
  stream: { hopMs: 500, smoothing: 0.51, minSpeechMs: 100, minSpeechRatio: null },
  batch: { maxBatch: 32, maxWaitMs: 5 },
  feed: { maxBufferedBytes: 1024 * 1024, heartbeatMs: 30_000 },
  policy: { enabled: true, file: null, dryRun: false, handlerTimeoutMs: 10_000 },
  control: { accountSid: null, apiBaseUrl: null, telnyxApiBaseUrl: null, maxAttempts: 5, baseBackoffMs: 250, maxBackoffMs: 8000, timeoutMs: 10_000 },
  webhooks: DEFAULT_WEBHOOK_OPTIONS,
  redis: { url: null, prefix: 'callmood', eventsMaxLen: 100_000, catchUpMs: 10_000, bufferMaxEvents: 50_000, outboxPartitions: 16, leaseMs: 10_000, nodeTtlMs: 15_000 },
} satisfies CallmoodOptions);


// ---------------------------------------------------------------------------------------------------------------
// Schema: each leaf carries the text of its allowed range, used in the error message.
// ---------------------------------------------------------------------------------------------------------------

/** What a Redis URL may look like (the `redis.url` option; the queue commands' `--redis`, `--queue` say it too). */
export const REDIS_URL_ALLOWED = 'redis://[user:password@]host:port[/db] (or rediss://)';
/** What a key prefix may be (the `redis.prefix` option, and `--prefix`). */
export const REDIS_PREFIX_ALLOWED = 'letters, digits, _ . : - (1 to 64 characters)';

const ALLOWED = Symbol('allowed');
type WithAllowed = z.ZodType & { [ALLOWED]?: string };

function allowed<T extends z.ZodType>(schema: T, text: string): T {
  (schema as WithAllowed)[ALLOWED] = text;
  return schema;
}

const int = (lo: number, hi: number, unit = '') => allowed(z.number().int().min(lo).max(hi), `an integer${unit ? ` (${unit})` : ''} in [${lo}, ${hi}]`);
const path = () => allowed(z.string().regex(/^\/[A-Za-z0-9._~\-/]*$/), "a path starting with '/' (letters, digits, . _ ~ - /)");
const secret = () => allowed(z.string().min(8).nullable(), 'null or a string of at least 8 characters');

/** The environment variable each secret is read from when not given in code. */
const SECRET_ENV = { authToken: 'TWILIO_AUTH_TOKEN', eventsToken: 'CALLMOOD_EVENTS_TOKEN', telnyxStreamToken: 'CALLMOOD_TELNYX_STREAM_TOKEN', telnyxApiKey: 'TELNYX_API_KEY' } as const;
/** What each secret's variable may hold, for its error message. */
const SECRET_ALLOWED: Record<keyof typeof SECRET_ENV, string> = {
  // Twilio shows the auth token in the Console under Account info: 32 hex digits.
  authToken: "at least 8 characters: the account's auth token from the Twilio Console (32 hex digits)",
  eventsToken: 'at least 8 characters (a long random string: the event feed is read with it as a bearer token), or unset it to turn the feed off',
  telnyxStreamToken: "at least 8 characters (a long random string, the same as the streaming command's stream_auth_token)",
  telnyxApiKey: 'at least 8 characters: an API key from the Telnyx Mission Control Portal (Auth, API Keys)',
};
const paramName = allowed(z.string().min(1).max(128), 'a non-empty name of at most 128 characters');

const verb = allowed(
  z.union([
    z.strictObject({ say: z.string().min(1).max(4096), voice: z.string().optional(), language: z.string().optional() }),
    z.strictObject({ pause: z.number().int().min(1).max(3600) }),
    z.strictObject({ redirect: z.url({ protocol: /^https?$/ }), method: z.enum(['GET', 'POST']).optional() }),
    z.strictObject({ hangup: z.literal(true) }),
  ]),
  '{say, voice?, language?} | {pause: 1–3600} | {redirect: http(s) URL, method?: GET|POST} | {hangup: true}',
);

const schema = z.strictObject({
  modelDir: allowed(z.string().min(1), 'a model directory path'),
  engine: allowed(z.enum(['worker', 'in-process']), "'worker' or 'in-process'"),
  publicUrl: allowed(
    z
      .string()
      .regex(/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/)
      .nullable(),
    'null or an http(s) base URL without query or fragment, e.g. https://calls.example.com',
  ),
  validateSignatures: allowed(z.boolean(), 'true or false'),
  authToken: secret(),
  eventsToken: secret(),
  telnyxStreamToken: secret(),
  telnyxApiKey: secret(),
  paths: z.strictObject({
    media: path(),
    events: path(),
    twiml: path(),
    status: path(),
    health: path(),
    metrics: path(),
    telnyxMedia: allowed(path().nullable(), "null (off) or a path starting with '/' (letters, digits, . _ ~ - /)"),
  }),
  twiml: z.strictObject({
    mode: allowed(z.enum(['connect', 'start']), "'connect' or 'start'"),
    track: allowed(z.enum(['inbound_track', 'outbound_track', 'both_tracks']), "'inbound_track', 'outbound_track' or 'both_tracks'"),
    parameters: allowed(z.record(z.string().min(1).max(128), z.string().max(1024)), 'an object of string names (1–128 chars) to string values (≤ 1024 chars)'),
    forwardParams: allowed(z.array(paramName), 'an array of webhook parameter names'),
    before: allowed(z.array(verb), 'an array of TwiML verbs'),
    after: allowed(z.array(verb), 'an array of TwiML verbs'),
    statusCallback: allowed(z.boolean(), 'true or false'),
  }),
  stallTimeoutMs: int(100, 600_000, 'ms'),
  maxMessageBytes: int(1024, 16 * 1024 * 1024, 'bytes'),
  maxCalls: int(1, 100_000),
  maxBodyBytes: int(1024, 16 * 1024 * 1024, 'bytes'),
  drainTimeoutMs: int(0, 600_000, 'ms'),
  session: z.strictObject({
    maxPayloadBytes: int(160, 1_000_000, 'bytes'),
    maxGapFillMs: int(0, 600_000, 'ms'),
    maxProtocolErrors: int(1, 1_000_000),
    maxPendingWindows: allowed(z.number().int().min(1).max(10_000).nullable(), 'null or an integer in [1, 10000]'),
    maxLeadMs: int(100, 600_000, 'ms'),
  }),
  stream: z.strictObject({
    hopMs: allowed(z.number().min(10).max(5000), 'ms in [10, 5000]'),
    smoothing: allowed(z.number().gt(0).max(1), 'a number in (0, 1]'),
    minSpeechMs: allowed(z.number().min(0).max(5000), 'ms in [0, 5000]'),
    minSpeechRatio: allowed(z.number().min(0).max(1).nullable(), 'null or a number in [0, 1]'),
  }),
  batch: z.strictObject({ maxBatch: int(1, 1024), maxWaitMs: allowed(z.number().min(0).max(1000), 'ms in [0, 1000]') }),
  feed: z.strictObject({ maxBufferedBytes: int(1024, 1024 * 1024 * 1024, 'bytes'), heartbeatMs: int(100, 3_600_000, 'ms') }),
  policy: z.strictObject({
    enabled: allowed(z.boolean(), 'true or false'),
    file: allowed(z.string().min(1).nullable(), 'null (the shipped policy) or a path to a policy JSON file'),
    dryRun: allowed(z.boolean(), 'true or false'),
    handlerTimeoutMs: int(1, 600_000, 'ms'),
  }),
  control: z.strictObject({
    accountSid: allowed(z.string().regex(/^AC[0-9a-fA-F]{32}$/).nullable(), 'null or AC followed by 32 hex digits'),
    apiBaseUrl: allowed(z.url({ protocol: /^https?$/ }).nullable(), 'null or an http(s) URL'),
    telnyxApiBaseUrl: allowed(z.url({ protocol: /^https?$/ }).nullable(), "null (Telnyx's own) or an http(s) URL"),
    maxAttempts: int(1, 20),
    baseBackoffMs: int(1, 60_000, 'ms'),
    maxBackoffMs: int(1, 600_000, 'ms'),
    timeoutMs: int(100, 120_000, 'ms'),
  }),
  // Checked by resolveWebhookOptions, whose errors name the endpoint and the field.
  webhooks: z.unknown(),
  redis: z.strictObject({
    url: allowed(z.string().regex(/^rediss?:\/\/[^\s/?#]+(\/\d{1,2})?$/).nullable(), `null or ${REDIS_URL_ALLOWED}`),
    prefix: allowed(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/), REDIS_PREFIX_ALLOWED),
    eventsMaxLen: int(1000, 100_000_000),
    catchUpMs: int(0, 3_600_000, 'ms'),
    bufferMaxEvents: int(0, 10_000_000),
    outboxPartitions: int(1, 1024),
    leaseMs: int(1000, 600_000, 'ms'),
    nodeTtlMs: int(1000, 600_000, 'ms'),
  }),
});

/** The schema's leaf at a path, to find its allowed text. */
function leafAt(path: readonly PropertyKey[]): WithAllowed | undefined {
  let s: z.ZodType | undefined = schema;
  for (const key of path) {
    if (!s) return undefined;
    type Def = { type?: string; shape?: Record<string, z.ZodType>; element?: z.ZodType };
    const def: Def | undefined = (s as unknown as { def?: Def }).def;
    if (def?.type === 'object' && def.shape) s = def.shape[String(key)];
    else if (def?.type === 'array' && def.element) s = def.element;
    else return s as WithAllowed;
  }
  return s as WithAllowed;
}



/** Merges `input` over the defaults (nested objects field by field) without validating. */
export function mergeOptions(input: CallmoodOptionsInput = {}, base: Readonly<CallmoodOptions> = DEFAULT_OPTIONS): CallmoodOptions {
  const out: Record<string, unknown> = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(input)) {
    if (v === undefined) continue;
    const current = out[k];
    const isPlain = (x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x);
    // `parameters` is a map, not a set of fields: it replaces, never merges.
    out[k] = isPlain(v) && isPlain(current) && k !== 'parameters' ? mergeNested(current as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out as unknown as CallmoodOptions;
}

function mergeNested(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * Merges `input` over the defaults, fills the secrets from `env` (TWILIO_AUTH_TOKEN, CALLMOOD_EVENTS_TOKEN, …) where
 * not given, validates once and returns a frozen copy. Throws INVALID_OPTION naming the first bad field, its value and
 * the allowed range, or when signatures are to be checked but there is no auth token.
 */
export function resolveOptions(input: CallmoodOptionsInput = {}, env: NodeJS.ProcessEnv = process.env): Readonly<CallmoodOptions> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `options must be an object, got ${describeValue(input)}`);
  }
  const merged = mergeOptions(input);
  merged.authToken ??= nonEmpty(env.TWILIO_AUTH_TOKEN);
  merged.eventsToken ??= nonEmpty(env.CALLMOOD_EVENTS_TOKEN);
  merged.telnyxStreamToken ??= nonEmpty(env.CALLMOOD_TELNYX_STREAM_TOKEN);
  merged.telnyxApiKey ??= nonEmpty(env.TELNYX_API_KEY);
  // A Redis URL with a password belongs in the environment, like the other secrets.
  if (merged.redis && typeof merged.redis === 'object') merged.redis = { ...merged.redis, url: merged.redis.url ?? nonEmpty(env.CALLMOOD_REDIS_URL) };
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.');
    // A secret read from the environment is named by its variable: the user never wrote "authToken" anywhere.
    const env = field in SECRET_ENV && input[field as keyof typeof SECRET_ENV] == null ? SECRET_ENV[field as keyof typeof SECRET_ENV] : null;
    if (env) {
      const v = valueAt(merged, issue.path);
      throw new CallmoodError(
        ErrorCodes.INVALID_OPTION,
        `${env} (from the environment) is ${typeof v === 'string' ? `${v.length} character(s) long` : describeValue(v)}; allowed: ${SECRET_ALLOWED[field as keyof typeof SECRET_ENV]}`,
      );
    }
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      describeIssues(parsed.error, merged, schema, {
        noun: 'option',
        allowedAt: (p) => leafAt(p)?.[ALLOWED],
        secret: (p) => p.length === 1 && p[0] in SECRET_ENV,
      }),
    );
  }
  const o = parsed.data as CallmoodOptions;
  o.webhooks = resolveWebhookOptions(merged.webhooks as WebhookOptionsInput, env) as WebhookOptions;
  if (o.validateSignatures && !o.authToken) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      'validateSignatures is on but there is no Twilio auth token: set TWILIO_AUTH_TOKEN (or pass authToken), or turn signature checks off for local development only',
    );
  }
  if (o.validateSignatures && o.paths.telnyxMedia !== null && !o.telnyxStreamToken) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `paths.telnyxMedia is ${JSON.stringify(o.paths.telnyxMedia)} but there is no Telnyx stream token: set CALLMOOD_TELNYX_STREAM_TOKEN (or pass telnyxStreamToken), or set paths.telnyxMedia to null`,
    );
  }
  const paths = Object.entries(o.paths).filter(([, p]) => p !== null);
  for (const [i, [k, p]] of paths.entries()) {
    const twin = paths.findIndex(([, q], j) => j < i && q === p);
    if (twin >= 0) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `option paths.${k} is ${JSON.stringify(p)}, the same as paths.${paths[twin][0]}; allowed: distinct paths`);
  }
  return deepFreeze(o);
}

function nonEmpty(s: string | undefined): string | null {
  return s !== undefined && s.length > 0 ? s : null;
}
