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

/**
 * How each label is drawn. A supervisor looks for anger first: angry is a thick red line drawn over the others;
 * disgust, the other label the shipped policy counts as negative, a medium dashed line; the rest thin and muted. No
 * label is told by its colour alone: width and dash pattern differ too (and the legend shows them), so the plot
 * reads the same to colour-blind eyes and in greyscale print.
 */
export interface LabelStyle {
  color: string;
  /** Stroke width, px. */
  width: number;
  /** SVG dash pattern; empty = solid. */
  dash: number[];
}

export const LABEL_STYLES: Readonly<Record<string, Readonly<LabelStyle>>> = Object.freeze({
  angry: { color: '#d62728', width: 3.2, dash: [] },
  disgust: { color: '#8c564b', width: 1.8, dash: [7, 3] },
  fear: { color: '#9a86c2', width: 1.3, dash: [2, 2] },
  happy: { color: '#6aa86a', width: 1.3, dash: [10, 3, 2, 3] },
  neutral: { color: '#a8a8a8', width: 1.3, dash: [] },
  sad: { color: '#6b93c0', width: 1.3, dash: [4, 4] },
  surprise: { color: '#d9a05b', width: 1.3, dash: [12, 4] },
});
const SPARE = ['#17becf', '#bcbd22', '#e377c2', '#7f7f7f', '#393b79'];
const SPARE_DASH = [[1, 3], [6, 2, 1, 2], [3, 6], [9, 2], [2, 5]];

/** Colours per label (LABEL_STYLES' colours), for the share bars beside the plot. */
export const LABEL_COLORS: Readonly<Record<string, string>> = Object.freeze(Object.fromEntries(Object.entries(LABEL_STYLES).map(([l, st]) => [l, st.color])));

/** The label the plot draws over the others. */
const STRESSED = 'angry';

/** Styles for the model's labels: LABEL_STYLES, then spare ones for labels it does not know. */
export function labelStyles(labels: readonly string[]): LabelStyle[] {
  let spare = 0;
  return labels.map((l) => {
    const known = LABEL_STYLES[l];
    if (known) return { ...known, dash: [...known.dash] };
    const i = spare++;
    return { color: SPARE[i % SPARE.length], width: 1.3, dash: SPARE_DASH[i % SPARE_DASH.length] };
  });
}

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
  /** Width of the plot area, px, before the SVG is scaled to its container. */
  width?: number;
  /** The policy's anger threshold, drawn across the caller's panel; none when absent. */
  angerThreshold?: number;
}

interface Row {
  t: number;
  label: string;
  /** null breaks the line: between runs of overlapping windows, so no line is drawn across a silence. */
  p: number | null;
}

function windowRows(events: readonly CallmoodEvent[], track: Track, labels: readonly string[]): { rows: Row[]; grouped: number } {
  const wins = events.filter((e) => e.type === 'emotion' && e.track === track) as Extract<CallmoodEvent, { type: 'emotion' }>[];
  const k = Math.max(1, Math.ceil(wins.length / MAX_POINTS_PER_TRACK));
  const rows: Row[] = [];
  let lastEnd = -Infinity;
  for (let i = 0; i < wins.length; i += k) {
    const group = wins.slice(i, i + k);
    // A window that starts after the previous one ended follows a pause: the lines break there.
    if (i > 0 && group[0].windowStartMs > lastEnd) {
      for (const label of labels) rows.push({ t: (lastEnd + group[0].windowStartMs) / 2000, label, p: null });
    }
    lastEnd = group[group.length - 1].timeMs;
    const t = lastEnd / 1000;
    for (const label of labels) {
      let s = 0;
      for (const w of group) s += w.probs[label] ?? 0;
      rows.push({ t, label, p: s / group.length });
    }
  }
  return { rows, grouped: k };
}

