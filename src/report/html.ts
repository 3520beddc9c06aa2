/**
 * The shell of callmood's HTML reports: one self-contained file, styles inline, no external URL of any kind, and a
 * Content-Security-Policy that forbids the page to fetch anything, so a report opened from an e-mail or a shared
 * drive works offline and cannot call out. Everything that comes from outside (file names, parameters, rule names,
 * reasons) goes through `esc`.
 */

/** Escapes text for HTML element content and quoted attribute values. */
export function esc(value: unknown): string {
  return String(value).replace(/[&<>"'`]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' })[c]!);
}

/** A relative link to a file beside the page: each path segment percent-encoded (so `#`, `?`, `:` stay part of the name), then escaped. */
export function relHref(path: string): string {
  return esc(path.split('/').map(encodeURIComponent).join('/'));
}

/** Call time as m:ss.s (or h:mm:ss for long calls). */
export function clock(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const s = ms / 1000;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}:${String(m).padStart(2, '0')}:${String(Math.floor(sec)).padStart(2, '0')}`;
  return `${m}:${sec.toFixed(1).padStart(4, '0')}`;
}

/** A share 0–1 as a percentage. */
export function pct(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(digits)}%`;
}

const CSS = `
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1280px; padding: 0 16px; color: #222; }
h1 { font-size: 1.4rem; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 1.1rem; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; font-size: 0.9rem; margin: 0 0 16px; }
table { border-collapse: collapse; font-size: 0.88rem; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta th { background: none; color: #555; font-weight: 500; white-space: nowrap; }
figure { margin: 0; }
#timeline svg { display: block; width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85rem; margin-top: 4px; }
.bar { display: inline-block; height: 10px; background: #888; vertical-align: middle; margin-right: 6px; }
.ok { color: #2a7a2a; } .failed { color: #b00020; font-weight: 600; }
.angry { color: #c62828; font-weight: 600; }
.note { color: #666; font-size: 0.85rem; }
.why { color: #555; font-size: 0.8rem; min-width: 200px; max-width: 340px; overflow-wrap: anywhere; }
a { color: #0b57d0; }
th[data-sort] { cursor: pointer; user-select: none; }
th[data-sort]::after { content: " ↕"; color: #aaa; }
th[aria-sort="ascending"]::after { content: " ▲"; color: #333; }
th[aria-sort="descending"]::after { content: " ▼"; color: #333; }
.scroll-x { overflow-x: auto; max-width: 100%; }
code { font-size: 0.85em; background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
`;

/** A complete HTML page: `title` is escaped here; `body` must already be safe HTML; `script` is inline JS or empty. */
export function page(title: string, body: string, script = ''): string {
  // No default source at all: inline styles and scripts only, images only as data: URLs.
  const csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="callmood replay">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${body}
${script ? `<script>${script}</script>` : ''}
</body>
</html>
`;
}
