/**
 * OCSP stapling: answers tls.Server 'OCSPRequest' events from a cache of
 * OCSP responses, fetched in the background from the responder named in the
 * certificate's Authority Information Access. A handshake never waits for the
 * responder: without a fresh cached response it goes out without a staple.
 */
import { createHash, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { Logger } from '../core/log.js';

export interface OcspOptions {
  /** Responder request timeout (default 5 s). */
  readonly timeoutMs?: number;
  /** First retry delay after a failed fetch, doubled up to maxBackoffMs (default 1 min). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Certificates tracked at most; the least recently used is dropped (default 1000). */
  readonly maxEntries?: number;
}

/** The result of asking a responder about one certificate. */
export type OcspStatus =
  | { readonly status: 'good'; readonly response: Buffer; readonly thisUpdate: Date; readonly nextUpdate: Date | undefined }
  | { readonly status: 'revoked' | 'unknown' | 'error'; readonly reason: string };

interface Entry {
  readonly cert: Buffer;
  readonly issuer: Buffer;
  readonly url: string;
  response: Buffer | undefined;
  expiresAt: number; // the cached response is not stapled from then on
  refreshAt: number; // a fetch is due from then on
  failures: number;
  fetching: boolean;
  lastUsed: number;
  timer: NodeJS.Timeout | undefined;
}

const MAX_RESPONSE_BYTES = 64 * 1024;
// Without a nextUpdate the responder promises nothing: reuse for a short while.
const NO_NEXT_UPDATE_MS = 60 * 60 * 1000;
// Stop stapling a little before nextUpdate: clients with skewed clocks.
const EXPIRY_MARGIN_MS = 60 * 1000;
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const IDLE_FORGET_MS = 24 * 60 * 60 * 1000;

/** The OCSP responder URL of a DER or PEM certificate, if it names an http(s) one. */
export function ocspResponderUrl(cert: Buffer | string): string | undefined {
  let info: string | undefined;
  try {
    info = new X509Certificate(cert).infoAccess;
  } catch {
    return undefined;
  }
  for (const line of (info ?? '').split('\n')) {
    const m = /^OCSP - URI:(https?:\/\/\S+)$/.exec(line.trim());
    if (m) return m[1];
  }
  return undefined;
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

async function certIdFor(cert: Buffer, issuer: Buffer): Promise<pkijs.CertID> {
  const id = new pkijs.CertID();
  // SHA-1: what responders expect (RFC 5019 §2.1.1).
  await id.createForCertificate(pkijs.Certificate.fromBER(toArrayBuffer(cert)), {
    hashAlgorithm: 'SHA-1',
    issuerCertificate: pkijs.Certificate.fromBER(toArrayBuffer(issuer)),
  });
  return id;
}

/** A DER OCSPRequest for `cert` issued by `issuer` (both DER). */
export async function buildOcspRequest(cert: Buffer, issuer: Buffer): Promise<Buffer> {
  const req = new pkijs.OCSPRequest();
  req.tbsRequest.requestList = [new pkijs.Request({ reqCert: await certIdFor(cert, issuer) })];
  return Buffer.from(req.toSchema(true).toBER(false));
}

/**
 * Check a DER OCSPResponse for `cert`: successful, signed by the issuer (or
 * a responder it delegated to), current, and about this certificate.
 */
export async function parseOcspResponse(der: Buffer, cert: Buffer, issuer: Buffer, now = Date.now()): Promise<OcspStatus> {
  let resp: pkijs.OCSPResponse;
  try {
    resp = pkijs.OCSPResponse.fromBER(toArrayBuffer(der));
  } catch (err) {
    return { status: 'error', reason: `unparsable OCSP response: ${(err as Error).message}` };
  }
  const code = resp.responseStatus.valueBlock.valueDec;
  if (code !== 0) return { status: 'error', reason: `OCSP responseStatus ${code}` };
  if (!resp.responseBytes || resp.responseBytes.responseType !== pkijs.id_PKIX_OCSP_Basic) return { status: 'error', reason: 'OCSP response is not a basic response' };
  let basic: pkijs.BasicOCSPResponse;
  try {
    basic = pkijs.BasicOCSPResponse.fromBER(toArrayBuffer(Buffer.from(resp.responseBytes.response.valueBlock.valueHexView)));
  } catch (err) {
    return { status: 'error', reason: `unparsable basic OCSP response: ${(err as Error).message}` };
  }
  const issuerCert = pkijs.Certificate.fromBER(toArrayBuffer(issuer));
  let signed = false;
  try {
    signed = await basic.verify({ trustedCerts: [issuerCert] });
  } catch {
    signed = false;
  }
  if (!signed) return { status: 'error', reason: 'OCSP response signature does not verify against the issuer' };
  const id = await certIdFor(cert, issuer);
  const single = basic.tbsResponseData.responses.find((r) => r.certID.isEqual(id));
  if (!single) return { status: 'error', reason: 'OCSP response is not about this certificate' };
  const tag = (single.certStatus as asn1js.BaseBlock).idBlock;
  if (tag.tagClass !== 3 || tag.tagNumber !== 0) return { status: tag.tagNumber === 1 ? 'revoked' : 'unknown', reason: tag.tagNumber === 1 ? 'certificate is revoked' : 'responder does not know the certificate' };
  const thisUpdate = single.thisUpdate;
  const nextUpdate = single.nextUpdate;
  if (thisUpdate.getTime() > now + CLOCK_SKEW_MS) return { status: 'error', reason: 'OCSP response thisUpdate is in the future' };
  if (nextUpdate && nextUpdate.getTime() <= now) return { status: 'error', reason: 'OCSP response is past its nextUpdate' };
  return { status: 'good', response: der, thisUpdate, nextUpdate };
}

function post(url: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: 'POST', headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response', 'content-length': body.length }, timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`responder answered HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('OCSP response too large'));
        else chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`responder did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export class OcspStapler {
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxEntries: number;
  // By SHA-256 of the leaf DER; Map order doubles as LRU order.
  private readonly entries = new Map<string, Entry>();
  // Certificates without a responder URL (or unparsable): no need to look again.
  private readonly noUrl = new Set<string>();
  private closed = false;

  constructor(log: Logger, opts: OcspOptions = {}) {
    this.log = log;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.minBackoffMs = opts.minBackoffMs ?? 60_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 60 * 60 * 1000;
    this.maxEntries = opts.maxEntries ?? 1000;
  }

  /** For tls.Server 'OCSPRequest': answers at once, from the cache or with no staple. */
  respond(cert: Buffer, issuer: Buffer | null, cb: (err: Error | null, resp?: Buffer | null) => void): void {
    let out: Buffer | null = null;
    try {
      out = this.lookup(cert, issuer);
    } catch (err) {
      this.log.warn({ event: { action: 'ocsp-error' }, err: (err as Error).message }, `OCSP stapling: ${(err as Error).message}`);
    }
    cb(null, out);
  }

  private lookup(cert: Buffer, issuer: Buffer | null): Buffer | null {
    if (this.closed || !issuer) return null;
    const key = createHash('sha256').update(cert).digest('hex');
    if (this.noUrl.has(key)) return null;
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
    } else {
      const url = ocspResponderUrl(cert);
      if (!url) {
        if (this.noUrl.size >= this.maxEntries) this.noUrl.clear();
        this.noUrl.add(key);
        return null;
      }
      e = { cert, issuer, url, response: undefined, expiresAt: 0, refreshAt: 0, failures: 0, fetching: false, lastUsed: 0, timer: undefined };
      this.entries.set(key, e);
      this.evict();
    }
    const now = Date.now();
    e.lastUsed = now;
    if (now >= e.refreshAt) this.fetch(e);
    return e.response && now < e.expiresAt ? e.response : null;
  }

  private forget(e: Entry): void {
    clearTimeout(e.timer);
    for (const [k, v] of this.entries) if (v === e) this.entries.delete(k);
  }

  private evict(): void {
    while (this.entries.size > this.maxEntries) {
      const [oldest, e] = this.entries.entries().next().value as [string, Entry];
      clearTimeout(e.timer);
      this.entries.delete(oldest);
    }
  }

  private fetch(e: Entry): void {
    if (e.fetching || this.closed) return;
    e.fetching = true;
    clearTimeout(e.timer);
    void this.query(e)
      .then((st) => this.settle(e, st))
      .catch((err: Error) => this.settle(e, { status: 'error', reason: err.message }))
      .finally(() => (e.fetching = false));
  }

  private async query(e: Entry): Promise<OcspStatus> {
    const body = await buildOcspRequest(e.cert, e.issuer);
    const der = await post(e.url, body, this.timeoutMs);
    return parseOcspResponse(der, e.cert, e.issuer);
  }

  private settle(e: Entry, st: OcspStatus): void {
    if (this.closed) return;
    const now = Date.now();
    const subject = safeSubject(e.cert);
    if (st.status === 'good') {
      const next = st.nextUpdate ? st.nextUpdate.getTime() : now + NO_NEXT_UPDATE_MS;
      e.response = st.response;
      e.expiresAt = next - EXPIRY_MARGIN_MS;
      e.failures = 0;
      // Refresh at half the remaining validity: well before nextUpdate, and
      // (for the usual validity of days) hours ahead of it.
      e.refreshAt = now + Math.max(1000, (next - now) / 2);
      this.log.debug({ event: { action: 'ocsp-fetched' }, subject, responder: e.url, nextUpdate: new Date(next).toISOString() }, `OCSP response for ${subject} cached`);
    } else {
      // Never staple revoked/unknown/erroneous answers; the previous good
      // response stays (until it expires) when only the fetch failed.
      if (st.status !== 'error') {
        e.response = undefined;
        e.expiresAt = 0;
      }
      const backoff = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** e.failures);
      e.failures++;
      e.refreshAt = now + backoff;
      (st.status === 'revoked' ? this.log.error.bind(this.log) : this.log.warn.bind(this.log))(
        { event: { action: 'ocsp-failed' }, subject, responder: e.url, status: st.status, reason: st.reason, retryInMs: backoff },
        `OCSP for ${subject} from ${e.url}: ${st.reason}; not stapling, retry in ${Math.round(backoff / 1000)} s`,
      );
    }
    // Refresh on time even if no handshake asks in between.
    e.timer = setTimeout(() => {
      // A certificate no handshake asked about for a day (replaced, or its
      // site removed) is forgotten rather than refreshed forever.
      if (Date.now() - e.lastUsed > IDLE_FORGET_MS) this.forget(e);
      else this.fetch(e);
    }, Math.max(0, e.refreshAt - now));
    e.timer.unref();
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
    this.noUrl.clear();
  }
}

function safeSubject(cert: Buffer): string {
  try {
    return new X509Certificate(cert).subject.replace(/\n/g, ', ');
  } catch {
    return '(unparsable certificate)';
  }
}
