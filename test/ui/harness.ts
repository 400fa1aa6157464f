/**
 * Admin UI tests: perimeter (single process, real loader and runtime) with
 * an admin listener, a users file made by the real hash function, and a
 * small browser-like HTTP client that keeps cookies and reads CSRF tokens.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashPassword } from '../../src/admin/ui/users.js';
import { startUpstream } from '../helpers/upstream.js';
import { webConfig } from '../web/fixtures.js';
import { freePort } from '../helpers/cli.js';
import { request, startAdminPerimeter, type AdminPerimeter, type Reply } from '../admin/harness.js';

export const USER = 'alice';
export const PASSWORD = 'correct horse battery staple';
export const TOKEN = 'ui-test-token-0123456789abcdef';

export interface UiPerimeter extends AdminPerimeter {
  readonly port: number;
}

/**
 * perimeter with one site and an admin listener on 127.0.0.1. `users`:
 * write a users file with USER/PASSWORD; `token`: set token-file to TOKEN.
 * `extra` is appended to perimeter.yaml (e.g. tcp: listeners).
 */
export async function startUiPerimeter(o: { users?: boolean; token?: boolean; listen?: string; extraYaml?: string; backendPort?: number } = {}): Promise<UiPerimeter & { closeAll(): Promise<void> }> {
  const up = o.backendPort === undefined ? await startUpstream({ name: 'a' }) : undefined;
  const cfg = webConfig({ services: { app: [o.backendPort ?? up!.port] }, sites: { 'www.example.com': 'app' } });
  const port = await freePort();
  const admin = `admin:\n  listen: "${o.listen ?? '127.0.0.1'}:${port}"\n${o.users !== false ? '  users-file: admin-users\n' : ''}${o.token ? '  token-file: admin.token\n' : ''}`;
  const extra: Record<string, string> = {};
  if (o.token) extra['admin.token'] = `${TOKEN}\n`;
  const perimeter = `${cfg.perimeter.replace('defaults:', `${admin}defaults:`)}${o.extraYaml ?? ''}`;
  // The users file goes in before the start: a hash costs ~100 ms, done once per test.
  let p: AdminPerimeter;
  try {
    p = await startAdminPerimeter({ perimeter, sites: cfg.sites, extra: { ...extra, ...(o.users !== false ? { 'admin-users': `# test accounts\n${USER}:${await hashPassword(PASSWORD)}\n` } : {}) } });
  } catch (err) {
    await up?.close();
    throw err;
  }
  return {
    ...p,
    port,
    async closeAll() {
      await p.close();
      await up?.close();
    },
  };
}

export function csrfOf(text: string): string | undefined {
  return /name="csrf" value="([^"]+)"/.exec(text)?.[1];
}

/** What a browser would do with cookies, by hand: one jar, Host as given. */
export class UiClient {
  readonly jar = new Map<string, string>();
  lastSetCookies: string[] = [];

  constructor(
    readonly base: string,
    readonly extraHeaders: Record<string, string> = {},
  ) {}

  /** Whether the jar holds a session cookie (perimeter_admin_<port>). */
  hasSession(): boolean {
    return [...this.jar.keys()].some((k) => k.startsWith('perimeter_admin_'));
  }

  private cookieHeader(): Record<string, string> {
    return this.jar.size ? { cookie: [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {};
  }

  private keep(r: Reply): Reply {
    const set = r.headers['set-cookie'] ?? [];
    this.lastSetCookies = set;
    for (const c of set) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (attrs.some((a) => /^\s*max-age=0$/i.test(a)) || value === '') this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return r;
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
    return this.keep(await request(`${this.base}${path}`, { headers: { ...this.extraHeaders, ...this.cookieHeader(), ...headers } }));
  }

  async post(path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
    const body = new URLSearchParams(fields).toString();
    return this.keep(
      await request(`${this.base}${path}`, {
        method: 'POST',
        body,
        headers: { ...this.extraHeaders, 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)), ...this.cookieHeader(), ...headers },
      }),
    );
  }

  /** GET the form at `formPath`, then POST `fields` with its CSRF token. */
  async submit(formPath: string, action: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
    const form = await this.get(formPath);
    const csrf = csrfOf(form.text);
    if (!csrf) throw new Error(`no CSRF token in ${formPath} (status ${form.status}): ${form.text.slice(0, 300)}`);
    return this.post(action, { ...fields, csrf }, headers);
  }

  async login(user = USER, password = PASSWORD): Promise<Reply> {
    return this.submit('/ui/login', '/ui/login', { method: 'password', user, password, next: '/ui/' });
  }
}

export async function writeUsers(dir: string, text: string): Promise<void> {
  await writeFile(join(dir, 'admin-users'), text);
}
