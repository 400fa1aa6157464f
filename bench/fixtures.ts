/**
 * What bench/run.ts and bench/compare-builds.ts both set up on this machine:
 * free TCP ports on 127.0.0.1 and the TLS contenders' certificate, and what
 * they both say of the machine. (The pure parts, without I/O, are in
 * ./harness.ts.)
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { benchCertArgs, parseCpuInfo } from './harness.js';

/** A file's text, or '' where it does not exist (another kernel, a container). */
function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * The kind of machine a run was on, for its header and JSON: the model name
 * alone ("AMD EPYC") names several kinds here, with different figures.
 */
export function machineKind(): { cpu: string; cpuFamily: number | null; cpuModel: number | null; avx512ifma: boolean; cpuidle: string; label: string } {
  const info = parseCpuInfo(readText('/proc/cpuinfo'));
  const cpu = cpus()[0]?.model ?? 'unknown';
  // How an idle vCPU waits (haltpoll, none...): what the one-connection p99 sees (BENCHMARKS.md).
  const cpuidle = readText('/sys/devices/system/cpu/cpuidle/current_driver').trim() || 'unknown';
  const label = `${cpu}, family ${info.family ?? '?'} model ${info.model ?? '?'}${info.avx512ifma ? ', AVX-512 IFMA' : ''}; cpuidle ${cpuidle}`;
  return { cpu, cpuFamily: info.family, cpuModel: info.model, avx512ifma: info.avx512ifma, cpuidle, label };
}

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
