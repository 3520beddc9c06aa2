/**
 * Call reports and the summary page: what the HTML holds (the timeline SVG, speech, the policy's decisions, the
 * summary, escaping, no external URL), and how they render in headless Chromium (Debian's chromium driven by
 * puppeteer-core; .ci/run installs it on CI, the tests never do, and where it is missing the browser test fails):
 * the plot is there, the table sorts on a click, no console errors, no request leaves the file. Screenshots are kept
 * under test/artifacts/replay/.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { CallmoodEvent, EmotionEvent, Track } from '../src/stream/events.js';
import { digestEvents } from '../src/report/digest.js';
import { renderCallReport } from '../src/report/call-report.js';
import { renderSummaryPage, type SummaryRow } from '../src/report/summary-page.js';
import { MAX_POINTS_PER_TRACK } from '../src/report/timeline.js';
import { esc } from '../src/report/html.js';
import { runReplays, type ReplayJob } from '../src/replay/run.js';
import { AUDIO, phoneClip, writeCall } from './helpers/replay-audio.js';
import { loadChannels } from '../src/audio/load.js';
import { readMetadata } from '../src/model/io.js';
import { resolveModelDir } from '../src/config/load.js';
import { DEFAULT_OPTIONS } from '../src/config/options.js';
import { findChromium } from './helpers.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const LABELS = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'];
const EVIL = `<img src=x onerror="alert(1)">'&"call.wav`;

// ---------------------------------------------------------------------------------------------------------------
// A synthetic call: events shaped as the stream emits them
// ---------------------------------------------------------------------------------------------------------------

const base = { callSid: 'CA' + 'c'.repeat(32), streamSid: 'MZ' + 'd'.repeat(32), customParameters: {} };

function emotion(track: Track, endMs: number, angry: number): EmotionEvent {
  const rest = (1 - angry) / (LABELS.length - 1);
  const probs = Object.fromEntries(LABELS.map((l) => [l, l === 'angry' ? angry : rest]));
  const label = angry >= rest ? 'angry' : 'disgust';
  return { ...base, type: 'emotion', track, timeMs: endMs, windowStartMs: endMs - 1200, speechRatio: 1, probs, label, confidence: Math.max(angry, rest), state: { probs, label, confidence: Math.max(angry, rest) }, latencyMs: 3 };
}

/** Caller: speech 1–9 s, angry windows at 3.0–4.0 s, a calm one at 4.25, angry again 8.0–8.5 after a pause. */
function syntheticCall(): CallmoodEvent[] {
  const ev: CallmoodEvent[] = [{ ...base, type: 'call-start', timeMs: 0, accountSid: null, tracks: ['inbound', 'outbound'] }];
  ev.push({ ...base, type: 'speech-start', track: 'inbound', timeMs: 1000 });
  for (let t = 2250; t <= 4250; t += 250) ev.push(emotion('inbound', t, t >= 3000 && t <= 4000 ? 0.9 : 0.05));
  ev.push({ ...base, type: 'speech-end', track: 'inbound', timeMs: 4500, durationMs: 3500 });
  ev.push({ ...base, type: 'speech-start', track: 'inbound', timeMs: 6800 });
  for (let t = 8000; t <= 8500; t += 250) ev.push(emotion('inbound', t, 0.7));
  ev.push({
    ...base,
    type: 'action',
    timeMs: 8000,
    actionId: 'a1',
    action: 'soften_offer',
    rule: 'soften<b>',
    track: 'inbound',
    level: 1,
    handler: null,
    reason: 'rule soften<b>: angry at 0.9 for 3000 ms',
    evidence: {},
    dryRun: true,
  });
  ev.push({ ...base, type: 'action-result', timeMs: 8000, actionId: 'a1', action: 'soften_offer', rule: 'soften<b>', outcome: 'skipped', attempts: 0, detail: 'dry run', atMs: 1 });
  ev.push({ ...base, type: 'speech-end', track: 'inbound', timeMs: 9000, durationMs: 2200 });
  const summary = (angryMs: number) => ({
    audioMs: 10_000,
    speechMs: 5700,
    emotionShare: Object.fromEntries(LABELS.map((l) => [l, l === 'angry' ? 0.6 : l === 'disgust' ? 0.4 : 0])),
    anger: { peak: 0.9, peakAtMs: 3000, durationMs: angryMs },
    windows: 12,
  });
  ev.push({ ...base, type: 'call-end', timeMs: 10_000, reason: 'stop', durationMs: 10_000, summary: { inbound: summary(1750), outbound: { ...summary(0), anger: { peak: 0, peakAtMs: null, durationMs: 0 } } }, stats: { mediaMessages: 1000, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 } });
  return ev;
}

