/**
 * The admin web UI under /ui/ on the admin listener: login (local accounts
 * from admin.users-file, or the admin token), then pages for allowlists,
 * address search, change history, sites, backends and configuration.
 *
 * Security model (docs/admin-ui.md): server-side sessions (sessions.ts) in
 * an HttpOnly, SameSite=Strict cookie, Secure wherever the browser accepts
 * it; every POST needs the session's CSRF token and, when the browser says
 * where it comes from (Origin, Sec-Fetch-Site), the same origin; every page
 * is built with html`` (escapes by default) and served with a strict CSP
 * that allows no script at all.
 */
import type http from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AdminSpec } from '../../config/types.js';
import { siteInventory } from '../../config/inventory.js';
import type { Logger } from '../../core/log.js';
import { AllowlistInputError, type AllowEntry, type AllowEntryInput, type AllowlistService, type CheckResult, type StoreHealth } from '../../allowlist/types.js';
import type { AdminSource } from '../types.js';
import { html, type Html } from './html.js';
import { FLASH, confirmPage, entriesPage, entryForm, historyPage, backendsPage, configPage, layout, loginPage, messagePage, overviewPage, searchPage, sitesPage, type EntryFormValues, type FormError, type NavKey } from './pages.js';
import { LoginThrottle, SessionStore, csrfMatches, type Session } from './sessions.js';
import { FAVICON_SVG, STYLE_CSS } from './style.js';
import { UsersFile, verifyPassword } from './users.js';

/**
 * Cookie names carry the admin listener's port: browsers scope cookies by
 * host, not port, so two perimeter admin listeners on one host (or one
 * tunnelled to localhost beside a local one) must not overwrite each
 * other's session.
 */
export const sessionCookieName = (port: number | undefined): string => `perimeter_admin_${port ?? 0}`;
const loginCookieName = (port: number | undefined): string => `perimeter_login_${port ?? 0}`;
const MAX_FORM_BYTES = 64 * 1024;
const HISTORY_LIMIT = 200;

/** Sent with every UI response. No script may run: the UI needs none. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** Host header naming an address or localhost (not a name a DNS-rebinding page could use). */
const SAFE_HOST = /^(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/i;
const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$/i;
const LIST_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ID_SEGMENT = /^[A-Za-z0-9_.:-]{1,128}$/;

/** What the admin source offers once the allowlist store runs in this process. */
type WithAllowlists = AdminSource & { allowlists?(): AllowlistService | undefined };

interface Reply {
  readonly status: number;
  readonly body?: Html | string;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string | string[]>>;
}

interface Req {
  readonly raw: http.IncomingMessage;
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly cookies: ReadonlyMap<string, string>;
  /** The browser reaches us at a loopback name: Secure cookies work there over http. */
  readonly secure: boolean;
  readonly host: string;
  readonly sessionCookie: string;
  readonly loginCookie: string;
}

interface Authed extends Req {
  readonly session: Session;
  readonly sessionId: string;
  readonly form: URLSearchParams;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

function cookie(name: string, value: string, o: { secure: boolean; path?: string; maxAgeS?: number }): string {
  return `${name}=${value}; Path=${o.path ?? '/'}; HttpOnly; SameSite=Strict${o.secure ? '; Secure' : ''}${o.maxAgeS !== undefined ? `; Max-Age=${o.maxAgeS}` : ''}`;
}

/** A local /ui/ path to return to after login (never another site or a scheme-relative URL). */
function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith('/ui/') || next.startsWith('//') || /[\\\s]/.test(next)) return '/ui/';
  return next;
}

const redirect = (location: string, headers: Record<string, string | string[]> = {}): Reply => ({ status: 303, headers: { location, ...headers } });

/** Secrets must not reach a page: drop credentials from any URL in a store error. */
function scrub(message: string): string {
  return message.replace(/\/\/[^/@\s]*@/g, '//<redacted>@');
}

function inputError(err: unknown): FormError | undefined {
  // instanceof covers subclasses (e.g. not found); the name covers a copy of the class from another module instance.
  if (err instanceof AllowlistInputError || (err instanceof Error && err.name === 'AllowlistInputError')) {
    const e = err as Error & { field?: unknown; fix?: unknown };
    return { field: typeof e.field === 'string' ? e.field : '', message: e.message, ...(typeof e.fix === 'string' ? { fix: e.fix } : {}) };
  }
  return undefined;
}

