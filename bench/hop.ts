/**
 * What a longer hop costs in events: the committed clips (8 kHz, as a call carries them) through EmotionTrack with
 * the shipped model, at each hop. Per hop: emotion events per second of speech, the delay from speech-start to the
 * first emotion, the share of windows whose label equals the 250 ms run's window ending at the same time (a 500 ms
 * hop scores every other 250 ms window, so this checks the subset), and how often the smoothed state's label agrees
 * with the 250 ms run's state at the same call time.
 *
 *   node --import tsx bench/hop.ts [--model DIR] [--hops 250,500] [--smoothing 0.3]
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadChannels } from '../src/audio/load.js';
import { InProcessEngine } from '../src/stream/engine.js';
import { MicroBatcher } from '../src/stream/batcher.js';
import { EmotionTrack, modelProfile } from '../src/stream/track.js';
import type { CallmoodEvent, EmotionEvent } from '../src/stream/events.js';

const argv = process.argv.slice(2);
const arg = (name: string, dflt: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const modelDir = arg('--model', 'models/default');
const hops = arg('--hops', '250,500').split(',').map(Number);
const smoothings = arg('--smoothing', '0.3').split(',').map(Number);

const engine = await InProcessEngine.load(modelDir);
const batcher = new MicroBatcher(engine);
const profile = modelProfile(engine.metadata);
const dir = 'test/fixtures/audio';
const clips = readdirSync(dir).filter((f) => /\.(flac|opus)$/.test(f));
const audio = await Promise.all(clips.map(async (f) => (await loadChannels(join(dir, f), 8000, 0)).channels[0]));

async function run(x: Float32Array, hopMs: number, smoothing: number): Promise<CallmoodEvent[]> {
  const events: CallmoodEvent[] = [];
  const t = new EmotionTrack(profile, (w) => batcher.infer(w), (e) => events.push(e), () => ({ callSid: 'CA', streamSid: 'MZ', customParameters: {} }), 'inbound', { hopMs, smoothing });
  for (let i = 0; i < x.length; i += 160) t.push(x.subarray(i, i + 160));
  await t.end();
  return events;
}

const reference = await Promise.all(audio.map((x) => run(x, 250, 0.3)));
for (const hopMs of hops) {
  for (const smoothing of smoothings) {
    let emotions = 0;
    let speechMs = 0;
    const firstDelays: number[] = [];
    let sameLabel = 0;
    let matched = 0;
    let stateAgree = 0;
    let stateCompared = 0;
    for (let c = 0; c < audio.length; c++) {
      const ev = await run(audio[c], hopMs, smoothing);
      const em = ev.filter((e): e is EmotionEvent => e.type === 'emotion');
      const ref = reference[c].filter((e): e is EmotionEvent => e.type === 'emotion');
      emotions += em.length;
      for (const e of ev) if (e.type === 'speech-end') speechMs += e.durationMs;
      const start = ev.find((e) => e.type === 'speech-start');
      if (start && em.length > 0) firstDelays.push(em[0].timeMs - start.timeMs);
      const byTime = new Map(ref.map((e) => [e.timeMs, e]));
      for (const e of em) {
        const r = byTime.get(e.timeMs);
        if (r) {
          matched++;
          if (r.label === e.label) sameLabel++;
        }
        // The 250 ms run's state at the latest window not after this one.
        const prior = ref.filter((x) => x.timeMs <= e.timeMs).pop();
        if (prior) {
          stateCompared++;
          if (prior.state.label === e.state.label) stateAgree++;
        }
      }
    }
    firstDelays.sort((a, b) => a - b);
    process.stdout.write(
      `${JSON.stringify({
        hopMs,
        smoothing,
        clips: audio.length,
        emotionsPerSpeechSecond: Number((emotions / (speechMs / 1000)).toFixed(2)),
        firstEmotionAfterSpeechStartMs: { median: firstDelays[firstDelays.length >> 1], max: firstDelays[firstDelays.length - 1] },
        windowsAlsoIn250: `${matched}/${emotions}`,
        sameWindowLabel: matched ? Number((sameLabel / matched).toFixed(3)) : null,
        stateLabelAgreesWith250: stateCompared ? Number((stateAgree / stateCompared).toFixed(3)) : null,
      })}\n`,
    );
  }
}
// One call that changes emotion: the clips back to back. When does each hop's smoothed state change its label?
const call = new Float32Array(audio.reduce((n, x) => n + x.length, 0));
const boundaries: number[] = [];
let at = 0;
for (const x of audio) {
  boundaries.push(Math.round(at / 8));
  call.set(x, at);
  at += x.length;
}
for (const hopMs of hops) {
  for (const smoothing of smoothings) {
    const ev = await run(call, hopMs, smoothing);
    const changes: string[] = [];
    let label = '';
    for (const e of ev) {
      if (e.type === 'emotion' && e.state.label !== label) {
        label = e.state.label;
        changes.push(`${e.timeMs}:${label}`);
      }
    }
    process.stdout.write(`${JSON.stringify({ hopMs, smoothing, clipStartsMs: boundaries, stateChanges: changes })}\n`);
  }
}
await batcher.close();
