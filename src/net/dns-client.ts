/**
 * A small stub DNS client over UDP (with TCP fallback on truncation), built
 * on dns-packet. It exists because node:dns does not return TTLs for SRV
 * records, and discovery must re-resolve when records expire.
 *
 * Each query uses a fresh UDP socket (random source port) and a random
 * 16-bit id; replies from another address, with another id or for another
 * question are ignored, as a stub resolver should against spoofing.
 * A timeout, SERVFAIL, REFUSED or network error moves on to the next server;
 * NOERROR and NXDOMAIN are answers and are returned to the caller.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decode, encode, streamEncode } from 'dns-packet';
import type { Answer, DecodedPacket, Packet, RecordType, SoaAnswer } from 'dns-packet';

export interface DnsServerAddress {
  readonly host: string;
  readonly port: number;
}

export type DnsErrorCode =
  | 'DNS_TIMEOUT' // no answer within the timeout
  | 'DNS_SERVFAIL' // the server answered SERVFAIL
  | 'DNS_REFUSED' // REFUSED, NOTIMP, FORMERR or another non-answer rcode
  | 'DNS_BAD_RESPONSE' // the reply could not be decoded
  | 'DNS_NETWORK' // socket error (unreachable, connection refused...)
  | 'DNS_NO_SERVERS' // nothing to ask
  | 'DNS_CLOSED'; // the client was closed while the query ran

export class DnsError extends Error {
  readonly code: DnsErrorCode;
  constructor(code: DnsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'DnsError';
  }
}

/** NOERROR (possibly with no records: NODATA) or NXDOMAIN: both are real answers. */
export interface DnsResponse {
  readonly rcode: 'NOERROR' | 'NXDOMAIN';
  readonly answers: readonly Answer[];
  readonly authorities: readonly Answer[];
  readonly additionals: readonly Answer[];
  /** host:port of the server that answered. */
  readonly server: string;
  readonly transport: 'udp' | 'tcp';
}

export interface DnsClientOptions {
  readonly servers: readonly DnsServerAddress[];
  /** Per attempt (one server, one transport). */
  readonly timeoutMs: number;
  /** Total attempts across servers; default max(2, servers.length). */
  readonly attempts?: number;
}

export type QueryType = Extract<RecordType, 'SRV' | 'A' | 'AAAA'>;

// Large enough for a few dozen SRV records, small enough to avoid IP
// fragmentation (the DNS Flag Day 2020 value).
const EDNS_UDP_SIZE = 1232;

export class DnsClient {
  readonly servers: readonly DnsServerAddress[];
  readonly timeoutMs: number;
  readonly attempts: number;
  private readonly inflight = new Set<(err: DnsError) => void>();
  private closed = false;

  constructor(options: DnsClientOptions) {
    this.servers = options.servers;
    this.timeoutMs = options.timeoutMs;
    this.attempts = options.attempts ?? Math.max(2, options.servers.length);
  }

  async query(name: string, type: QueryType): Promise<DnsResponse> {
    if (this.servers.length === 0) throw new DnsError('DNS_NO_SERVERS', `no DNS servers to ask for ${name} ${type}`);
    const failures: string[] = [];
    let last: DnsError | undefined;
    for (let i = 0; i < this.attempts; i++) {
      if (this.closed) throw new DnsError('DNS_CLOSED', 'DNS client closed');
      const server = this.servers[i % this.servers.length]!;
      try {
        const udp = await this.exchange(server, name, type, 'udp');
        // A truncated answer is incomplete; ask the same server over TCP.
        if (udp.flag_tc) return toResponse(await this.exchange(server, name, type, 'tcp'), server, name, type, 'tcp');
        return toResponse(udp, server, name, type, 'udp');
      } catch (err) {
        const e = err instanceof DnsError ? err : new DnsError('DNS_NETWORK', String(err), { cause: err });
        if (e.code === 'DNS_CLOSED') throw e;
        last = e;
        failures.push(`${fmtServer(server)}: ${e.message}`);
      }
    }
    throw new DnsError(last?.code ?? 'DNS_NETWORK', `${name} ${type} failed (${failures.join('; ')})`, { cause: last });
  }

  /** Abort queries in flight; later queries fail with DNS_CLOSED. */
  close(): void {
    this.closed = true;
    for (const abort of [...this.inflight]) abort(new DnsError('DNS_CLOSED', 'DNS client closed'));
    this.inflight.clear();
  }

