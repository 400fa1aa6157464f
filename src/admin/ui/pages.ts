/**
 * The admin UI's pages: pure functions from data to Html (html`` escapes
 * every value). Forms carry the session's CSRF token; field errors are
 * linked to their input with aria-describedby.
 */
import type { AllowEntry, AuditRecord, CheckResult, StoreHealth } from '../../allowlist/types.js';
import type { SiteRow } from '../../config/inventory.js';
import type { PoolDescription } from '../../upstream/pool.js';
import type { ConfigInfo } from '../types.js';
import { html, type Html, type HtmlValue } from './html.js';

export type NavKey = 'allowlists' | 'search' | 'history' | 'sites' | 'backends' | 'config' | 'none';

export interface PageContext {
  readonly actor: string;
  readonly csrf: string;
  readonly health?: StoreHealth;
}

/** A refused form: which field, what is wrong, how to fix it (AllowlistInputError or the UI's own checks). */
export interface FormError {
  readonly field: string;
  readonly message: string;
  readonly fix?: string;
}

const NAV: readonly [NavKey, string, string][] = [
  ['allowlists', '/ui/', 'Allowlists'],
  ['search', '/ui/search', 'Address search'],
  ['history', '/ui/history', 'Change history'],
  ['sites', '/ui/sites', 'Sites'],
  ['backends', '/ui/backends', 'Backends'],
  ['config', '/ui/config', 'Configuration'],
];

/** Messages shown after a redirect (?done=KEY); only these fixed texts are ever shown. */
export const FLASH: Readonly<Record<string, string>> = {
  added: 'Entry added.',
  updated: 'Entry updated.',
  removed: 'Entry removed. Established connections stay open; new ones from its addresses are refused.',
  expired: 'Entry expired. Established connections stay open; new ones from its addresses are refused.',
};

function head(title: string): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} — perimeter admin</title><link rel="stylesheet" href="/ui/static/style.css"><link rel="icon" href="/ui/static/favicon.svg"></head>`;
}

export function csrfField(csrf: string): Html {
  return html`<input type="hidden" name="csrf" value="${csrf}">`;
}

export function layout(ctx: PageContext, nav: NavKey, title: string, body: Html, flash?: string): Html {
  const degraded = ctx.health?.state === 'degraded';
  return html`${head(title)}
<body><a class="skip" href="#main">Skip to content</a>
<header><span class="brand">perimeter admin</span>
<nav aria-label="Main"><ul>${NAV.map(([k, href, label]) => html`<li><a href="${href}"${k === nav ? html` aria-current="page"` : ''}>${label}</a></li>`)}</ul></nav>
<div class="who">Signed in as <strong>${ctx.actor}</strong><form class="inline" method="post" action="/ui/logout">${csrfField(ctx.csrf)}<button type="submit" class="link">Log out</button></form></div>
</header>
${degraded ? html`<div class="banner" role="alert"><strong>Allowlist store degraded:</strong> the ${ctx.health?.store ?? ''} database is unreachable since ${ctx.health?.since ?? '?'} (${ctx.health?.error ?? 'no detail'}). Proxies keep enforcing the last lists they read; changes cannot be saved until it is back.</div>` : ''}
<main id="main"><h1>${title}</h1>
${flash ? html`<p class="flash" role="status">${flash}</p>` : ''}
${body}
</main></body></html>
`;
}

/** The error summary at the top of a refused form (role=alert, read out at once). */
function errorSummary(err: FormError | undefined, fields: readonly string[]): Html {
  if (!err) return html``;
  const linked = fields.includes(err.field);
  return html`<div class="errorbox" role="alert" id="form-error"><p class="error"><strong>Not saved:</strong> ${linked ? html`<a href="#f-${err.field}">${err.message}</a>` : err.message}</p>${err.fix ? html`<p>${err.fix}</p>` : ''}</div>`;
}

interface FieldOpts {
  readonly name: string;
  readonly label: string;
  readonly value?: string;
  readonly hint?: string;
  readonly type?: 'text' | 'password' | 'search';
  readonly required?: boolean;
  readonly autocomplete?: string;
  readonly error?: FormError;
}

function field(o: FieldOpts): Html {
  const id = `f-${o.name}`;
  const bad = o.error?.field === o.name;
  const described = [o.hint ? `${id}-hint` : '', bad ? `${id}-error` : ''].filter(Boolean).join(' ');
  return html`<div><label for="${id}">${o.label}</label>${o.hint ? html`<span class="hint" id="${id}-hint">${o.hint}</span>` : ''}
