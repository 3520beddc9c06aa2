/**
 * A call's emotion timeline as one SVG: per track a panel of each label's probability per scored window over call
 * time, speech regions shaded, and the dialog policy's decisions as dashed rules labelled with the action.
 *
 * Drawn with Vega-Lite and rendered to SVG here, in Node, by Vega (as src/report/plots.ts does), then inlined in the
 * report. Inlining the SVG rather than the Vega runtime keeps a report small (a 10-minute dual-channel call's report
 * is about 310 KB; vega.min.js and vega-lite.min.js alone are 767 KB, before any data) and makes it readable with
 * scripts off, in any browser or mail client, offline; what is drawn is exactly what the tests checked.
 */
import type { TopLevelSpec } from 'vega-lite';
import { renderSvg } from './plots.js';
import type { CallmoodEvent, Track } from '../stream/events.js';

/** Colours per label: anger red and drawn thicker, neutral grey; other labels get the next free colour. */
export const LABEL_COLORS: Readonly<Record<string, string>> = Object.freeze({
  angry: '#d62728',
  disgust: '#8c564b',
  fear: '#9467bd',
  happy: '#2ca02c',
  neutral: '#9e9e9e',
  sad: '#1f77b4',
  surprise: '#ff7f0e',
});
const SPARE = ['#17becf', '#bcbd22', '#e377c2', '#7f7f7f', '#393b79'];

/** More windows than this per track are averaged in consecutive groups, so long calls stay light to draw. */
export const MAX_POINTS_PER_TRACK = 1500;

export const TRACK_TITLES: Readonly<Record<Track, string>> = Object.freeze({ inbound: 'caller (inbound)', outbound: 'agent (outbound)' });

/** What the timeline needs. */
export interface TimelineInput {
  events: readonly CallmoodEvent[];
  /** The model's labels, in its order. */
  labels: readonly string[];
  /** Tracks to draw, in order. */
  tracks: readonly Track[];
  durationMs: number;
  /** Width of the plot area, px. */
  width?: number;
}

interface Row {
  t: number;
  label: string;
  /** null breaks the line: between runs of overlapping windows, so no line is drawn across a silence. */
  p: number | null;
  w: number;
}

function windowRows(events: readonly CallmoodEvent[], track: Track, labels: readonly string[]): { rows: Row[]; grouped: number } {
  const wins = events.filter((e) => e.type === 'emotion' && e.track === track) as Extract<CallmoodEvent, { type: 'emotion' }>[];
  const k = Math.max(1, Math.ceil(wins.length / MAX_POINTS_PER_TRACK));
  const rows: Row[] = [];
  let lastEnd = -Infinity;
  const width = (label: string) => (label === 'angry' ? 2.6 : 1.3);
  for (let i = 0; i < wins.length; i += k) {
    const group = wins.slice(i, i + k);
    // A window that starts after the previous one ended follows a pause: the lines break there.
    if (i > 0 && group[0].windowStartMs > lastEnd) {
      for (const label of labels) rows.push({ t: (lastEnd + group[0].windowStartMs) / 2000, label, p: null, w: width(label) });
    }
    lastEnd = group[group.length - 1].timeMs;
    const t = lastEnd / 1000;
    for (const label of labels) {
      let s = 0;
      for (const w of group) s += w.probs[label] ?? 0;
      rows.push({ t, label, p: s / group.length, w: width(label) });
    }
  }
  return { rows, grouped: k };
}

/**
 * A track's runs of speech, s. A speech-end carries its run's length, so each run is [end − duration, end]. Its
 * speech-start cannot mark it: after a pause of a single frame the next run's speech-start (its first frame's start)
 * comes before this run's speech-end (its last frame's end, a frame length later), so in call-time order the starts
 * of two runs precede the first run's end. A speech-start left open at the end is a run cut by the end of the call.
 * Overlapping runs are merged.
 */
