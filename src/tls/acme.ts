/**
 * Automatic certificates by ACME (RFC 8555): the manager keeps one
 * certificate per domain it is given, orders missing ones, renews them in
 * the window the CA suggests (ACME Renewal Information, RFC 9773) or when
 * `renew-before` of the lifetime remains, and backs off on failures. Account
 * key and certificates live in the storage directory (src/tls/storage.ts),
 * which many perimeter hosts may share: a lease file there makes one host
 * order while the others pick the result up. See docs/acme.md.
 *
 * The listeners answer the challenges: GET /.well-known/acme-challenge/<token>
 * on port 80 with httpChallenge(token), and a TLS handshake offering only
 * ALPN 'acme-tls/1' with tlsAlpnCertificate(servername).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import type * as AcmeClientLibrary from 'acme-client';
import type { Authorization, Client, Order } from 'acme-client';
import type { AcmeChallenge, AcmeSpec } from '../config/types.js';
import type { Logger } from '../core/log.js';
import { AcmeStorage, type StoredCertificate } from './storage.js';

export interface AcmeCertificate {
  readonly cert: string;
  readonly key: string;
  readonly notAfter: Date;
  readonly source: 'acme';
}

export interface AcmeHooks {
  /** A certificate was obtained, renewed, or loaded from storage. */
  onCertificate(domain: string, pem: { cert: string; key: string; notAfter: Date }): void;
}

/** Timings; the defaults suit production, tests shorten them. */
export interface AcmeTimings {
  /** First retry after a failed order; doubles per failure (with jitter) up to backoffMaxMs. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** How long an order lease holds without renewal (a dead host's lease expires). */
  readonly leaseMs?: number;
  /** How often a host waiting on another host's lease looks at the storage again. */
  readonly leasePollMs?: number;
  /** Polling of challenge and order status at the CA (acme-client back-off). */
  readonly pollMinMs?: number;
  readonly pollMaxMs?: number;
}

interface AriWindow {
  readonly start: number;
  readonly end: number;
  /** The point picked at random inside the window (kept while the window stays). */
  readonly pick: number;
  /** When to ask the CA again (Retry-After). */
  readonly recheckAt: number;
}

interface DomainState {
  readonly domain: string;
  current?: StoredCertificate;
  timer?: NodeJS.Timeout;
  failures: number;
  running?: Promise<void>;
  again: boolean;
  ari?: AriWindow;
}

// setTimeout holds at most 2^31-1 ms; far renewals are re-evaluated daily.
const MAX_TIMER_MS = 24 * 3600_000;
const MIN_ARI_RECHECK_MS = 60_000;
const MAX_ARI_RECHECK_MS = 24 * 3600_000;
const DEFAULT_ARI_RECHECK_MS = 6 * 3600_000;

let trustedCaPem: string | undefined;
let trustedAgent: Agent | undefined;

/**
 * acme-client sends every request through one shared axios instance, so
 * the extra CA is trusted process-wide (one acme block per configuration).
 * The file is read here, so an unreadable one fails the configuration; the
 * agent reaches axios when the library is loaded (acmeLibrary).
 */
function trustCa(caFile: string | undefined): void {
  const pem = caFile ? readFileSync(caFile, 'utf8') : undefined;
  if (pem === trustedCaPem) return;
  trustedCaPem = pem;
  trustedAgent = pem ? new Agent({ ca: [...rootCertificates, pem], keepAlive: false }) : undefined;
}

let library: Promise<typeof AcmeClientLibrary> | undefined;

/**
 * acme-client, imported when an ACME client first needs it: importing it
 * costs about 290 ms of CPU and 28 MB of memory, which every process paid
 * at startup (control and each worker) while only the control process of a
 * configuration with an acme block ever uses it.
 */
async function acmeLibrary(): Promise<typeof AcmeClientLibrary> {
  const lib = await (library ??= import('acme-client'));
  lib.axios.defaults.httpsAgent = trustedAgent;
  return lib;
}

/** Exponential back-off with jitter: min·2^(n-1), capped, times 0.5..1. */
export function backoffDelay(failures: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, Math.min(failures - 1, 40)));
  return Math.round(base * (0.5 + random() / 2));
}

