/**
 * Certificates of one HTTPS listener, chosen by SNI: exact names first, then
 * a wildcard one label up. A name no certificate covers gets no certificate
 * at all, so the handshake ends with a TLS alert instead of another site's
 * certificate. Certificate files are watched and reloaded; a broken
 * replacement keeps the previous certificate and logs why.
 */
import { X509Certificate, createHash, createPrivateKey, constants as cryptoConstants } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { CertificateFile, TlsSpec } from '../config/types.js';

/**
 * TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD ciphers
 * only, strongest first (Mozilla "intermediate" minus nothing: no CBC, no
 * RSA key exchange, no DHE). TLS 1.3 suites are all AEAD and stay default.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const ECDH_CURVES = 'X25519:prime256v1:secp384r1';

/** Options every perimeter TLS context and server shares. */
export function secureOptions(spec: Pick<TlsSpec, 'minVersion'> & Partial<Pick<TlsSpec, 'sessionTickets'>>): tls.SecureContextOptions {
  return {
    minVersion: spec.minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    ecdhCurve: ECDH_CURVES,
    // No renegotiation (a DoS lever and a source of attacks), no compression (CRIME).
    // No tickets when turned off: Node then resumes nothing (no session-ID cache either).
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_NO_COMPRESSION | (spec.sessionTickets === false ? cryptoConstants.SSL_OP_NO_TICKET : 0),
  };
}

interface Loaded {
  readonly context: tls.SecureContext;
  /** DNS names the certificate covers (for SNI), and its expiry (for the log). */
  readonly names: readonly string[];
  readonly notAfter: string;
}

/** A pair loaded from files, with what it was made from: the same bytes and settings make the same pair. */
interface FromFile extends Loaded {
  readonly keyFile: string;
  readonly minVersion: string;
  /** SHA-256 of the certificate file, then of the key file (a digest: the key's PEM is not kept). */
  readonly digest: string;
}