/** Rows with no neighbour on their line (a run of speech with one scored window): a line through one point draws nothing. */
function isolatedRows(rows: readonly Row[], labels: readonly string[]): Row[] {
  const out: Row[] = [];
  for (const label of labels) {
    const line = rows.filter((r) => r.label === label);
    line.forEach((r, i) => {
      if (r.p !== null && (line[i - 1]?.p ?? null) === null && (line[i + 1]?.p ?? null) === null) out.push(r);
    });
  }
  return out;
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

/**
 * Makes a rendered SVG fit its container: width 100%, the height following from the viewBox (which keeps Vega's
 * drawing size), so neither the legend nor the right end of the plot is cut off in a narrow window, and a wide one
 * gets a larger plot. The drawn size stays as `data-width`/`data-height`.
 */
export function fitToContainer(svg: string): string {
  return svg.replace(/^<svg\b([^>]*?)\swidth="([\d.]+)"\sheight="([\d.]+)"/, (_m, attrs: string, w: string, h: string) => {
    return `<svg${attrs} width="100%" data-width="${w}" data-height="${h}" preserveAspectRatio="xMinYMin meet" style="display:block;height:auto;max-width:100%"`;
  });
}

/** Renders the timeline (see the module comment). */
export async function timelineSvg(input: TimelineInput): Promise<Timeline> {
  const width = input.width ?? 960;
  const durS = Math.max(input.durationMs / 1000, 0.001);
  // Long calls read better in minutes.
  const minutes = durS >= 120;
  const styles = labelStyles(input.labels);
  const grouped: Partial<Record<Track, number>> = {};
  const actions = input.events.filter((e) => e.type === 'action') as Extract<CallmoodEvent, { type: 'action' }>[];
  // One scale per channel (colour, width, dash) over the same labels: Vega-Lite merges them into one legend whose
  // symbols show all three.
  const scale = <T>(range: T[]) => ({ domain: [...input.labels], range });
  const lineEncoding = {
    color: { field: 'label', type: 'nominal' as const, sort: [...input.labels], title: 'emotion', scale: scale(styles.map((x) => x.color)), legend: { orient: 'top' as const, direction: 'horizontal' as const, symbolType: 'stroke', symbolSize: 400, labelFontSize: 12, columnPadding: 16 } },
    strokeWidth: { field: 'label', type: 'nominal' as const, sort: [...input.labels], title: 'emotion', scale: { type: 'ordinal' as const, ...scale(styles.map((x) => x.width)) }, legend: { orient: 'top' as const } },
    strokeDash: { field: 'label', type: 'nominal' as const, sort: [...input.labels], title: 'emotion', scale: scale(styles.map((x) => x.dash)), legend: { orient: 'top' as const } },
  };
  const panels = input.tracks.map((track, i) => {
    const { rows, grouped: k } = windowRows(input.events, track, input.labels);
    const alone = isolatedRows(rows, input.labels);
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
    const y = { field: 'p', type: 'quantitative' as const, title: 'probability', scale: { domain: [0, 1] as [number, number] } };
    const lines = (values: Row[]) => ({
      data: { values },
      // Vega-Lite's default for lines breaks the path at a null: no line across a silence.
      mark: { type: 'line' as const, interpolate: 'linear' as const, strokeJoin: 'round' as const, strokeCap: 'butt' as const, invalid: 'break-paths-show-path-domains' as const },
      encoding: { x, y, ...lineEncoding },
    });
    // The policy watches the caller: its threshold is drawn on the caller's panel only.
    const threshold = track === 'inbound' && input.angerThreshold !== undefined ? [{ p: input.angerThreshold, text: `policy: angry ≥ ${Math.round(input.angerThreshold * 100)}%` }] : [];
    return {
      width,
      height: 180,
      title: { text: TRACK_TITLES[track], fontSize: 13, anchor: 'start' as const },
      layer: [
        {
          data: { values: speechRegions(input.events, track, input.durationMs) },
          mark: { type: 'rect' as const, color: '#9ecae1', opacity: 0.28 },
          encoding: { x: { ...x, field: 's' }, x2: { field: 'e' } },
        },
        ...(threshold.length > 0
          ? [
              {
                data: { values: threshold },
                mark: { type: 'rule' as const, color: '#7f1d1d', strokeDash: [1, 3], strokeWidth: 1.2, opacity: 0.8 },
                encoding: { y: { field: 'p', type: 'quantitative' as const } },
              },
            ]
          : []),
        // Angry last, so it is drawn over the others.
        lines(rows.filter((r) => r.label !== STRESSED)),
        lines(rows.filter((r) => r.label === STRESSED)),
        ...(alone.length > 0
          ? [
              {
                data: { values: alone },
                // Angry's dot larger, as its line is thicker.
                mark: { type: 'point' as const, filled: true, opacity: 1 },
                encoding: {
                  x,
                  y,
                  color: lineEncoding.color,
                  size: { condition: { test: `datum.label === '${STRESSED}'`, value: 80 }, value: 22 },
                },
              },
            ]
          : []),
        // The threshold's label over the lines, on a white halo, so that no line hides it.
        ...(threshold.length > 0
          ? (['white', '#7f1d1d'] as const).map((color) => ({
              data: { values: threshold },
              mark: {
                type: 'text' as const, align: 'right' as const, baseline: 'bottom' as const, x: width - 4, dy: -2, fontSize: 10, color,
                ...(color === 'white' ? { stroke: 'white', strokeWidth: 3, strokeJoin: 'round' as const } : {}),
              },
              encoding: { y: { field: 'p', type: 'quantitative' as const }, text: { field: 'text' } },
            }))
          : []),
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
      legend: { labelFontSize: 12, titleFontSize: 12 },
    },
    vconcat: panels,
    resolve: { scale: { color: 'shared', strokeWidth: 'shared', strokeDash: 'shared' } },
  } as TopLevelSpec;
  return { svg: fitToContainer(await renderSvg(spec)), grouped };
}
