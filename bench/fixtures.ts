/**
 * What bench/run.ts and bench/compare-builds.ts both set up on this machine:
 * free TCP ports on 127.0.0.1 and the TLS contenders' certificate. (The pure
 * parts, without I/O, are in ./harness.ts.)
 */
import { spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { benchCertArgs } from './harness.js';

/** A port the kernel hands out for 127.0.0.1 right now (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** `n` free ports, as freePort finds them. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort());
  return out;
}

/** The one RSA-2048 certificate every TLS contender serves (benchCertArgs), made in `dir`. */
export function makeBenchCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'tls-cert.pem');
  const key = join(dir, 'tls-key.pem');
  const r = spawnSync('openssl', benchCertArgs(cert, key), { stdio: 'ignore' });
  if (r.status !== 0) throw new Error('openssl could not make the bench certificate');
  chmodSync(key, 0o644); // nginx's workers read it as nobody when started by root; the directory is private to the run
  return { cert, key };
}
