/**
 * The page across the calls of a replayed folder: which calls had anger, when and for how long, what the policy
 * decided, and which files could not be replayed and why. One sortable table (a few lines of inline script: click a
 * heading to sort by it, again to reverse), each call linked to its report. Self-contained like every report.
 */
import { clock, esc, page, pct, relHref } from './html.js';
import type { CallDigest } from './digest.js';
import { SHIPPED_ANGER_THRESHOLD, type AngerThreshold } from '../policy/anger.js';

/** One file of the folder. */
export interface SummaryRow {
  /** Path relative to the replayed folder. */
  name: string;
  /** The call's report, relative to the summary page; null when there is none. */
  href: string | null;
  status: 'ok' | 'failed';
  /** Why it failed: the CallmoodError's code and message. */
  error?: { code: string; message: string };
  digest?: CallDigest;
  /** Audio length of the recording, s (also for a file that failed after decoding). */
  durationS?: number;
}

/** Heading, sort type, and cell (sort value + HTML) of each column. */
type Column = [string, 'num' | 'text' | 'when', (r: SummaryRow) => [string | number, string]];

const NONE: [number, string] = [-1, '–'];

function columns(anger: AngerThreshold): Column[] {
  return [
  ['call', 'text', (r) => [r.name, r.href ? `<a href="${relHref(r.href)}">${esc(r.name)}</a>` : esc(r.name)]],
  ['status', 'text', (r) => [
    r.status,
    r.status === 'ok' ? '<span class="ok">ok</span>' : `<span class="failed">failed</span>${r.error ? `<div class="why"><code>${esc(r.error.code)}</code> ${esc(r.error.message)}</div>` : ''}`,
  ]],
  ['duration', 'num', (r) => (r.digest ? [r.digest.durationMs, clock(r.digest.durationMs)] : NONE)],
  ['caller speech', 'num', (r) => (r.digest?.summary.inbound ? [r.digest.summary.inbound.speechMs, clock(r.digest.summary.inbound.speechMs)] : NONE)],
  ['angry share', 'num', (r) => {
    const s = r.digest?.summary.inbound;
    return s ? [s.emotionShare.angry ?? 0, pct(s.emotionShare.angry ?? 0)] : NONE;
  }],
  ['peak anger', 'num', (r) => {
    const s = r.digest?.summary.inbound;
    if (!s) return NONE;
    return [s.anger.peak, s.anger.peakAtMs === null ? 'none' : `<span class="${s.anger.peak >= anger.above ? 'angry' : ''}">${pct(s.anger.peak)}</span> at ${clock(s.anger.peakAtMs)}`];
  }],
  ['angry time', 'num', (r) => (r.digest?.summary.inbound ? [r.digest.summary.inbound.anger.durationMs, clock(r.digest.summary.inbound.anger.durationMs)] : NONE)],
  ['angry when', 'when', (r) => {
    const eps = r.digest?.episodes.filter((e) => e.track === 'inbound') ?? [];
    if (eps.length === 0) return [Number.MAX_SAFE_INTEGER, r.digest ? 'never' : '–'];
    const shown = eps.slice(0, 6).map((e) => `${clock(e.startMs)}–${clock(e.endMs)}`);
    return [eps[0].startMs, shown.join(', ') + (eps.length > 6 ? `, … (${eps.length} episodes)` : '')];
  }],
  ['agent angry', 'num', (r) => (r.digest?.summary.outbound ? [r.digest.summary.outbound.anger.durationMs, clock(r.digest.summary.outbound.anger.durationMs)] : NONE)],
  ['actions', 'num', (r) => {
    const a = r.digest?.actions ?? [];
    if (!r.digest) return NONE;
    const kinds = [...new Set(a.map((x) => x.action))];
    return [a.length, a.length === 0 ? '0' : `${a.length}: ${esc(kinds.join(', '))} (first at ${clock(a[0].timeMs)})`];
  }],
  ];
}

