import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { freePort } from '../helpers/cli.js';
import { startUpstream } from '../helpers/upstream.js';
import { startPerimeter } from '../helpers/perimeter.js';
import { tlsPlatformYaml } from '../helpers/tls-platform.js';
import { pino } from 'pino';
import { OcspStapler, parseOcspResponse } from '../../src/tls/ocsp.js';

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

interface Pki {
  readonly dir: string;
  readonly chain: string; // leaf + CA
  readonly key: string;
  readonly leafDer: Buffer;
  readonly caDer: Buffer;
}

/** A CA and a leaf for a.example.com whose AIA names an OCSP responder on `ocspPort`; index.txt marks it valid or revoked. */
async function makePki(ocspPort: number, revoked: boolean): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-ocsp-'));
  const p = (f: string): string => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '30', '-subj', '/CN=Perimeter Test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']);
  openssl(['req', '-new', ...ec, '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', '/CN=a.example.com']);
  await writeFile(p('ext.cnf'), `subjectAltName=DNS:a.example.com\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:${ocspPort}\nextendedKeyUsage=serverAuth\n`);
  openssl(['x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('leaf.pem'), '-days', '10', '-extfile', p('ext.cnf')]);
  const serial = openssl(['x509', '-in', p('leaf.pem'), '-noout', '-serial']).trim().replace(/^serial=/, '');
  const ossl = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  const expiry = ossl(new Date(Date.now() + 10 * 86400_000));
  const row = revoked ? ['R', expiry, ossl(new Date(Date.now() - 3600_000)), serial, 'unknown', '/CN=a.example.com'] : ['V', expiry, '', serial, 'unknown', '/CN=a.example.com'];
  await writeFile(p('index.txt'), row.join('\t') + '\n');
  const leafPem = await readFile(p('leaf.pem'), 'utf8');
  const caPem = await readFile(p('ca.pem'), 'utf8');
  await writeFile(p('chain.pem'), leafPem + caPem);
  return { dir, chain: p('chain.pem'), key: p('leaf.key'), leafDer: derOf(leafPem), caDer: derOf(caPem) };
}

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** openssl's own OCSP responder, signing with the CA itself (OpenSSL 3.0 takes a bare port and listens on every address). */
async function startResponder(pki: Pki, port: number): Promise<ChildProcess> {
  const child = spawn('openssl', ['ocsp', '-port', String(port), '-index', join(pki.dir, 'index.txt'), '-CA', join(pki.dir, 'ca.pem'), '-rkey', join(pki.dir, 'ca.key'), '-rsigner', join(pki.dir, 'ca.pem'), '-nmin', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Ready when it says so; a probe connection would stall this single-threaded responder.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error('openssl ocsp responder did not start'));
    }, 5000);
    let said = '';
    child.stderr!.on('data', (c: Buffer) => {
      said += c.toString();
      if (said.includes('waiting for OCSP client connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.stderr!.resume();
  return child;
}

function config(backendPort: number, pki: Pki): { perimeter: string; sites: Record<string, string> } {
  return {
    perimeter: tlsPlatformYaml({ backendPort, certs: [{ cert: pki.chain, key: pki.key }], listen: '{ http: "127.0.0.1:0", https: "127.0.0.1:0" }' }),
    sites: { 'team.yaml': 'a.example.com:\n  service: app\n' },
  };
}

/** One handshake asking for a staple: the staple (or null) and how long the handshake took. */
function handshake(port: number): Promise<{ staple: Buffer | null; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let staple: Buffer | null = null;
    // requestOCSP is a real tls.connect option that @types/node does not list.
    const opts: tls.ConnectionOptions & { requestOCSP: boolean } = { port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, requestOCSP: true };
    const s = tls.connect(opts, () => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      s.destroy();
      resolve({ staple, ms });
    });
    s.on('OCSPResponse', (resp: Buffer) => (staple = resp));
    s.on('error', reject);
  });
}

async function pollForStaple(port: number, ms: number): Promise<Buffer | null> {
  const deadline = Date.now() + ms;
  for (;;) {
    const h = await handshake(port);
    if (h.staple && h.staple.length > 0) return h.staple;
    if (Date.now() > deadline) return null;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a certificate with an OCSP responder URL gets a good response stapled, fetched in the background', async (t) => {
  const ocspPort = await freePort();
  const pki = await makePki(ocspPort, false);
  const responder = await startResponder(pki, ocspPort);
  const up = await startUpstream();
  const p = await startPerimeter(config(up.port, pki));
  t.after(async () => {
    await p.close();
    await up.close();
    responder.kill();
    await rm(pki.dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  // The first handshake does not wait for the responder.
  const first = await handshake(port);
  assert.ok(first.ms < 1000, `first handshake took ${first.ms} ms`);
  const staple = await pollForStaple(port, 5000);
  assert.ok(staple, 'a later handshake carries a stapled OCSP response');
  const st = await parseOcspResponse(staple, pki.leafDer, pki.caDer);
  assert.equal(st.status, 'good');
  assert.ok(st.status === 'good' && st.nextUpdate && st.nextUpdate.getTime() > Date.now());
});

test('a revoked certificate is never stapled', async (t) => {
  const ocspPort = await freePort();
  const pki = await makePki(ocspPort, true);
  const responder = await startResponder(pki, ocspPort);
  const up = await startUpstream();
  const p = await startPerimeter(config(up.port, pki));
  t.after(async () => {
    await p.close();
    await up.close();
    responder.kill();
    await rm(pki.dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  // The responder really answers "revoked" for it (so the absence of a staple below means something).
  const direct = execFileSync('openssl', ['ocsp', '-issuer', join(pki.dir, 'ca.pem'), '-cert', join(pki.dir, 'leaf.pem'), '-url', `http://127.0.0.1:${ocspPort}`, '-CAfile', join(pki.dir, 'ca.pem')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.match(direct, /revoked/);
  for (let i = 0; i < 10; i++) {
    const h = await handshake(port);
    assert.ok(!h.staple || h.staple.length === 0, 'no staple for a revoked certificate');
    await new Promise((r) => setTimeout(r, 100));
  }  // The stapler itself saw the answer "revoked", and offered nothing to staple.
  const lines: { event?: { action?: string }; status?: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) });
  const stapler = new OcspStapler(log, { minBackoffMs: 100 });
  t.after(() => stapler.close());
  const deadline = Date.now() + 5000;
  while (!lines.some((l) => l.event?.action === 'ocsp-failed' && l.status === 'revoked') && Date.now() < deadline) {
    const got = await new Promise<Buffer | null | undefined>((r) => stapler.respond(pki.leafDer, pki.caDer, (_e, resp) => r(resp)));
    assert.ok(!got, 'the stapler never hands out a revoked response');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(lines.some((l) => l.event?.action === 'ocsp-failed' && l.status === 'revoked'), 'responder answered revoked');
});

test('a dead responder never delays a handshake', async (t) => {
  const ocspPort = await freePort();
  const pki = await makePki(ocspPort, false);
  // A "responder" that accepts and never answers.
  const sockets = new Set<net.Socket>();
  const black = net.createServer((s) => sockets.add(s));
  await new Promise<void>((r) => black.listen(ocspPort, '127.0.0.1', r));
  const up = await startUpstream();
  const p = await startPerimeter(config(up.port, pki));
  t.after(async () => {
    await p.close();
    await up.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => black.close(r));
    await rm(pki.dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  for (let i = 0; i < 5; i++) {
    const h = await handshake(port);
    assert.ok(h.ms < 500, `handshake ${i} took ${h.ms} ms`);
    assert.ok(!h.staple || h.staple.length === 0);
  }
  // One background fetch, deduplicated across handshakes and then backed off. It runs in the
  // background, so its connection may reach the responder after the handshakes are done.
  for (let i = 0; i < 150 && sockets.size === 0; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show
  assert.equal(sockets.size, 1, 'perimeter asked the responder once');
});