<input type="${o.type ?? 'text'}" id="${id}" name="${o.name}" value="${o.value ?? ''}"${o.required ? html` required` : ''}${o.autocomplete ? html` autocomplete="${o.autocomplete}"` : ''}${described ? html` aria-describedby="${described}"` : ''}${bad ? html` aria-invalid="true"` : ''}>
${bad ? html`<span class="field-error" id="${id}-error">${o.error?.message}${o.error?.fix ? html` — ${o.error.fix}` : ''}</span>` : ''}</div>`;
}

// ---- login ----

export function loginPage(o: { readonly methods: { password: boolean; token: boolean }; readonly loginCsrf: string; readonly next: string; readonly user?: string; readonly error?: string; readonly status?: string }): Html {
  const none = !o.methods.password && !o.methods.token;
  const body = none
    ? html`<div class="errorbox" role="alert"><p><strong>No way to log in is configured.</strong> The web UI changes who may connect, so it always needs a login.</p>
<p>Create an account with <code>perimeter admin-user add NAME</code> (it writes the users file) and set <code>admin.users-file</code> in perimeter.yaml to that file, or set <code>admin.token-file</code> and log in with the admin token. Then reload.</p></div>`
    : html`${o.error ? html`<div class="errorbox" role="alert" id="login-error"><p class="error">${o.error}</p></div>` : ''}
${o.status ? html`<p role="status">${o.status}</p>` : ''}
${
  o.methods.password
    ? html`<h2>Admin account</h2><form class="stack" method="post" action="/ui/login"><input type="hidden" name="csrf" value="${o.loginCsrf}"><input type="hidden" name="next" value="${o.next}"><input type="hidden" name="method" value="password">
<div><label for="f-user">User name</label><input type="text" id="f-user" name="user" value="${o.user ?? ''}" autocomplete="username" required${o.error ? html` aria-describedby="login-error"` : ''}></div>
<div><label for="f-password">Password</label><input type="password" id="f-password" name="password" autocomplete="current-password" required${o.error ? html` aria-describedby="login-error"` : ''}></div>
<div><button type="submit">Log in</button></div></form>`
    : ''
}
${
  o.methods.token
    ? html`<h2>Admin token</h2><form class="stack" method="post" action="/ui/login"><input type="hidden" name="csrf" value="${o.loginCsrf}"><input type="hidden" name="next" value="${o.next}"><input type="hidden" name="method" value="token">
<div><label for="f-token">Token</label><span class="hint" id="f-token-hint">The contents of admin.token-file.</span><input type="password" id="f-token" name="token" autocomplete="off" required aria-describedby="f-token-hint"></div>
<div><button type="submit">Log in with the token</button></div></form>`
    : ''
}`;
  return html`${head('Log in')}
<body><main id="main"><h1>perimeter admin: log in</h1>
${body}
</main></body></html>
`;
}

// ---- allowlists ----

export interface ListRow {
  readonly name: string;
  readonly entries: number;
  readonly listeners: readonly string[];
}

export function healthText(h: StoreHealth): Html {
  return h.state === 'ok'
    ? html`<span class="tag ok">ok</span> ${h.store}, since ${h.since}`
    : html`<span class="tag bad">degraded</span> ${h.store}, since ${h.since}: ${h.error ?? 'unreachable'}`;
}

export function overviewPage(lists: readonly ListRow[], health: StoreHealth | undefined, kind: string | undefined): Html {
  return html`<h2>Store</h2>