/** Sorts the table on a click on a heading (numbers as numbers), and marks the column with aria-sort. */
const SORT_SCRIPT = `
(function () {
  var table = document.getElementById('calls');
  var heads = table.tHead.rows[0].cells;
  for (var i = 0; i < heads.length; i++) heads[i].addEventListener('click', onClick);
  function onClick(ev) {
    var th = ev.currentTarget, col = th.cellIndex, num = th.getAttribute('data-sort') === 'num';
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    for (var j = 0; j < heads.length; j++) heads[j].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
      var c = num ? Number(x) - Number(y) : x.localeCompare(y);
      return c * dir || Number(a.getAttribute('data-i')) - Number(b.getAttribute('data-i'));
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
})();
`;

/** What the summary page needs besides its rows. */
export interface SummaryPageOptions {
  /** Lines for the header table, label → value (model, policy, channels); escaped here. */
  meta?: Record<string, string>;
  /** Files of the folder that were not replayed (not recordings by their names), so that a recording under an unexpected name is not silently missing. */
  skipped?: readonly { name: string; reason: string }[];
  /**
   * When the caller counts as angry: the policy's own anger threshold (see `reportAngerThreshold`), so that the page
   * and the policy agree; default the shipped policy's.
   */
  anger?: AngerThreshold;
}

/**
 * Renders the summary page (see the module comment). `title` names the folder. A call counts as one where the
 * caller was angry when the caller's peak anger reached the policy's threshold (the policy fires at or over it);
 * the page says which threshold.
 */
export function renderSummaryPage(rows: readonly SummaryRow[], title: string, options: SummaryPageOptions = {}): string {
  const { meta = {}, skipped = [], anger = SHIPPED_ANGER_THRESHOLD } = options;
  const COLUMNS = columns(anger);
  const failed = rows.filter((r) => r.status === 'failed').length;
  const angry = rows.filter((r) => (r.digest?.summary.inbound?.anger.peak ?? 0) >= anger.above).length;
  // 'when' columns sort by a number (the first episode's start) but read as text.
  const head = COLUMNS.map(([name, type]) => `<th data-sort="${type === 'text' ? 'text' : 'num'}"${type === 'num' ? ' class="num"' : ''}>${esc(name)}</th>`).join('');
  const body = rows
    .map(
      (r, i) =>
        `<tr data-i="${i}" data-status="${r.status}">${COLUMNS.map(([, type, cell]) => {
          const [v, html] = cell(r);
          return `<td data-v="${esc(v)}"${type === 'num' ? ' class="num"' : ''}>${html}</td>`;
        }).join('')}</tr>`,
    )
    .join('\n');
  const html = `<h1>${esc(title)}</h1>
<p class="sub">${rows.length} recording(s): ${rows.length - failed} replayed, <span class="${failed > 0 ? 'failed' : ''}" id="failed-count">${failed} failed</span>; <span id="angry-count">the caller was angry in ${angry} call(s) (peak anger at or over ${pct(anger.above)}, the policy's threshold)</span>.</p>
<p class="note" id="anger-threshold">Angry means what it means to the dialog policy: an angry probability of ${pct(anger.above)} or more, the threshold of its rule <code>${esc(anger.rule)}</code> (${esc(anger.policy)}). Peaks at or over it are in red.</p>
${Object.keys(meta).length > 0 ? `<table class="meta">${Object.entries(meta).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>` : ''}
<h2>Calls</h2>
<p class="note">Click a heading to sort by it; click again to reverse. Times are call time (m:ss.s). Speech, anger share, peak, time and
episodes are the caller's (inbound track); agent angry is the outbound track's angry speech.</p>
<div class="scroll-x"><table id="calls" class="sortable"><thead><tr>${head}</tr></thead><tbody>
${body}
</tbody></table></div>${
    skipped.length > 0
      ? `
<h2>Skipped</h2>
<p class="note">${skipped.length} file(s) in the folder were not replayed.</p>
<table id="skipped"><thead><tr><th>file</th><th>why</th></tr></thead><tbody>
${skipped.map((f) => `<tr><td>${esc(f.name)}</td><td>${esc(f.reason)}</td></tr>`).join('\n')}
</tbody></table>`
      : ''
  }`;
  return page(`callmood replay: ${title}`, html, SORT_SCRIPT);
}
