/**
 * The allowlist part of the admin JSON API (docs/allowlists.md):
 *
 *   GET    /api/allowlists                        lists with entry counts and the store's health
 *   GET    /api/allowlists/:list/entries          entries of a list (expired ones flagged)
 *   POST   /api/allowlists/:list/entries          add {cidr, partner, note?, expiresAt?, reason}
 *   GET    /api/allowlists/entries/:id            one entry
 *   PUT    /api/allowlists/entries/:id            edit (fields left out keep their value; expiresAt null clears it)
 *   DELETE /api/allowlists/entries/:id            remove (reason in the body or ?reason=)
 *   POST   /api/allowlists/entries/:id/expire     expire now {reason}
 *   GET    /api/allowlists/check?address=&list=   is it allowed, by which entry (every list without list=)
 *   GET    /api/allowlists/history?list=&entry=&limit=
 *   GET    /api/health                            {status: ok|degraded, allowlists: StoreHealth|null}
 *
 * Authentication is the admin listener's (bearer token off loopback,
 * Host/Origin checks on loopback); request bodies must be JSON, which a
 * cross-site HTML form cannot send. The actor recorded in the audit trail
 * is 'api', or 'api:NAME' with an `X-Perimeter-Actor: NAME` header (the CLI
 * sends its --as or the local user name).
 */
import type http from 'node:http';
import type { Logger } from '../core/log.js';
import { AllowlistNotFoundError, AllowlistUnavailableError } from '../allowlist/store.js';
import { AllowlistInputError, type AllowEntry, type AllowEntryInput, type AllowlistService, type ChangeContext } from '../allowlist/types.js';
import type { AdminSource } from './types.js';

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** For the admin API's index (GET /). */
export const ALLOWLIST_ENDPOINTS: readonly string[] = [
  'GET /api/allowlists',
  'GET, POST /api/allowlists/:list/entries',
  'GET, PUT, DELETE /api/allowlists/entries/:id',
  'POST /api/allowlists/entries/:id/expire',
  'GET /api/allowlists/check?address=&list=',
  'GET /api/allowlists/history?list=&entry=&limit=',
];

const MAX_BODY = 64 * 1024;
const ACTOR = /^[A-Za-z0-9._@+-]{1,64}$/;
const ENTRY_ID = /^[A-Za-z0-9._-]{1,100}$/;

/** Whether the admin server should hand this path to handleAllowlistApi (which reads the body itself). */
export function isAllowlistApiPath(path: string): boolean {
  return path === '/api/allowlists' || path.startsWith('/api/allowlists/');
}

const json = (status: number, body: unknown, headers?: Record<string, string>): ApiReply => ({ status, body, ...(headers ? { headers } : {}) });

class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fix: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY && !failed) {
        failed = true;
        reject(new BadRequest(413, `the request body is larger than ${MAX_BODY} bytes`, 'send one entry per request'));
      }
      if (!failed) chunks.push(c);
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
      failed = true;
    });
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve({});
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json\b/i.test(type)) {
        return reject(new BadRequest(415, `the request body must be JSON (Content-Type: application/json), not '${type.slice(0, 60)}'`, "send the fields as a JSON object with 'Content-Type: application/json'"));
      }
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return reject(new BadRequest(400, 'the request body is not valid JSON', 'send a JSON object, e.g. {"cidr": "198.51.100.7", "partner": "Acme", "reason": "ticket 123"}'));
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return reject(new BadRequest(400, 'the request body must be a JSON object', 'send {"field": value, ...}'));
      resolve(v as Record<string, unknown>);
    });
  });
}

