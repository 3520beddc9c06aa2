/**
 * Stable identities for a replayed recording, so that replaying the same file twice, on any machine and with any
 * number of workers, gives the same callSid and streamSid (and so the same events, and the same webhook keys).
 *
 * - `name` is the file's path relative to the replayed folder, with '/' separators (for a single file: its base name).
 * - If the base name holds a Twilio CallSid (`CA` + 32 hex digits, as in `CA0123….wav`), that is the callSid: a
 *   recording named after its call replays under that call's id.
 * - Otherwise callSid = `CA` + the first 32 hex digits of SHA-256(`callmood-replay:` + name).
 * - streamSid = `MZ` + the first 32 hex digits of SHA-256(`callmood-replay-stream:` + callSid).
 */
import { createHash } from 'node:crypto';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 32);

/** The callSid and streamSid of a replayed recording named `name` (see the module comment). */
export function replayIds(name: string): { callSid: string; streamSid: string } {
  const base = name.split('/').pop() ?? name;
  const found = /(?:^|[^0-9a-f])(CA[0-9a-f]{32})(?![0-9a-f])/i.exec(base);
  const callSid = found ? 'CA' + found[1].slice(2).toLowerCase() : 'CA' + sha(`callmood-replay:${name}`);
  return { callSid, streamSid: 'MZ' + sha(`callmood-replay-stream:${callSid}`) };
}