<p>${health ? healthText(health) : html`<span class="muted">unknown</span>`}${kind ? html` <span class="muted">(${kind})</span>` : ''}</p>
<h2>Lists</h2>
${
  lists.length === 0
    ? html`<p>No allowlists yet. Add an entry to create one.</p>`
    : html`<table><caption class="muted">Every list in the store or named by a tcp listener</caption><thead><tr><th scope="col">List</th><th scope="col">Entries</th><th scope="col">Used by tcp listeners</th></tr></thead><tbody>
${lists.map((l) => html`<tr><th scope="row"><a href="/ui/lists/${encodeURIComponent(l.name)}">${l.name}</a></th><td>${l.entries}</td><td>${l.listeners.length ? l.listeners.join(', ') : html`<span class="muted">none</span>`}</td></tr>`)}
</tbody></table>`
}
<p><a href="/ui/add">Add an entry</a> (to an existing or a new list)</p>`;
}

/** An ISO 8601 time as people read it: 2026-11-22 02:59:52 UTC (the exact value in a title). */
export function when(iso: string | undefined): Html {
  if (iso === undefined) return html``;
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(iso);
  return m ? html`<time datetime="${iso}">${m[1]} ${m[2]} UTC</time>` : html`${iso}`;
}

export function isExpired(e: AllowEntry, nowMs: number): boolean {
  return e.expiresAt !== undefined && Date.parse(e.expiresAt) <= nowMs;
}

function entryBase(e: AllowEntry): string {
  return `/ui/lists/${encodeURIComponent(e.list)}/entries/${encodeURIComponent(e.id)}`;
}

export function entriesPage(list: string, entries: readonly AllowEntry[], nowMs: number): Html {
  return html`<p><a href="/ui/add?list=${encodeURIComponent(list)}">Add an entry to ${list}</a> · <a href="/ui/search?list=${encodeURIComponent(list)}">Search this list</a> · <a href="/ui/history?list=${encodeURIComponent(list)}">History of this list</a></p>
${
  entries.length === 0
    ? html`<p>This list has no entries: nobody may connect through the tcp listeners that use it.</p>`
    : html`<table><caption class="muted">${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}; expired entries admit nobody</caption><thead><tr><th scope="col">Partner</th><th scope="col">Address or range</th><th scope="col">Note</th><th scope="col">Added by</th><th scope="col">Added</th><th scope="col">Expires</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead><tbody>
${entries.map((e) => {
  const expired = isExpired(e, nowMs);
  return html`<tr id="entry-${e.id}"${expired ? html` class="expired"` : ''}><th scope="row">${e.partner}</th><td class="mono">${e.cidr}</td><td>${e.note}</td><td>${e.addedBy}</td><td>${when(e.addedAt)}</td><td>${e.expiresAt ? when(e.expiresAt) : html`<span class="muted">never</span>`}</td><td class="status">${expired ? html`<span class="tag bad">expired</span>` : html`<span class="tag ok">active</span>`}</td><td class="actions"><a href="${entryBase(e)}/edit">Edit<span class="sr"> ${e.cidr}</span></a>${expired ? '' : html`<a href="${entryBase(e)}/expire">Expire<span class="sr"> ${e.cidr}</span></a>`}<a href="${entryBase(e)}/remove">Remove<span class="sr"> ${e.cidr}</span></a><a href="${entryBase(e)}/history">History<span class="sr"> of ${e.cidr}</span></a></td></tr>`;
})}
</tbody></table>`
}`;
}

export interface EntryFormValues {
  readonly list: string;
  readonly cidr: string;
  readonly partner: string;
  readonly note: string;
  readonly expiresAt: string;
  readonly reason: string;
}

export function entryForm(o: { readonly action: string; readonly csrf: string; readonly values: EntryFormValues; readonly error?: FormError; readonly listEditable: boolean; readonly submit: string }): Html {
  const v = o.values;
  const fields = ['list', 'cidr', 'partner', 'note', 'expiresAt', 'reason'];
  return html`${errorSummary(o.error, o.listEditable ? fields : fields.filter((f) => f !== 'list'))}
<form class="stack" method="post" action="${o.action}" novalidate>${csrfField(o.csrf)}
${o.listEditable ? field({ name: 'list', label: 'List', value: v.list, hint: 'lower-case letters, digits and hyphens, e.g. content-partners; a new name creates the list', required: true, error: o.error }) : html`<input type="hidden" name="list" value="${v.list}">`}
${field({ name: 'cidr', label: 'Address or CIDR range', value: v.cidr, hint: 'e.g. 198.51.100.7, 198.51.100.0/24 or 2001:db8::/48', required: true, error: o.error })}
${field({ name: 'partner', label: 'Partner', value: v.partner, hint: 'who connects from here', required: true, error: o.error })}
${field({ name: 'note', label: 'Note', value: v.note, hint: 'optional: ticket, contact, purpose', error: o.error })}
${field({ name: 'expiresAt', label: 'Expires (UTC)', value: v.expiresAt, hint: 'optional: 2026-12-31 or 2026-12-31T18:00 (UTC); empty = never', error: o.error })}
${field({ name: 'reason', label: 'Reason for this change', value: v.reason, hint: 'recorded in the change history', required: true, error: o.error })}
<div><button type="submit">${o.submit}</button></div>
</form>`;
}

export function describeEntry(e: AllowEntry | undefined): Html {
  if (!e) return html`<span class="muted">—</span>`;
  return html`<span class="mono">${e.cidr}</span> · ${e.partner}${e.note ? html` · ${e.note}` : ''}${e.expiresAt ? html` · expires ${when(e.expiresAt)}` : ''}`;
}

export function confirmPage(o: { readonly action: string; readonly csrf: string; readonly entry: AllowEntry; readonly verb: 'Remove' | 'Expire'; readonly reason: string; readonly error?: FormError }): Html {
  const what =
    o.verb === 'Remove'
      ? 'Removing deletes the entry (its history stays). Established connections stay open; new ones are refused within a second.'
      : 'Expiring sets its expiry to now: the entry stays, marked expired, and admits nobody. Established connections stay open.';
  return html`<p>${describeEntry(o.entry)}</p><p>${what}</p>
