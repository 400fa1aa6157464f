/** Test certificates made with the openssl command (Debian's openssl package). */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface TestCert {
  readonly cert: string; // path
  readonly key: string; // path
}

/** A self-signed EC P-256 certificate for `names` (first one is the CN). */
export function makeCert(dir: string, file: string, names: readonly string[], opts: { days?: number; rsa?: boolean } = {}): TestCert {
  const cert = join(dir, `${file}.pem`);
  const key = join(dir, `${file}.key`);
  const alg = opts.rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  execFileSync(
    'openssl',
    ['req', '-x509', ...alg, '-nodes', '-keyout', key, '-out', cert, '-days', String(opts.days ?? 30), '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
