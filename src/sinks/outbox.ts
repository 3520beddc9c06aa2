/**
 * The durable outbox of one webhook endpoint: an append-only JSONL log in `<outboxDir>/<endpoint>/outbox.jsonl`.
 *
 *   {"k":"e","s":<seq>,"c":<callSid>,"b":<delivery body>}   an event to deliver (enqueue)
 *   {"k":"a","s":<seq>}                                     delivered (acknowledged with a 2xx)
 *   {"k":"d","s":<seq>}                                     moved to dead.jsonl
 *
 * Writes are batched (one write and one fdatasync per batch: a group commit, so thousands of events a second cost a
 * few syncs) and every file operation of an endpoint runs on one chain, never two at once. An event is handed to
 * delivery only once its line is on disk. Delivered and dead lines are written lazily: should they be lost in a crash
 * the event is sent again, which at-least-once allows.
 *
 * Memory: at most `memoryWindow` pending events are held; the rest stay on disk only ("spilled") and are read back in
 * log order as the window empties. The window is always a prefix of the pending events in log order, which is what
 * keeps each call's events in order.
 *
 * Compaction writes the pending events (in memory, spilled, and dead letters not yet safe in dead.jsonl) to
 * `outbox.jsonl.tmp`, syncs it, renames it over the log and syncs the folder: a crash leaves either the old log or
 * the new one. Start-up always compacts, which also drops a torn last line left by a crash.
 */
import { constants, existsSync, mkdirSync, openSync, closeSync, fsyncSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { Logger } from '../util/log.js';

/** A pending delivery of one event to one endpoint. */
export interface OutboxEntry {
  /** Position in the endpoint's log; 0 until written. */
  seq: number;
  /** The event id (the idempotency key), shared by every endpoint the event goes to. */
  id: string;
  callSid: string;
  type: string;
  /** The JSON body POSTed, exactly. */
  body: string;
  /** Wall time it was first enqueued, ms since the epoch. */
  createdAtMs: number;
  /** Length of its log line (characters; bytes for ASCII), for compaction accounting. */
  size: number;
  /** Attempts made by this process. */
  attempts: number;
  /** Wall time of the first attempt, ms; 0 before. */
  firstAttemptAt: number;
}

/** One line of dead.jsonl. */
export interface DeadLetter {
  id: string;
  endpoint: string;
  url: string;
  callSid: string;
  type: string;
  attempts: number;
  /** ISO wall times. */
  firstAttemptAt: string | null;
  deadAt: string;
  /** HTTP status of the last attempt, null when there was no response (network error, timeout). */
  status: number | null;
  /** The last error, in words. */
  error: string;
  /** The delivery body, as sent. */
  body: Record<string, unknown>;
}

const LOG = 'outbox.jsonl';
const DEAD = 'dead.jsonl';
const CHUNK = 1 << 20;
// Hard ceiling of the memory window while starving (see `starving`): memory stays bounded whatever the CRM does.
const OVERFILL = 10;

/** A line of a JSONL file, as read. */
interface Line {
  text: string;
  /** Byte offset of its start, and of the byte after its newline. */
  start: number;
  end: number;
}

/**
 * Lines of `fh` from byte `start` to `end`. A last line without its newline is yielded only if it parses as JSON
 * (the newline alone was cut); otherwise it is reported through `torn`.
 */
async function* readLines(fh: FileHandle, start: number, end: number, torn: (offset: number, bytes: number) => void): AsyncGenerator<Line> {
  let pos = start;
  let rest: Buffer = Buffer.alloc(0);
  let restStart = start;
  const buf = Buffer.allocUnsafe(CHUNK);
  while (pos < end) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, end - pos), pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    const data: Buffer = rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    let from = 0;
    for (let nl = data.indexOf(10, from); nl >= 0; nl = data.indexOf(10, from)) {
      if (nl > from) yield { text: data.toString('utf8', from, nl), start: restStart + from, end: restStart + nl + 1 };
      from = nl + 1;
    }
    rest = Buffer.from(data.subarray(from));
    restStart += from;
  }
  if (rest.length > 0) {
    const text = rest.toString('utf8');
    if (parse(text) !== null) yield { text, start: restStart, end: restStart + rest.length };
    else torn(restStart, rest.length);
  }
}

type LogRecord = { k: 'e'; s: number; c: string; b: Record<string, unknown> } | { k: 'a' | 'd'; s: number };