test('digest: anger episodes end at a calm window or a pause longer than a window; decisions with their outcome', () => {
  const d = digestEvents(syntheticCall());
  assert.deepEqual(
    d.episodes.map((e) => [e.track, e.startMs, e.endMs, e.windows]),
    [
      ['inbound', 1800, 4000, 5],
      ['inbound', 6800, 8500, 3],
    ],
  );
  assert.equal(d.episodes[0].peak, 0.9);
  assert.deepEqual(d.actions.map((a) => [a.timeMs, a.action, a.rule, a.outcome]), [[8000, 'soften_offer', 'soften<b>', 'skipped']]);
  assert.equal(d.durationMs, 10_000);
  assert.deepEqual(d.tracks, ['inbound', 'outbound']);
});

test('call report: one self-contained page with the timeline SVG, speech, decisions and summary; everything escaped', async () => {
  const html = await renderCallReport({ name: EVIL, events: syntheticCall(), labels: LABELS, meta: { recording: `wav <${EVIL}>` }, backHref: 'index.html' });
  assert.match(html, /^<!doctype html>/);
  assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  // Escaped wherever it appears: the raw name never does.
  assert.ok(!html.includes(EVIL) && !html.includes('<img') && !html.includes('soften<b>'), 'unescaped input in the report');
  assert.ok(html.includes(esc(EVIL)));
  assert.match(html, /soften&lt;b&gt;/);
  // Nothing is fetched: no src, no link to anything but the summary page (the SVG namespace is a name, not a URL).
  assert.doesNotMatch(html, /<[a-z]+[^>]*\s(src|srcset)=/i);
  assert.doesNotMatch(html, /<(link|iframe|object|embed|img)\b/i);
  assert.deepEqual([...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]), ['index.html']);
  const svg = html.slice(html.indexOf('<figure id="timeline">'), html.indexOf('</figure>'));
  assert.match(svg, /<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /caller \(inbound\)/);
  assert.match(svg, /agent \(outbound\)/);
  const angryLine = svg.match(/<path[^>]*stroke="#d62728"[^>]*>/)?.[0] ?? '';
  assert.equal(/\sd="([^"]*)"/.exec(angryLine)?.[1].match(/M/g)?.length, 2, 'the angry line, broken at the pause between 4.25 s and 6.8 s');
  assert.match(svg, /soften_offer 1/, 'the decision is marked on the timeline');
  assert.match(svg, /stroke-dasharray="5,3"/, 'as a dashed rule');
  assert.match(svg, /fill="#9ecae1"/, 'speech regions shaded');
  // The summary: share per emotion, peak anger and its time, angry time and episodes.
  assert.match(html, /data-field="anger-peak">90\.0% at 0:03\.0/);
  assert.match(html, /data-field="anger-duration">0:01\.8 in 2 episode\(s\), the longest 0:02\.2/);
  assert.match(html, /<td>angry<\/td><td class="num">60\.0%<\/td>/);
  assert.match(html, /0:01\.8–0:04\.0 \(peak 90%\), 0:06\.8–0:08\.5 \(peak 70%\)/);
  assert.match(html, /<table id="actions">.*0:08\.0.*soften_offer 1.*soften&lt;b&gt;.*skipped/s);
});

test('call report: a long call is drawn from at most MAX_POINTS_PER_TRACK points per track', async () => {
  const ev: CallmoodEvent[] = [{ ...base, type: 'call-start', timeMs: 0, accountSid: null, tracks: ['inbound'] }];
  const n = 2 * MAX_POINTS_PER_TRACK + 10;
  for (let i = 0; i < n; i++) ev.push(emotion('inbound', 1200 + i * 250, (i % 40) / 40));
  const html = await renderCallReport({ name: 'long.wav', events: ev, labels: LABELS });
  assert.match(html, /caller \(inbound\) every 3 windows averaged per point/);
  assert.ok(html.length < 1_500_000, `report of ${html.length} bytes`);
});

test('summary page: one row per file, failures with their reason, numbers to sort by, links encoded and escaped', () => {
  const d = digestEvents(syntheticCall());
  const rows: SummaryRow[] = [
    { name: 'b.wav', href: 'b.wav.html', status: 'ok', digest: d },
    { name: EVIL, href: 'x y#1?.html', status: 'ok', digest: { ...d, durationMs: 5000, episodes: [] } },
    { name: 'broken.flac', href: null, status: 'failed', error: { code: 'CALLMOOD_ERR_CORRUPT_FILE', message: 'broken.flac: cut <short>' } },
  ];
  const html = renderSummaryPage(rows, 'calls <monday>');
  assert.ok(!html.includes(EVIL) && !html.includes('<short>') && !html.includes('<monday>'));
  assert.match(html, /<h1>calls &lt;monday&gt;<\/h1>/);
  assert.match(html, /3 recording\(s\): 2 replayed, <span class="failed" id="failed-count">1 failed<\/span>; <span id="angry-count">the caller was angry in 2 call\(s\)/);
  assert.match(html, /href="x%20y%231%3F\.html"/);
  assert.match(html, /<tr data-i="2" data-status="failed">.*CALLMOOD_ERR_CORRUPT_FILE<\/code> broken\.flac: cut &lt;short&gt;/);
  assert.match(html, /<td data-v="10000" class="num">0:10\.0<\/td>/);
  assert.match(html, /<td data-v="1800">0:01\.8–0:04\.0, 0:06\.8–0:08\.5<\/td>/);
  assert.match(html, /<th data-sort="num" class="num">duration<\/th>/);
  assert.match(html, /<script>[\s\S]*aria-sort[\s\S]*<\/script>/);
});

