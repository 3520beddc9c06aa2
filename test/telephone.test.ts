import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readAudioFile } from '../src/audio/read.js';
import { activeLevel, telephoneChannel } from '../src/audio/telephone.js';
import { ErrorCodes } from '../src/errors.js';
import { assertCallmoodError, maxAbsDiff } from './helpers.js';

const tone = (hz: number, seconds: number, amp = 0.3, rate = 16000) =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / rate));

/** Gain in dB of a tone through the channel, measured on the steady middle half by correlation. */
function toneGainDb(hz: number): number {
  const x = tone(hz, 1);
  const y = telephoneChannel(x, 16000);
  let c = 0, s = 0;
  const a = 4000, b = 12000;
  for (let i = a; i < b; i++) {
    c += y[i] * Math.cos((2 * Math.PI * hz * i) / 16000);
    s += y[i] * Math.sin((2 * Math.PI * hz * i) / 16000);
  }
  const amp = (2 * Math.hypot(c, s)) / (b - a);
  return 20 * Math.log10(amp / 0.3);
}

test('voice-band tones pass, out-of-band tones are removed', () => {
  for (const hz of [500, 1000, 2000, 3000]) {
    const g = toneGainDb(hz);
    assert.ok(Math.abs(g) < 1, `${hz} Hz: gain ${g.toFixed(2)} dB`);
  }
  const low = toneGainDb(100);
  assert.ok(low < -25, `100 Hz: ${low.toFixed(1)} dB`);
  const high = toneGainDb(5000);
  assert.ok(high < -50, `5000 Hz: ${high.toFixed(1)} dB`);
  const edge = toneGainDb(3800);
  assert.ok(edge < -6, `3800 Hz: ${edge.toFixed(1)} dB`);
});

test('keeps length and rate; μ-law leaves speech-level audio about 35 dB clean', () => {
  const x = tone(1000, 0.7);
  const y = telephoneChannel(x, 16000);
  assert.equal(y.length, x.length);
  // The band-pass shifts the tone's phase, so fit the tone (least squares) and call the rest channel noise.
  let c = 0, s = 0;
  const a = 2000, b = y.length - 2000;
  for (let i = a; i < b; i++) {
    c += y[i] * Math.cos((2 * Math.PI * 1000 * i) / 16000);
    s += y[i] * Math.sin((2 * Math.PI * 1000 * i) / 16000);
  }
  c = (2 * c) / (b - a);
  s = (2 * s) / (b - a);
  let sig = 0, err = 0;
  for (let i = a; i < b; i++) {
    const fit = c * Math.cos((2 * Math.PI * 1000 * i) / 16000) + s * Math.sin((2 * Math.PI * 1000 * i) / 16000);
    sig += fit * fit;
    err += (y[i] - fit) ** 2;
  }
  const snr = 10 * Math.log10(sig / err);
  assert.ok(snr > 30 && snr < 45, `SNR ${snr.toFixed(1)} dB`);
  // Other rates in, same rate out.
  const y44 = telephoneChannel(tone(1000, 0.5, 0.3, 44100), 44100);
  assert.equal(y44.length, 22050);
});

test('line noise lands near the requested SNR and is repeatable by seed', async () => {
  const clip = (await readAudioFile(new URL('./fixtures/audio/YAF_back_neutral.flac', import.meta.url).pathname)).channels[0];
  const clean = telephoneChannel(clip, 16000);
  const noisy = telephoneChannel(clip, 16000, { snrDb: 10, seed: 3 });
  const noise = noisy.map((v, i) => v - clean[i]);
  const snr = 10 * Math.log10(activeLevel(clean, 320) / activeLevel(noise, 320));
  // White noise is added over 0–4 kHz and then band-limited to 300–3400 Hz, which removes about 1 dB of it.
  assert.ok(snr > 9 && snr < 13, `measured SNR ${snr.toFixed(2)} dB for 10 dB requested`);
  assert.equal(maxAbsDiff(noisy, telephoneChannel(clip, 16000, { snrDb: 10, seed: 3 })), 0);
  assert.ok(maxAbsDiff(noisy, telephoneChannel(clip, 16000, { snrDb: 10, seed: 4 })) > 0.01);
  // A-law differs from μ-law but is just as clean.
  const a = telephoneChannel(clip, 16000, { codec: 'alaw' });
  assert.ok(maxAbsDiff(a, clean) > 0);
});

test('bad options and bad audio give clear errors', () => {
  const x = tone(1000, 0.1);
  assertCallmoodError(() => telephoneChannel(x, 16000, { highHz: 4500 }), ErrorCodes.INVALID_OPTION, /highHz is 4500; allowed: 0 < highHz < 4000/);
  assertCallmoodError(() => telephoneChannel(x, 16000, { lowHz: 3500 }), ErrorCodes.INVALID_OPTION, /lowHz/);
  assertCallmoodError(() => telephoneChannel(x, 16000, { snrDb: NaN }), ErrorCodes.INVALID_OPTION, /snrDb/);
  assertCallmoodError(() => telephoneChannel(x, 16000, { codec: 'g729' as 'mulaw' }), ErrorCodes.INVALID_OPTION, /codec/);
  assertCallmoodError(() => telephoneChannel(new Float32Array(0), 16000), ErrorCodes.EMPTY_AUDIO);
  const bad = x.slice();
  bad[5] = NaN;
  assertCallmoodError(() => telephoneChannel(bad, 16000), ErrorCodes.INVALID_AUDIO, /sample 5 is NaN/);
  assertCallmoodError(() => telephoneChannel(x, 0), ErrorCodes.UNSUPPORTED_RATE);
});
