/**
 * `perimeter allow add|rm|expire|ls|check|history`: manage allowlist entries
 * through the running perimeter's admin API (the store lives there). The
 * admin URL and token come from the configuration directory (-c, default
 * the current directory) or --admin/--token-file, as for `perimeter reload`.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import type { AllowEntry, AuditRecord, CheckResult, StoreHealth } from '../allowlist/types.js';
import { AdminUnreachable, adminBase, adminFromConfig, readToken } from './reload.js';

export const help = `Usage: perimeter allow <command> [arguments] [options]

Manage the allowlists of the running perimeter through its admin API.

Commands:
  add LIST ADDRESS --partner NAME --reason WHY [--note TEXT] [--expires WHEN]
                       add an address or CIDR range (198.51.100.7, 2001:db8::/48)
  rm ID --reason WHY   remove an entry (established sessions stay; new ones are refused)
  expire ID --reason WHY
                       end an entry now (it stays listed, visibly expired)
  ls [LIST]            the lists (without LIST) or a list's entries
  check ADDRESS [LIST] is ADDRESS allowed, and by which entry (every list without LIST)
  history [LIST]       the change history, newest first (--entry ID, --limit N)

Options:
  -c, --config DIR     configuration directory to find the admin API in
                       (admin.listen, admin.token-file; default .)
  --admin URL          the admin API, e.g. http://127.0.0.1:9901
  --token-file FILE    bearer token for the admin API
  --as NAME            who is making the change, for the audit trail
                       (default: your user name); recorded as api:NAME
  --json               print the API's JSON answer

WHEN is an ISO 8601 date or time: 2027-01-01 (00:00 UTC) or
2027-01-01T12:00:00+02:00.

Examples:
  perimeter allow add content-partners 198.51.100.7 --partner "Acme Records" \\
      --note SFTP --expires 2027-01-01 --reason "ticket 123"
  perimeter allow check 198.51.100.7 content-partners
  perimeter allow rm 5f0c...e1 --reason "contract ended"

Exit status: 0 done (check: allowed), 1 check: not allowed, or the change
was refused (invalid input, unknown entry; the message says how to fix it),
2 usage error, 3 the admin API could not be reached, or the allowlist store
is unreachable (503: changes are refused until it is back).
`;

class Usage extends Error {}

interface Ctx {
  readonly base: string;
  readonly token: string | undefined;
  readonly actor: string | undefined;
  readonly json: boolean;
}

interface ApiAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function call(ctx: Ctx, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (ctx.token) headers.authorization = `Bearer ${ctx.token}`;
  if (ctx.actor) headers['x-perimeter-actor'] = ctx.actor;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${ctx.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new AdminUnreachable(`cannot reach the admin API at ${ctx.base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, true);
  }
  const text = await res.text();
  if (res.status === 401 || (res.status === 403 && !text.includes('"field"'))) {
    throw new AdminUnreachable(`the admin API at ${ctx.base} refused the request with ${res.status}${ctx.token ? ': the token was not accepted' : ': it needs a token, pass --token-file FILE'}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AdminUnreachable(`the admin API at ${ctx.base} answered ${path} with ${res.status} and no JSON${res.status === 404 ? ' (this perimeter may be too old to have allowlists)' : ''}: ${text.trim().slice(0, 200)}`);
  }
  return { status: res.status, body: (parsed ?? {}) as Record<string, unknown> };
}

/** An API error as the CLI reports it; returns the exit status. */
function failed(a: ApiAnswer): number {
  const b = a.body as { error?: string; fix?: string; field?: string };
  process.stderr.write(`perimeter allow: ${b.error ?? `the admin API answered ${a.status}`}\n`);
  if (b.fix) process.stderr.write(`fix: ${b.fix}\n`);
  return a.status === 503 || a.status >= 500 ? 3 : 1;
}

function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function describe(e: AllowEntry & { expired?: boolean }): string {
  const exp = e.expiresAt ? `, ${e.expired ? 'expired' : 'expires'} ${e.expiresAt}` : '';
  return `${e.cidr} (${e.partner}${e.note ? `: ${e.note}` : ''}; entry ${e.id}, added by ${e.addedBy} ${e.addedAt}${exp})`;
}

function print(ctx: Ctx, body: unknown, text: () => string): void {
  process.stdout.write(ctx.json ? JSON.stringify(body, null, 2) + '\n' : text());
}

