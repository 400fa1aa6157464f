/** The admin UI's one stylesheet, served at /ui/static/style.css (CSP allows style-src 'self' only). */
export const STYLE_CSS = `:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--accent:#0b5cad;--bad:#b3261e;--warn-bg:#fff4ce;--ok:#1a7f37}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--line:#30363d;--accent:#58a6ff;--bad:#ff7b72;--warn-bg:#3d2e00;--ok:#3fb950}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
.sr{position:absolute;left:-9999px;width:1px;height:1px;overflow:hidden}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:var(--bg);padding:4px 8px;z-index:1}
header{display:flex;flex-wrap:wrap;align-items:center;gap:12px;padding:8px 16px;border-bottom:1px solid var(--line)}
header .brand{font-weight:600;margin-right:8px}
header nav ul{display:flex;flex-wrap:wrap;gap:14px;list-style:none;margin:0;padding:0}
header nav a[aria-current=page]{font-weight:600;text-decoration:none;color:var(--fg)}
header .who{margin-left:auto;display:flex;gap:8px;align-items:center;color:var(--muted)}
main{padding:8px 16px 32px;max-width:1200px}
h1{font-size:1.5rem;margin:12px 0}h2{font-size:1.15rem;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid var(--line)}
thead th{border-bottom:2px solid var(--line)}
tr.expired td{color:var(--muted);text-decoration:line-through}
tr.expired td.status,tr.expired td.actions{text-decoration:none}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:.85em;border:1px solid var(--line)}
.tag.bad{color:var(--bad);border-color:var(--bad)}.tag.ok{color:var(--ok);border-color:var(--ok)}
.banner{padding:8px 16px;background:var(--warn-bg);border-bottom:1px solid var(--line)}
.flash{padding:8px 12px;border-left:4px solid var(--ok);background:color-mix(in srgb,var(--ok) 10%,transparent)}
.error,.field-error{color:var(--bad)}
.errorbox{padding:8px 12px;border-left:4px solid var(--bad)}
form.stack{display:grid;gap:10px;max-width:560px}
form.stack label{font-weight:600;display:block}
form.stack .hint{color:var(--muted);font-size:.9em;display:block}
input,select,textarea,button{font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg)}
input[aria-invalid=true]{border-color:var(--bad);outline:1px solid var(--bad)}
input[type=text],input[type=password],input[type=search],textarea,select{width:100%}
button{cursor:pointer;background:var(--accent);border-color:var(--accent);color:#fff}
button.link{background:none;border:none;color:var(--accent);padding:0;text-decoration:underline}
form.inline{display:inline}
.actions a{margin-right:8px}
.muted{color:var(--muted)}
time{white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dl.kv dt{font-weight:600}dl.kv dd{margin:0}
`;

/** A small shield, so browsers find an icon on the UI's own origin (CSP: img-src 'self'). */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1 2 3v5c0 3.5 2.6 6.2 6 7 3.4-.8 6-3.5 6-7V3z" fill="#0b5cad"/></svg>`;