function parse(text: string): LogRecord | null {
  try {
    const r = JSON.parse(text) as LogRecord;
    if (r === null || typeof r !== 'object' || typeof r.s !== 'number') return null;
    if (r.k === 'e') return typeof r.c === 'string' && r.b !== null && typeof r.b === 'object' && typeof r.b.id === 'string' ? r : null;
    return r.k === 'a' || r.k === 'd' ? r : null;
  } catch {
    return null;
  }
}

function entryLine(e: OutboxEntry): string {
  return `{"k":"e","s":${e.seq},"c":${JSON.stringify(e.callSid)},"b":${e.body}}\n`;
}

function entryFrom(r: { s: number; c: string; b: Record<string, unknown> }, size: number): OutboxEntry {
  const created = typeof r.b.createdAt === 'string' ? Date.parse(r.b.createdAt) : NaN;
  return {
    seq: r.s,
    id: r.b.id as string,
    callSid: r.c,
    type: typeof r.b.type === 'string' ? r.b.type : 'unknown',
    body: JSON.stringify(r.b),
    createdAtMs: Number.isFinite(created) ? created : Date.now(),
    size,
    attempts: 0,
    firstAttemptAt: 0,
  };
}

/** fsync a folder so a rename or a new file in it survives a crash. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY);
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on folders; the rename itself is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const ERRNO_TEXT: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a part of the path is a file, not a folder',
  ENOENT: 'no such file or folder',
  EIO: 'input/output error',
};

/** An fs error as `CODE (what it means)`, or its message when it has no code. */
export function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (!code) return (err as Error).message;
  return ERRNO_TEXT[code] ? `${code} (${ERRNO_TEXT[code]})` : code;
}

function fileError(what: string, err: unknown): CallmoodError {
  return new CallmoodError(ErrorCodes.FILE_READ, `${what}: ${errnoText(err)}`, { cause: err, permanent: false });
}

/**
 * mkdir -p that reports the real reason it failed. Node's recursive mkdir says ENOENT whatever stopped it (a
 * read-only file system, a folder without write permission): on ENOENT the missing levels are created one by one,
 * which fails with the true code.
 */
export function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const missing: string[] = [];
    for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
      missing.push(d);
      if (dirname(d) === d) break;
    }
    for (const d of missing.reverse()) mkdirSync(d);
    throw err;
  }
}

/** Settings of an Outbox. */
export interface OutboxSettings {
  memoryWindow: number;
  compactAtBytes: number;
}

/** The durable log of one endpoint, and its window of pending events in memory. */
export class Outbox {
  readonly dir: string;
  private fh: FileHandle | null = null;
  private deadFh: FileHandle | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private buffer: Array<OutboxEntry | string> = [];
  private seq = 0;
  private fileSize = 0;
  /** Approximate bytes of pending `e` lines in the log. */
  private liveBytes = 0;
  /** Byte offset of the first event not in memory, or null when every pending event is. */
  private spillFrom: number | null = null;
  private spilled = 0;
  private loading = false;
  /** A write failed part-way and could not be cut back: start the next one on a fresh line. */
  private needNewline = false;
  /** Writes failed in a row (a full or read-only disk): logged once when it starts and once when it ends. */
  private failedWrites = 0;
  private readonly memory = new Map<number, OutboxEntry>();
  /** Removed from delivery, not yet safe in dead.jsonl: compaction must keep them. */
  private readonly deadPending = new Map<number, OutboxEntry>();
  private closed = false;

  constructor(
    outboxDir: string,
    readonly endpoint: string,
    private readonly settings: OutboxSettings,
    private readonly log: Logger,
    /** Called with events newly in memory, in log order, once they are on disk. */
    private readonly deliverable: (entries: OutboxEntry[]) => void,
    /**
     * True when the endpoint answers but every event in memory waits on a retry: calls failing on their own (not an
     * outage) would otherwise hold the whole window and starve the other calls' events on disk.
     */
    private readonly starving: () => boolean = () => false,
  ) {
    this.dir = join(outboxDir, endpoint);
  }

  /** Pending deliveries: in memory, on disk only, and not yet written. */
  get pending(): number {
    let unwritten = 0;
    for (const b of this.buffer) if (typeof b !== 'string') unwritten++;
    return this.memory.size + this.spilled + unwritten;
  }

  /** True while writes fail (a full or read-only disk): what is queued cannot reach the disk, nor the CRM. */
  get failing(): boolean {
    return this.failedWrites > 0;
  }

