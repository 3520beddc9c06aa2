/**
 * One call's report: a single self-contained HTML file (see html.ts) with the emotion timeline per track (timeline.ts),
 * speech regions, the dialog policy's decisions where they happened, and a summary per track: share of speech per
 * emotion, peak anger and how long the caller was angry.
 */
import type { CallmoodEvent, Track, TrackSummary } from '../stream/events.js';
import { clock, esc, page, pct } from './html.js';
import { digestEvents, type CallDigest } from './digest.js';
import { LABEL_COLORS, TRACK_TITLES, timelineSvg } from './timeline.js';
import { SHIPPED_ANGER_THRESHOLD, type AngerThreshold } from '../policy/anger.js';

/** What a call report shows besides the events. */
export interface CallReportInput {
  /** The recording's name (path relative to the replayed folder, or its file name). */
  name: string;
  events: readonly CallmoodEvent[];
  /** The model's labels, in its order. */
  labels: readonly string[];
  /** Lines for the header table, label → value (e.g. recording format, channels, model); escaped here. */
  meta?: Record<string, string>;
  /** A link back to the summary page, relative to the report. */
  backHref?: string;
  /** When the caller counts as angry: the policy's own anger threshold (drawn on the timeline); default the shipped policy's. */
  anger?: AngerThreshold;
}

function shareBars(s: TrackSummary, labels: readonly string[]): string {
  return labels
    .map((l) => {
      const v = s.emotionShare[l] ?? 0;
      const w = Math.round(v * 160);
      return `<tr><td>${esc(l)}</td><td class="num">${pct(v, 1)}</td><td><span class="bar" style="width:${w}px;background:${LABEL_COLORS[l] ?? '#888'}"></span></td></tr>`;
    })
    .join('');
}

function trackSection(track: Track, d: CallDigest, labels: readonly string[], anger: AngerThreshold): string {
  const s = d.summary[track];
  if (!s) return `<h3>${esc(TRACK_TITLES[track])}</h3><p class="note">No summary: the call did not end.</p>`;
  const eps = d.episodes.filter((e) => e.track === track);
  const longest = eps.reduce((m, e) => Math.max(m, e.endMs - e.startMs), 0);
  return `<h3>${esc(TRACK_TITLES[track])}</h3>
<table class="meta" data-track="${track}">
<tr><th>audio</th><td>${clock(s.audioMs)}</td></tr>
<tr><th>speech</th><td>${clock(s.speechMs)} (${pct(s.audioMs > 0 ? s.speechMs / s.audioMs : 0)} of the audio)</td></tr>
<tr><th>windows scored</th><td>${s.windows}</td></tr>
<tr><th>peak anger</th><td class="${s.anger.peak >= anger.above ? 'angry' : ''}" data-field="anger-peak">${s.anger.peakAtMs === null ? 'none' : `${pct(s.anger.peak, 1)} at ${clock(s.anger.peakAtMs)}`}</td></tr>
<tr><th>angry speech</th><td data-field="anger-duration">${clock(s.anger.durationMs)}${eps.length > 0 ? ` in ${eps.length} episode(s), the longest ${clock(longest)}` : ''}</td></tr>
${eps.length > 0 ? `<tr><th>anger episodes</th><td>${eps.map((e) => `${clock(e.startMs)}–${clock(e.endMs)} (peak ${pct(e.peak)})`).join(', ')}</td></tr>` : ''}
</table>
<table class="share"><tr><th>emotion</th><th class="num">share of speech</th><th></th></tr>${shareBars(s, labels)}</table>`;
}

/** Renders the report (see the module comment). */
export async function renderCallReport(input: CallReportInput): Promise<string> {
  const d = digestEvents(input.events);
  const anger = input.anger ?? SHIPPED_ANGER_THRESHOLD;
  const tracks: Track[] = d.tracks.length > 0 ? d.tracks : (['inbound'] as Track[]);
  const { svg, grouped } = await timelineSvg({ events: input.events, labels: input.labels, tracks, durationMs: d.durationMs, angerThreshold: tracks.includes('inbound') ? anger.above : undefined });
  const averaged = Object.entries(grouped).filter(([, k]) => (k ?? 1) > 1);
  const meta = { callSid: d.callSid, duration: clock(d.durationMs), ...input.meta };
  const actions =
    d.actions.length === 0
      ? '<p class="note" id="no-actions">The dialog policy took no action on this call (or none was given: replay with <code>--policy FILE</code>).</p>'
      : `<table id="actions"><tr><th class="num">time</th><th>track</th><th>action</th><th>rule</th><th>reason</th><th>outcome</th></tr>${d.actions
          .map(
            (a) =>
              `<tr><td class="num">${clock(a.timeMs)}</td><td>${esc(a.track ?? 'call')}</td><td>${esc(a.action)}${a.level !== null ? ` ${a.level}` : ''}</td><td>${esc(a.rule)}</td><td>${esc(a.reason)}</td><td>${esc(a.outcome ?? (a.dryRun ? 'dry run' : '–'))}</td></tr>`,
          )
          .join('')}</table>`;
  const errors =
    d.errors.length === 0
      ? ''
      : `<h2>Errors</h2><table id="errors"><tr><th class="num">time</th><th>code</th><th>message</th></tr>${d.errors
          .map((e) => `<tr><td class="num">${clock(e.timeMs)}</td><td>${esc(e.code)}</td><td>${esc(e.message)}</td></tr>`)
          .join('')}</table>`;
  const body = `${input.backHref ? `<p><a href="${esc(input.backHref)}">← all calls</a></p>` : ''}
<h1>${esc(input.name)}</h1>
<p class="sub">Emotion of a replayed call, window by window, through callmood's live emotion stream.</p>
<table class="meta">${Object.entries(meta)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('')}</table>
<h2>Timeline</h2>
<figure id="timeline">${svg}
<figcaption>Probability of each emotion per scored window (a window every hop while there is speech; plotted at the end of its audio).
Angry: the thick solid red line, drawn over the others; disgust: dashed brown; the other emotions thin, each with its own dash. A dot: a window with no neighbour to draw a line to (a short run of speech).
${tracks.includes('inbound') ? `Dotted line across the caller's panel: the dialog policy's anger threshold (${pct(anger.above)}, rule <code>${esc(anger.rule)}</code>). ` : ''}Shaded: speech. Long-dashed vertical lines: the dialog policy's decisions.${averaged.length > 0 ? ` Long call: ${averaged.map(([t, k]) => `${esc(TRACK_TITLES[t as Track])} every ${k} windows averaged per point`).join('; ')}.` : ''}</figcaption>
</figure>
<h2>Summary</h2>
${tracks.map((t) => trackSection(t, d, input.labels, anger)).join('\n')}
<h2>Policy decisions</h2>
${actions}
${errors}
<p class="note">Times are call time (m:ss.s from the start of the recording). Replay never acts on a live call: decisions are reported, not carried out.</p>`;
  return page(`callmood: ${input.name}`, body);
}
