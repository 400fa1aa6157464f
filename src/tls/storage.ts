/**
 * The ACME storage directory: account key, certificates, published
 * challenge responses and per-domain order leases. Every perimeter host may
 * point at the same directory (a shared file system): files are written
 * whole (temp file + rename) so a reader never sees half a certificate, and
 * a lease file created exclusively (link(2), like O_EXCL) decides which host orders a certificate.
 *
 *   <storage>/<ca>/account.key            account private key (PEM)
 *   <storage>/<ca>/certs/<domain>.pem     private key + certificate chain
 *   <storage>/<ca>/challenges/<token>     HTTP-01 key authorization
 *   <storage>/<ca>/alpn/<domain>.pem      TLS-ALPN-01 challenge key + certificate
 *   <storage>/<ca>/locks/<name>.lock      order lease (JSON: owner, expires)
 *
 * <ca> is the directory URL's host plus a short hash, so a staging and a
 * production CA never share an account or certificates.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** A stored certificate: the leaf first in `cert`, its private key in `key`. */
export interface StoredCertificate {
  readonly cert: string;
  readonly key: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface Lease {
  readonly name: string;
  readonly owner: string;
  /** Extend the lease (only while still ours); false when it was lost. */
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

interface LeaseBody {
  readonly owner: string;
  readonly expires: number;
}

/** A file-system-safe name for a domain ('*.example.com' → '_wildcard_.example.com'). */
export function fileNameOf(domain: string): string {
  const d = domain.toLowerCase().replace(/^\*\./, '_wildcard_.');
  if (!/^[a-z0-9_][a-z0-9_.-]*$/.test(d) || d.includes('..')) throw new Error(`'${domain}' is not a valid domain name`);
  return d;
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----\r?\n?/g;

/** Split a combined PEM file into its private key and its certificate chain. */
export function splitKeyAndChain(pem: string): { key: string; cert: string } {
  let key = '';
  let cert = '';
  for (const m of pem.matchAll(PEM_BLOCK)) {
    const block = m[0].endsWith('\n') ? m[0] : `${m[0]}\n`;
    if (m[1]?.includes('PRIVATE KEY')) key += block;
    else if (m[1] === 'CERTIFICATE') cert += block;
  }
  return { key, cert };
}

/** Parse the leaf of a PEM chain; undefined when it is not a certificate. */
export function readLeaf(certPem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(certPem);
  } catch {
    return undefined;
  }
}

/** The per-CA directory under the storage root: <directory host>-<hash of the URL>. */
export function caDirectory(root: string, directoryUrl: string): string {
  let host = 'ca';
  try {
    host = new URL(directoryUrl).host.replace(/[^a-zA-Z0-9.-]+/g, '_');
  } catch {
    // An unparsable URL is refused by the config loader; keep a name anyway.
  }
  const hash = createHash('sha256').update(directoryUrl).digest('hex').slice(0, 8);
  return path.join(root, `${host}-${hash}`);
}

/** Where the certificate (key first, then chain) of `domain` is stored; read-only use, creates nothing. */
export function storedCertificateFile(root: string, directoryUrl: string, domain: string): string {
  return path.join(caDirectory(root, directoryUrl), 'certs', `${fileNameOf(domain)}.pem`);
}

export class AcmeStorage {
  /** The per-CA directory. */
  readonly dir: string;
  /** Identifies this process in lease files (host:pid:random). */
  readonly owner: string;

  constructor(root: string, directoryUrl: string) {
    this.dir = caDirectory(root, directoryUrl);
    this.owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    for (const sub of ['', 'certs', 'challenges', 'alpn', 'locks']) {
      fs.mkdirSync(path.join(this.dir, sub), { recursive: true, mode: DIR_MODE });
    }
    // mkdir's mode does not apply to directories that already existed; the
    // key material must not be readable by others.
    fs.chmodSync(root, DIR_MODE);
    fs.chmodSync(this.dir, DIR_MODE);
  }

  private async writeAtomic(file: string, data: string): Promise<void> {
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, data, { mode: FILE_MODE, flag: 'wx' });
    await fsp.rename(tmp, file);
  }

  private writeAtomicSync(file: string, data: string): void {
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    fs.writeFileSync(tmp, data, { mode: FILE_MODE, flag: 'wx' });
    fs.renameSync(tmp, file);
  }

  /**
   * The account key, created once. Two hosts starting together must end up
   * with one key: the new key is linked into place, which fails if another
   * host got there first, and then theirs is used.
   */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const file = path.join(this.dir, 'account.key');
    try {
      return await fsp.readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const pem = await create();
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, pem, { mode: FILE_MODE, flag: 'wx' });
    try {
      await fsp.link(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    return fsp.readFile(file, 'utf8');
  }

  async readCertificate(domain: string): Promise<StoredCertificate | undefined> {
    let pem: string;
    try {
      pem = await fsp.readFile(path.join(this.dir, 'certs', `${fileNameOf(domain)}.pem`), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const { key, cert } = splitKeyAndChain(pem);
    const leaf = readLeaf(cert);
    if (!key || !leaf) return undefined;
    return { cert, key, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
  }

  async writeCertificate(domain: string, cert: string, key: string): Promise<void> {
    // One file, key first: a reader sees the old pair or the new pair, never a mix.
    await this.writeAtomic(path.join(this.dir, 'certs', `${fileNameOf(domain)}.pem`), `${key.trimEnd()}\n${cert.trimEnd()}\n`);
  }

  /** Publish an HTTP-01 response where every host sharing the storage can serve it. */
  putHttpChallenge(token: string, keyAuthorization: string): void {
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new Error('invalid challenge token');
    this.writeAtomicSync(path.join(this.dir, 'challenges', token), keyAuthorization);
  }

  getHttpChallenge(token: string): string | undefined {
    if (!/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
    try {
      return fs.readFileSync(path.join(this.dir, 'challenges', token), 'utf8');
    } catch {
      return undefined;
    }
  }

  removeHttpChallenge(token: string): void {
    if (/^[A-Za-z0-9_-]+$/.test(token)) fs.rmSync(path.join(this.dir, 'challenges', token), { force: true });
  }

  putAlpnCertificate(domain: string, cert: string, key: string): void {
    this.writeAtomicSync(path.join(this.dir, 'alpn', `${fileNameOf(domain)}.pem`), `${key.trimEnd()}\n${cert.trimEnd()}\n`);
  }

  getAlpnCertificate(domain: string): { cert: string; key: string } | undefined {
    let name: string;
    try {
      name = fileNameOf(domain);
    } catch {
      return undefined;
    }
    try {
      const r = splitKeyAndChain(fs.readFileSync(path.join(this.dir, 'alpn', `${name}.pem`), 'utf8'));
      return r.key && r.cert ? r : undefined;
    } catch {
      return undefined;
    }
  }

  removeAlpnCertificate(domain: string): void {
    fs.rmSync(path.join(this.dir, 'alpn', `${fileNameOf(domain)}.pem`), { force: true });
  }

  /**
   * Take the lease `name` for `ttlMs`, or undefined when another live owner
   * holds it. The lease file is created exclusively; an expired one (its
   * holder died) is taken over under a short-lived takeover file, so two
   * hosts that both see it expired do not both take it.
   */
  async acquireLease(name: string, ttlMs: number): Promise<Lease | undefined> {
    const file = path.join(this.dir, 'locks', `${fileNameOf(name)}.lock`);
    const body = (): string => JSON.stringify({ owner: this.owner, expires: Date.now() + ttlMs } satisfies LeaseBody);
    const tryCreate = async (): Promise<boolean> => {
      // Written aside and linked into place (link is O_EXCL-like): a reader
      // never sees an empty lease file and takes it for a dead one.
      const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      await fsp.writeFile(tmp, body(), { mode: FILE_MODE, flag: 'wx' });
      try {
        await fsp.link(tmp, file);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      } finally {
        await fsp.rm(tmp, { force: true });
      }
    };
    if (!(await tryCreate())) {
      const held = await readLease(file);
      if (held && held.expires > Date.now()) return undefined;
      if (!(await this.takeOver(file, held))) return undefined;
      if (!(await tryCreate())) return undefined;
    }
    const lease: Lease = {
      name,
      owner: this.owner,
      renew: async () => {
        const cur = await readLease(file);
        if (cur?.owner !== this.owner) return false;
        await this.writeAtomic(file, body());
        return true;
      },
      release: async () => {
        const cur = await readLease(file);
        if (cur?.owner === this.owner) await fsp.rm(file, { force: true });
      },
    };
    return lease;
  }

  /** Remove a stale lease file if it still is the one seen stale. */
  private async takeOver(file: string, seen: LeaseBody | undefined): Promise<boolean> {
    const guard = `${file}.takeover`;
    try {
      await fsp.writeFile(guard, this.owner, { mode: FILE_MODE, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // The guard lives for milliseconds; one older than 30 s belongs to a
      // process that died inside the takeover.
      const st = await fsp.stat(guard).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 30_000) await fsp.rm(guard, { force: true });
      return false;
    }
    try {
      const now = await readLease(file);
      const same = now === undefined || seen === undefined || (now.owner === seen.owner && now.expires === seen.expires);
      if (!same || (now !== undefined && now.expires > Date.now())) return false;
      await fsp.rm(file, { force: true });
      return true;
    } finally {
      await fsp.rm(guard, { force: true });
    }
  }
}

async function readLease(file: string): Promise<LeaseBody | undefined> {
  try {
    const v = JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<LeaseBody>;
    if (typeof v.owner === 'string' && typeof v.expires === 'number') return { owner: v.owner, expires: v.expires };
  } catch {
    // Missing, or half-written by a crashed host: treated as expired.
  }
  return undefined;
}