  /** Pending deliveries held in memory. */
  get inMemory(): number {
    return this.memory.size;
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Replays the log: compacts it to its pending events (dropping a torn tail) and loads the first window. */
  open(): Promise<{ pending: number; torn: number }> {
    return this.run(async () => {
      try {
        makeDir(this.dir);
      } catch (err) {
        throw fileError(`cannot create the outbox folder ${this.dir}`, err);
      }
      const path = join(this.dir, LOG);
      await rm(`${path}.tmp`, { force: true });
      await rm(join(this.dir, `${DEAD}.tmp`), { force: true });
      let torn = 0;
      const existed = existsSync(path);
      if (existed) {
        const old = await open(path, 'r').catch((err: unknown) => {
          throw fileError(`cannot open the outbox ${path}`, err);
        });
        try {
          const size = (await old.stat()).size;
          const onTorn = (offset: number, bytes: number) => {
            torn++;
            this.log('warn', 'CALLMOOD_WEBHOOK_TORN_LINE', `outbox ${path}: skipped a damaged line of ${bytes} bytes at byte ${offset} (a write cut short: a crash, or a disk error that could not be undone)`, { endpoint: this.endpoint });
          };
          const done = new Set<number>();
          for await (const line of readLines(old, 0, size, () => undefined)) {
            // Delivered and dead lines are short and start so; event lines are only parsed in the second pass.
            if (line.text.startsWith('{"k":"a"') || line.text.startsWith('{"k":"d"')) {
              const r = parse(line.text);
              if (r) done.add(r.s);
            }
          }
          this.memory.clear();
          this.spillFrom = null;
          this.spilled = 0;
          const pending = async function* () {
            // Event seqs only grow along the log; a repeat is a batch written again after a failed write.
            let last = 0;
            for await (const line of readLines(old, 0, size, onTorn)) {
              const r = parse(line.text);
              if (r === null) onTorn(line.start, line.end - line.start);
              else if (r.k === 'e' && r.s > last) {
                last = r.s;
                if (!done.has(r.s)) yield { r, text: line.text };
              }
            }
          };
          await this.rewrite(path, pending(), (r, text, offset) => {
            if (this.spillFrom === null && this.memory.size < this.settings.memoryWindow) {
              this.memory.set(r.s, entryFrom(r, text.length + 1));
            } else {
              this.spillFrom ??= offset;
              this.spilled++;
            }
          });
        } finally {
          await old.close();
        }
      }
      this.fh = await open(path, 'a+').catch((err: unknown) => {
        throw fileError(`cannot open the outbox ${path}`, err);
      });
      this.fileSize = (await this.fh.stat()).size;
      if (!existed) syncDir(this.dir);
      if (this.memory.size > 0) this.deliverable([...this.memory.values()]);
      return { pending: this.memory.size + this.spilled, torn };
    });
  }

  /**
   * Writes the given records to `path.tmp`, syncs it and renames it over `path`; `place` learns each record's byte
   * offset in the new file. Returns the new file's size.
   */
  private async rewrite(
    path: string,
    records: AsyncIterable<{ r: { s: number; c: string; b: Record<string, unknown> }; text: string }>,
    place: (r: { s: number; c: string; b: Record<string, unknown> }, text: string, offset: number) => void,
  ): Promise<number> {
    const tmp = await open(`${path}.tmp`, 'w');
    let offset = 0;
    let chunks: string[] = [];
    let chunkChars = 0;
    const flushChunk = async () => {
      if (chunks.length === 0) return;
      const buf = Buffer.from(chunks.join(''), 'utf8');
      await tmp.write(buf, 0, buf.length);
      chunks = [];
      chunkChars = 0;
    };
    this.liveBytes = 0;
    try {
      for await (const { r, text } of records) {
        this.seq = Math.max(this.seq, r.s);
        place(r, text, offset);
        offset += Buffer.byteLength(text, 'utf8') + 1;
        this.liveBytes += text.length + 1;
        chunks.push(text, '\n');
        chunkChars += text.length + 1;
        if (chunkChars >= CHUNK) await flushChunk();
      }
      await flushChunk();
      await tmp.datasync();
    } finally {
      await tmp.close();
    }
    await rename(`${path}.tmp`, path);
    syncDir(this.dir);
    return offset;
  }

  /** Queues an event (seq assigned when written) or a control line. */
  add(entry: OutboxEntry): void {
    if (this.closed) throw new CallmoodError(ErrorCodes.CLOSED, `webhook outbox ${this.endpoint} used after close()`);
    this.buffer.push(entry);
  }

  /** Writes and syncs everything queued so far; resolves when it is on disk. */
  flush(): Promise<void> {
    return this.run(() => this.flushNow());
  }

  private async flushNow(): Promise<void> {
    if (this.buffer.length === 0) return;
    if (!this.fh) {
      if (this.buffer.some((b) => typeof b !== 'string')) throw new CallmoodError(ErrorCodes.FILE_READ, `webhook outbox ${this.dir} is not open`, { permanent: false });
      return;
    }
    const items = this.buffer;
    this.buffer = [];
    let text = this.needNewline ? '\n' : '';
    const fresh: OutboxEntry[] = [];
    const charAt: number[] = [];
    for (const item of items) {
      if (typeof item === 'string') {
        text += item;
        continue;
      }
      if (item.seq === 0) item.seq = ++this.seq;
      const line = entryLine(item);
      item.size = line.length;
      fresh.push(item);
      charAt.push(text.length);
      text += line;
    }
    const base = this.fileSize;
    const buf = Buffer.from(text, 'utf8');
    const fh = this.fh;
    try {
      // A write may take only part of the buffer (a disk filling up): the rest is written, or the next call fails.
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off);
        if (bytesWritten <= 0) throw Object.assign(new Error(`wrote 0 of ${buf.length - off} bytes`), { code: 'EIO' });
        off += bytesWritten;
      }
      await fh.datasync();
      this.needNewline = false;
      this.fileSize += buf.length;
    } catch (err) {
      // Nothing of this batch counts as written: it goes back to the front of the queue with its seqs, to be written
      // again by the next flush. What part of it reached the file is cut off, so the log holds no half line for the
      // next start to skip; should that fail too, the next batch starts on a fresh line and replay skips the half
      // line (and, by its seq, any line that did get out whole).
      const cut = await fh.truncate(base).then(
        () => true,
        () => false,
      );
      this.needNewline = !cut;
      this.fileSize = cut ? base : (await fh.stat().catch(() => ({ size: this.fileSize + buf.length }))).size;
      this.buffer = [...items, ...this.buffer];
      // Every flush retries, many a second: one line when writing starts to fail and one when it works again.
      if (this.failedWrites++ === 0) {
        this.log(
          'error',
          'CALLMOOD_WEBHOOK_WRITE_FAILED',
          `outbox ${this.endpoint}: cannot write ${join(this.dir, LOG)}: ${errnoText(err)}; the events wait in memory and every batch tries again (logged once until a write succeeds)`,
          { endpoint: this.endpoint, events: fresh.length },
        );
      }
      throw fileError(`cannot write the webhook outbox ${join(this.dir, LOG)}`, err);
    }
    if (this.failedWrites > 0) {
      this.log('info', 'CALLMOOD_WEBHOOK_WRITE_RECOVERED', `outbox ${this.endpoint}: writing again after ${this.failedWrites} failed writes`, { endpoint: this.endpoint, failedWrites: this.failedWrites });
      this.failedWrites = 0;
    }
    const toMemory: OutboxEntry[] = [];
    for (const [i, e] of fresh.entries()) {
      this.liveBytes += e.size;
      if (this.spillFrom === null && this.memory.size < this.settings.memoryWindow) {
        this.memory.set(e.seq, e);
        toMemory.push(e);
      } else {
        if (this.spillFrom === null) this.spillFrom = base + Buffer.byteLength(text.slice(0, charAt[i]), 'utf8');
        this.spilled++;
      }
    }
    if (toMemory.length > 0) this.deliverable(toMemory);
    if (this.fileSize >= this.settings.compactAtBytes && this.liveBytes * 2 < this.fileSize) await this.compact();
  }

  /** The event was delivered. */
  ack(e: OutboxEntry): void {
    if (!this.memory.delete(e.seq)) return;
    this.liveBytes -= e.size;
    this.buffer.push(`{"k":"a","s":${e.seq}}\n`);
    this.maybeLoad();
  }

  /** The event failed for good: it goes to dead.jsonl (synced) and only then leaves the log. */
  deadLetter(e: OutboxEntry, record: DeadLetter): Promise<void> {
    if (!this.memory.delete(e.seq)) return Promise.resolve();
    this.deadPending.set(e.seq, e);
    this.maybeLoad();
    return this.run(async () => {
      this.deadFh ??= await open(join(this.dir, DEAD), 'a');
      const buf = Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
      await this.deadFh.write(buf, 0, buf.length);
      await this.deadFh.datasync();
      this.deadPending.delete(e.seq);
      this.liveBytes -= e.size;
      this.buffer.push(`{"k":"d","s":${e.seq}}\n`);
    });
  }

  /** Reads spilled events back if the window has room (or the endpoint is starving, up to OVERFILL windows). */
  maybeLoad(): void {
    if (this.spillFrom === null || this.loading || this.closed) return;
    const w = this.settings.memoryWindow;
    let target: number;
    if (this.memory.size <= w / 2) target = w;
    else if (this.memory.size < w * OVERFILL && this.starving()) target = Math.min(w * OVERFILL, this.memory.size + Math.ceil(w / 2));
    else return;
    this.loading = true;
    this.run(() => this.load(target)).then(
      () => {
        this.loading = false;
        this.maybeLoad();
      },
      (err: unknown) => {
        this.loading = false;
        this.log('error', 'CALLMOOD_WEBHOOK_READ_FAILED', `outbox ${this.endpoint}: reading spilled events failed: ${(err as Error).message}`, { endpoint: this.endpoint });
      },
    );
  }

  /** Reads spilled events back into memory, in log order, until the window is full or none is left on disk. */
  private async load(target: number): Promise<void> {
    if (this.spillFrom === null || !this.fh || this.closed) return;
    const loaded: OutboxEntry[] = [];
    let next = this.spillFrom;
    const onTorn = (offset: number, bytes: number) =>
      this.log('warn', 'CALLMOOD_WEBHOOK_TORN_LINE', `outbox ${this.endpoint}: skipped a damaged line of ${bytes} bytes at byte ${offset}`, { endpoint: this.endpoint });
    for await (const line of readLines(this.fh, this.spillFrom, this.fileSize, onTorn)) {
      if (this.memory.size >= target) break;
      next = line.end;
      const r = parse(line.text);
      if (r === null) onTorn(line.start, line.end - line.start);
      // Delivered and dead lines past spillFrom are about events already in memory, which know it.
      else if (r.k === 'e') {
        const e = entryFrom(r, line.text.length + 1);
        this.memory.set(e.seq, e);
        this.spilled--;
        loaded.push(e);
      }
    }
    if (next >= this.fileSize || this.spilled <= 0) {
      this.spillFrom = null;
      this.spilled = 0;
    } else {
      this.spillFrom = next;
    }
    if (loaded.length > 0) this.deliverable(loaded);
  }

  /** Rewrites the log with only its pending events. */
  private async compact(): Promise<void> {
    if (!this.fh) return;
    const path = join(this.dir, LOG);
    const before = this.fileSize;
    const held = [...this.memory.values(), ...this.deadPending.values()].sort((a, b) => a.seq - b.seq);
    const heldSeqs = new Set(held.map((e) => e.seq));
    const fh = this.fh;
    const { spillFrom, fileSize } = this;
    const records = async function* () {
      for (const e of held) yield { r: { s: e.seq, c: e.callSid, b: {} }, text: entryLine(e).slice(0, -1) };
      if (spillFrom !== null) {
        for await (const line of readLines(fh, spillFrom, fileSize, () => undefined)) {
          const r = parse(line.text);
          if (r !== null && r.k === 'e') yield { r, text: line.text };
        }
      }
    };
    let newSpillFrom: number | null = null;
    let spilled = 0;
    // Events in memory keep their objects (attempt counts, delivery queues); the spilled ones stay on disk only.
    await this.rewrite(path, records(), (r, _text, offset) => {
      if (heldSeqs.has(r.s)) return;
      newSpillFrom ??= offset;
      spilled++;
    });
    this.spillFrom = newSpillFrom;
    this.spilled = spilled;
    await fh.close();
    this.fh = await open(path, 'a+');
    this.fileSize = (await this.fh.stat()).size;
    this.needNewline = false;
    this.log('info', 'CALLMOOD_WEBHOOK_COMPACTED', `outbox ${this.endpoint}: compacted ${before} → ${this.fileSize} bytes`, { endpoint: this.endpoint, pending: this.pending });
  }

  /**
   * Moves dead letters chosen by `pick` back into the log (same id and body, attempts from zero): they are written
   * and synced first, then dead.jsonl is rewritten without them. Returns the moved ones.
   */
  requeueDead(pick: (d: DeadLetter) => boolean): Promise<DeadLetter[]> {
    return this.run(async () => {
      const path = join(this.dir, DEAD);
      if (!existsSync(path)) return [];
      await this.deadFh?.close();
      this.deadFh = null;
      const keep: string[] = [];
      const take: DeadLetter[] = [];
      const fh = await open(path, 'r');
      try {
        const size = (await fh.stat()).size;
        for await (const line of readLines(fh, 0, size, (offset, bytes) => this.log('warn', 'CALLMOOD_WEBHOOK_TORN_LINE', `${path}: skipped a damaged line of ${bytes} bytes at byte ${offset}`))) {
          let d: DeadLetter | null = null;
          try {
            d = JSON.parse(line.text) as DeadLetter;
          } catch {
            d = null;
          }
          if (d === null || typeof d.id !== 'string' || d.body === null || typeof d.body !== 'object') keep.push(line.text);
          else if (pick(d)) take.push(d);
          else keep.push(line.text);
        }
      } finally {
        await fh.close();
      }
      if (take.length === 0) return [];
      for (const d of take) {
        const created = typeof d.body.createdAt === 'string' ? Date.parse(d.body.createdAt) : NaN;
        this.buffer.push({
          seq: 0,
          id: d.id,
          callSid: d.callSid,
          type: d.type,
          body: JSON.stringify(d.body),
          createdAtMs: Number.isFinite(created) ? created : Date.now(),
          size: 0,
          attempts: 0,
          firstAttemptAt: 0,
        });
      }
      await this.flushNow();
      const tmp = await open(`${path}.tmp`, 'w');
      try {
        const buf = Buffer.from(keep.map((l) => `${l}\n`).join(''), 'utf8');
        await tmp.write(buf, 0, buf.length);
        await tmp.datasync();
      } finally {
        await tmp.close();
      }
      await rename(`${path}.tmp`, path);
      syncDir(this.dir);
      return take;
    });
  }

  /** Writes what is queued, syncs and closes; pending events stay in the log for the next start. */
  close(): Promise<void> {
    return this.run(async () => {
      await this.flushNow().catch(() => undefined);
      this.closed = true;
      await this.fh?.close();
      await this.deadFh?.close();
      this.fh = null;
      this.deadFh = null;
    });
  }
}