/** Each timeline panel's shaded speech regions, [start, end] s, read from the rect marks' labels (panels in track order). */
function shadedRegions(html: string): number[][][] {
  const svg = html.slice(html.indexOf('<figure id="timeline">'), html.indexOf('</figure>'));
  const panels: number[][][] = [];
  for (const m of svg.matchAll(/concat_(\d+)_layer_0_marks"[^>]*>((?:<path[^>]*\/>)*)<\/g>/g)) {
    panels[Number(m[1])] = [...m[2].matchAll(/aria-label="[^"]*?: ([\d.]+); e: ([\d.]+)"/g)].map((r) => [Number(r[1]), Number(r[2])]);
  }
  return panels;
}

/** Whether [s, e] (ms) lies inside one of `regions` (s), to the ms. */
function covered(regions: number[][], s: number, e: number): boolean {
  return regions.some(([a, b]) => a * 1000 <= s + 0.5 && b * 1000 >= e - 0.5);
}

test('speech shading: every run of speech of every track, also one whose next run starts a frame after it (speech-start before its speech-end)', async () => {
  // As the stream emits them for runs one 10 ms frame apart: the second run's speech-start (its first frame's start,
  // 370 ms) comes before the first run's speech-end (its last frame's end, 375 ms).
  const ev: CallmoodEvent[] = [{ ...base, type: 'call-start', timeMs: 0, accountSid: null, tracks: ['inbound', 'outbound'] }];
  ev.push({ ...base, type: 'speech-start', track: 'inbound', timeMs: 20 });
  ev.push({ ...base, type: 'speech-start', track: 'outbound', timeMs: 180 });
  ev.push({ ...base, type: 'speech-start', track: 'outbound', timeMs: 370 });
  ev.push({ ...base, type: 'speech-end', track: 'outbound', timeMs: 375, durationMs: 195 });
  ev.push({ ...base, type: 'speech-end', track: 'inbound', timeMs: 1415, durationMs: 1395 });
  ev.push({ ...base, type: 'speech-end', track: 'outbound', timeMs: 1725, durationMs: 1355 });
  ev.push({ ...base, type: 'speech-start', track: 'inbound', timeMs: 1800 });
  ev.push({ ...base, type: 'call-end', timeMs: 2080, reason: 'stop', durationMs: 2080, summary: {}, stats: { mediaMessages: 208, gapsFilled: 0, gapMs: 0, dropped: 0, protocolErrors: 0, sequenceGaps: 0 } });
  const html = await renderCallReport({ name: 'runs.wav', events: ev, labels: LABELS });
  const [caller, agent] = shadedRegions(html);
  assert.ok(covered(agent, 180, 375), `the agent's first run, 0.18–0.375 s, is shaded: ${JSON.stringify(agent)}`);
  assert.ok(covered(agent, 370, 1725), `and the second: ${JSON.stringify(agent)}`);
  assert.ok(covered(caller, 20, 1415), JSON.stringify(caller));
  // A run still open at the end of the call is shaded to its end.
  assert.ok(covered(caller, 1800, 2080), JSON.stringify(caller));
});

test('speech shading of a real two-channel call: every speech-end of each track lies in its panel\'s shading', async () => {
  // The agent's clip has two runs of speech one frame apart at its start (0.18–0.375 s, then from 0.37 s).
  const dir = mkdtempSync(join(tmpdir(), 'callmood-speech-'));
  try {
    const caller = await phoneClip('YAF_back_angry.flac');
    writeCall(dir, 'two.wav', [caller, await phoneClip('1062_DFA_ANG_XX.opus', caller.length / 8000)]);
    const reportPath = join(dir, 'two.html');
    const [o] = await runReplays([{ path: join(dir, 'two.wav'), name: 'two.wav', reportPath }], { modelDir: 'models/default', replay: {}, policyFile: null, keepEvents: true }, { workers: 1 });
    assert.ok(o.ok && o.events);
    const ends = o.events.filter((e) => e.type === 'speech-end') as Extract<CallmoodEvent, { type: 'speech-end' }>[];
    const starts = o.events.filter((e) => e.type === 'speech-start' && e.track === 'outbound').map((e) => e.timeMs);
    assert.ok(starts.length >= 2 && starts[1] < (ends.find((e) => e.track === 'outbound')?.timeMs ?? 0), `the agent's second run starts before the first ends: ${starts}`);
    const panels = shadedRegions(readFileSync(reportPath, 'utf8'));
    for (const e of ends) {
      const regions = panels[e.track === 'inbound' ? 0 : 1];
      assert.ok(covered(regions, e.timeMs - e.durationMs, e.timeMs), `${e.track} speech ${e.timeMs - e.durationMs}–${e.timeMs} ms is shaded: ${JSON.stringify(regions)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A row of a report's header table, unescaped. */
function metaRow(html: string, key: string): string {
  const m = new RegExp(`<tr><th>${key}</th><td>([^<]*)</td></tr>`).exec(html);
  assert.ok(m, `no ${key} row`);
  return m[1].replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

test("call report: the path row follows the model's feature rate and the file's, and the hop row the stream's", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'callmood-path-'));
  try {
    const featureRate = (await readMetadata(resolveModelDir('models/default'))).window.feature.sampleRate;
    const model = `${featureRate / 1000} kHz`;
    writeCall(dir, 'phone.wav', [await phoneClip('YAF_back_angry.flac')]);
    writeCall(dir, 'studio.wav', [(await loadChannels(join(AUDIO, 'YAF_back_angry.flac'), 22_050, 0)).channels[0]], 22_050, 'pcm16');
    const jobs = ['phone.wav', 'studio.wav'].map((name) => ({ path: join(dir, name), name, reportPath: join(dir, `${name}.html`) }));
    const outcomes = await runReplays(jobs, { modelDir: 'models/default', replay: {}, policyFile: null, keepEvents: false }, { workers: 1 });
    assert.ok(outcomes.every((o) => o.ok));
    const [phone, studio] = jobs.map((j) => readFileSync(j.reportPath, 'utf8'));
    const rates = (text: string) => [...text.matchAll(/([\d.]+) kHz/g)].map((m) => `${m[1]} kHz`);
    const phonePath = metaRow(phone, 'path');
    assert.match(phonePath, /^8 kHz, as a live call/);
    assert.deepEqual([...new Set(rates(phonePath))].sort(), [...new Set(['8 kHz', model])].sort(), `only the file's and the model's rates: ${phonePath}`);
    if (featureRate === 8000) assert.match(phonePath, /not resampled, the model's features are 8 kHz too/);
    else assert.match(phonePath, new RegExp(`resampled 8 kHz → ${model} \\(the model's feature rate\\)`));
    const studioPath = metaRow(studio, 'path');
    assert.match(studioPath, new RegExp(`^22\\.05 kHz \\(a live call is 8 kHz\\): resampled 22\\.05 kHz → ${model} \\(the model's feature rate\\) in the stream$`));
    // The hop the replay ran with: the live server's default when none is given.
    for (const html of [phone, studio]) assert.equal(metaRow(html, 'window hop'), `${DEFAULT_OPTIONS.stream.hopMs} ms`);
    // A model whose features are 16 kHz, and a file already at the feature rate.
    const { signalPath } = await import('../src/replay/run.js');
    assert.equal(signalPath(8000, 16_000), "8 kHz, as a live call: resampled 8 kHz → 16 kHz (the model's feature rate) in the stream");
    assert.equal(signalPath(16_000, 16_000), "16 kHz (a live call is 8 kHz): not resampled, the model's features are 16 kHz too");
    assert.equal(signalPath(44_100, 8000), "44.1 kHz (a live call is 8 kHz): resampled 44.1 kHz → 8 kHz (the model's feature rate) in the stream");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("summary page: a call counts as angry by the policy's own anger threshold, which the page states", async () => {
  const d = digestEvents(syntheticCall());
  const withPeak = (peak: number, durationMs: number) => ({ ...d, summary: { ...d.summary, inbound: { ...d.summary.inbound!, anger: { peak, peakAtMs: 3000, durationMs } } } });
  // Anger the top label for a while at a 45% peak (the other six labels share the rest): under the threshold.
  const rows: SummaryRow[] = [
    { name: 'peak-45.wav', href: 'a.html', status: 'ok', digest: withPeak(0.45, 1500) },
    { name: 'peak-90.wav', href: 'b.html', status: 'ok', digest: withPeak(0.9, 4000) },
    { name: 'peak-50.wav', href: 'c.html', status: 'ok', digest: withPeak(0.5, 250) },
    { name: 'calm.wav', href: 'd.html', status: 'ok', digest: withPeak(0.1, 0) },
  ];
  const anger = { above: 0.5, rule: 'soften-on-anger', policy: 'config/policy.json' };
  const html = renderSummaryPage(rows, 'calls', { anger });
  assert.match(html, /the caller was angry in 2 call\(s\) \(peak anger at or over 50%, the policy's threshold\)/);
  assert.match(html, /id="anger-threshold">[^<]*50%[^<]*<code>soften-on-anger<\/code> \(config\/policy\.json\)/);
  const peakCell = (name: string) => new RegExp(`${name.replace('.', '\\.')}<\\/a>.*?<td data-v="[\\d.]+" class="num"><span class="([^"]*)">`).exec(html)?.[1];
  assert.equal(peakCell('peak-45.wav'), '', 'a 45% peak is not marked angry');
  assert.equal(peakCell('peak-50.wav'), 'angry');
  // Another policy's threshold, said as such.
  const lower = renderSummaryPage(rows, 'calls', { anger: { above: 0.4, rule: 'early', policy: 'mine.json' } });
  assert.match(lower, /angry in 3 call\(s\) \(peak anger at or over 40%/);
  assert.match(lower, /<code>early<\/code> \(mine\.json\)/);
  // Without one: the shipped policy's, as config/policy.json says it.
  const shipped = JSON.parse(readFileSync(join(root, 'config/policy.json'), 'utf8')) as { rules: { name: string; when: { track?: string; emotion?: { label: string; above: number } } }[] };
  const rule = shipped.rules.find((r) => r.when.emotion?.label === 'angry')!;
  assert.match(renderSummaryPage(rows, 'calls'), new RegExp(`at or over ${Math.round(rule.when.emotion!.above * 100)}%[\\s\\S]*<code>${rule.name}</code>`));

  // The threshold a replay's reports use: the policy file's, else (no file, or no anger rule in it) the shipped one's.
  const { reportAngerThreshold } = await import('../src/replay/policy.js');
  const dir = mkdtempSync(join(tmpdir(), 'callmood-threshold-'));
  try {
    const own = join(dir, 'own.json');
    writeFileSync(own, JSON.stringify({ dryRun: true, rules: [
      { name: 'late', when: { track: 'inbound', emotion: { label: 'angry', above: 0.8 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 },
      { name: 'early', when: { track: 'inbound', emotion: { label: 'angry', above: 0.3 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 },
      { name: 'agent', when: { track: 'outbound', emotion: { label: 'angry', above: 0.1 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 },
    ] }));
    const none = join(dir, 'none.json');
    writeFileSync(none, JSON.stringify({ dryRun: true, rules: [{ name: 'keys', when: { track: 'inbound', dtmf: ['0'] }, do: { action: 'escalate', dial: '+15550100' }, once: true, cooldownMs: 0 }] }));
    assert.deepEqual(reportAngerThreshold(own), { above: 0.3, rule: 'early', policy: own });
    for (const file of [none, null]) {
      const t = reportAngerThreshold(file);
      assert.deepEqual([t.above, t.rule], [rule.when.emotion!.above, rule.name]);
      assert.match(t.policy, /config\/policy\.json$/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The emotion lines of each timeline panel, in drawing order: label, colour, width, dash pattern. */
function emotionLines(html: string): { label: string; stroke: string; width: number; dash: string }[][] {
  const svg = html.slice(html.indexOf('<figure id="timeline">'), html.indexOf('</figure>'));
  const panels: { label: string; stroke: string; width: number; dash: string }[][] = [];
  // Each panel is a group of its own.
  for (const part of svg.split(/role-scope concat_\d+_group"/).slice(1)) {
    panels.push(
      [...part.matchAll(/<path aria-label="[^"]*emotion: (\w+)[^"]*"[^>]*aria-roledescription="line mark"[^>]*>/g)].map((m) => ({
        label: m[1],
        stroke: /stroke="([^"]*)"/.exec(m[0])?.[1] ?? '',
        width: Number(/stroke-width="([^"]*)"/.exec(m[0])?.[1] ?? 1),
        dash: /stroke-dasharray="([^"]*)"/.exec(m[0])?.[1] ?? '',
      })),
    );
  }
  return panels;
}

test('timeline: anger stands out (thick, red, drawn over the rest), the others thin; no two emotions differ by colour alone, in the plot or the legend', async () => {
  const html = await renderCallReport({ name: 'call.wav', events: syntheticCall(), labels: LABELS });
  const [caller] = emotionLines(html);
  const byLabel = new Map(caller.map((l) => [l.label, l]));
  assert.deepEqual([...byLabel.keys()].sort(), LABELS, 'a line per emotion on the caller panel');
  const angry = byLabel.get('angry')!;
  assert.equal(angry.stroke, '#d62728');
  assert.equal(angry.dash, '', 'angry is solid');
  const quiet = caller.filter((l) => l.label !== 'angry' && l.label !== 'disgust');
  assert.ok(quiet.every((l) => angry.width >= 2.4 * l.width), `angry ${angry.width} px against ${quiet.map((l) => `${l.label} ${l.width}`)}`);
  assert.ok(byLabel.get('disgust')!.width < angry.width && byLabel.get('disgust')!.width > Math.max(...quiet.map((l) => l.width)), 'disgust, the other negative label, between');
  assert.equal(caller[caller.length - 1].label, 'angry', 'angry is drawn last, over the others');
  // In greyscale or to colour-blind eyes, width and dash still tell every line apart.
  const shapes = (xs: { width: number; dash: string }[]) => new Set(xs.map((x) => `${x.width}|${x.dash}`)).size;
  assert.equal(shapes([...byLabel.values()]), LABELS.length, `width+dash per line: ${caller.map((l) => `${l.label} ${l.width} ${l.dash}`).join('; ')}`);
  const legend = [...html.matchAll(/role-legend-symbol"[^>]*><path[^>]*>/g)].map((m) => ({ width: Number(/stroke-width="([^"]*)"/.exec(m[0])?.[1] ?? 1), dash: /stroke-dasharray="([^"]*)"/.exec(m[0])?.[1] ?? '' }));
  assert.equal(legend.length, LABELS.length, 'one legend, an entry per emotion');
  assert.equal(shapes(legend), LABELS.length, 'the legend shows each line\'s width and dash, not only its colour');
  // The policy's anger threshold across the caller's panel, labelled; the caption explains the styles.
  assert.match(html, /policy: angry ≥ 50%/);
  assert.match(html, /Angry: the thick solid red line/);
});

test('timeline: a window with no neighbour (a run of speech scored once) is drawn as a dot, a line through it draws nothing', async () => {
  const ev: CallmoodEvent[] = [{ ...base, type: 'call-start', timeMs: 0, accountSid: null, tracks: ['inbound'] }];
  ev.push(emotion('inbound', 1250, 0.9));
  // A pause, then a run of three windows: lines, no dots.
  for (const t of [5000, 5250, 5500]) ev.push(emotion('inbound', t, 0.2));
  const html = await renderCallReport({ name: 'short.wav', events: ev, labels: LABELS });
  const dots = [...html.matchAll(/<path aria-label="[^"]*?: ([\d.]+); probability: ([\d.e-]+); emotion: (\w+)" role="graphics-symbol" aria-roledescription="point"/g)].map((m) => [Number(m[1]), m[3]]);
  assert.deepEqual(dots.map(([, l]) => l).sort(), [...LABELS].sort(), `a dot per emotion for the lone window: ${JSON.stringify(dots)}`);
  assert.ok(dots.every(([t]) => t === 1.25), 'only the lone window gets dots');
  assert.match(html, /A dot: a window with no neighbour/);
});

// ---------------------------------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------------------------------

const artifacts = join(root, 'test/artifacts/replay');

/** The page's globals used inside page.evaluate (the tests compile without the DOM library). */
interface PageGlobals {
  document: {
    documentElement: { clientWidth: number; scrollWidth: number };
    getElementById(id: string): { getBoundingClientRect(): { right: number } } | null;
    elementFromPoint(x: number, y: number): unknown;
  };
  scrollTo(x: number, y: number): void;
}
let folder: string;

before(() => {
  folder = mkdtempSync(join(tmpdir(), 'callmood-report-'));
});
after(() => rmSync(folder, { recursive: true, force: true }));

test('reports render in headless Chromium: the timeline SVG is drawn, the table sorts on click, no console error, no request', { timeout: 240_000 }, async (t) => {
  // Fails, saying what to install, where there is no chromium: a browser test that skips checks nothing.
  const chromium = findChromium();
  mkdirSync(artifacts, { recursive: true });
  // Real calls through the real replay: an angry caller with a neutral agent under a policy that acts, a neutral call, a corrupt file.
  const angry = await phoneClip('YAF_back_angry.flac');
  writeCall(folder, 'angry caller.wav', [angry, await phoneClip('YAF_back_neutral.flac', angry.length / 8000)]);
  copyFileSync(join(AUDIO, '03-01-01-01-01-01-21.flac'), join(folder, 'calm.flac'));
  copyFileSync(join(root, 'test/fixtures/formats/truncated.flac'), join(folder, 'broken.flac'));
  const policy = join(folder, 'policy.json');
  writeFileSync(policy, JSON.stringify({ dryRun: true, rules: [{ name: 'soften', when: { track: 'inbound', emotion: { label: 'angry', above: 0.5, forMs: 250 } }, do: { action: 'soften_offer' }, once: true, cooldownMs: 0 }] }));
  const names = ['angry caller.wav', 'broken.flac', 'calm.flac'];
  const jobs: ReplayJob[] = names.map((name, i) => ({ path: join(folder, name), name, reportPath: join(artifacts, `call-${i}.html`), backHref: 'index.html' }));
  const outcomes = await runReplays(jobs, { modelDir: 'models/default', replay: {}, policyFile: policy, keepEvents: false }, { workers: 1 });
  const rows: SummaryRow[] = outcomes.map((o, i) => (o.ok ? { name: o.name, href: `call-${i}.html`, status: 'ok', digest: o.digest } : { name: o.name, href: null, status: 'failed', error: o.error }));
  writeFileSync(join(artifacts, 'index.html'), renderSummaryPage(rows, 'report test'));
  assert.equal(outcomes.filter((o) => o.ok && o.digest.actions.length > 0).length, 1, 'the policy acted on the angry call');
  t.diagnostic(`report sizes: ${jobs.filter((j) => existsSync(j.reportPath!)).map((j) => `${statSync(j.reportPath!).size} B`).join(', ')}`);

  const { default: puppeteer } = await import('puppeteer-core');
  const profile = mkdtempSync(join(tmpdir(), 'callmood-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${profile}`],
    timeout: 60_000,
  });
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`));
    page.on('request', (r) => {
      if (!r.url().startsWith('file://')) problems.push(`request to ${r.url()}`);
    });
    await page.setViewport({ width: 1280, height: 900 });

    // The angry call's report.
    await page.goto(pathToFileURL(jobs[0].reportPath!).href, { waitUntil: 'load' });
    const plot = await page.$eval('#timeline svg', (svg) => {
      const box = svg.getBoundingClientRect();
      return {
        width: box.width,
        height: box.height,
        lines: [...svg.querySelectorAll('path')].filter((p) => p.getAttribute('stroke') === '#d62728').length,
        texts: [...svg.querySelectorAll('text')].map((x) => x.textContent),
      };
    });
    assert.ok(plot.width > 600 && plot.height > 300, `the SVG is drawn ${plot.width} × ${plot.height}`);
    assert.ok(plot.lines >= 2, 'an angry line per track');
    assert.ok(plot.texts.includes('caller (inbound)') && plot.texts.includes('agent (outbound)'));
    assert.ok(plot.texts.includes('soften_offer 1'), `the decision on the timeline: ${plot.texts.join('|')}`);
    await page.screenshot({ path: join(artifacts, 'call-report.png'), fullPage: true });

    // The summary page: sort by duration, then reverse; then follow a link.
    await page.goto(pathToFileURL(join(artifacts, 'index.html')).href, { waitUntil: 'load' });
    const column = (i: number) => page.$$eval(`#calls tbody tr`, (trs, i) => trs.map((tr) => (tr as unknown as { cells: { getAttribute(n: string): string | null }[] }).cells[i as number].getAttribute('data-v')), i);
    const heads = await page.$$eval('#calls thead th', (ths) => ths.map((th) => th.textContent));
    const dur = heads.indexOf('duration');
    const callCol = heads.indexOf('call');
    assert.deepEqual(await column(callCol), names, 'rows come in file order');
    await page.click(`#calls thead th:nth-child(${dur + 1})`);
    const up = (await column(dur)).map(Number);
    assert.deepEqual(up, [...up].sort((a, b) => a - b), 'ascending after one click');
    assert.equal(await page.$eval(`#calls thead th:nth-child(${dur + 1})`, (th) => th.getAttribute('aria-sort')), 'ascending');
    assert.equal((await column(callCol))[0], 'broken.flac', 'the failed file (no duration) first');
    await page.click(`#calls thead th:nth-child(${dur + 1})`);
    const down = (await column(dur)).map(Number);
    assert.deepEqual(down, [...up].reverse(), 'descending after the second click');
    await page.click(`#calls thead th:nth-child(${callCol + 1})`);
    assert.deepEqual(await column(callCol), [...names].sort((a, b) => a.localeCompare(b)));
    assert.match(await page.$eval('#calls tbody', (b) => b.textContent ?? ''), /CALLMOOD_ERR_CORRUPT_FILE/);
    await page.screenshot({ path: join(artifacts, 'summary.png'), fullPage: true });
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#calls tbody a')]);
    assert.match(page.url(), /call-\d\.html$/);
    assert.equal(await page.$$eval('#timeline svg', (s) => s.length), 1);

    // At 1100 and 1600 px: the plot fits the window, its legend inside it and not covered; nothing scrolls sideways.
    const shots: string[] = [];
    for (const width of [1100, 1600]) {
      await page.setViewport({ width, height: 900 });
      await page.goto(pathToFileURL(jobs[0].reportPath!).href, { waitUntil: 'load' });
      const fit = await page.$eval('#timeline svg', (svg) => {
        const legend = svg.querySelector('.role-legend')!;
        legend.scrollIntoView({ block: 'center' });
        const l = legend.getBoundingClientRect();
        const doc = (globalThis as unknown as PageGlobals).document;
        const top = doc.elementFromPoint(l.left + l.width / 2, l.top + l.height / 2);
        const box = svg.getBoundingClientRect();
        // What the figure shows: a box that clips or scrolls its content hides what lies past its edge.
        const fig = svg.closest('figure')!.getBoundingClientRect();
        return {
          // The window without its scroll bar.
          inner: Math.min(doc.documentElement.clientWidth, fig.right),
          scroll: doc.documentElement.scrollWidth,
          svg: { left: box.left, right: box.right, width: box.width },
          legend: { left: l.left, right: l.right, top: l.top, bottom: l.bottom },
          legendShown: top !== null && svg.contains(top as typeof svg),
          legendLabels: [...legend.querySelectorAll('.role-legend-label text')].map((x) => x.textContent),
        };
      });
      const where = `${width} px: ${JSON.stringify(fit)}`;
      assert.ok(fit.scroll <= width, `no sideways scrolling at ${where}`);
      assert.ok(fit.svg.left >= 0 && fit.svg.right <= fit.inner, `the plot fits the window at ${where}`);
      assert.ok(fit.legend.left >= 0 && fit.legend.right <= fit.inner && fit.legend.top >= 0 && fit.legend.bottom <= 900, `the legend is inside the window at ${where}`);
      assert.ok(fit.legendShown, `nothing covers the legend at ${where}`);
      assert.deepEqual(fit.legendLabels, ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']);
      // The plot grows with the window (up to the page's width), rather than keeping one size.
      if (width === 1600) assert.ok(fit.svg.width > 1100, `the plot uses a wide window: ${where}`);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).scrollTo(0, 0));
      await page.screenshot({ path: join(artifacts, `call-report-${width}.png`), fullPage: true });
      await page.goto(pathToFileURL(join(artifacts, 'index.html')).href, { waitUntil: 'load' });
      const index = await page.evaluate(() => {
        const doc = (globalThis as unknown as PageGlobals).document;
        return { inner: doc.documentElement.clientWidth, scroll: doc.documentElement.scrollWidth, table: doc.getElementById('calls')!.getBoundingClientRect().right };
      });
      assert.ok(index.scroll <= index.inner && index.table <= index.inner, `the summary table fits at ${width} px: ${JSON.stringify(index)}`);
      await page.screenshot({ path: join(artifacts, `summary-${width}.png`), fullPage: true });
      shots.push(`call-report-${width}.png`, `summary-${width}.png`);
    }
    assert.deepEqual(problems, [], 'no console errors or warnings, no requests');
    for (const png of ['call-report.png', 'summary.png', ...shots]) {
      const bytes = readFileSync(join(artifacts, png));
      assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], `${png} is a PNG`);
      t.diagnostic(`screenshot ${join('test/artifacts/replay', png)}: ${bytes.length} bytes`);
    }
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

test('where chromium is missing the browser tests fail, saying how to install it; the tests never install it themselves', () => {
  const empty = mkdtempSync(join(tmpdir(), 'callmood-no-chromium-'));
  const stubs = mkdtempSync(join(tmpdir(), 'callmood-chromium-stub-'));
  try {
    assert.throws(() => findChromium({ PATH: empty }), (e: Error) => /the browser tests need chromium, and there is none on PATH; install Debian's chromium once, as root: apt-get update && apt-get install -y chromium \(\.ci\/run does this on CI\)/.test(e.message));
    assert.throws(() => findChromium({ PATH: empty, CALLMOOD_CHROMIUM: join(empty, 'chrome') }), /CALLMOOD_CHROMIUM is ".*chrome", which is not an executable file/);
    // Found on PATH or named by CALLMOOD_CHROMIUM; a file that is not executable does not count.
    const stub = join(stubs, 'chromium');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n');
    assert.throws(() => findChromium({ PATH: stubs }), /none on PATH/);
    chmodSync(stub, 0o755);
    assert.equal(findChromium({ PATH: `${empty}:${stubs}` }), stub);
    assert.equal(findChromium({ PATH: empty, CALLMOOD_CHROMIUM: stub }), stub);
    // The developer's install helper still parses, and with a chromium on PATH it leaves the machine alone.
    execFileSync('bash', ['-n', join(root, 'scripts/setup-chromium.sh')]);
    const out = execFileSync('bash', [join(root, 'scripts/setup-chromium.sh')], { encoding: 'utf8', env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` } });
    assert.equal(out.trim(), `chromium is installed: ${stub}`);
  } finally {
    rmSync(empty, { recursive: true, force: true });
    rmSync(stubs, { recursive: true, force: true });
  }
});