/** The form's expiry as ISO 8601 (UTC): a bare date is its first instant, a time without zone is UTC; anything else goes to the service to judge. */
export function normalizeExpiry(s: string): string | undefined {
  const t = s.trim();
  if (t === '') return undefined;
  if (/^\d{4}-\d{2}-\d{2}$/.test(t)) return `${t}T00:00:00.000Z`;
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?$/.test(t)) return `${t.replace(' ', 'T')}${t.length === 16 ? ':00' : ''}Z`;
  return t;
}

export class AdminUi {
  private tokenDigest: Buffer | undefined;
  private users: UsersFile | undefined;
  readonly sessions: SessionStore;
  readonly throttle: LoginThrottle;
  private readonly log: Logger | undefined;

  constructor(spec: AdminSpec, opts: { readonly log?: Logger; readonly sessions?: SessionStore; readonly throttle?: LoginThrottle } = {}) {
    this.log = opts.log;
    this.sessions = opts.sessions ?? new SessionStore();
    this.throttle = opts.throttle ?? new LoginThrottle();
    this.tokenDigest = spec.token !== undefined ? digest(spec.token) : undefined;
    this.users = spec.usersFile !== undefined ? new UsersFile(spec.usersFile) : undefined;
  }

  /** Paths the UI answers (everything else is the JSON API's). */
  static owns(path: string): boolean {
    return path === '/ui' || path.startsWith('/ui/');
  }

  /** A reloaded admin spec: a changed or removed token ends token sessions; another users file ends password sessions. */
  update(spec: AdminSpec): void {
    const next = spec.token !== undefined ? digest(spec.token) : undefined;
    const same = next === undefined ? this.tokenDigest === undefined : this.tokenDigest !== undefined && timingSafeEqual(next, this.tokenDigest);
    if (!same) this.sessions.destroyWhere((s) => s.method === 'token');
    this.tokenDigest = next;
    if (spec.usersFile !== this.users?.file) {
      this.sessions.destroyWhere((s) => s.method === 'password');
      this.users = spec.usersFile !== undefined ? new UsersFile(spec.usersFile) : undefined;
    }
  }

  async handle(source: AdminSource, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const reply = await this.route(source as WithAllowlists, req);
    send(req, res, reply);
  }

  private async route(source: WithAllowlists, raw: http.IncomingMessage): Promise<Reply> {
    const url = new URL(raw.url ?? '/', 'http://admin.invalid');
    const host = raw.headers.host ?? '';
    const method = raw.method ?? 'GET';
    const r: Req = {
      raw,
      method,
      path: url.pathname,
      query: url.searchParams,
      cookies: parseCookies(raw.headers.cookie),
      secure: LOOPBACK_HOST.test(host) || raw.headers['x-forwarded-proto'] === 'https',
      host,
      sessionCookie: sessionCookieName(raw.socket.localPort),
      loginCookie: loginCookieName(raw.socket.localPort),
    };
    // Without a token the listener is loopback-only; a page from a DNS-rebinding name must not reach it.
    if (host === '' || (this.tokenDigest === undefined && !SAFE_HOST.test(host))) {
      raw.resume();
      return plain(403, 'The admin UI answers requests to an IP address or localhost only (or set admin.token-file).');
    }
    if (r.path === '/ui' || r.path === '/ui/index.html') return redirect('/ui/');
    if (r.path === '/ui/static/style.css' || r.path === '/ui/static/favicon.svg') {
      raw.resume();
      if (method !== 'GET' && method !== 'HEAD') return plain(405, 'GET only', { allow: 'GET, HEAD' });
      const css = r.path.endsWith('.css');
      return { status: 200, body: css ? STYLE_CSS : FAVICON_SVG, contentType: css ? 'text/css; charset=utf-8' : 'image/svg+xml', headers: { 'cache-control': 'no-cache' } };
    }
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
      raw.resume();
      return plain(405, `${method} is not used by the admin UI`, { allow: 'GET, HEAD, POST' });
    }
    let form = new URLSearchParams();
    if (method === 'POST') {
      const cross = this.crossOrigin(r);
      if (cross) {
        raw.resume();
        this.log?.warn({ event: { action: 'admin-ui-denied', reason: 'cross-origin' }, client: { address: raw.socket.remoteAddress }, url: { path: r.path } }, `admin UI POST refused: ${cross}`);
        return plain(403, `Refused: ${cross}. Changes are accepted only from the admin UI's own pages.`);
      }
      const body = await readForm(raw);
      if (typeof body === 'string') return plain(body === 'too large' ? 413 : 415, `Refused: the form is ${body}.`);
      form = body;
    } else raw.resume();