${errorSummary(o.error, ['reason'])}
<form class="stack" method="post" action="${o.action}" novalidate>${csrfField(o.csrf)}
${field({ name: 'reason', label: 'Reason', value: o.reason, hint: 'recorded in the change history', required: true, error: o.error })}
<div><button type="submit">${o.verb} this entry</button> <a href="/ui/lists/${encodeURIComponent(o.entry.list)}">Cancel</a></div>
</form>`;
}

// ---- search ----

export function searchPage(o: { readonly address: string; readonly list: string; readonly lists: readonly string[]; readonly results?: readonly CheckResult[]; readonly error?: FormError; readonly nowMs: number }): Html {
  const bad = o.error !== undefined;
  return html`<form class="stack" method="get" action="/ui/search" role="search">
<div><label for="f-address">Address</label><span class="hint" id="f-address-hint">an IPv4 or IPv6 address, e.g. 198.51.100.7</span>
<input type="search" id="f-address" name="address" value="${o.address}" required aria-describedby="f-address-hint${bad ? ' f-address-error' : ''}"${bad ? html` aria-invalid="true"` : ''}>
${bad ? html`<span class="field-error" id="f-address-error" role="alert">${o.error?.message}${o.error?.fix ? html` — ${o.error.fix}` : ''}</span>` : ''}</div>
<div><label for="f-list">In</label><select id="f-list" name="list"><option value="">all lists</option>${o.lists.map((l) => html`<option value="${l}"${l === o.list ? html` selected` : ''}>${l}</option>`)}</select></div>
<div><button type="submit">Check</button></div></form>
${
  o.results === undefined
    ? ''
    : o.results.length === 0
      ? html`<p role="status">There are no lists to search.</p>`
      : html`<h2>Result for <span class="mono">${o.address}</span></h2>
<p role="status">${o.results.some((r) => r.allowed) ? html`<strong>Allowed</strong> by ${o.results.filter((r) => r.allowed).length} of ${o.results.length} lists.` : html`<strong>Not allowed</strong> by any of ${o.results.length === 1 ? 'the list' : `the ${o.results.length} lists`} searched.`}</p>
<table><thead><tr><th scope="col">List</th><th scope="col">Allowed</th><th scope="col">Admitting entry (most specific)</th></tr></thead><tbody>
${o.results.map((r) => html`<tr><th scope="row"><a href="/ui/lists/${encodeURIComponent(r.list)}">${r.list}</a></th><td>${r.allowed ? html`<span class="tag ok">yes</span>` : html`<span class="tag bad">no</span>`}</td><td>${r.entry ? html`${describeEntry(r.entry)} · <a href="${entryBase(r.entry)}/history">history</a>` : html`<span class="muted">none</span>`}</td></tr>`)}
</tbody></table>`
}`;
}

// ---- history ----

export function historyPage(records: readonly AuditRecord[], scope: HtmlValue, limit: number): Html {
  return html`<p>${scope}</p>
${
  records.length === 0
    ? html`<p>No changes recorded.</p>`
    : html`<table><caption class="muted">Newest first${records.length >= limit ? `; the latest ${limit}` : ''}</caption><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">List</th><th scope="col">Before</th><th scope="col">After</th><th scope="col">Reason</th></tr></thead><tbody>
${records.map((r) => html`<tr><th scope="row">${when(r.at)}</th><td>${r.actor}</td><td>${r.action}</td><td><a href="/ui/lists/${encodeURIComponent(r.list)}">${r.list}</a></td><td>${describeEntry(r.before)}</td><td>${describeEntry(r.after)}</td><td>${r.reason}</td></tr>`)}
</tbody></table>`
}`;
}

// ---- sites, backends, config ----

export function sitesPage(rows: readonly SiteRow[], generation: number): Html {
  return html`<p>Generation ${generation}: ${rows.length} ${rows.length === 1 ? 'site' : 'sites'}.</p>