  private exchange(server: DnsServerAddress, name: string, type: QueryType, transport: 'udp' | 'tcp'): Promise<DecodedPacket> {
    const id = randomInt(0, 0x10000);
    const packet: Packet = {
      type: 'query',
      id,
      flags: 0x100, // RD: harmless to an authoritative server, needed by a recursive one
      questions: [{ type, name, class: 'IN' }],
      additionals: [
        // EDNS0 OPT: lets the server answer up to EDNS_UDP_SIZE bytes over UDP.
        { type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
      ],
    };
    return new Promise<DecodedPacket>((resolve, reject) => {
      let done = false;
      let cleanup = (): void => {};
      const finish = (err: DnsError | undefined, reply?: DecodedPacket): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.inflight.delete(abort);
        cleanup();
        if (err) reject(err);
        else resolve(reply!);
      };
      const abort = (err: DnsError): void => finish(err);
      const timer = setTimeout(
        () => finish(new DnsError('DNS_TIMEOUT', `no ${transport} answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.inflight.add(abort);
      // Returns true when `reply` answers our question; anything else is ignored.
      const matches = (reply: DecodedPacket): boolean => {
        const q = reply.questions?.[0];
        return reply.id === id && reply.type === 'response' && q !== undefined && q.type === type && sameName(q.name, name);
      };
      const onReply = (buf: Buffer): void => {
        let reply: DecodedPacket;
        try {
          reply = decode(buf);
        } catch (err) {
          if (transport === 'tcp') finish(new DnsError('DNS_BAD_RESPONSE', `undecodable reply: ${String(err)}`, { cause: err }));
          return; // a garbage datagram may be noise; keep waiting for ours
        }
        if (!matches(reply)) {
          if (transport === 'tcp') finish(new DnsError('DNS_BAD_RESPONSE', 'reply does not match the question'));
          return;
        }
        finish(undefined, reply);
      };

      if (transport === 'udp') {
        const family = net.isIPv6(server.host) ? 'udp6' : 'udp4';
        const socket = dgram.createSocket(family);
        cleanup = () => socket.close();
        socket.on('error', (err) => finish(new DnsError('DNS_NETWORK', err.message, { cause: err })));
        socket.on('message', (msg, rinfo) => {
          if (rinfo.port !== server.port || !sameAddress(rinfo.address, server.host)) return;
          onReply(msg);
        });
        socket.send(encode(packet), server.port, server.host, (err) => {
          if (err) finish(new DnsError('DNS_NETWORK', err.message, { cause: err }));
        });
      } else {
        const socket = net.connect({ host: server.host, port: server.port });
        cleanup = () => socket.destroy();
        let buffered = Buffer.alloc(0);
        socket.on('error', (err) => finish(new DnsError('DNS_NETWORK', err.message, { cause: err })));
        socket.on('connect', () => socket.write(streamEncode(packet)));
        socket.on('data', (chunk) => {
          buffered = Buffer.concat([buffered, chunk]);
          if (buffered.length < 2) return;
          const len = buffered.readUInt16BE(0);
          if (buffered.length < len + 2) return;
          onReply(buffered.subarray(2, 2 + len));
        });
        socket.on('end', () => finish(new DnsError('DNS_BAD_RESPONSE', 'TCP connection closed before a full reply')));
      }
    });
  }
}

function toResponse(
  reply: DecodedPacket,
  server: DnsServerAddress,
  name: string,
  type: QueryType,
  transport: 'udp' | 'tcp',
): DnsResponse {
  const rcode = reply.flags === undefined ? 0 : reply.flags & 0xf;
  const where = `${fmtServer(server)} for ${name} ${type}`;
  if (rcode === 2) throw new DnsError('DNS_SERVFAIL', `SERVFAIL from ${where}`);
  if (rcode !== 0 && rcode !== 3) throw new DnsError('DNS_REFUSED', `rcode ${rcode} from ${where}`);
  return {
    rcode: rcode === 3 ? 'NXDOMAIN' : 'NOERROR',
    answers: reply.answers ?? [],
    authorities: reply.authorities ?? [],
    additionals: (reply.additionals ?? []).filter((a) => a.type !== 'OPT'),
    server: fmtServer(server),
    transport,
  };
}

/**
 * The records of `type` that answer `name`, following CNAMEs inside the
 * same section (a server may answer a SRV query through an alias).
 */
export function recordsFor<T extends Answer['type']>(
  section: readonly Answer[],
  name: string,
  type: T,
): Extract<Answer, { type: T }>[] {
  const names = new Set([lowerName(name)]);
  // CNAME chains are short; a bounded loop keeps a malicious loop harmless.
  for (let i = 0; i < 8; i++) {
    let grew = false;
    for (const a of section) {
      if (a.type === 'CNAME' && names.has(lowerName(a.name)) && !names.has(lowerName(a.data))) {
        names.add(lowerName(a.data));
        grew = true;
      }
    }
    if (!grew) break;
  }
  return section.filter((a) => a.type === type && names.has(lowerName(a.name))) as Extract<Answer, { type: T }>[];
}

/** RFC 2308 negative-caching TTL in seconds from the SOA in the authority section, if any. */
export function negativeTtl(response: DnsResponse): number | undefined {
  const soa = response.authorities.find((a): a is SoaAnswer => a.type === 'SOA');
  if (!soa) return undefined;
  return Math.min(soa.ttl ?? 0, soa.data.minimum ?? soa.ttl ?? 0);
}

/** The nameservers of /etc/resolv.conf (port 53). Empty when the file is missing. */
export function systemNameservers(path = '/etc/resolv.conf'): DnsServerAddress[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const servers: DnsServerAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!.replace(/%.*$/, ''); // drop an IPv6 zone id
    if (net.isIP(host)) servers.push({ host, port: 53 });
  }
  return servers;
}

export function lowerName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function sameName(a: string, b: string): boolean {
  return lowerName(a) === lowerName(b);
}

function sameAddress(a: string, b: string): boolean {
  // A server given by name: the kernel chose the address; id and question still guard.
  if (!net.isIP(b)) return true;
  // udp4 sockets report IPv4 addresses; ::ffff: mapping only on dual-stack.
  return a === b || a === `::ffff:${b}` || b === `::ffff:${a}`;
}

function fmtServer(s: DnsServerAddress): string {
  return net.isIPv6(s.host) ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}