const enc = encodeURIComponent;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        admin: { type: 'string' },
        'token-file': { type: 'string' },
        as: { type: 'string' },
        json: { type: 'boolean' },
        partner: { type: 'string' },
        note: { type: 'string' },
        expires: { type: 'string' },
        reason: { type: 'string' },
        entry: { type: 'string' },
        limit: { type: 'string' },
      },
    });
  } catch (e) {
    process.stderr.write(`perimeter allow: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const [sub, ...args] = positionals;
  try {
    if (!sub) throw new Usage('expected a command: add, rm, expire, ls, check or history');
    if (!['add', 'rm', 'remove', 'expire', 'ls', 'list', 'check', 'history'].includes(sub)) throw new Usage(`unknown command '${sub}'`);
    const max = { add: 2, rm: 1, remove: 1, expire: 1, ls: 1, list: 1, check: 2, history: 1 }[sub as 'add'];
    if (args.length > max) throw new Usage(`too many arguments for '${sub}': ${args.slice(max).join(' ')}`);
    if (v.as !== undefined && !/^[A-Za-z0-9._@+-]{1,64}$/.test(v.as)) throw new Usage('--as takes a name of 1 to 64 letters, digits and . _ @ + -');
  } catch (e) {
    if (!(e instanceof Usage)) throw e;
    process.stderr.write(`perimeter allow: ${e.message}\n\n${help}`);
    return 2;
  }

  // Where the admin API is.
  const dir = v.config ?? '.';
  const fromConfig = v.admin === undefined || v['token-file'] === undefined ? await adminFromConfig(dir) : undefined;
  let base: string;
  if (v.admin !== undefined) base = adminBase(v.admin);
  else if (fromConfig && 'url' in fromConfig) base = fromConfig.url;
  else {
    process.stderr.write(`perimeter allow: ${fromConfig?.error ?? 'no admin URL'}\n(pass -c DIR with the configuration directory, or --admin URL)\n`);
    return 3;
  }
  let token: string | undefined;
  try {
    token = await readToken(v['token-file']);
    if (token === undefined && fromConfig?.tokenFile) token = await readToken(fromConfig.tokenFile).catch(() => undefined);
  } catch (e) {
    process.stderr.write(`perimeter allow: ${(e as Error).message}\n`);
    return 2;
  }
  let actor = v.as;
  if (actor === undefined) {
    try {
      const u = userInfo().username;
      if (/^[A-Za-z0-9._@+-]{1,64}$/.test(u)) actor = u;
    } catch {
      // no user name: recorded as 'api'
    }
  }
  const ctx: Ctx = { base, token, actor, json: v.json === true };

  try {
    return await dispatch(ctx, sub, args, v);
  } catch (e) {
    if (e instanceof Usage) {
      process.stderr.write(`perimeter allow: ${e.message}\n\n${help}`);
      return 2;
    }
    if (!(e instanceof AdminUnreachable)) throw e;
    process.stderr.write(`perimeter allow: ${e.message}\n`);
    if (e.noConnection) process.stderr.write('Is perimeter running with an admin listener (admin.listen in perimeter.yaml)?\n');
    return 3;
  }
}

type Values = Record<string, string | boolean | undefined>;

async function dispatch(ctx: Ctx, sub: string, args: string[], v: Values): Promise<number> {
  const need = (value: string | undefined, what: string): string => {
    if (value === undefined || value === '') throw new Usage(what);
    return value;
  };
  const opt = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  switch (sub) {
    case 'add': {
      const list = need(args[0], "add needs a list and an address: perimeter allow add LIST ADDRESS --partner NAME --reason WHY");
      const cidr = need(args[1], "add needs an address or CIDR after the list name, e.g. 198.51.100.7 or 198.51.100.0/24");
      const body = {
        cidr,
        partner: need(opt('partner'), "add needs --partner NAME (who the entry is for)"),
        reason: need(opt('reason'), "add needs --reason WHY (kept in the change history), e.g. --reason 'ticket 123'"),
        ...(opt('note') !== undefined ? { note: opt('note') } : {}),
        ...(opt('expires') !== undefined ? { expiresAt: opt('expires') } : {}),
      };
      const a = await call(ctx, 'POST', `/api/allowlists/${enc(list)}/entries`, body);
      if (a.status !== 201) return failed(a);
      const e = a.body.entry as AllowEntry;
      print(ctx, a.body, () => `added to ${e.list}: ${describe(e)}\n`);
      return 0;
    }
    case 'rm':
    case 'remove':
    case 'expire': {
      const id = need(args[0], `${sub} needs an entry id (see 'perimeter allow ls LIST')`);
      const reason = need(opt('reason'), `${sub} needs --reason WHY (kept in the change history)`);
      const a = sub === 'expire'
        ? await call(ctx, 'POST', `/api/allowlists/entries/${enc(id)}/expire`, { reason })
        : await call(ctx, 'DELETE', `/api/allowlists/entries/${enc(id)}`, { reason });
      if (a.status !== 200) return failed(a);
      const e = a.body.entry as AllowEntry;
      print(ctx, a.body, () => `${sub === 'expire' ? 'expired' : 'removed'} from ${e.list}: ${describe(e)}\n`);
      return 0;
    }
    case 'ls':
    case 'list': {
      if (args[0] === undefined) {
        const a = await call(ctx, 'GET', '/api/allowlists');
        if (a.status !== 200) return failed(a);
        const lists = a.body.lists as { name: string; entries: number; listeners: string[] }[];
        const store = a.body.store as StoreHealth;
        print(ctx, a.body, () => {
          const head = `store: ${store.store}, ${store.state}${store.error ? ` (${store.error})` : ''}\n`;
          if (lists.length === 0) return `${head}no allowlists yet; add an entry with 'perimeter allow add LIST ADDRESS ...'\n`;
          return head + pad([['LIST', 'ENTRIES', 'TCP LISTENERS'], ...lists.map((l) => [l.name, String(l.entries), l.listeners.join(', ') || '-'])]);
        });
        return 0;
      }
      const a = await call(ctx, 'GET', `/api/allowlists/${enc(args[0])}/entries`);
      if (a.status !== 200) return failed(a);
      const entries = a.body.entries as (AllowEntry & { expired: boolean })[];
      print(ctx, a.body, () => {
        if (entries.length === 0) return `${args[0]} has no entries: nobody is allowed\n`;
        return pad([
          ['ID', 'CIDR', 'PARTNER', 'EXPIRES', 'ADDED BY', 'NOTE'],
          ...entries.map((e) => [e.id, e.cidr, e.partner, e.expiresAt ? `${e.expiresAt}${e.expired ? ' (expired)' : ''}` : 'never', `${e.addedBy} ${e.addedAt.slice(0, 10)}`, e.note]),
        ]);
      });
      return 0;
    }
    case 'check': {
      const address = need(args[0], 'check needs an address, e.g. perimeter allow check 198.51.100.7 content-partners');
      const q = `address=${enc(address)}${args[1] !== undefined ? `&list=${enc(args[1])}` : ''}`;
      const a = await call(ctx, 'GET', `/api/allowlists/check?${q}`);
      if (a.status !== 200) return failed(a);
      const results = args[1] !== undefined ? [a.body as unknown as CheckResult] : (a.body.results as CheckResult[]);
      const allowed = results.some((r) => r.allowed);
      print(ctx, a.body, () => {
        if (results.length === 0) return `${address}: not allowed (there are no allowlists)\n`;
        return results.map((r) => (r.allowed && r.entry ? `${r.address} is allowed on ${r.list} by ${describe(r.entry)}\n` : `${r.address} is not allowed on ${r.list}\n`)).join('');
      });
      return allowed ? 0 : 1;
    }
    case 'history': {
      const params = new URLSearchParams();
      if (args[0] !== undefined) params.set('list', args[0]);
      if (opt('entry') !== undefined) params.set('entry', opt('entry')!);
      if (opt('limit') !== undefined) {
        if (!/^\d+$/.test(opt('limit')!)) throw new Usage('--limit takes a number');
        params.set('limit', opt('limit')!);
      }
      const a = await call(ctx, 'GET', `/api/allowlists/history${params.size ? `?${params}` : ''}`);
      if (a.status !== 200) return failed(a);
      const records = a.body.records as AuditRecord[];
      print(ctx, a.body, () => {
        if (records.length === 0) return 'no changes recorded\n';
        return pad([
          ['AT', 'ACTOR', 'ACTION', 'LIST', 'CIDR', 'ENTRY', 'REASON'],
          ...records.map((r) => [r.at, r.actor, r.action, r.list, (r.after ?? r.before)?.cidr ?? '', r.entryId, r.reason]),
        ]);
      });
      return 0;
    }
  }
  throw new Usage(`unknown command '${sub}'`);
}