export interface CertStoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Names a certificate is valid for: its DNS subjectAltNames (CN only when there are none). */
export function certificateNames(x: X509Certificate): string[] {
  const san = x.subjectAltName;
  if (san) {
    return san
      .split(/,\s*/)
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** Load and check one certificate/key pair; throws with a clear message. */
export function loadPair(certPem: string | Buffer, keyPem: string | Buffer, spec: Pick<TlsSpec, 'minVersion'>): Loaded {
  const chain = String(certPem);
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chain)?.[0];
  if (!first) throw new Error('no PEM certificate found');
  const x = new X509Certificate(first);
  const key = createPrivateKey(keyPem);
  if (!x.checkPrivateKey(key)) throw new Error('the private key does not belong to the certificate');
  const context = tls.createSecureContext({ ...secureOptions(spec), cert: chain, key: keyPem });
  return { context, names: certificateNames(x), notAfter: new Date(x.validTo).toISOString() };
}

export class CertStore {
  private spec: Pick<TlsSpec, 'minVersion'>;
  private files: readonly CertificateFile[] = [];
  private fromFiles = new Map<string, FromFile>(); // by cert file path
  private readonly fromAcme = new Map<string, Loaded>(); // by domain
  private exact = new Map<string, tls.SecureContext>();
  private wildcard = new Map<string, tls.SecureContext>();
  private watchers: FSWatcher[] = [];
  private poll: NodeJS.Timeout | undefined;
  private mtimes = new Map<string, number>();
  /** The directories the watchers watch, as one key (watchers are kept while it stays the same). */
  private watchedDirs = '';
  private readonly log: CertStoreLog;

  constructor(spec: Pick<TlsSpec, 'minVersion'>, log: CertStoreLog) {
    this.spec = spec;
    this.log = log;
  }

  /**
   * Load certificate files (on apply). Throws if any cannot be used, so a
   * configuration with a broken certificate is refused as a whole.
   */
  setFiles(files: readonly CertificateFile[], spec: Pick<TlsSpec, 'minVersion'>): void {
    const next = new Map<string, FromFile>();
    for (const f of files) {
      try {
        next.set(f.certFile, this.loadFile(f, spec));
      } catch (err) {
        throw new Error(`certificate ${f.certFile} (key ${f.keyFile}): ${(err as Error).message}`);
      }
    }
    this.spec = spec;
    this.files = files;
    this.fromFiles = next;
    this.rebuild();
    this.watchFiles();
  }

  /**
   * One pair from its files. Files are read on every call, but a pair whose
   * certificate and key bytes and settings are those of the pair already
   * loaded is that pair: a reload that changes a site does not build every
   * certificate's context again (about 1.7 ms each, on the worker's thread,
   * BENCHMARKS.md: Reloads under load).
   */
  private loadFile(f: CertificateFile, spec: Pick<TlsSpec, 'minVersion'>): FromFile {
    const cert = readFileSync(f.certFile);
    const key = readFileSync(f.keyFile);
    const digest = `${createHash('sha256').update(cert).digest('hex')}:${createHash('sha256').update(key).digest('hex')}`;
    const before = this.fromFiles.get(f.certFile);
    if (before !== undefined && before.digest === digest && before.keyFile === f.keyFile && before.minVersion === spec.minVersion) return before;
    return { ...loadPair(cert, key, spec), keyFile: f.keyFile, minVersion: spec.minVersion, digest };
  }

  /** A certificate obtained by ACME for `domain` (replaces the previous one). */
  setAcme(domain: string, cert: string, key: string): void {
    this.fromAcme.set(domain.toLowerCase(), loadPair(cert, key, this.spec));
    this.rebuild();
  }

  /** SNICallback: the context for a name, or none (the handshake fails with an alert). */
  readonly sni = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    cb(null, this.lookup(servername.toLowerCase()));
  };

  private lookup(name: string): tls.SecureContext | undefined {
    const c = this.exact.get(name);
    if (c) return c;
    const dot = name.indexOf('.');
    return dot === -1 ? undefined : this.wildcard.get(name.slice(dot + 1));
  }

  private rebuild(): void {
    // Files first, in configured order; the first certificate naming a host wins.
    const exact = new Map<string, tls.SecureContext>();
    const wildcard = new Map<string, tls.SecureContext>();
    const all: Loaded[] = [...this.files.map((f) => this.fromFiles.get(f.certFile)).filter((l) => l !== undefined), ...this.fromAcme.values()];
    for (const l of all) {
      for (const n of l.names) {
        if (n.startsWith('*.')) {
          if (!wildcard.has(n.slice(2))) wildcard.set(n.slice(2), l.context);
        } else if (!exact.has(n)) {
          exact.set(n, l.context);
        }
      }
    }
    this.exact = exact;
    this.wildcard = wildcard;
  }

  private watchFiles(): void {
    this.mtimes.clear();
    const dirs = new Set<string>();
    for (const f of this.files) {
      dirs.add(path.dirname(f.certFile));
      dirs.add(path.dirname(f.keyFile));
      this.mtimes.set(f.certFile, mtime(f.certFile));
      this.mtimes.set(f.keyFile, mtime(f.keyFile));
    }
    // The same directories as before (a reload that changed no certificate setting): keep the watchers and the poll.
    const dirsKey = [...dirs].join('\0');
    if (dirsKey === this.watchedDirs && this.files.length > 0) return;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    clearInterval(this.poll);
    this.watchedDirs = dirsKey;
    let timer: NodeJS.Timeout | undefined;
    const changed = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => this.reloadChanged(), 200);
      timer.unref();
    };
    for (const d of dirs) {
      try {
        const w = watch(d, changed);
        w.on('error', () => {});
        w.unref();
        this.watchers.push(w);
      } catch {
        // the poll below still notices changes
      }
    }
    if (this.files.length > 0) {
      this.poll = setInterval(() => {
        for (const [file, m] of this.mtimes) if (mtime(file) !== m) return changed();
      }, 2000);
      this.poll.unref();
    }
  }

  /** Re-read files whose cert or key changed; keep the old pair when the new one is broken. */
  private reloadChanged(): void {
    let any = false;
    for (const f of this.files) {
      const mc = mtime(f.certFile);
      const mk = mtime(f.keyFile);
      if (mc === this.mtimes.get(f.certFile) && mk === this.mtimes.get(f.keyFile)) continue;
      try {
        const l = this.loadFile(f, this.spec);
        this.mtimes.set(f.certFile, mc);
        this.mtimes.set(f.keyFile, mk);
        if (l === this.fromFiles.get(f.certFile)) continue; // touched, not changed
        this.fromFiles.set(f.certFile, l);
        any = true;
        this.log.info({ event: { action: 'certificate-reloaded' }, file: f.certFile, names: l.names, notAfter: l.notAfter }, `certificate ${f.certFile} reloaded`);
      } catch (err) {
        // Often the cert is replaced before its key: try again on the next change or poll.
        this.log.warn({ event: { action: 'certificate-reload-failed' }, file: f.certFile, err: (err as Error).message }, `certificate ${f.certFile} not reloaded (keeping the previous one): ${(err as Error).message}`);
      }
    }
    if (any) this.rebuild();
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    clearInterval(this.poll);
    this.watchedDirs = '';
  }
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}
