/**
 * Which channel of a recording is which party. Twilio's dual-channel recordings put the caller on the left (first)
 * channel and the agent or bot on the right; live, the caller is the `inbound` track and the agent `outbound`, so a
 * replayed channel becomes the track its party has in a live call.
 */
import { CallmoodError, ErrorCodes } from '../errors.js';
import type { Track } from '../stream/events.js';

/** The parties `--channels` names, and the live track each becomes. */
export const PARTY_TRACKS = Object.freeze({ caller: 'inbound', agent: 'outbound' } as const satisfies Record<string, Track>);

/** A party: `caller` (the inbound track) or `agent` (the outbound track). */
export type Party = keyof typeof PARTY_TRACKS;

/** Where each party is: a 0-based channel index, or absent (that party is not replayed). */
export type ChannelMap = Partial<Record<Party, number>>;

/** Used when `--channels` is not given: caller on the left, agent on the right (the agent only if the file has it). */
export const DEFAULT_CHANNEL_SPEC = 'caller=left,agent=right';

const ALLOWED = "comma-separated party=channel pairs, party 'caller' or 'agent' (each at most once), channel 'left', 'right' or a 0-based index; e.g. caller=left,agent=right";

const CHANNEL_NAMES: Record<string, number> = { left: 0, right: 1 };

function bad(spec: string, why: string): CallmoodError {
  return new CallmoodError(ErrorCodes.INVALID_OPTION, `--channels '${spec}': ${why}; allowed: ${ALLOWED}`);
}

/** Parses a `--channels` value such as `caller=left,agent=right` or `caller=1`. Throws INVALID_OPTION naming what is allowed. */
export function parseChannelSpec(spec: string): ChannelMap {
  if (typeof spec !== 'string' || spec.trim() === '') throw bad(String(spec), 'it is empty');
  const map: ChannelMap = {};
  for (const part of spec.split(',')) {
    const m = /^\s*([^=\s]+)\s*=\s*([^=\s]+)\s*$/.exec(part);
    if (!m) throw bad(spec, `'${part}' is not party=channel`);
    const party = m[1].toLowerCase();
    const where = m[2].toLowerCase();
    if (!(party in PARTY_TRACKS)) throw bad(spec, `'${m[1]}' is not a party`);
    if ((map as Record<string, number>)[party] !== undefined) throw bad(spec, `'${party}' is given twice`);
    const index = where in CHANNEL_NAMES ? CHANNEL_NAMES[where] : /^\d{1,3}$/.test(where) ? Number(where) : NaN;
    if (!Number.isInteger(index)) throw bad(spec, `'${m[2]}' is not a channel`);
    (map as Record<string, number>)[party] = index;
  }
  if (map.caller !== undefined && map.caller === map.agent) throw bad(spec, `caller and agent are both on channel ${map.caller}`);
  return map;
}

/**
 * The track → channel mapping for a file with `channelCount` channels. With `spec` absent, the default applies: the
 * caller on channel 0 and, when the file has a second channel, the agent on channel 1. An explicit spec that names a
 * channel the file does not have is an UNSUPPORTED_CHANNELS error naming the file's channels.
 */
export function resolveChannels(spec: string | ChannelMap | undefined, channelCount: number, file: string): Partial<Record<Track, number>> {
  const explicit = spec !== undefined;
  const map = typeof spec === 'string' ? parseChannelSpec(spec) : (spec ?? parseChannelSpec(DEFAULT_CHANNEL_SPEC));
  const out: Partial<Record<Track, number>> = {};
  for (const party of Object.keys(PARTY_TRACKS) as Party[]) {
    const index = map[party];
    if (index === undefined) continue;
    if (index >= channelCount) {
      if (!explicit && party === 'agent') continue;
      const names = channelCount === 1 ? "0 ('left')" : `0–${channelCount - 1} ('left' = 0, 'right' = 1)`;
      throw new CallmoodError(
        ErrorCodes.UNSUPPORTED_CHANNELS,
        `${file}: --channels puts the ${party} on channel ${index}, but the file has ${channelCount} channel(s): ${names}`,
      );
    }
    out[PARTY_TRACKS[party]] = index;
  }
  if (Object.keys(out).length === 0) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `${file}: --channels maps no party to a channel; allowed: ${ALLOWED}`);
  return out;
}
