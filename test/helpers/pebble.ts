/**
 * A real ACME CA for tests: Debian's `pebble`, started on free ports of
 * 127.0.0.1 with its own TLS certificate (made by openssl here: the Debian
 * package ships none), resolving every name through a test DNS server that
 * answers 127.0.0.1, and validating challenges on the ports the test serves
 * them on.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './cli.js';
import { startDnsServer, type TestDnsServer } from './dns-server.js';

export interface Pebble {
  readonly directoryUrl: string;
  /** PEM file of the CA that signed pebble's own HTTPS certificate (the acme ca-file). */
  readonly caFile: string;
  readonly httpPort: number;
  readonly tlsPort: number;
  readonly dns: TestDnsServer;
  /** Certificates pebble issued so far (from its log). */
  readonly issued: number;
  /** Make `name` resolve to 127.0.0.1 for pebble's validation. */
  addDomain(name: string): void;
  /** The root that issued certificates chain to (management /roots/0). */
  root(): Promise<string>;
  stop(): Promise<void>;
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export async function startPebble(opts: { httpPort?: number; tlsPort?: number } = {}): Promise<Pebble> {
  const dir = mkdtempSync(path.join(tmpdir(), 'perimeter-pebble-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  const dns = await startDnsServer();
  const httpPort = opts.httpPort ?? (await freePort());
  const tlsPort = opts.tlsPort ?? (await freePort());
  const configFile = path.join(dir, 'pebble.json');
  const caPem = readFileSync(certFile, 'utf8');
  let output = '';
  let issued = 0;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  // A pebble that cannot start fails the test and leaves nothing running.
  const fail = async (why: string): Promise<never> => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await dns.close();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${why}: ${output}`);
  };
  // pebble binds its own two ports: picked free here, one can be taken by a test running beside
  // this one before pebble binds it. Then pebble exits at once, and another pair is tried.
  let acmePort = 0;
  let mgmtPort = 0;
  for (let attempt = 1; ; attempt++) {
    [acmePort, mgmtPort] = [await freePort(), await freePort()];
    writeFileSync(configFile, JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: certFile,
        privateKey: keyFile,
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }));
    output = '';
    const started: ChildProcess = spawn('pebble', ['-config', configFile, '-dnsserver', `${dns.host}:${dns.port}`, '-strict=false'], {
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = started;
    const onData = (c: Buffer): void => {
      const text = c.toString();
      output += text;
      issued += text.split('Issued certificate serial').length - 1;
    };
    started.stdout?.on('data', onData);
    started.stderr?.on('data', onData);
    exited = new Promise<void>((resolve) => started.once('exit', () => resolve()));
    const deadline = Date.now() + 10_000;
    let ready = false;
    while (!ready) {
      if (started.exitCode !== null) break;
      const r = await get(`https://127.0.0.1:${acmePort}/dir`, caPem).catch(() => undefined);
      if (r?.status === 200) ready = true;
      else if (Date.now() > deadline) await fail('pebble did not start');
      else await new Promise((res) => setTimeout(res, 50));
    }
    if (ready) break;
    await exited;
    if (!/address already in use/.test(output) || attempt >= 5) await fail('pebble exited');
  }
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const running = child!;
  return {
    directoryUrl,
    caFile: certFile,
    httpPort,
    tlsPort,
    dns,
    get issued() {
      return issued;
    },
    addDomain(name) {
      dns.setA(name, ['127.0.0.1']);
    },
    async root() {
      const r = await get(`https://127.0.0.1:${mgmtPort}/roots/0`, caPem);
      if (r.status !== 200) throw new Error(`pebble /roots/0 answered ${r.status}`);
      return r.body;
    },
    async stop() {
      if (running.exitCode === null) {
        running.kill('SIGTERM');
        await exited;
      }
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
