/**
 * Logging, for every module: one call shape inside callmood, `log(level, code, message, fields?)`, where `code` is a
 * stable `CALLMOOD_*` code and `fields` carry what a log pipeline filters on (`callSid`, `streamSid`, `track`,
 * `endpoint`, …) as fields, never inside the message. Such a function can be given directly (tests capture lines that
 * way), or any pino logger (or pino-compatible one: `info/warn/error/debug(obj, msg)`), which gets `{ code, ...fields }`
 * as its object and the message as its `msg`.
 *
 * `createLogger` builds callmood's own pino logger: JSON lines (pino's format) by default, or one human line per
 * record (`time LEVEL CODE message key=value …`) with `format: 'text'`. The text form is formatted here, in the
 * writing thread: no pino-pretty, no transport worker.
 */
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';

/** Log severity. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Structured fields of a log record: `callSid`, `streamSid`, `track`, `endpoint`, counts, an `err`… */
export type LogFields = Record<string, unknown>;

/** One log record: a severity, a stable code (`CALLMOOD_ERR_*` for errors), a message, optional fields. */
export type Logger = (level: LogLevel, code: string, message: string, fields?: LogFields) => void;

/** A pino logger, or any logger with pino's `(obj, msg)` methods; `debug` is optional. */
export interface PinoLikeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

/** What an embedding process may pass as a logger: a pino (or pino-compatible) logger, or a `Logger` function. */
export type LoggerInput = Logger | PinoLikeLogger;

/** Output format of `createLogger`. */
export type LogFormat = 'json' | 'text';

/** Options of `createLogger`. */
export interface CreateLoggerOptions {
  /** `json` (default): pino's JSON lines; `text`: one human line per record. */
  format?: LogFormat;
  /** Least severity written (default `info`). */
  level?: LogLevel;
  /** Where lines go (default stdout, written synchronously so nothing is lost at exit). */
  destination?: { write(line: string): unknown };
}

/** A logger that drops everything. */
export const silentLogger: Logger = () => {};

/** Turns what the user gave (a pino-like logger or a function) into callmood's `Logger`. */
export function toLogger(input: LoggerInput): Logger {
  if (typeof input === 'function') return input;
  const target = input as unknown as Record<LogLevel, ((obj: object, msg?: string) => void) | undefined>;
  for (const level of ['info', 'warn', 'error'] as const) {
    if (typeof target[level] !== 'function') {
      throw new TypeError(`logger: expected a function (level, code, message, fields) or an object with pino's info/warn/error(obj, msg) methods; it has no ${level}()`);
    }
  }
  return (level, code, message, fields) => {
    const write = target[level];
    if (typeof write !== 'function') return;
    // `code` leads the record and is never overwritten by a field of the same name.
    const obj: LogFields = Object.assign({ code }, fields);
    obj.code = code;
    write.call(input, obj, message);
  };
}

/** A logger adding `fields()` (read at each call: identity known later, e.g. a call's callSid) to every record. */
export function withFields(log: Logger, fields: () => LogFields): Logger {
  return (level, code, message, extra) => log(level, code, message, { ...fields(), ...extra });
}

/** Keys every pino record has, left out of the text form (`time`, `level`, `code` and `msg` lead the line). */
const TEXT_OMITTED = new Set(['time', 'level', 'code', 'msg', 'pid', 'hostname', 'name']);

/** A value as logfmt writes it: bare when it is a plain word, JSON otherwise. */
function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}

/** One pino JSON record as a human line: `time LEVEL CODE message key=value …`. */
export function formatTextLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = typeof rec.level === 'number' ? (pino.levels.labels[rec.level] ?? String(rec.level)) : String(rec.level ?? '');
  const time = typeof rec.time === 'number' ? new Date(rec.time).toISOString() : String(rec.time ?? '');
  let line = `${time} ${level.toUpperCase()}${rec.code !== undefined ? ` ${String(rec.code)}` : ''}${rec.msg !== undefined ? ` ${String(rec.msg)}` : ''}`;
  for (const [k, v] of Object.entries(rec)) if (!TEXT_OMITTED.has(k) && v !== undefined) line += ` ${k}=${textValue(v)}`;
  return `${line}\n`;
}

/** A pino destination that writes each record as a human line to `out`. */
export function textDestination(out: { write(line: string): unknown }): DestinationStream {
  return { write: (json: string) => void out.write(formatTextLine(json)) };
}

/**
 * callmood's own pino logger (the `serve` command's, and the default of `createCallmood`): JSON lines, or text lines
 * with `format: 'text'`. Records carry `name: "callmood"` and an ISO time.
 */
export function createLogger(opts: CreateLoggerOptions = {}): PinoLogger {
  const out: DestinationStream = opts.destination ?? pino.destination({ dest: 1, sync: true });
  const stream = opts.format === 'text' ? textDestination(out) : out;
  return pino({ name: 'callmood', level: opts.level ?? 'info', timestamp: pino.stdTimeFunctions.isoTime }, stream);
}