/** What an endpoint's outbox holds, read without opening it for delivery (safe while a server runs). */
export interface OutboxCounts {
  endpoint: string;
  /** Events not yet delivered nor dead. */
  pending: number;
  /** Lines of dead.jsonl. */
  dead: number;
  /** Damaged lines skipped. */
  torn: number;
}

/** Counts the pending events and dead letters of `<outboxDir>/<endpoint>`. */
export async function countOutbox(outboxDir: string, endpoint: string): Promise<OutboxCounts> {
  const dir = join(outboxDir, endpoint);
  const out: OutboxCounts = { endpoint, pending: 0, dead: 0, torn: 0 };
  const torn = () => {
    out.torn++;
  };
  const log = join(dir, LOG);
  if (existsSync(log)) {
    const fh = await open(log, 'r');
    try {
      const size = (await fh.stat()).size;
      const events = new Set<number>();
      const done = new Set<number>();
      for await (const line of readLines(fh, 0, size, torn)) {
        const r = parse(line.text);
        if (r === null) torn();
        else if (r.k === 'e') events.add(r.s);
        else done.add(r.s);
      }
      for (const s of events) if (!done.has(s)) out.pending++;
    } finally {
      await fh.close();
    }
  }
  const dead = join(dir, DEAD);
  if (existsSync(dead)) {
    const fh = await open(dead, 'r');
    try {
      const size = (await fh.stat()).size;
      for await (const line of readLines(fh, 0, size, torn)) {
        try {
          JSON.parse(line.text);
          out.dead++;
        } catch {
          torn();
        }
      }
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** Reads the dead letters of `<outboxDir>/<endpoint>` (damaged lines skipped). */
export async function readDeadLetters(outboxDir: string, endpoint: string): Promise<DeadLetter[]> {
  const path = join(outboxDir, endpoint, DEAD);
  if (!existsSync(path)) return [];
  const fh = await open(path, 'r');
  const out: DeadLetter[] = [];
  try {
    const size = (await fh.stat()).size;
    for await (const line of readLines(fh, 0, size, () => undefined)) {
      try {
        out.push(JSON.parse(line.text) as DeadLetter);
      } catch {
        // damaged line: countOutbox reports it
      }
    }
  } finally {
    await fh.close();
  }
  return out;
}
