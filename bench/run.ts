/**
 * `npm run bench`: every benchmark, one after another, each printing its figures as one JSON line. Not a test:
 * figures vary with the machine; compare ratios measured in the same run. It sets V8's heap growing factor as the
 * `callmood` command does (src/cli/heap.ts), so its figures are the command line's; it runs under tsx, whose larger
 * heap changes garbage collection a little, so `callmood bench replay` is the figure bench/RESULTS.md quotes.
 * These are the benchmarks `callmood bench mfcc|resample|model|replay|calls` runs, on audio they make themselves,
 * so an installed package measures the same; the other scripts here (bench/*.ts) are the lab's, run from a clone.
 * The last, bench/replay-queue.ts (distributed replay through Redis), runs where redis-server is installed.
 */
import { existsSync } from 'node:fs';
import { benchMfcc } from '../src/bench/mfcc.js';
import { benchResample } from '../src/bench/resample.js';
import { benchModel } from '../src/bench/model.js';
import { benchCalls } from '../src/bench/calls.js';
import { benchReplay } from '../src/bench/replay.js';
import { NARROWBAND_FEATURE_CONFIG } from '../src/features/config.js';
import { tuneHeap } from '../src/cli/heap.js';
import { benchReplayQueue } from './replay-queue.js';
import { REDIS_HINT, REDIS_SERVER } from '../test/helpers/redis.js';

tuneHeap();

const line = (name: string, result: object) => process.stdout.write(`${name} ${JSON.stringify(result)}\n`);

line('mfcc', benchMfcc());
line('mfcc 8 kHz (the shipped model)', benchMfcc({ config: NARROWBAND_FEATURE_CONFIG }));
line('resample 8000->16000', benchResample({ inRate: 8000, outRate: 16000 }));
line('resample 48000->16000', benchResample({ inRate: 48000, outRate: 16000, seconds: 120 }));
line('resample 44100->16000', benchResample({ inRate: 44100, outRate: 16000, seconds: 120 }));
line('model', await benchModel({ modelDir: 'models/default' }));
line('replay', await benchReplay());
line('replay caller only', await benchReplay({ channels: 1 }));
line('calls 100', await benchCalls({ calls: 100, seconds: 20 }));
line('replay queue', existsSync(REDIS_SERVER) ? await benchReplayQueue() : { skipped: `${REDIS_SERVER} is missing; ${REDIS_HINT}` });
