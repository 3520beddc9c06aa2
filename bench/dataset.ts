/**
 * The training data path, measured on the shared corpora (`../shared/data`, or the manifest given with
 * `--manifest`). Not a test: figures depend on the machine.
 *
 *   node --import tsx bench/dataset.ts extract [--clips N] [--workers 0,1,2]
 *     Feature extraction speed: for each worker count, N clips (a seeded sample across corpora) cold (empty cache;
 *     decode + telephone channel + features + gate + cache write) and then cached (the same call again).
 *   node --import tsx bench/dataset.ts vad [--clips N]
 *     SpeechGate decisions on N clips (a third per corpus) against offline references, and clean against the same
 *     clip through the telephone channel, scaled, or clipped.
 *
 * What `vad --clips 60` measured on the shared corpora is in bench/RESULTS.md ("Speech gate defaults").
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAudioFile } from '../src/audio/read.js';
import { resample } from '../src/audio/resample.js';
import { telephoneChannel } from '../src/audio/telephone.js';
import { extractClipFeatures } from '../src/data/dataset.js';
import { readManifest } from '../src/data/manifest.js';
import type { ClipRecord } from '../src/data/types.js';
import { DEFAULT_FEATURE_CONFIG as cfg } from '../src/features/config.js';
import { computeFeatures } from '../src/features/mfcc.js';
import { speechMask } from '../src/features/vad.js';
import { mulberry32 as rng } from '../src/util/random.js';

const args = process.argv.slice(2);
const mode = args[0] ?? 'extract';
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const manifest = opt('manifest', new URL('../../shared/data/manifest.csv', import.meta.url).pathname);
if (!existsSync(manifest)) {
  process.stderr.write(`no manifest at ${manifest}: pass --manifest <csv>\n`);
  process.exit(2);
}
const line = (name: string, result: object) => process.stdout.write(`${name} ${JSON.stringify(result)}\n`);


function sample(clips: ClipRecord[], n: number, seed: number, perCorpus: boolean): ClipRecord[] {
  const r = rng(seed);
  if (!perCorpus) {
    const copy = [...clips];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [copy[i], copy[j]] = [copy[j], copy[i]];
    }
    return copy.slice(0, n);
  }
  const groups = new Map<string, ClipRecord[]>();
  for (const c of clips) (groups.get(c.corpus) ?? groups.set(c.corpus, []).get(c.corpus)!).push(c);
  const out: ClipRecord[] = [];
  for (const g of groups.values()) for (let i = 0; i < Math.ceil(n / groups.size); i++) out.push(g[Math.floor(r() * g.length)]);
  return out;
}

async function benchExtract(): Promise<void> {
  const all = readManifest(manifest);
  const n = Number(opt('clips', '400'));
  const clips = sample(all, n, 1, false);
  const opus = clips.filter((c) => c.path.endsWith('.opus')).length;
  const audioS = clips.reduce((s, c) => s + c.durationS, 0);
  for (const workers of opt('workers', '0,2').split(',').map(Number)) {
    const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-cache-'));
    try {
      // Wall time, and CPU time of the whole process (all threads): on a loaded machine the wall figures for
      // several workers only mean something next to the load average printed with them.
      let cpuS = 0;
      const run = async () => {
        const t = performance.now();
        const c = process.cpuUsage();
        await extractClipFeatures(clips, { feature: cfg, channel: 'mixed', seed: 1, cacheDir: dir, workers });
        const used = process.cpuUsage(c);
        cpuS = (used.user + used.system) / 1e6;
        return (performance.now() - t) / 1000;
      };
      const cold = await run();
      const coldCpuS = cpuS;
      const cached = await run();
      line(`extract workers=${workers}`, {
        clips: clips.length,
        opus,
        audioS: Math.round(audioS),
        coldS: +cold.toFixed(2),
        coldClipsPerS: +(clips.length / cold).toFixed(1),
        coldCpuMsPerClip: +((1000 * coldCpuS) / clips.length).toFixed(1),
        cachedS: +cached.toFixed(2),
        cachedClipsPerS: +(clips.length / cached).toFixed(0),
        fullCorpusColdMin: +((all.length / (clips.length / cold)) / 60).toFixed(1),
        loadAverage1m: +loadavg()[0].toFixed(2),
        cores: availableParallelism(),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

const NATS_PER_DB = Math.LN10 / 10;
const energies = (f: Float32Array, frames: number, dims: number) =>
  Array.from({ length: frames }, (_, t) => f[t * dims] / Math.sqrt(cfg.nMels));

/** Offline, non-causal reference: within 30 dB of the clip's max and 6 dB above its 10th percentile; gaps < 150 ms closed. */
function offlineReference(e: number[]): Uint8Array {
  const sorted = [...e].sort((a, b) => a - b);
  const thr = Math.max(sorted[sorted.length - 1] - 30 * NATS_PER_DB, sorted[Math.floor(0.1 * sorted.length)] + 6 * NATS_PER_DB);
  const m = Uint8Array.from(e, (v) => (v > thr ? 1 : 0));
  let last = -1;
  for (let t = 0; t < m.length; t++) {
    if (!m[t]) continue;
    if (last >= 0 && t - last <= 15) m.fill(1, last + 1, t);
    last = t;
  }
  return m;
}

