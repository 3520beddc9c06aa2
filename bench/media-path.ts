/**
 * The main thread's per-message work before the audio reaches the resampler: a Twilio `media` message as text →
 * twilioTransport.parse (the parse MediaSession runs) → base64 μ-law → float samples. `node --import tsx bench/media-path.ts`: µs per message (CPU).
 */
import { twilioTransport } from '../src/telephony/transports/twilio.js';
import { MulawPayloadDecoder } from '../src/audio/codecs.js';

const payload = Buffer.from(Array.from({ length: 160 }, (_, i) => (i * 37) & 0xff)).toString('base64');
const messages = Array.from({ length: 1000 }, (_, k) =>
  JSON.stringify({ event: 'media', sequenceNumber: String(k + 2), media: { track: 'inbound', chunk: String(k + 1), timestamp: String(k * 20), payload }, streamSid: 'MZ' + '0'.repeat(32) }),
);
const decoder = new MulawPayloadDecoder();
let sink = 0;
function once(): void {
  for (const text of messages) {
    const m = twilioTransport.parse(text);
    if (m.event === 'media') sink += decoder.decode(m.payload)[7];
  }
}
for (let i = 0; i < 20; i++) once();
for (let round = 0; round < 3; round++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < 100; i++) once();
  const c = process.cpuUsage(c0);
  process.stdout.write(`${JSON.stringify({ usPerMessage: Number(((c.user + c.system) / 100_000).toFixed(2)), parse: 'twilioTransport.parse', decode: 'MulawPayloadDecoder' })}\n`);
}
if (sink === Infinity) process.stdout.write('\n');
