/**
 * `perimeter reload [DIR]`: ask the running perimeter to re-read its
 * configuration (POST /api/reload on the admin API) and report whether the
 * new generation was applied or refused. The admin URL comes from --admin or
 * from DIR's perimeter.yaml; it is read with the YAML parser alone, so a
 * reload of a broken configuration still reaches perimeter and reports the
 * refusal rather than failing here.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import type { ReloadOutcome } from '../admin/types.js';
import { parseHostPort } from '../config/values.js';

export const help = `Usage: perimeter reload [DIR] [--admin URL] [--token-file FILE]

Ask the running perimeter to reload its configuration directory, through
the admin API (POST /api/reload). The new configuration is validated and
built beside the running one; if it is refused, the running one keeps
serving and the errors are printed.

Options:
  --admin URL          the admin API, e.g. http://127.0.0.1:9901 (default:
                       admin.listen in DIR/perimeter.yaml)
  --token-file FILE    send the token in FILE as 'Authorization: Bearer'
                       (default: admin.token-file in DIR/perimeter.yaml)

Exit status: 0 reloaded, 1 the new configuration was refused, 2 usage
error, 3 the admin API could not be reached (or refused the request).
`;

const ENABLE_ADMIN = `add an admin listener to perimeter.yaml, e.g.

  admin:
    listen: "127.0.0.1:9901"

then restart perimeter (or reload it with SIGHUP), or pass --admin URL`;

/** The admin API could not be reached, or answered something other than its API. */
export class AdminUnreachable extends Error {
  constructor(
    message: string,
    /** No connection at all (nothing listening there), as opposed to a refusal or a non-API answer. */
    readonly noConnection = false,
  ) {
    super(message);
  }
}

export interface AdminResponse {
  readonly status: number;
  readonly body: unknown;
}

/** Read a bearer token file (surrounding whitespace ignored, as the loader does). */
export async function readToken(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read token file '${file}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new Error(`token file '${file}' is empty`);
  return token;
}

/** Normalize an --admin value: a bare host:port gets http://. */
export function adminBase(url: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  return withScheme.replace(/\/+$/, '');
}

/** One JSON request to the admin API. Throws AdminUnreachable when it cannot be reached or does not answer JSON. */
export async function adminRequest(base: string, path: string, opts: { method?: 'GET' | 'POST'; token?: string | undefined; timeoutMs?: number } = {}): Promise<AdminResponse> {
  const url = `${base}${path}`;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(url, { method: opts.method ?? 'GET', headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    throw new AdminUnreachable(`cannot reach the admin API at ${base}: ${why}`, true);
  }
  const text = await res.text();
  if (res.status === 401 || res.status === 403) {
    throw new AdminUnreachable(`the admin API at ${base} refused ${path} with ${res.status}${opts.token ? ': the token was not accepted' : ': it needs a token, pass --token-file FILE'}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AdminUnreachable(`the admin API at ${base} answered ${path} with ${res.status} and no JSON${res.status === 404 || res.status === 405 ? ' (this perimeter may be too old to have it)' : ''}: ${text.trim().slice(0, 200)}`);
  }
  return { status: res.status, body };
}

export type AdminFromConfig = { url: string; tokenFile: string | undefined } | { error: string; tokenFile: string | undefined };

/**
 * The admin URL (from admin.listen) and token file (admin.token-file,
 * relative to DIR) of DIR/perimeter.yaml, read with the YAML parser alone:
 * the rest of the file may be invalid. An address that listens everywhere
 * is reached on loopback.
 */
export async function adminFromConfig(dir: string): Promise<AdminFromConfig> {
  const file = join(dir, 'perimeter.yaml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    return { error: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, tokenFile: undefined };
  }
  const doc = parseDocument(text);
  const tf: unknown = doc.getIn(['admin', 'token-file']);
  const tokenFile = typeof tf === 'string' && tf !== '' ? resolve(dir, tf) : undefined;
  const listen: unknown = doc.getIn(['admin', 'listen']);
  if (listen === undefined) return { error: `${file} has no admin.listen, so the running perimeter has no admin API to ask: ${ENABLE_ADMIN}`, tokenFile };
  const r = parseHostPort(listen, 'admin listen address', { hostRequired: false, hostRule: 'any', allowZero: true });
  if (!r.ok) return { error: `${file}: ${r.message}`, tokenFile };
  const { host, port } = r.value;
  if (port === 0) return { error: `${file} has admin.listen on port 0 (any free port), which cannot be found from outside: pass --admin URL`, tokenFile };
  const h = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return { url: `http://${h.includes(':') ? `[${h}]` : h}:${port}`, tokenFile };
}

function isReloadOutcome(v: unknown): v is ReloadOutcome {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.ok === 'boolean' && typeof o.generation === 'number' && Array.isArray(o.errors);
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { admin: { type: 'string' }, 'token-file': { type: 'string' } } });
  } catch (e) {
    process.stderr.write(`perimeter reload: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  const { positionals, values } = parsed;
  if (positionals.length > 1 || (positionals.length === 0 && values.admin === undefined)) {
    process.stderr.write(`perimeter reload: expected a configuration directory or --admin URL\n\n${help}`);
    return 2;
  }
  const fromConfig = positionals[0] === undefined ? undefined : await adminFromConfig(positionals[0]);
  let base: string;
  if (values.admin !== undefined) {
    base = adminBase(values.admin);
  } else if (fromConfig && 'url' in fromConfig) {
    base = fromConfig.url;
  } else {
    process.stderr.write(`perimeter reload: ${fromConfig?.error ?? 'no admin URL'}\n`);
    return 3;
  }
  let token: string | undefined;
  try {
    // An explicit --token-file must work; the configuration's own may be unreadable to this user.
    token = await readToken(values['token-file']);
    if (token === undefined && fromConfig?.tokenFile) token = await readToken(fromConfig.tokenFile).catch(() => undefined);
  } catch (e) {
    process.stderr.write(`perimeter reload: ${(e as Error).message}\n`);
    return 2;
  }

  let res: AdminResponse;
  try {
    res = await adminRequest(base, '/api/reload', { method: 'POST', token });
  } catch (e) {
    if (!(e instanceof AdminUnreachable)) throw e;
    process.stderr.write(`perimeter reload: ${e.message}\n`);
    if (e.noConnection) process.stderr.write(`Is perimeter running with an admin listener? To enable one, ${ENABLE_ADMIN}.\n`);
    return 3;
  }
  if (!isReloadOutcome(res.body)) {
    process.stderr.write(`perimeter reload: the admin API at ${base} answered ${res.status} without a reload outcome: ${JSON.stringify(res.body).slice(0, 200)}\n`);
    return 3;
  }
  const outcome = res.body;
  if (outcome.ok) {
    process.stdout.write(`reloaded: generation ${outcome.generation}\n`);
    return 0;
  }
  for (const e of outcome.errors) process.stderr.write(`${e}\n`);
  process.stderr.write(`reload refused: generation ${outcome.generation} keeps serving\n`);
  return 1;
}
