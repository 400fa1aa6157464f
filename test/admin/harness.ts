/**
 * Admin tests: perimeter from a temp config directory with a reload driver
 * (load → apply or refuse, as the run command does), an event log captured
 * in memory, and a small HTTP client for the admin API.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { formatIssue, loadConfig } from '../../src/config/load.js';
import type { Logger } from '../../src/core/log.js';
import { Runtime } from '../../src/core/runtime.js';
import type { ReloadOutcome, ReloadTrigger } from '../../src/admin/types.js';
import { freePort } from '../helpers/cli.js';
import { writeConfig, type ConfigFiles } from '../helpers/perimeter.js';

export interface CapturedLog {
  readonly log: Logger;
  /** Every JSON line written so far. */
  readonly lines: string[];
}

export function captureLog(): CapturedLog {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  return { log: pino({ level: 'debug', base: undefined }, stream), lines };
}

/**
 * Insert an admin section (default: loopback on a free port) before `defaults:`.
 * A fixed port, not "127.0.0.1:0": with :0 every reload would count as a new
 * address and replace the listener, cutting the POST /api/reload that asked for it.
 */
export async function withAdmin<T extends { perimeter: string }>(cfg: T, admin?: string): Promise<T> {
  const section = admin ?? `admin:\n  listen: "127.0.0.1:${await freePort()}"\n`;
  return { ...cfg, perimeter: cfg.perimeter.replace('defaults:', `${section}defaults:`) };
}

export interface AdminPerimeter {
  readonly dir: string;
  readonly runtime: Runtime;
  readonly logs: string[];
  /** http://127.0.0.1:<admin port> */
  readonly admin: string;
  /** http://127.0.0.1:<port of the web cluster> */
  readonly web: string;
  /** Rewrite the config files (no apply: POST /api/reload does that). */
  write(files: ConfigFiles): Promise<void>;
  close(): Promise<void>;
}

export async function startAdminPerimeter(files: ConfigFiles): Promise<AdminPerimeter> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-admin-test-'));
  await writeConfig(dir, files);
  const { log, lines } = captureLog();
  const loaded = await loadConfig(dir);
  if (!loaded.ok) throw new Error('test config invalid:\n' + loaded.issues.map(formatIssue).join('\n'));
  // What the run command does on a reload: load, then apply or refuse; the old configuration keeps serving.
  const reload = async (trigger: ReloadTrigger): Promise<ReloadOutcome> => {
    const at = new Date().toISOString();
    const next = await loadConfig(dir);
    let outcome: ReloadOutcome;
    if (!next.ok) {
      rt.metrics.reloads.inc({ result: 'refused' });
      outcome = { ok: false, generation: rt.generation, errors: next.issues.map(formatIssue), trigger, at };
    } else {
      try {
        await rt.apply(next.snapshot);
        outcome = { ok: true, generation: rt.generation, errors: [], trigger, at };
      } catch (err) {
        outcome = { ok: false, generation: rt.generation, errors: [String(err)], trigger, at };
      }
    }
    rt.lastReload = outcome;
    return outcome;
  };
  const rt = new Runtime({ log, reload, discovery: { filePollMs: 200, fileDebounceMs: 20 } });
  await rt.apply(loaded.snapshot);
  const web = rt.bound().find((b) => b.cluster === 'web');
  return {
    dir,
    runtime: rt,
    logs: lines,
    admin: `http://127.0.0.1:${rt.admin!.port()}`,
    web: `http://127.0.0.1:${web?.port ?? 0}`,
    write: (next) => writeConfig(dir, next),
    async close() {
      await rt.close(200);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
}

/** node:http, not fetch: fetch will not send an arbitrary Host. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.end(opts.body);
  });
}

export async function getJSON<T>(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> {
  const r = await request(url, { headers });
  return { status: r.status, body: JSON.parse(r.text) as T };
}

/**
 * The value of one sample in Prometheus text, or undefined. `labels` is the
 * exact label set as printed (e.g. 'cluster="web",site="a"'), or '' for none.
 */
export function sample(text: string, name: string, labels = ''): number | undefined {
  const prefix = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

/** Every metric family appears once (HELP and TYPE), as Prometheus requires. */
export function duplicateFamilies(text: string): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('# TYPE ')) continue;
    const name = l.split(' ')[2]!;
    if (seen.has(name)) dup.push(name);
    seen.add(name);
  }
  return dup;
}