/** The ARI certificate identifier: base64url(AKI keyIdentifier) '.' base64url(serial DER). */
export function ariCertId(certPem: string): string | undefined {
  let x: X509Certificate;
  try {
    x = new X509Certificate(certPem);
  } catch {
    return undefined;
  }
  const aki = authorityKeyId(x.raw);
  if (!aki) return undefined;
  let serial = Buffer.from(x.serialNumber.length % 2 ? `0${x.serialNumber}` : x.serialNumber, 'hex');
  // DER integers are signed: a leading high bit needs a zero byte.
  if ((serial[0] ?? 0) & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${aki.toString('base64url')}.${serial.toString('base64url')}`;
}

function derLength(buf: Buffer, at: number): { len: number; next: number } | undefined {
  const first = buf[at];
  if (first === undefined) return undefined;
  if (first < 0x80) return { len: first, next: at + 1 };
  const n = first & 0x7f;
  if (n === 0 || n > 4) return undefined;
  let len = 0;
  for (let i = 1; i <= n; i++) len = len * 256 + (buf[at + i] ?? 0);
  return { len, next: at + 1 + n };
}

/** keyIdentifier of the authorityKeyIdentifier extension (OID 2.5.29.35), found in the DER. */
function authorityKeyId(der: Buffer): Buffer | undefined {
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);
  let at = der.indexOf(oid);
  if (at < 0) return undefined;
  at += oid.length;
  if (der[at] === 0x01) at += 3; // critical BOOLEAN
  if (der[at] !== 0x04) return undefined; // extnValue OCTET STRING
  const oct = derLength(der, at + 1);
  if (!oct || der[oct.next] !== 0x30) return undefined;
  const seq = derLength(der, oct.next + 1);
  if (!seq || der[seq.next] !== 0x80) return undefined; // [0] keyIdentifier
  const kid = derLength(der, seq.next + 1);
  if (!kid) return undefined;
  return der.subarray(kid.next, kid.next + kid.len);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class AcmeManager {
  private readonly storage: AcmeStorage;
  private readonly domains = new Map<string, DomainState>();
  private readonly httpTokens = new Map<string, string>();
  private readonly alpnCerts = new Map<string, { cert: string; key: string }>();
  private readonly timings: Required<AcmeTimings>;
  private clientP: Promise<Client> | undefined;
  private directoryP: Promise<Record<string, unknown>> | undefined;
  private closed = false;
  private orderCount = 0;

  constructor(
    private readonly spec: AcmeSpec,
    private readonly log: Logger,
    private readonly hooks: AcmeHooks,
    timings: AcmeTimings = {},
  ) {
    this.timings = {
      backoffMinMs: timings.backoffMinMs ?? 60_000,
      backoffMaxMs: timings.backoffMaxMs ?? 6 * 3600_000,
      leaseMs: timings.leaseMs ?? 10 * 60_000,
      leasePollMs: timings.leasePollMs ?? 30_000,
      pollMinMs: timings.pollMinMs ?? 1_000,
      pollMaxMs: timings.pollMaxMs ?? 10_000,
    };
    trustCa(spec.caFile);
    this.storage = new AcmeStorage(spec.storage, spec.directory);
  }

  /** Orders this manager placed with the CA (for tests and metrics). */
  get orders(): number {
    return this.orderCount;
  }

  /** Keep certificates for exactly these domains: new ones are loaded or ordered, dropped ones forgotten (files stay). */
  setDomains(domains: readonly string[]): void {
    if (this.closed) return;
    const wanted = new Set<string>();
    for (const d of domains) {
      const domain = d.toLowerCase().replace(/\.$/, '');
      if (domain.startsWith('*.')) {
        this.log.warn({ event: 'acme.unsupported', domain }, 'acme: wildcard names need DNS-01, which perimeter does not offer; use a certificate file');
        continue;
      }
      wanted.add(domain);
    }
    for (const [domain, st] of this.domains) {
      if (!wanted.has(domain)) {
        if (st.timer) clearTimeout(st.timer);
        this.domains.delete(domain);
      }
    }
    for (const domain of wanted) {
      if (this.domains.has(domain)) continue;
      const st: DomainState = { domain, failures: 0, again: false };
      this.domains.set(domain, st);
      this.kick(st);
    }
  }

  /** The key authorization for GET /.well-known/acme-challenge/<token>, if it is one of ours (or of a host sharing the storage). */
  httpChallenge(token: string): string | undefined {
    return this.httpTokens.get(token) ?? this.storage.getHttpChallenge(token);
  }

  /** The RFC 8737 challenge certificate for a handshake offering only ALPN 'acme-tls/1'. */
  tlsAlpnCertificate(servername: string): { cert: string; key: string } | undefined {
    const name = servername.toLowerCase();
    return this.alpnCerts.get(name) ?? this.storage.getAlpnCertificate(name);
  }

  certificates(): Map<string, AcmeCertificate> {
    const out = new Map<string, AcmeCertificate>();
    for (const [domain, st] of this.domains) {
      if (st.current) out.set(domain, { cert: st.current.cert, key: st.current.key, notAfter: st.current.notAfter, source: 'acme' });
    }
    return out;
  }

  /** Stop scheduling; waits for orders in flight to end. */
  async close(): Promise<void> {
    this.closed = true;
    const running: Promise<void>[] = [];
    for (const st of this.domains.values()) {
      if (st.timer) clearTimeout(st.timer);
      if (st.running) running.push(st.running);
    }
    await Promise.allSettled(running);
  }

  private kick(st: DomainState): void {
    if (this.closed || this.domains.get(st.domain) !== st) return;
    if (st.running) {
      st.again = true;
      return;
    }
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    st.running = this.check(st).finally(() => {
      st.running = undefined;
      if (st.again) {
        st.again = false;
        this.kick(st);
      }
    });
  }

  private schedule(st: DomainState, at: number): void {
    if (this.closed || this.domains.get(st.domain) !== st) return;
    if (st.timer) clearTimeout(st.timer);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()));
    st.timer = setTimeout(() => this.kick(st), delay);
    st.timer.unref();
  }

  private adopt(st: DomainState, stored: StoredCertificate, how: 'stored' | 'ordered'): void {
    st.current = stored;
    st.ari = undefined;
    this.log.info({ event: `acme.certificate.${how}`, domain: st.domain, notAfter: stored.notAfter.toISOString() }, `acme: certificate for ${st.domain} ${how === 'stored' ? 'loaded from storage' : 'obtained'}`);
    this.hooks.onCertificate(st.domain, { cert: stored.cert, key: stored.key, notAfter: stored.notAfter });
  }

  /** Pick up a certificate stored by an earlier run or another host, when newer than ours. */
  private async loadStored(st: DomainState): Promise<void> {
    const stored = await this.storage.readCertificate(st.domain);
    if (stored && (!st.current || stored.notAfter.getTime() > st.current.notAfter.getTime() || stored.cert !== st.current.cert && stored.notBefore > st.current.notBefore)) {
      this.adopt(st, stored, 'stored');
    }
  }

  private async check(st: DomainState): Promise<void> {
    try {
      await this.loadStored(st);
      const plan = await this.renewalPlan(st);
      if (plan.renewAt > Date.now()) {
        this.schedule(st, Math.min(plan.renewAt, plan.recheckAt));
        return;
      }
      const lease = await this.storage.acquireLease(st.domain, this.timings.leaseMs);
      if (!lease) {
        this.log.info({ event: 'acme.lease.busy', domain: st.domain }, `acme: another host is ordering ${st.domain}; waiting for its result`);
        this.schedule(st, Date.now() + this.timings.leasePollMs);
        return;
      }
      const keepAlive = setInterval(() => void lease.renew().catch(() => undefined), Math.max(1_000, this.timings.leaseMs / 3));
      keepAlive.unref();
      try {
        // The lease holder before us may have just stored a fresh certificate.
        await this.loadStored(st);
        const again = await this.renewalPlan(st);
        if (again.renewAt > Date.now()) {
          this.schedule(st, Math.min(again.renewAt, again.recheckAt));
          return;
        }
        if (this.closed) return;
        await this.order(st);
      } finally {
        clearInterval(keepAlive);
        await lease.release().catch(() => undefined);
      }
      st.failures = 0;
      const next = await this.renewalPlan(st);
      this.schedule(st, Math.min(next.renewAt, next.recheckAt));
    } catch (e) {
      st.failures++;
      const delay = backoffDelay(st.failures, this.timings.backoffMinMs, this.timings.backoffMaxMs);
      this.log.error(
        { event: 'acme.order.failed', domain: st.domain, failures: st.failures, retryInMs: delay, err: errorText(e) },
        `acme: certificate for ${st.domain} failed (${errorText(e)}); retrying in ${Math.round(delay / 1000)}s`,
      );
      this.schedule(st, Date.now() + delay);
    }
  }

  /**
   * When to renew, and when to look again. With ARI the CA's window wins
   * (a random point in it, so hosts and domains spread out); without it,
   * renew when less than renew-before (default a third of the lifetime)
   * remains.
   */
  private async renewalPlan(st: DomainState): Promise<{ renewAt: number; recheckAt: number }> {
    const cur = st.current;
    const now = Date.now();
    if (!cur || cur.notAfter.getTime() <= now) return { renewAt: 0, recheckAt: 0 };
    const ari = await this.ariWindow(st).catch((e: unknown) => {
      this.log.warn({ event: 'acme.ari.failed', domain: st.domain, err: errorText(e) }, `acme: renewal information for ${st.domain} unavailable (${errorText(e)}); using renew-before`);
      return undefined;
    });
    if (ari) return { renewAt: ari.pick, recheckAt: ari.recheckAt };
    const lifetime = cur.notAfter.getTime() - cur.notBefore.getTime();
    const before = this.spec.renewBeforeMs ?? lifetime / 3;
    return { renewAt: cur.notAfter.getTime() - before, recheckAt: Infinity };
  }

  private async directory(): Promise<Record<string, unknown>> {
    if (!this.directoryP) {
      this.directoryP = acmeLibrary().then((lib) => lib.axios.get<Record<string, unknown>>(this.spec.directory)).then(
        (r) => {
          if (r.status !== 200 || typeof r.data !== 'object' || r.data === null) throw new Error(`directory answered ${r.status}`);
          return r.data;
        },
        (e: unknown) => {
          this.directoryP = undefined;
          throw e;
        },
      );
      this.directoryP.catch(() => (this.directoryP = undefined));
    }
    return this.directoryP;
  }

  private async ariWindow(st: DomainState): Promise<AriWindow | undefined> {
    const cur = st.current;
    if (!cur) return undefined;
    const now = Date.now();
    if (st.ari && st.ari.recheckAt > now) return st.ari;
    const base = (await this.directory()).renewalInfo;
    if (typeof base !== 'string') return undefined;
    const id = ariCertId(cur.cert);
    if (!id) return undefined;
    const r = await (await acmeLibrary()).axios.get<{ suggestedWindow?: { start?: string; end?: string } }>(`${base.replace(/\/$/, '')}/${id}`);
    if (r.status !== 200) throw new Error(`renewalInfo answered ${r.status}`);
    const start = Date.parse(r.data.suggestedWindow?.start ?? '');
    const end = Date.parse(r.data.suggestedWindow?.end ?? '');
    if (!Number.isFinite(start) || !Number.isFinite(end) || end < start) throw new Error('renewalInfo has no valid suggestedWindow');
    const retryAfter = Number(r.headers['retry-after']);
    const recheckMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : DEFAULT_ARI_RECHECK_MS;
    const keep = st.ari && st.ari.start === start && st.ari.end === end;
    const pick = keep ? st.ari!.pick : start + Math.random() * (end - start);
    st.ari = { start, end, pick, recheckAt: now + Math.min(MAX_ARI_RECHECK_MS, Math.max(MIN_ARI_RECHECK_MS, recheckMs)) };
    if (!keep) this.log.info({ event: 'acme.ari.window', domain: st.domain, start: new Date(start).toISOString(), end: new Date(end).toISOString() }, `acme: CA suggests renewing ${st.domain} between ${new Date(start).toISOString()} and ${new Date(end).toISOString()}`);
    return st.ari;
  }

  private async client(): Promise<Client> {
    if (!this.clientP) {
      this.clientP = (async () => {
        const lib = await acmeLibrary();
        const accountKey = await this.storage.accountKey(async () => (await lib.crypto.createPrivateEcdsaKey('P-256')).toString());
        const client = new lib.Client({
          directoryUrl: this.spec.directory,
          accountKey,
          backoffAttempts: 10,
          backoffMin: this.timings.pollMinMs,
          backoffMax: this.timings.pollMaxMs,
        });
        // Registering an existing key returns its account: no state to keep.
        await client.createAccount({ termsOfServiceAgreed: true, ...(this.spec.email ? { contact: [`mailto:${this.spec.email}`] } : {}) });
        return client;
      })();
      this.clientP.catch(() => (this.clientP = undefined));
    }
    return this.clientP;
  }

  private async order(st: DomainState): Promise<void> {
    const { domain } = st;
    const client = await this.client();
    const renewal = st.current !== undefined;
    const replaces = renewal && typeof (await this.directory()).renewalInfo === 'string' ? ariCertId(st.current!.cert) : undefined;
    this.orderCount++;
    this.log.info({ event: renewal ? 'acme.renewal' : 'acme.order', domain, ...(replaces ? { replaces } : {}) }, `acme: ${renewal ? 'renewing' : 'ordering'} certificate for ${domain}`);
    const request = { identifiers: [{ type: 'dns', value: domain }], ...(replaces ? { replaces } : {}) };
    const order: Order = await client.createOrder(request);
    for (const authz of await client.getAuthorizations(order)) {
      if (authz.status === 'valid') continue;
      await this.solve(client, authz);
    }
    const { crypto: acmeCrypto } = await acmeLibrary();
    const [key, csr] = await acmeCrypto.createCsr({ commonName: domain, altNames: [domain] }, await acmeCrypto.createPrivateEcdsaKey('P-256'));
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    const keyPem = key.toString();
    await this.storage.writeCertificate(domain, chain, keyPem);
    const stored = await this.storage.readCertificate(domain);
    if (!stored) throw new Error('the stored certificate could not be read back');
    this.adopt(st, stored, 'ordered');
  }

  private async solve(client: Client, authz: Authorization): Promise<void> {
    const domain = authz.identifier.value.toLowerCase();
    const offered: string[] = authz.challenges.map((c) => c.type);
    const type = this.spec.challenges.find((t: AcmeChallenge) => offered.includes(t));
    const challenge = authz.challenges.find((c) => (c.type as string) === type);
    if (!type || !challenge) throw new Error(`the CA offers ${offered.join(', ')} for ${domain}, none of ${this.spec.challenges.join(', ')}`);
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    // Published in memory and in storage, so whichever host the CA reaches can answer.
    if (type === 'http-01') {
      this.httpTokens.set(challenge.token, keyAuthorization);
      this.storage.putHttpChallenge(challenge.token, keyAuthorization);
    } else {
      const { crypto: acmeCrypto } = await acmeLibrary();
      const [key, cert] = await acmeCrypto.createAlpnCertificate(authz, keyAuthorization, await acmeCrypto.createPrivateEcdsaKey('P-256'));
      const pair = { cert: cert.toString(), key: key.toString() };
      this.alpnCerts.set(domain, pair);
      this.storage.putAlpnCertificate(domain, pair.cert, pair.key);
    }
    this.log.info({ event: 'acme.challenge', domain, type }, `acme: answering ${type} for ${domain}`);
    try {
      await client.completeChallenge(challenge);
      await client.waitForValidStatus(challenge);
    } finally {
      if (type === 'http-01') {
        this.httpTokens.delete(challenge.token);
        this.storage.removeHttpChallenge(challenge.token);
      } else {
        this.alpnCerts.delete(domain);
        this.storage.removeAlpnCertificate(domain);
      }
    }
  }
}