export function speechRegions(events: readonly CallmoodEvent[], track: Track, durationMs: number): { s: number; e: number }[] {
  const out: { s: number; e: number }[] = [];
  // Runs follow one another, so a speech-end ends the earliest run still open.
  const open: number[] = [];
  for (const e of events) {
    if (e.type === 'speech-start' && e.track === track) open.push(e.timeMs);
    else if (e.type === 'speech-end' && e.track === track) {
      open.shift();
      out.push({ s: (e.timeMs - e.durationMs) / 1000, e: e.timeMs / 1000 });
    }
  }
  for (const s of open) out.push({ s: s / 1000, e: durationMs / 1000 });
  out.sort((a, b) => a.s - b.s);
  // Runs a frame apart overlap by a few ms: one region, not two shades stacked into a stripe.
  const merged: { s: number; e: number }[] = [];
  for (const r of out) {
    const last = merged[merged.length - 1];
    if (last && r.s <= last.e) last.e = Math.max(last.e, r.e);
    else merged.push({ ...r });
  }
  return merged;
}

/** The SVG and what was simplified to draw it. */
export interface Timeline {
  svg: string;
  /** Per track: windows averaged per point (1 = every window drawn). */
  grouped: Partial<Record<Track, number>>;
}

/** Renders the timeline (see the module comment). */
export async function timelineSvg(input: TimelineInput): Promise<Timeline> {
  const width = input.width ?? 900;
  const durS = Math.max(input.durationMs / 1000, 0.001);
  // Long calls read better in minutes.
  const minutes = durS >= 120;
  let spare = 0;
  const colors = input.labels.map((l) => LABEL_COLORS[l] ?? SPARE[spare++ % SPARE.length]);
  const grouped: Partial<Record<Track, number>> = {};
  const actions = input.events.filter((e) => e.type === 'action') as Extract<CallmoodEvent, { type: 'action' }>[];
  const panels = input.tracks.map((track, i) => {
    const { rows, grouped: k } = windowRows(input.events, track, input.labels);
    grouped[track] = k;
    const mine = actions
      .filter((a) => a.track === track || a.track === null)
      .map((a) => ({ t: a.timeMs / 1000, text: a.action === 'soften_offer' && a.level !== null ? `soften_offer ${a.level}` : a.action }));
    const x = {
      field: 't',
      type: 'quantitative' as const,
      title: i === input.tracks.length - 1 ? (minutes ? 'call time (m:ss)' : 'call time (s)') : null,
      scale: { domain: [0, durS] as [number, number], nice: false },
      ...(minutes ? { axis: { labelExpr: "floor(datum.value / 60) + ':' + (datum.value % 60 < 10 ? '0' : '') + floor(datum.value % 60)", tickMinStep: 1 } } : {}),
    };
    return {
      width,
      height: 170,
      title: { text: TRACK_TITLES[track], fontSize: 13, anchor: 'start' as const },
      layer: [
        {
          data: { values: speechRegions(input.events, track, input.durationMs) },
          mark: { type: 'rect' as const, color: '#9ecae1', opacity: 0.28 },
          encoding: { x: { ...x, field: 's' }, x2: { field: 'e' } },
        },
        {
          data: { values: rows },
          // Vega-Lite's default for lines breaks the path at a null: no line across a silence.
          mark: { type: 'line' as const, interpolate: 'linear' as const, strokeJoin: 'round' as const, invalid: 'break-paths-show-path-domains' as const },
          encoding: {
            x,
            y: { field: 'p', type: 'quantitative' as const, title: 'probability', scale: { domain: [0, 1] as [number, number] } },
            color: {
              field: 'label',
              type: 'nominal' as const,
              title: 'emotion',
              scale: { domain: [...input.labels], range: colors },
              legend: { orient: 'right' as const },
            },
            strokeWidth: { field: 'w', type: 'quantitative' as const, scale: null, legend: null },
          },
        },
        ...(mine.length > 0
          ? [
              {
                data: { values: mine },
                mark: { type: 'rule' as const, color: '#333', strokeDash: [5, 3], strokeWidth: 1.5 },
                encoding: { x },
              },
              {
                data: { values: mine },
                mark: { type: 'text' as const, align: 'left' as const, baseline: 'top' as const, dx: 3, y: 2, fontSize: 10, color: '#333' },
                encoding: { x, text: { field: 'text' } },
              },
            ]
          : []),
      ],
    };
  });
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    config: {
      font: 'sans-serif',
      background: 'white',
      view: { stroke: '#ccc' },
      axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
      legend: { labelFontSize: 11, titleFontSize: 12 },
    },
    vconcat: panels,
    resolve: { scale: { color: 'shared' } },
  } as TopLevelSpec;
  return { svg: await renderSvg(spec), grouped };
}
