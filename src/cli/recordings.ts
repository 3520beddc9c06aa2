/**
 * What `callmood replay` shares with its queue mode (./replay-queue.ts): which files of a folder are recordings,
 * report file names, the replay settings and policy the flags give, the index page, and the command's options.
 */
import { statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { resolvePackagePath } from '../config/load.js';
import { DEFAULT_OPTIONS, type CallmoodOptionsInput } from '../config/options.js';
import { DEFAULT_RAW_AUDIO, RAW_G711_EXTENSIONS } from '../audio/read.js';
import { DEFAULT_CHANNEL_SPEC } from '../replay/channels.js';
import { reportAngerThreshold } from '../replay/policy.js';
import type { RunSettings } from '../replay/run.js';
import { renderSummaryPage, type SummaryRow } from '../report/summary-page.js';

/** `replay --queue` and its companions. */
export interface QueueCliOptions {
  queue?: string;
  prefix?: string;
  attempts?: number;
  wait: boolean;
}

/**
 * File name endings taken as recordings in a folder (the formats readAudioFile reads, headerless G.711 included);
 * other files are skipped, and listed as skipped.
 */
export const AUDIO_EXTENSIONS = Object.freeze(['.wav', '.wave', '.flac', '.aif', '.aiff', '.aifc', '.opus', '.ogg', '.mp3', ...Object.keys(RAW_G711_EXTENSIONS)]);

/** A file of a folder that is not replayed, and why. */
export interface SkippedFile {
  /** Path relative to the folder, '/'-separated. */
  name: string;
  reason: string;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * The recordings under `dir`, recursively, as paths and names relative to it ('/'-separated), sorted by name; and the
 * files skipped there, with the reason (a name that is not a recording's; not a regular file).
 */
export async function listRecordings(dir: string): Promise<{ recordings: { path: string; name: string }[]; skipped: SkippedFile[] }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const recordings: { path: string; name: string }[] = [];
  const skipped: SkippedFile[] = [];
  for (const e of entries) {
    if (e.isDirectory()) continue;
    // Node 20.12+ names the folder `parentPath`; 20.10–20.11 only `path`.
    const parent = (e as { parentPath?: string }).parentPath ?? (e as { path?: string }).path ?? dir;
    const path = join(parent, e.name);
    const name = relative(dir, path).split(sep).join('/');
    if (!e.isFile() && !e.isSymbolicLink()) {
      skipped.push({ name, reason: 'not a regular file' });
      continue;
    }
    const ext = extname(e.name).toLowerCase();
    if (!AUDIO_EXTENSIONS.includes(ext)) {
      skipped.push({ name, reason: ext ? `'${ext}' is not an audio file name ending callmood reads` : 'no file name ending to tell its format by' });
      continue;
    }
    recordings.push({ path, name });
  }
  return { recordings: recordings.sort(byName), skipped: skipped.sort(byName) };
}

/** A report file name for a recording's name: '/' → '__', anything but letters, digits, '.', '_', '-' → '_'; unique within `taken`. */
export function reportFileName(name: string, taken: Set<string>): string {
  const stem = name.replace(/\//g, '__').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'call';
  let file = `${stem}.html`;
  for (let i = 2; taken.has(file.toLowerCase()) || file.toLowerCase() === 'index.html'; i++) file = `${stem}-${i}.html`;
  taken.add(file.toLowerCase());
  return file;
}

export interface ReplayCliOptions extends QueueCliOptions {
  channels?: string;
  rawChannels?: number;
  rawRate?: number;
  json?: string | boolean;
  report?: string;
  reportDir?: string;
  policy?: string | boolean;
  model?: string;
  config?: string;
  workers?: number;
  progress: boolean;
}

/** The policy file a replay runs: `--policy`, none with `--no-policy`, else the config's, else the shipped one. */
export function replayPolicyFile(flag: string | boolean | undefined, config: CallmoodOptionsInput): string | null {
  if (flag === false || config.policy?.enabled === false) return null;
  if (typeof flag === 'string') return flag;
  return resolvePackagePath(config.policy?.file ?? 'config/policy.json');
}


/** Whether a path given is a folder; a FILE_READ error when it is neither a file nor a folder. */
export function isFolder(target: string): boolean {
  try {
    return statSync(target).isDirectory();
  } catch (err) {
    throw new CallmoodError(ErrorCodes.FILE_READ, `${target}: no such file or folder`, { cause: err });
  }
}

/** The error for paths that hold no recording: `what` (`PATH: no recordings…`), what was looked for and what was skipped. */
export function noRecordings(what: string, skipped: readonly SkippedFile[]): CallmoodError {
  return new CallmoodError(ErrorCodes.FILE_READ, `${what} (looked for ${AUDIO_EXTENSIONS.join(' ')}${skipped.length ? `; skipped ${skipped.length} other file(s), e.g. ${skipped[0].name}` : ''})`);
}

/** The replay options the flags give over a serve config's stream settings (as that server would hear the calls). */
export function replayOptionsOf(o: ReplayCliOptions, config: CallmoodOptionsInput) {
  return {
    channels: o.channels ?? null,
    stream: { ...DEFAULT_OPTIONS.stream, ...(config.stream as object | undefined) },
    raw: { sampleRate: o.rawRate ?? DEFAULT_RAW_AUDIO.sampleRate, channels: o.rawChannels ?? DEFAULT_RAW_AUDIO.channels },
  };
}

/** index.html of a run: a row per recording, the model, policy and channels it ran with, and the files skipped. */
export function renderIndex(rows: SummaryRow[], title: string, settings: RunSettings, channels: string | undefined, skipped: readonly SkippedFile[]): string {
  return renderSummaryPage(rows, title, {
    meta: {
      model: settings.modelDir,
      policy: settings.policyFile ? `${settings.policyFile} (dry run)` : 'none',
      channels: channels ?? `${DEFAULT_CHANNEL_SPEC} (default)`,
    },
    skipped,
    anger: reportAngerThreshold(settings.policyFile),
  });
}