function wav16(x: Float32Array, rate: number, path: string): void {
  const b = Buffer.alloc(44 + x.length * 2);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + x.length * 2, 4);
  b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36);
  b.writeUInt32LE(x.length * 2, 40);
  for (let i = 0; i < x.length; i++) b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x[i] * 32767))), 44 + 2 * i);
  writeFileSync(path, b);
}

/** Start and end (s) of sound per sox's `silence` effect at −40 dB below the normalised peak; null without sox. */
function soxRegion(x: Float32Array, rate: number, dir: string): [number, number] | null {
  const wav = join(dir, 'clip.wav');
  wav16(x, rate, wav);
  const length = (effects: string[]) => {
    const r = spawnSync('sox', [wav, '-n', 'norm', ...effects, 'stat'], { encoding: 'utf8' });
    if (r.error) return null;
    const m = /Length \(seconds\):\s+([\d.]+)/.exec(r.stderr);
    return m ? Number(m[1]) : null;
  };
  const afterLead = length(['silence', '1', '0.03', '-40d']);
  const untilTrail = length(['reverse', 'silence', '1', '0.03', '-40d', 'reverse']);
  if (afterLead === null || untilTrail === null) return null;
  return [x.length / rate - afterLead, untilTrail];
}

async function benchVad(): Promise<void> {
  const clips = sample(readManifest(manifest), Number(opt('clips', '60')), 7, true);
  const dir = mkdtempSync(join(tmpdir(), 'callmood-bench-vad-'));
  const rows: Record<string, number[]> = {};
  const push = (k: string, v: number) => (rows[k] ??= []).push(v);
  const agree = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + (v === b[i] ? 1 : 0), 0) / a.length;
  const maskOf = (x: Float32Array) => {
    const m = computeFeatures(x, cfg);
    return { m, mask: speechMask(m.data, m.frames, m.dims, cfg) };
  };
  try {
    for (const clip of clips) {
      const audio = await readAudioFile(clip.path);
      const x = audio.sampleRate === cfg.sampleRate ? audio.channels[0] : resample(audio.channels[0], audio.sampleRate, cfg.sampleRate);
      const { m, mask } = maskOf(x);
      const e = energies(m.data, m.frames, m.dims);
      const ref = offlineReference(e);
      push('ref', agree(mask, ref));
      push(`ref ${clip.corpus}`, agree(mask, ref));
      push('gate-only share', mask.reduce((s, v, i) => s + (v && !ref[i] ? 1 : 0), 0) / mask.length);
      push('ref-only share', mask.reduce((s, v, i) => s + (!v && ref[i] ? 1 : 0), 0) / mask.length);
      const sox = soxRegion(x, cfg.sampleRate, dir);
      if (sox) {
        const first = mask.indexOf(1), last = mask.lastIndexOf(1);
        push(`sox onset |Δ| s ${clip.corpus}`, Math.abs(first * 0.01 - sox[0]));
        push(`sox offset |Δ| s ${clip.corpus}`, Math.abs(last * 0.01 + 0.025 - sox[1]));
      }
      for (const snr of [10, 20, 40, null]) {
        const t = maskOf(telephoneChannel(x, cfg.sampleRate, { snrDb: snr, seed: 3 })).mask;
        push(`telephone snr=${snr}`, agree(mask, t));
        if (snr === 20) {
          push('telephone snr=20 vs ref', agree(t, ref));
          push('telephone snr=20 onset |Δ| s', Math.abs(t.indexOf(1) - mask.indexOf(1)) * 0.01);
          push('telephone snr=20 offset |Δ| s', Math.abs(t.lastIndexOf(1) - mask.lastIndexOf(1)) * 0.01);
        }
      }
      push('x0.1', agree(mask, maskOf(x.map((v) => v * 0.1)).mask));
      push('x3 clipped', agree(mask, maskOf(x.map((v) => Math.max(-1, Math.min(1, v * 3)))).mask));
      // Speech-first: cut where the clip is first within 10 dB of its peak (within 20 dB, quiet CREMA-D clips
      // would be cut in their room noise, which is rightly not speech).
      const peak = Math.max(...e);
      const onset = e.findIndex((v) => v > peak - 10 * NATS_PER_DB);
      const cut = x.subarray(onset * cfg.hop);
      push('speech-first: first speech s', maskOf(cut).mask.indexOf(1) * 0.01);
      push('speech-first telephone: first speech s', maskOf(telephoneChannel(cut, cfg.sampleRate, { snrDb: 20, seed: 2 })).mask.indexOf(1) * 0.01);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const [k, v] of Object.entries(rows)) {
    const s = [...v].sort((a, b) => a - b);
    const q = (p: number) => +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(3);
    line(`vad ${k}`, { n: v.length, mean: +(v.reduce((a, b) => a + b, 0) / v.length).toFixed(3), median: q(0.5), p10: q(0.1), p90: q(0.9), min: q(0), max: q(1) });
  }
}

if (mode === 'extract') await benchExtract();
else if (mode === 'vad') await benchVad();
else {
  process.stderr.write(`unknown mode '${mode}': extract | vad\n`);
  process.exit(2);
}