<table><thead><tr><th scope="col">Site</th><th scope="col">Cluster</th><th scope="col">Service</th><th scope="col">Owner</th><th scope="col">Listeners</th><th scope="col">TLS</th><th scope="col">HSTS</th><th scope="col">Certificate</th><th scope="col">Declared in</th></tr></thead><tbody>
${rows.map((r) => html`<tr><th scope="row">${r.host}</th><td>${r.cluster}</td><td>${r.service}</td><td>${r.owner}</td><td>${r.listeners.join(', ')}</td><td>${r.tls}</td><td>${r.hsts}</td><td>${r.certificate ? certText(r.certificate) : html`<span class="muted">—</span>`}</td><td class="mono">${r.file}:${r.line}:${r.column}</td></tr>`)}
</tbody></table>`;
}

function certText(c: unknown): string {
  if (c && typeof c === 'object') {
    const o = c as Record<string, unknown>;
    const parts = [o.source, o.notAfter !== undefined ? `until ${String(o.notAfter)}` : undefined].filter((x) => x !== undefined && x !== null).map(String);
    if (parts.length) return parts.join(', ');
  }
  return 'yes';
}

export function backendsPage(pools: readonly PoolDescription[], generation: number): Html {
  if (pools.length === 0) return html`<p>Generation ${generation}: no services.</p>`;
  return html`<p>Generation ${generation}. Lower scores are preferred by the balancer.</p>
${pools.map(
  (p) => html`<h2 id="svc-${p.service}">${p.service}</h2>
<p>${p.summary} <span class="muted">(balancer ${p.balancer}; health check ${p.healthCheck}; ${p.available}/${p.total} available${p.panic ? html`; <strong class="error">panic mode (${p.panicMode})</strong>` : ''})</span></p>
<table><thead><tr><th scope="col">Backend</th><th scope="col">Health</th><th scope="col">Available</th><th scope="col">Ejected</th><th scope="col">In flight</th><th scope="col">Score</th><th scope="col">Why</th></tr></thead><tbody>
${p.backends.map(
  (b) => html`<tr><th scope="row" class="mono">${b.key}</th><td>${b.active === 'unhealthy' ? html`<span class="tag bad">unhealthy</span>` : b.active === 'healthy' ? html`<span class="tag ok">healthy</span>` : html`<span class="tag">${b.active}</span>`}</td><td>${b.available ? 'yes' : 'no'}</td><td>${b.ejected ? `until ${b.ejectedUntil ?? '?'}` : 'no'}</td><td>${b.inflight}</td><td>${Number.isFinite(b.score) ? b.score.toFixed(3) : '∞'}</td><td>${b.ejected ? `ejected: ${b.lastEjectReason}` : b.active === 'unhealthy' ? `unhealthy: ${b.lastCheckReason}` : b.scoreReason}</td></tr>`,
)}
</tbody></table>`,
)}`;
}

export function configPage(info: ConfigInfo, health: StoreHealth | undefined): Html {
  const r = info.lastReload;
  return html`<dl class="kv">
<dt>Generation</dt><dd>${info.generation}</dd>
<dt>Source</dt><dd class="mono">${info.source}</dd>
<dt>Applied</dt><dd>${info.appliedAt}</dd>
<dt>Worker processes</dt><dd>${info.workers === 0 ? 'none (single process)' : info.workers}</dd>
<dt>Allowlist store</dt><dd>${health ? healthText(health) : html`<span class="muted">not running in this process</span>`}</dd>
</dl>
<h2>Last reload</h2>
${
  r
    ? html`<p>${r.ok ? html`<span class="tag ok">applied</span>` : html`<span class="tag bad">refused</span>`} at ${r.at} (trigger: ${r.trigger}); generation ${r.generation} ${r.ok ? 'is serving' : 'keeps serving'}.</p>
${r.errors.length ? html`<ul class="error">${r.errors.map((e) => html`<li class="mono">${e}</li>`)}</ul>` : ''}`
    : html`<p>No reload since start.</p>`
}`;
}

export function messagePage(text: string, link?: { href: string; label: string }): Html {
  return html`<p>${text}</p>${link ? html`<p><a href="${link.href}">${link.label}</a></p>` : ''}`;
}