    if (r.path === '/ui/login') return method === 'POST' ? this.login(r, form) : this.loginForm(r);

    const sessionId = r.cookies.get(r.sessionCookie);
    const session = await this.liveSession(sessionId);
    if (!session || sessionId === undefined) {
      if (method === 'POST') return plain(403, 'Refused: you are not logged in (or your session ended). Log in again at /ui/login.');
      return redirect(`/ui/login?next=${encodeURIComponent(r.path + url.search)}`);
    }
    const a: Authed = { ...r, session, sessionId, form };
    if (method === 'POST' && !csrfMatches(session, form.get('csrf') ?? undefined)) {
      this.log?.warn({ event: { action: 'admin-ui-denied', reason: 'csrf' }, client: { address: raw.socket.remoteAddress }, url: { path: r.path }, user: { name: session.actor } }, 'admin UI POST refused: missing or wrong CSRF token');
      return plain(403, 'Refused: this form’s security token is missing or out of date. Go back, reload the page and submit it again.');
    }
    if (r.path === '/ui/logout') {
      if (method !== 'POST') return plain(405, 'Log out with the button (POST).', { allow: 'POST' });
      this.sessions.destroy(sessionId);
      this.log?.info({ event: { action: 'admin-logout' }, user: { name: session.actor } }, `admin UI logout: ${session.actor}`);
      return redirect('/ui/login?out=1', { 'set-cookie': cookie(r.sessionCookie, '', { secure: r.secure, maxAgeS: 0 }) });
    }
    return this.page(source, a);
  }

  /**
   * Why a POST is refused as cross-site, or undefined. Absent headers
   * (non-browser clients) are fine: the CSRF token still applies. With
   * Referrer-Policy: no-referrer, Chromium sends `Origin: null` on same-origin
   * form posts, so null says nothing and Sec-Fetch-Site decides.
   */
  private crossOrigin(r: Req): string | undefined {
    const origin = r.raw.headers.origin;
    if (origin !== undefined && origin !== 'null' && origin !== `http://${r.host}` && origin !== `https://${r.host}`) return `the request comes from another origin (${origin})`;
    const site = r.raw.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return `the browser says the request is ${site}`;
    return undefined;
  }

  private async liveSession(id: string | undefined): Promise<Session | undefined> {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.method === 'password') {
      // A user removed from the users file is logged out at their next request.
      const users = this.users ? await this.users.load() : undefined;
      if (!users || 'error' in users || !users.users.has(s.actor)) {
        this.sessions.destroy(id);
        return undefined;
      }
    }
    return s;
  }

  // ---- login ----

  private methods(): { password: boolean; token: boolean } {
    return { password: this.users !== undefined, token: this.tokenDigest !== undefined };
  }

  private loginReply(r: Req, status: number, o: { error?: string; user?: string; status?: string; next?: string }, extra: Record<string, string> = {}): Reply {
    const loginCsrf = randomBytes(24).toString('base64url');
    return {
      status,
      body: loginPage({ methods: this.methods(), loginCsrf, next: safeNext(o.next ?? r.query.get('next')), ...(o.user !== undefined ? { user: o.user } : {}), ...(o.error !== undefined ? { error: o.error } : {}), ...(o.status !== undefined ? { status: o.status } : {}) }),
      headers: { 'set-cookie': cookie(r.loginCookie, loginCsrf, { secure: r.secure, path: '/ui/login', maxAgeS: 3600 }), ...extra },
    };
  }

  private async loginForm(r: Req): Promise<Reply> {
    if (await this.liveSession(r.cookies.get(r.sessionCookie))) return redirect(safeNext(r.query.get('next')));
    return this.loginReply(r, 200, r.query.get('out') ? { status: 'You are logged out.' } : {});
  }

  private async login(r: Req, form: URLSearchParams): Promise<Reply> {
    const address = r.raw.socket.remoteAddress ?? '?';
    const next = safeNext(form.get('next'));
    const user = (form.get('user') ?? '').trim();
    // Login CSRF: the form's token must match the cookie set with the form (double submit).
    const expected = r.cookies.get(r.loginCookie);
    const given = form.get('csrf') ?? '';
    if (expected === undefined || given === '' || !timingSafeEqual(digest(expected), digest(given))) {
      return this.loginReply(r, 403, { error: 'The login form had expired or came from another page. Please log in again.', user, next });
    }
    const wait = this.throttle.retryAfterMs(address);
    if (wait > 0) {
      const s = Math.ceil(wait / 1000);
      this.log?.warn({ event: { action: 'admin-login', outcome: 'throttled' }, client: { address } }, `admin UI login refused: too many failures from ${address}`);
      return this.loginReply(r, 429, { error: `Too many failed logins from your address. Try again in ${s} seconds.`, user, next }, { 'retry-after': String(s) });
    }
    const method = form.get('method') === 'token' ? 'token' : 'password';
    let actor: string | undefined;
    if (method === 'token') {
      const token = form.get('token') ?? '';
      if (this.tokenDigest && token !== '' && timingSafeEqual(digest(token), this.tokenDigest)) actor = 'token';
    } else if (this.users) {
      const users = await this.users.load();
      if ('error' in users) {
        this.log?.error({ event: { action: 'admin-login', outcome: 'failure' } }, `admin UI accounts unavailable: ${users.error}`);
        return this.loginReply(r, 503, { error: `Accounts cannot be read: ${users.error}`, user, next });
      }
      const password = form.get('password') ?? '';
      if (await verifyPassword(password, users.users.get(user))) actor = user;
    }
    if (actor === undefined) {
      this.throttle.fail(address);
      const known = method === 'password' && this.users !== undefined && user !== '' ? await this.users.load() : undefined;
      const who = method === 'token' ? 'token' : known && !('error' in known) && known.users.has(user) ? `user ${user}` : 'unknown user';
      this.log?.warn({ event: { action: 'admin-login', outcome: 'failure' }, client: { address }, login: { method, who } }, `admin UI login failed (${who}) from ${address}`);
      const none = method === 'token' ? !this.methods().token : !this.methods().password;
      return this.loginReply(r, 401, { error: none ? `Logging in with ${method === 'token' ? 'the token' : 'an account'} is not configured.` : method === 'token' ? 'Wrong token.' : 'Wrong user name or password.', user, next });
    }
    // A fresh id at every login (no session fixation).
    this.sessions.destroy(r.cookies.get(r.sessionCookie));
    const { id } = this.sessions.create(actor, method);
    this.log?.info({ event: { action: 'admin-login', outcome: 'success' }, client: { address }, user: { name: actor } }, `admin UI login: ${actor} from ${address}`);
    return redirect(next, { 'set-cookie': [cookie(r.sessionCookie, id, { secure: r.secure }), cookie(r.loginCookie, '', { secure: r.secure, path: '/ui/login', maxAgeS: 0 })] });
  }

  // ---- pages ----

  private async page(source: WithAllowlists, a: Authed): Promise<Reply> {
    const service = source.allowlists?.();
    let health: StoreHealth | undefined;
    try {
      health = service?.health();
    } catch {
      health = undefined;
    }
    const ctx = { actor: a.session.actor, csrf: a.session.csrf, ...(health ? { health } : {}) };
    const ok = (nav: NavKey, title: string, body: Html, status = 200): Reply => {
      const done = a.query.get('done');
      return { status, body: layout(ctx, nav, title, body, done !== null && Object.hasOwn(FLASH, done) ? FLASH[done] : undefined) };
    };
    const notFound = (what: string): Reply => ok('none', 'Not found', messagePage(what, { href: '/ui/', label: 'Back to the allowlists' }), 404);
    const p = a.path;
    const isGet = a.method === 'GET' || a.method === 'HEAD';

    if (p === '/ui/sites' && isGet) {
      const snapshot = source.snapshot();
      if (!snapshot) return ok('sites', 'Sites', messagePage('No configuration has been applied yet.'), 503);
      return ok('sites', 'Sites', sitesPage(siteInventory(snapshot), source.configInfo().generation));
    }
    if (p === '/ui/backends' && isGet) return ok('backends', 'Backends', backendsPage(await source.pools(), source.configInfo().generation));
    if (p === '/ui/config' && isGet) return ok('config', 'Configuration', configPage(source.configInfo(), health));

    const allowlistPage = p === '/ui/' || p === '/ui/search' || p === '/ui/history' || p === '/ui/add' || p.startsWith('/ui/lists/');
    if (!allowlistPage) return notFound(`There is no page at ${p}.`);
    if (!service) {
      return ok('allowlists', 'Allowlists', messagePage('The allowlist store does not run in this process, so allowlists cannot be shown or changed here.'), 503);
    }
    try {
      return await this.allowlistPage(service, a, ok, notFound);
    } catch (err) {
      const fe = inputError(err);
      if (fe) return ok('none', 'Refused', messagePage(`${fe.message}${fe.fix ? ` — ${fe.fix}` : ''}`, { href: '/ui/', label: 'Back to the allowlists' }), 422);
      this.log?.error({ err: { message: scrub(err instanceof Error ? err.message : String(err)) }, event: { action: 'admin-ui-error' }, url: { path: p } }, 'admin UI: allowlist store operation failed');
      return ok('none', 'Allowlist store unavailable', messagePage(`The allowlist store could not do that: ${scrub(err instanceof Error ? err.message : String(err))}. Nothing was changed; try again when the store is back.`, { href: '/ui/', label: 'Back to the allowlists' }), 503);
    }
  }

  private async allowlistPage(service: AllowlistService, a: Authed, ok: (nav: NavKey, title: string, body: Html, status?: number) => Reply, notFound: (what: string) => Reply): Promise<Reply> {
    const p = a.path;
    const post = a.method === 'POST';
    const actor = a.session.actor;
    const now = Date.now();

    if (p === '/ui/' && !post) {
      const lists = await service.lists();
      return ok('allowlists', 'Allowlists', overviewPage(lists, service.health(), service.kind));
    }
    if (p === '/ui/search' && !post) {
      const lists = (await service.lists()).map((l) => l.name);
      const address = (a.query.get('address') ?? '').trim();
      const list = (a.query.get('list') ?? '').trim();
      if (address === '') return ok('search', 'Address search', searchPage({ address, list, lists, nowMs: now }));
      const targets = list !== '' ? [list] : lists;
      try {
        const results: CheckResult[] = await Promise.all(targets.map((l) => service.check(address, l)));
        return ok('search', 'Address search', searchPage({ address, list, lists, results, nowMs: now }));
      } catch (err) {
        const fe = inputError(err);
        if (!fe) throw err;
        return ok('search', 'Address search', searchPage({ address, list, lists, error: { ...fe, field: 'address' }, nowMs: now }), 422);
      }
    }
    if (p === '/ui/history' && !post) {
      const list = (a.query.get('list') ?? '').trim();
      const records = await service.history({ ...(list !== '' ? { list } : {}), limit: HISTORY_LIMIT });
      return ok('history', list !== '' ? `Change history of ${list}` : 'Change history', historyPage(records, list !== '' ? html`Changes to list <a href="/ui/lists/${encodeURIComponent(list)}">${list}</a>. <a href="/ui/history">All lists</a>` : 'Every change to every allowlist.', HISTORY_LIMIT));
    }
    if (p === '/ui/add') {
      const values = post ? entryValues(a.form) : { list: (a.query.get('list') ?? '').trim(), cidr: '', partner: '', note: '', expiresAt: '', reason: '' };
      const render = (error?: FormError): Reply => ok('allowlists', 'Add an allowlist entry', entryForm({ action: '/ui/add', csrf: a.session.csrf, values, listEditable: true, submit: 'Add entry', ...(error ? { error } : {}) }), error ? 422 : 200);
      if (!post) return render();
      try {
        const entry = await service.add(entryInput(values), { actor, reason: values.reason });
        return redirect(`/ui/lists/${encodeURIComponent(entry.list)}?done=added#entry-${encodeURIComponent(entry.id)}`);
      } catch (err) {
        const fe = inputError(err);
        if (!fe) throw err;
        return render(fe);
      }
    }
    const m = /^\/ui\/lists\/([^/]+)(?:\/entries\/([^/]+)\/(edit|remove|expire|history))?$/.exec(p);
    if (!m) return notFound(`There is no page at ${p}.`);
    const list = decodeSegment(m[1]!);
    if (list === undefined || !LIST_SEGMENT.test(list)) return notFound('No such list.');
    if (m[2] === undefined) {
      if (post) return plain(405, 'GET only', { allow: 'GET, HEAD' });
      const entries = await service.entries(list);
      return ok('allowlists', `Allowlist ${list}`, entriesPage(list, entries, now));
    }
    const id = decodeSegment(m[2]);
    if (id === undefined || !ID_SEGMENT.test(id)) return notFound('No such entry.');
    const action = m[3] as 'edit' | 'remove' | 'expire' | 'history';
    const entry: AllowEntry | undefined = (await service.entries(list)).find((e) => e.id === id);
    const base = `/ui/lists/${encodeURIComponent(list)}/entries/${encodeURIComponent(id)}`;

    if (action === 'history') {
      if (post) return plain(405, 'GET only', { allow: 'GET, HEAD' });
      const records = await service.history({ list, entryId: id, limit: HISTORY_LIMIT });
      if (!entry && records.length === 0) return notFound('No such entry, and no history for it.');
      return ok('history', `History of an entry in ${list}`, historyPage(records, entry ? html`Entry <span class="mono">${entry.cidr}</span> (${entry.partner}) in <a href="/ui/lists/${encodeURIComponent(list)}">${list}</a>.` : html`A removed entry of <a href="/ui/lists/${encodeURIComponent(list)}">${list}</a>.`, HISTORY_LIMIT));
    }
    if (!entry) return notFound('No such entry in this list (it may have been removed).');
    if (action === 'edit') {
      const values: EntryFormValues = post ? { ...entryValues(a.form), list } : { list, cidr: entry.cidr, partner: entry.partner, note: entry.note, expiresAt: entry.expiresAt ?? '', reason: '' };
      const render = (error?: FormError): Reply => ok('allowlists', `Edit an entry of ${list}`, entryForm({ action: `${base}/edit`, csrf: a.session.csrf, values, listEditable: false, submit: 'Save changes', ...(error ? { error } : {}) }), error ? 422 : 200);
      if (!post) return render();
      try {
        await service.update(id, entryInput(values), { actor, reason: values.reason });
        return redirect(`/ui/lists/${encodeURIComponent(list)}?done=updated`);
      } catch (err) {
        const fe = inputError(err);
        if (!fe) throw err;
        return render(fe);
      }
    }
    // remove | expire
    const verb = action === 'remove' ? 'Remove' : 'Expire';
    const reason = (a.form.get('reason') ?? '').trim();
    const render = (error?: FormError): Reply => ok('allowlists', `${verb} an entry of ${list}`, confirmPage({ action: `${base}/${action}`, csrf: a.session.csrf, entry, verb, reason, ...(error ? { error } : {}) }), error ? 422 : 200);
    if (!post) return render();
    try {
      if (action === 'remove') await service.remove(id, { actor, reason });
      else await service.expire(id, { actor, reason });
      return redirect(`/ui/lists/${encodeURIComponent(list)}?done=${action === 'remove' ? 'removed' : 'expired'}`);
    } catch (err) {
      const fe = inputError(err);
      if (!fe) throw err;
      return render(fe);
    }
  }
}

