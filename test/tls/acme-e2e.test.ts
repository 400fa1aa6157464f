/**
 * ACME through perimeter itself, against Debian's pebble: a new HTTPS site
 * gets a certificate with no manual step (HTTP-01 answered by perimeter's
 * http listener), and a restart reuses the stored certificate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { startUpstream } from '../helpers/upstream.js';
import { startPerimeter, type TestPerimeter } from '../helpers/perimeter.js';
import { freePort } from '../helpers/cli.js';
import { startPebble } from '../helpers/pebble.js';
import { siteInventory } from '../../src/config/inventory.js';

function config(
  httpPort: number,
  backendPort: number,
  directory: string,
  caFile: string,
  storage: string,
  opts: { httpsPort?: number; challenge?: string } = {},
): { perimeter: string; sites: Record<string, string> } {
  return {
    perimeter: `clusters:
  web:
    listen: { http: "127.0.0.1:${httpPort}", https: "127.0.0.1:${opts.httpsPort ?? 0}" }
defaults:
  health: { type: none }
discovery:
  static:
    app: ["127.0.0.1:${backendPort}"]
acme:
  directory: "${directory}"
  storage: "${storage}"
  ca-file: "${caFile}"
  challenges: [${opts.challenge ?? 'http-01'}]
access-log:
  path: "off"
`,
    sites: { 'shop.yaml': 'shop.example.test:\n  service: app\n' },
  };
}

async function servedCertificate(p: TestPerimeter, root: string, timeoutMs: number): Promise<tls.PeerCertificate | undefined> {
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const cert = await new Promise<tls.PeerCertificate | undefined>((resolve) => {
      // Verified against pebble's root only: proves the certificate came from the CA.
      const s = tls.connect({ port, host: '127.0.0.1', servername: 'shop.example.test', ca: root }, () => {
        const c = s.getPeerCertificate();
        s.destroy();
        resolve(c);
      });
      s.on('error', () => resolve(undefined));
    });
    if (cert) return cert;
    await new Promise((r) => setTimeout(r, 300));
  }
  return undefined;
}

test('a new HTTPS site gets an ACME certificate from pebble with no manual step; a restart reuses it', { timeout: 90_000 }, async (t) => {
  const httpPort = await freePort();
  const pebble = await startPebble({ httpPort });
  pebble.addDomain('shop.example.test');
  const up = await startUpstream();
  const storage = await mkdtemp(join(tmpdir(), 'perimeter-acme-e2e-'));
  t.after(async () => {
    await pebble.stop();
    await up.close();
    await rm(storage, { recursive: true, force: true });
  });
  const root = await pebble.root();
  const files = config(httpPort, up.port, pebble.directoryUrl, pebble.caFile, storage);

  const first = await startPerimeter(files);
  const cert = await servedCertificate(first, root, 45_000);
  // Posture (perimeter sites, /api/sites) shows the ACME certificate, read from the storage.
  const row = siteInventory(first.runtime.snapshot!).find((r) => r.host === 'shop.example.test');
  await first.close();
  assert.equal(row?.certificate?.source, 'acme');
  assert.ok((row?.certificate?.daysLeft ?? 0) > 0);
  assert.ok(cert, 'perimeter served a certificate that verifies against pebble\'s root');
  assert.match(cert.subjectaltname ?? '', /DNS:shop\.example\.test/);
  const issued = pebble.issued;
  assert.ok(issued >= 1);

  // Restart on the same storage: the stored certificate is served at once, nothing is ordered.
  const second = await startPerimeter(files);
  t.after(() => second.close());
  const again = await servedCertificate(second, root, 5_000);
  assert.equal(again?.fingerprint256, cert.fingerprint256);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(pebble.issued, issued, 'no new order after a restart');
});

test('TLS-ALPN-01: perimeter answers the validation on its HTTPS listener and serves the certificate', { timeout: 90_000 }, async (t) => {
  const tlsPort = await freePort();
  const pebble = await startPebble({ tlsPort });
  pebble.addDomain('shop.example.test');
  const up = await startUpstream();
  const storage = await mkdtemp(join(tmpdir(), 'perimeter-acme-alpn-'));
  t.after(async () => {
    await pebble.stop();
    await up.close();
    await rm(storage, { recursive: true, force: true });
  });
  const root = await pebble.root();
  const p = await startPerimeter(config(await freePort(), up.port, pebble.directoryUrl, pebble.caFile, storage, { httpsPort: tlsPort, challenge: 'tls-alpn-01' }));
  t.after(() => p.close());
  const cert = await servedCertificate(p, root, 45_000);
  assert.ok(cert, 'certificate obtained through TLS-ALPN-01 and served');
  assert.match(cert.subjectaltname ?? '', /DNS:shop\.example\.test/);
});
