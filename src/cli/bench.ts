import { Command, Option } from 'commander';
import { featureRateOption, jsonOption, jsonTarget, openJsonOutput, positive } from './args.js';
import { benchMfcc } from '../bench/mfcc.js';
import { benchResample } from '../bench/resample.js';
import { benchModel } from '../bench/model.js';
import { benchCalls } from '../bench/calls.js';
import { benchReplay, DEFAULT_REPLAY_BENCH } from '../bench/replay.js';
import { FEATURE_CONFIGS_BY_RATE } from '../features/config.js';
import { CallmoodError, ErrorCodes } from '../errors.js';


/**
 * Where a bench's figures go: printed for people, or as one JSON object where `--json` says. The JSON file is opened
 * now, before the bench runs, so an unwritable path fails at once rather than after minutes of measuring.
 */
function output(json: string | boolean | undefined): (result: object) => Promise<void> {
  const target = jsonTarget(json);
  const out = target ? openJsonOutput(target) : null;
  return async (result) => {
    if (out) {
      out.write(`${JSON.stringify(result)}\n`);
      await out.close();
      return;
    }
    for (const [k, v] of Object.entries(result)) {
      process.stdout.write(`${k.padEnd(20)} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v)}\n`);
    }
  };
}

/** `callmood bench mfcc|resample`: speed figures (CPU time of this process, so a busy machine skews less). */
export function benchCommand(program: Command): void {
  const bench = program.command('bench').description('measure speed: audio seconds processed per CPU second');
  bench
    .command('mfcc')
    .description('streaming MFCC in 20 ms chunks, against the whole clip pushed at once')
    .addOption(jsonOption('the figures (one object)'))
    .option('--seconds <s>', 'seconds of audio per round', positive('--seconds'), 120)
    .option('--chunk-ms <ms>', 'chunk length in ms', positive('--chunk-ms'), 20)
    .option('--rounds <n>', 'timed rounds (best is reported)', positive('--rounds'), 5)
    .addOption(featureRateOption('the feature config: 16000 (the default config) or 8000 (narrowband)', '16000'))
    .action(async (o: { json?: string | boolean; seconds: number; chunkMs: number; rounds: number; featureRate: string }) => {
      const emit = output(o.json);
      await emit(benchMfcc({ seconds: o.seconds, chunkMs: o.chunkMs, rounds: Math.round(o.rounds), config: FEATURE_CONFIGS_BY_RATE[o.featureRate] }));
    });
  bench
    .command('calls')
    .description('N simulated calls at real-time pace against a callmood serve child process on loopback')
    .addOption(jsonOption('the figures (one object)'))
    .option('--calls <n>', 'concurrent calls', positive('--calls'), 50)
    .option('--seconds <s>', 'seconds of audio per call', positive('--seconds'), 20)
    .option('--model <dir>', 'model directory (default: the shipped model)')
    .option('--nodes <n>', 'servers to spread the calls over (more than 1 needs --redis)', positive('--nodes'), 1)
    .option('--redis <url>', 'the Redis the nodes share: redis://host:port')
    .addOption(new Option('--provider <provider>', "whose media-stream messages the calls send: twilio, or telnyx (to the server's Telnyx path)").choices(['twilio', 'telnyx']).default('twilio'))
    .action(async (o: { json?: string | boolean; calls: number; seconds: number; model?: string; nodes: number; redis?: string; provider: 'twilio' | 'telnyx' }) => {
      if (o.nodes > 1 && !o.redis) throw new CallmoodError(ErrorCodes.INVALID_OPTION, `--nodes ${o.nodes} needs --redis redis://host:port (the nodes share their events through Redis)`);
      const emit = output(o.json);
      await emit(await benchCalls({ calls: Math.round(o.calls), seconds: o.seconds, modelDir: o.model, nodes: Math.round(o.nodes), redisUrl: o.redis, provider: o.provider }));
    });
  bench
    .command('model')
    .description('inference time of a model per window, single and batched, on the TF.js backend in use')
    .addOption(jsonOption('the figures (one object)'))
    .option('--model <dir>', 'model directory', 'models/default')
    .option('--batch <n>', 'batch size for the batched figure', positive('--batch'), 32)
    .action(async (o: { json?: string | boolean; model: string; batch: number }) => {
      const emit = output(o.json);
      await emit(await benchModel({ modelDir: o.model, batch: Math.round(o.batch) }));
    });
  bench
    .command('replay')
    .description('replay of one recording on one core: a dual-channel 8 kHz μ-law call, read, streamed and scored in-process (no report)')
    .addOption(jsonOption('the figures (one object)'))
    .option('--seconds <s>', 'length of the recording', positive('--seconds'), DEFAULT_REPLAY_BENCH.seconds)
    .option('--mono', 'the caller channel only')
    .option('--batch <n>', 'largest inference batch', positive('--batch'), DEFAULT_REPLAY_BENCH.maxBatch)
    .option('--model <dir>', 'model directory', DEFAULT_REPLAY_BENCH.modelDir)
    .option('--runs <n>', 'timed replays; the median one is reported', positive('--runs'), DEFAULT_REPLAY_BENCH.runs)
    .action(async (o: { json?: string | boolean; seconds: number; mono?: boolean; batch: number; model: string; runs: number }) => {
      const emit = output(o.json);
      await emit(await benchReplay({ seconds: o.seconds, channels: o.mono ? 1 : 2, maxBatch: Math.round(o.batch), modelDir: o.model, runs: Math.round(o.runs) }));
    });
  bench
    .command('resample')
    .description('streaming resampler (default 8 → 16 kHz, the live-call path) in 20 ms chunks')
    .addOption(jsonOption('the figures (one object)'))
    .option('--seconds <s>', 'seconds of audio', positive('--seconds'), 600)
    .option('--in-rate <hz>', 'input rate', positive('--in-rate'), 8000)
    .option('--out-rate <hz>', 'output rate', positive('--out-rate'), 16000)
    .option('--chunk-ms <ms>', 'chunk length in ms', positive('--chunk-ms'), 20)
    .action(async (o: { json?: string | boolean; seconds: number; inRate: number; outRate: number; chunkMs: number }) => {
      const emit = output(o.json);
      await emit(benchResample({ seconds: o.seconds, inRate: o.inRate, outRate: o.outRate, chunkMs: o.chunkMs }));
    });
}
