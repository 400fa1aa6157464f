/**
 * TLS posture from configuration alone: which certificate serves each
 * site of an HTTPS cluster, who issued it and when it expires. Used by
 * `perimeter sites`, the admin API and the expiry metric; reads the
 * certificate files (no private keys).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Snapshot } from '../config/types.js';
import { certificateNames } from './cert-store.js';
import { storedCertificateFile } from './storage.js';

export interface CertPosture {
  readonly subject: string;
  readonly issuer: string;
  readonly notAfter: string;
  readonly daysLeft: number;
  readonly source: 'file' | 'acme';
  readonly file: string;
  readonly names: readonly string[];
}

interface Parsed extends CertPosture {
  covers(host: string): boolean;
}

function parse(file: string): Parsed | undefined {
  try {
    const pem = readFileSync(file, 'utf8');
    const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
    if (!first) return undefined;
    const x = new X509Certificate(first);
    const names = certificateNames(x);
    const notAfter = new Date(x.validTo);
    return {
      subject: x.subject.replace(/\n/g, ', '),
      issuer: x.issuer.replace(/\n/g, ', '),
      notAfter: notAfter.toISOString(),
      daysLeft: Math.floor((notAfter.getTime() - Date.now()) / 86_400_000),
      source: 'file',
      file,
      names,
      covers(host: string) {
        return names.some((n) => n === host || (n.startsWith('*.') && host.endsWith(n.slice(1)) && !host.slice(0, -(n.length - 1)).includes('.')));
      },
    };
  } catch {
    return undefined;
  }
}

/** Every configured certificate file, by cluster. */
export function clusterCertificates(snapshot: Snapshot): Map<string, CertPosture[]> {
  const out = new Map<string, CertPosture[]>();
  for (const c of snapshot.clusters.values()) {
    if (!c.tls) continue;
    out.set(
      c.name,
      c.tls.certificates.map((f) => parse(f.certFile)).filter((p): p is Parsed => p !== undefined),
    );
  }
  return out;
}

/** The certificate that serves `host` on its cluster's HTTPS listener (first match, as the listener picks). */
export function certificateFor(snapshot: Snapshot, cluster: string, host: string): CertPosture | undefined {
  const c = snapshot.clusters.get(cluster);
  if (!c?.tls) return undefined;
  const probe = host.startsWith('*.') ? `x${host.slice(1)}` : host;
  for (const f of c.tls.certificates) {
    const p = parse(f.certFile);
    if (p?.covers(probe)) {
      const { covers: _covers, ...posture } = p;
      return posture;
    }
  }
  // No file covers it: with ACME, the certificate stored for the site (what the listener loads).
  if (snapshot.acme && !host.startsWith('*.')) {
    const p = parse(storedCertificateFile(snapshot.acme.storage, snapshot.acme.directory, host));
    if (p?.covers(host)) {
      const { covers: _covers, ...posture } = p;
      return { ...posture, source: 'acme' };
    }
  }
  return undefined;
}
