/**
 * What the simulated clients spend per media message on building it: JSON.stringify of an object (as before) against
 * mediaMessageText, and encoding a 20 s call: `node --import tsx bench/client-cost.ts`.
 */
import { mediaMessageText, encodePayloads } from '../src/telephony/simulator.js';
const payloads = encodePayloads(Float32Array.from({ length: 160 * 1000 }, (_, i) => Math.sin(i / 7) * 0.5));
const sid = 'MZ' + 'a'.repeat(32); const q = JSON.stringify(sid);
let sink = 0;
for (let round = 0; round < 2; round++) {
  let c0 = process.cpuUsage();
  for (let r = 0; r < 50; r++) for (let k = 0; k < 1000; k++) sink += JSON.stringify({ event: 'media', sequenceNumber: String(k + 2), media: { track: 'inbound', chunk: String(k + 1), timestamp: String(k * 20), payload: payloads[k] }, streamSid: sid }).length;
  let c = process.cpuUsage(c0); console.log('stringify', ((c.user + c.system) / 50000).toFixed(2), 'us/msg');
  c0 = process.cpuUsage();
  for (let r = 0; r < 50; r++) for (let k = 0; k < 1000; k++) sink += mediaMessageText(k + 2, 'inbound', k, payloads[k], q).length;
  c = process.cpuUsage(c0); console.log('template', ((c.user + c.system) / 50000).toFixed(2), 'us/msg');
  c0 = process.cpuUsage();
  for (let r = 0; r < 5; r++) sink += encodePayloads(Float32Array.from({ length: 160 * 1000 }, (_, i) => Math.sin(i / 7) * 0.5)).length;
  c = process.cpuUsage(c0); console.log('encode 20 s call', ((c.user + c.system) / 5000).toFixed(2), 'ms per call');
}
