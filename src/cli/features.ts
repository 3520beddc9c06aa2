import { writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { loadChannels } from '../audio/load.js';
import { telephoneChannel } from '../audio/telephone.js';
import { FEATURE_CONFIGS_BY_RATE, resolveFeatureConfig, type FeatureConfig } from '../features/config.js';
import { computeFeatures } from '../features/mfcc.js';
import { readJsonFile } from '../util/json-file.js';
import { readMetadata } from '../model/io.js';
import { resolveModelDir } from '../config/load.js';
import { DEFAULT_OPTIONS } from '../config/options.js';
import { DEFAULT_RAW_AUDIO, RAW_G711_EXTENSIONS } from '../audio/read.js';
import { integer } from './args.js';
import { matrixToCsv, matrixToJson, matrixToNpy, type MatrixFormat } from '../features/io.js';

function parseChannel(v: string): number | 'all' {
  if (v === 'all') return 'all';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`--channel must be a channel index (0, 1, …) or 'all', got '${v}'`);
  return n;
}

/**
 * The feature config of the shipped model, as its metadata.json records it: what `features` computes by default, so
 * that its output is what the model sees (the model's rate is not written here a second time).
 */
async function shippedFeatureConfig(): Promise<Readonly<FeatureConfig>> {
  return (await readMetadata(resolveModelDir(DEFAULT_OPTIONS.modelDir))).window.feature;
}

/** The config at `rate` (8000 or 16000; the shipped model's when not given), then the fields of `--config`, then each `--set`. */
async function readConfig(rate: string | undefined, path: string | undefined, sets: string[]): Promise<Readonly<FeatureConfig>> {
  let partial: Record<string, unknown> = { ...(rate === undefined ? await shippedFeatureConfig() : FEATURE_CONFIGS_BY_RATE[rate]) };
  if (path) partial = { ...partial, ...(readJsonFile(path, ErrorCodes.INVALID_OPTION, '--config') as Record<string, unknown>) };
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq < 1) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--set '${s}': expected key=value, e.g. --set nMfcc=13`);
    const key = s.slice(0, eq);
    const raw = s.slice(eq + 1);
    partial[key] = raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return resolveFeatureConfig(partial as Partial<FeatureConfig>);
}

/** `callmood features FILE`: the MFCC (or log-mel) matrix of a file, printed or saved. */
export function featuresCommand(program: Command): void {
  program
    .command('features')
    .description('compute the feature matrix (frames × coefficients) of an audio file and print or save it')
    .argument('<file>', 'audio file: WAV, FLAC, AIFF, Ogg Opus, MP3 or headerless G.711 (.ul/.al), any rate, mono or multi-channel')
    .option('--channel <n|all>', "channel to analyse (0-based) or 'all'", parseChannel, 0)
    .addOption(new Option('--format <format>', 'output format (default: from --out extension, else csv)').choices(['csv', 'json', 'npy']))
    .option('-o, --out <path>', 'write to this file instead of standard output')
    .addOption(
      new Option('--feature-rate <hz>', `the config to start from: ${Object.keys(FEATURE_CONFIGS_BY_RATE).join(' or ')} (default: the shipped model's own config, from ${DEFAULT_OPTIONS.modelDir}/metadata.json)`).choices(
        Object.keys(FEATURE_CONFIGS_BY_RATE),
      ),
    )
    .option('--config <file.json>', "feature config JSON (fields as in FeatureConfig; missing fields take those of --feature-rate, else the shipped model's)")
    .option('--set <key=value>', 'override one config field, e.g. --set nMfcc=13 (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--raw-channels <n>', `headerless G.711 (${Object.keys(RAW_G711_EXTENSIONS).join(' ')}): interleaved channels in the file (default ${DEFAULT_RAW_AUDIO.channels})`, integer('--raw-channels', 1, 32))
    .option('--raw-rate <hz>', `headerless G.711: samples per second (default ${DEFAULT_RAW_AUDIO.sampleRate})`, integer('--raw-rate', 1000, 192_000))
    .option('--telephone', 'pass the audio through the telephone channel simulator first')
    .option('--summary', 'print only shape and per-coefficient mean/std')
    .action(async (file: string, o: { channel: number | 'all'; format?: MatrixFormat; out?: string; featureRate?: string; config?: string; set: string[]; rawChannels?: number; rawRate?: number; telephone?: boolean; summary?: boolean }) => {
      const config = await readConfig(o.featureRate, o.config, o.set);
      const loaded = await loadChannels(file, config.sampleRate, o.channel, { raw: { channels: o.rawChannels, sampleRate: o.rawRate } });
      const matrices = loaded.channels.map((c) =>
        computeFeatures(o.telephone ? telephoneChannel(c, config.sampleRate) : c, config),
      );
      if (o.summary) {
        const src = loaded.source;
        process.stdout.write(`${file}: ${src.container}/${src.encoding}, ${src.sampleRate} Hz, ${src.channels.length} channel(s), ${src.durationS.toFixed(3)} s\n`);
        matrices.forEach((m, i) => {
          const mean = new Float64Array(m.dims);
          const sq = new Float64Array(m.dims);
          for (let t = 0; t < m.frames; t++) for (let j = 0; j < m.dims; j++) {
            const v = m.data[t * m.dims + j];
            mean[j] += v / m.frames;
            sq[j] += (v * v) / m.frames;
          }
          const fmt = (a: ArrayLike<number>) => Array.from(a, (v) => v.toFixed(2)).join(' ');
          const std = mean.map((mu, j) => Math.sqrt(Math.max(0, sq[j] - mu * mu)));
          process.stdout.write(`channel ${o.channel === 'all' ? i : o.channel}: ${m.frames} frames × ${m.dims} ${config.kind}\n  mean: ${fmt(mean)}\n  std:  ${fmt(std)}\n`);
        });
        return;
      }
      const ext = o.out ? extname(o.out).slice(1).toLowerCase() : '';
      const format: MatrixFormat = o.format ?? (['csv', 'json', 'npy'].includes(ext) ? (ext as MatrixFormat) : 'csv');
      if (format === 'npy' && matrices.length > 1) {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--format npy holds one matrix; pick one --channel (the file has ${matrices.length}) or use json`);
      }
      if (format === 'npy' && !o.out) {
        throw new CallmoodError(ErrorCodes.INVALID_OPTION, '--format npy is binary: give --out FILE.npy');
      }
      let body: string | Uint8Array;
      if (format === 'npy') body = matrixToNpy(matrices[0]);
      else if (format === 'json') {
        const json = matrices.map(matrixToJson);
        body = JSON.stringify(matrices.length === 1 ? json[0] : { channels: json }) + '\n';
      } else {
        if (matrices.length > 1 && !o.out) body = matrices.map((m, i) => `# channel ${i}\n${matrixToCsv(m)}`).join('');
        else if (matrices.length > 1) throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'csv holds one matrix; pick one --channel or use json');
        else body = matrixToCsv(matrices[0]);
      }
      if (o.out) writeFileSync(o.out, body);
      else process.stdout.write(body);
    });
}
