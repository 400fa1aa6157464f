/**
 * Start perimeter in-process from YAML text, as a user would configure it:
 * a temp config directory with perimeter.yaml and sites/*.yaml, loaded by
 * the real loader and served by the real runtime on port 0.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { formatIssue, loadConfig } from '../../src/config/load.js';
import { silentLogger, createLogger } from '../../src/core/log.js';
import { Runtime } from '../../src/core/runtime.js';
import type { RequestRecord } from '../../src/web/proxy.js';

export interface ConfigFiles {
  /** perimeter.yaml */
  readonly perimeter: string;
  /** file name (without sites/) → content */
  readonly sites: Readonly<Record<string, string>>;
  /** other files relative to the config dir */
  readonly extra?: Readonly<Record<string, string>>;
}

export interface TestPerimeter {
  readonly dir: string;
  readonly runtime: Runtime;
  readonly records: RequestRecord[];
  /** Port of the first (or named) cluster's listener. */
  port(cluster?: string): number;
  url(cluster?: string): string;
  /** Rewrite the config files and apply them (throws on invalid config). */
  reload(files: ConfigFiles): Promise<void>;
  close(): Promise<void>;
}

/** Write perimeter.yaml, sites/ (replaced whole) and extra files into `dir`. */
export async function writeConfig(dir: string, files: ConfigFiles): Promise<void> {
  await rm(join(dir, 'sites'), { recursive: true, force: true });
  await mkdir(join(dir, 'sites'), { recursive: true });
  await writeFile(join(dir, 'perimeter.yaml'), files.perimeter);
  for (const [name, text] of Object.entries(files.sites)) await writeFile(join(dir, 'sites', name), text);
  for (const [name, text] of Object.entries(files.extra ?? {})) await writeFile(join(dir, name), text);
}

export async function startPerimeter(files: ConfigFiles): Promise<TestPerimeter> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-test-'));
  await writeConfig(dir, files);
  const loaded = await loadConfig(dir);
  if (!loaded.ok) throw new Error('test config invalid:\n' + loaded.issues.map(formatIssue).join('\n'));
  const records: RequestRecord[] = [];
  const log = process.env.PERIMETER_TEST_LOG ? createLogger({ level: process.env.PERIMETER_TEST_LOG, destination: 2 }) : silentLogger();
  const runtime = new Runtime({ log, onRecord: (r) => records.push(r), discovery: { filePollMs: 200, fileDebounceMs: 20 } });
  await runtime.apply(loaded.snapshot);
  const port = (cluster?: string): number => {
    const b = runtime.bound().find((l) => cluster === undefined || l.cluster === cluster);
    if (!b) throw new Error(`no listener for cluster ${cluster ?? '(any)'}`);
    return b.port;
  };
  return {
    dir,
    runtime,
    records,
    port,
    url: (cluster?: string) => `http://127.0.0.1:${port(cluster)}`,
    async reload(next: ConfigFiles) {
      await writeConfig(dir, next);
      const l = await loadConfig(dir);
      if (!l.ok) throw new Error('reload config invalid:\n' + l.issues.map(formatIssue).join('\n'));
      await runtime.apply(l.snapshot);
    },
    async close() {
      await runtime.close(200);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * perimeter_client_connections of one web listener, read from the metrics text until it is
 * `want` or 3 s have passed; returns the last value. A finished exchange is released on a later
 * turn of the event loop, a connection perimeter closed after its closing grace (1 s).
 */
export async function settledClientConnections(p: TestPerimeter, protocol: 'http' | 'https', want: number, cluster = 'web'): Promise<number> {
  const pattern = new RegExp(`^perimeter_client_connections\\{cluster="${cluster}",protocol="${protocol}"\\} (\\d+)$`, 'm');
  const read = async (): Promise<number> => Number(pattern.exec(await p.runtime.metrics.registry.metrics())?.[1] ?? 0);
  let n = await read();
  for (let i = 0; i < 60 && n !== want; i++) {
    await new Promise((r) => setTimeout(r, 50));
    n = await read();
  }
  return n;
}

/** A YAML flow list of 127.0.0.1 backends for discovery.static. */
export function backendList(ports: readonly number[]): string {
  return `[${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`;
}

export interface RawResponse {
  /** Everything received until the server closed or the wait ended. */
  readonly text: string;
  readonly closed: boolean;
  /** Status codes of every response head seen, in order. */
  readonly statuses: number[];
}

/**
 * Send raw bytes (pieces written separately, `gapMs` apart) and collect the
 * reply until the server closes the connection or `waitMs` passes.
 */
export function rawRequest(port: number, pieces: string | Buffer | (string | Buffer)[], opts: { waitMs?: number; gapMs?: number } = {}): Promise<RawResponse> {
  const list = Array.isArray(pieces) ? pieces : [pieces];
  const waitMs = opts.waitMs ?? 2000;
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, closed, statuses });
    };
    const timer = setTimeout(finish, waitMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => {
      closed = true;
      finish();
    });
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.on('connect', async () => {
      for (let i = 0; i < list.length; i++) {
        if (sock.destroyed) return;
        sock.write(list[i]!);
        if (opts.gapMs && i < list.length - 1) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    });
  });
}