function decodeSegment(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function entryValues(form: URLSearchParams): EntryFormValues {
  const get = (k: string): string => (form.get(k) ?? '').trim();
  return { list: get('list'), cidr: get('cidr'), partner: get('partner'), note: get('note'), expiresAt: get('expiresAt'), reason: get('reason') };
}

function entryInput(v: EntryFormValues): AllowEntryInput {
  const expiresAt = normalizeExpiry(v.expiresAt);
  return { list: v.list, cidr: v.cidr, partner: v.partner, note: v.note, ...(expiresAt !== undefined ? { expiresAt } : {}) };
}

function readForm(req: http.IncomingMessage): Promise<URLSearchParams | 'too large' | 'not a form'> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume();
    return Promise.resolve('not a form');
  }
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > MAX_FORM_BYTES) {
    req.resume();
    return Promise.resolve('too large');
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > MAX_FORM_BYTES) {
        done = true;
        resolve('too large');
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      }
    });
    req.on('error', () => {
      if (!done) {
        done = true;
        resolve('not a form');
      }
    });
  });
}

function plain(status: number, text: string, headers: Record<string, string> = {}): Reply {
  return { status, body: html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>perimeter admin</title><link rel="stylesheet" href="/ui/static/style.css"><link rel="icon" href="/ui/static/favicon.svg"></head><body><main id="main"><h1>${status === 403 ? 'Refused' : 'perimeter admin'}</h1><p role="alert">${text}</p><p><a href="/ui/">Admin UI</a></p></main></body></html>\n`, headers };
}

function send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply): void {
  const text = reply.body === undefined ? '' : String(reply.body);
  res.writeHead(reply.status, {
    ...SECURITY_HEADERS,
    'content-type': reply.contentType ?? 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...reply.headers,
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}