function actorOf(req: http.IncomingMessage): string {
  const h = req.headers['x-perimeter-actor'];
  if (h === undefined) return 'api';
  const v = Array.isArray(h) ? h[0] : h;
  if (v === undefined || !ACTOR.test(v)) {
    throw new BadRequest(400, 'the X-Perimeter-Actor header is not a valid name', 'use 1 to 64 letters, digits and . _ @ + -, e.g. alice', 'actor');
  }
  return `api:${v}`;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

function withExpired(e: AllowEntry, now: number): AllowEntry & { expired: boolean } {
  return { ...e, expired: e.expiresAt !== undefined && Date.parse(e.expiresAt) <= now };
}

async function findEntry(svc: AllowlistService, id: string): Promise<AllowEntry> {
  const direct = (svc as { entry?: (id: string) => AllowEntry | undefined }).entry;
  if (typeof direct === 'function') {
    const e = direct.call(svc, id);
    if (e) return e;
    throw new AllowlistNotFoundError(id);
  }
  for (const l of await svc.lists()) {
    const e = (await svc.entries(l.name)).find((x) => x.id === id);
    if (e) return e;
  }
  throw new AllowlistNotFoundError(id);
}

function context(req: http.IncomingMessage, body: Record<string, unknown>, query: URLSearchParams): ChangeContext {
  return { actor: actorOf(req), reason: str(body.reason) ?? query.get('reason') ?? '' };
}

/** GET /api/health: overall state and the allowlist store's. */
export function healthBody(source: AdminSource): { status: 'ok' | 'degraded'; generation: number; allowlists: unknown } {
  const h = source.allowlists?.()?.health();
  return { status: h?.state === 'degraded' ? 'degraded' : 'ok', generation: source.configInfo().generation, allowlists: h ?? null };
}

export async function handleAllowlistApi(source: AdminSource, req: http.IncomingMessage, log?: Logger): Promise<ApiReply> {
  const url = new URL(req.url ?? '/', 'http://admin.invalid');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  const query = url.searchParams;
  const seg = path.split('/').slice(3).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  try {
    const wantsBody = method === 'POST' || method === 'PUT' || method === 'DELETE';
    const body = wantsBody ? await readBody(req) : (req.resume(), {});
    const svc = source.allowlists?.();
    if (!svc) return json(503, { error: 'this perimeter has no allowlist store open', fix: 'configure tcp listeners or an admin listener (the store opens with them)' });
    const now = Date.now();
    const allowed = (methods: string[]): ApiReply => json(405, { error: `${path} does not take ${method}; use ${methods.join(' or ')}` }, { allow: methods.join(', ') });
    const isGet = method === 'GET' || method === 'HEAD';

    // /api/allowlists
    if (seg.length === 0 || (seg.length === 1 && seg[0] === '')) {
      if (!isGet) return allowed(['GET']);
      return json(200, { store: svc.health(), lists: await svc.lists() });
    }
    if (seg.length === 1 && seg[0] === 'check') {
      if (!isGet) return allowed(['GET']);
      const address = query.get('address') ?? '';
      const list = query.get('list');
      if (list) return json(200, await svc.check(address, list));
      const results = [];
      for (const l of await svc.lists()) results.push(await svc.check(address, l.name));
      if (results.length === 0) await svc.check(address, 'any'); // validates the address
      return json(200, { address: address.trim(), allowed: results.some((r) => r.allowed), results });
    }
    if (seg.length === 1 && seg[0] === 'history') {
      if (!isGet) return allowed(['GET']);
      const limit = query.get('limit');
      const records = await svc.history({
        ...(query.get('list') ? { list: query.get('list')! } : {}),
        ...(query.get('entry') ? { entryId: query.get('entry')! } : {}),
        ...(limit ? { limit: Number(limit) } : {}),
      });
      return json(200, { records });
    }
    // /api/allowlists/:list/entries (GET, POST)
    if (seg.length === 2 && seg[1] === 'entries' && (isGet || method === 'POST')) {
      const list = seg[0]!;
      if (isGet) {
        const entries = await svc.entries(list);
        return json(200, { list, entries: entries.map((e) => withExpired(e, now)) });
      }
      const input: AllowEntryInput = {
        list,
        cidr: str(body.cidr) ?? str(body.address) ?? '',
        partner: str(body.partner) ?? '',
        ...(str(body.note) !== undefined ? { note: str(body.note)! } : {}),
        ...(body.expiresAt !== undefined && body.expiresAt !== null ? { expiresAt: str(body.expiresAt) ?? String(body.expiresAt) } : {}),
      };
      const ctx = context(req, body, query);
      const entry = await svc.add(input, ctx);
      log?.info({ event: { action: 'allowlist-add' }, actor: ctx.actor, list, entry: entry.id, cidr: entry.cidr, partner: entry.partner, reason: ctx.reason }, `${ctx.actor} added ${entry.cidr} (${entry.partner}) to allowlist ${list}`);
      return json(201, { entry: withExpired(entry, Date.now()) }, { location: `/api/allowlists/entries/${entry.id}` });
    }
    // /api/allowlists/entries/:id[/expire]
    if (seg[0] === 'entries' && (seg.length === 2 || (seg.length === 3 && seg[2] === 'expire'))) {
      const id = seg[1]!;
      if (!ENTRY_ID.test(id)) throw new AllowlistNotFoundError(id.slice(0, 100));
      if (seg.length === 3) {
        if (method !== 'POST') return allowed(['POST']);
        const ctx = context(req, body, query);
        const entry = await svc.expire(id, ctx);
        log?.info({ event: { action: 'allowlist-expire' }, actor: ctx.actor, list: entry.list, entry: id, cidr: entry.cidr, reason: ctx.reason }, `${ctx.actor} expired ${entry.cidr} on allowlist ${entry.list}`);
        return json(200, { entry: withExpired(entry, Date.now()) });
      }
      if (isGet) return json(200, { entry: withExpired(await findEntry(svc, id), now) });
      if (method === 'PUT') {
        const cur = await findEntry(svc, id);
        const expires = body.expiresAt === null ? undefined : body.expiresAt === undefined ? cur.expiresAt : (str(body.expiresAt) ?? String(body.expiresAt));
        const input: AllowEntryInput = {
          list: str(body.list) ?? cur.list,
          cidr: str(body.cidr) ?? str(body.address) ?? cur.cidr,
          partner: str(body.partner) ?? cur.partner,
          note: str(body.note) ?? cur.note,
          ...(expires !== undefined ? { expiresAt: expires } : {}),
        };
        const ctx = context(req, body, query);
        const entry = await svc.update(id, input, ctx);
        log?.info({ event: { action: 'allowlist-update' }, actor: ctx.actor, list: entry.list, entry: id, cidr: entry.cidr, reason: ctx.reason }, `${ctx.actor} edited ${entry.cidr} on allowlist ${entry.list}`);
        return json(200, { entry: withExpired(entry, Date.now()) });
      }
      if (method === 'DELETE') {
        const ctx = context(req, body, query);
        const entry = await svc.remove(id, ctx);
        log?.info({ event: { action: 'allowlist-remove' }, actor: ctx.actor, list: entry.list, entry: id, cidr: entry.cidr, reason: ctx.reason }, `${ctx.actor} removed ${entry.cidr} from allowlist ${entry.list}`);
        return json(200, { entry: withExpired(entry, Date.now()) });
      }
      return allowed(['GET', 'PUT', 'DELETE']);
    }
    if (seg.length === 2 && seg[1] === 'entries') return allowed(['GET', 'POST']);
    return json(404, {
      error: `no such endpoint: ${path}`,
      fix: 'see GET / for the endpoints; allowlist endpoints are /api/allowlists, /api/allowlists/LIST/entries, /api/allowlists/entries/ID, /api/allowlists/check, /api/allowlists/history',
    });
  } catch (err) {
    if (!req.complete) req.resume();
    if (err instanceof AllowlistNotFoundError) return json(404, { error: err.message, field: err.field, fix: err.fix });
    if (err instanceof AllowlistInputError) return json(400, { error: err.message, field: err.field, fix: err.fix });
    if (err instanceof AllowlistUnavailableError) {
      return json(503, { error: err.message, fix: 'try again when the database is reachable; GET /api/health shows the store state' }, { 'retry-after': '5' });
    }
    if (err instanceof BadRequest) return json(err.status, { error: err.message, ...(err.field ? { field: err.field } : {}), fix: err.fix });
    throw err;
  }
}
