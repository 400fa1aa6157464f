/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt): v2 headers written
 * towards backends, v1 and v2 headers read from trusted load balancers.
 *
 * The parser is strict and bounded: it looks at no more than 107 bytes for
 * v1 (the spec's maximum line, CRLF included) and 16 + length bytes for v2,
 * never throws, and answers 'incomplete' only while the bytes so far are a
 * prefix of a header that could still be valid.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIpv6Groups } from '../net/cidr.js';

/** The 12-byte v2 signature. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Longest v1 line, "PROXY TCP6 <39> <39> 65535 65535\r\n" (spec section 2.1). */
export const V1_MAX = 107;
/** v2: 16 fixed bytes plus at most a uint16 of address and TLV bytes. */
export const V2_MAX = 16 + 0xffff;

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * 'proxy': relayed for a client (source/destination set).
   * 'local': the load balancer's own connection (v2 LOCAL, v1 UNKNOWN, or v2
   * PROXY with an unspecified family): use the real connection's addresses.
   */
  readonly command: 'proxy' | 'local';
  readonly source?: Endpoint;
  readonly destination?: Endpoint;
}

export type ParseResult =
  | { readonly state: 'incomplete' }
  | { readonly state: 'invalid'; readonly reason: string }
  | { readonly state: 'ok'; readonly header: ProxyHeader; readonly length: number };

const INCOMPLETE: ParseResult = Object.freeze({ state: 'incomplete' });
const invalid = (reason: string): ParseResult => ({ state: 'invalid', reason });

/** True when `buf` and `sig` agree on their common length. */
function prefixMatch(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/** Parse a PROXY protocol header (v1 or v2) at the start of `buf`. */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length === 0) return INCOMPLETE;
  if (prefixMatch(buf, V2_SIGNATURE)) return buf.length < 16 ? INCOMPLETE : parseV2(buf);
  if (prefixMatch(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf);
  return invalid('not a PROXY protocol header');
}

function parseV2(buf: Buffer): ParseResult {
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2: unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`v2: unknown command ${cmd}`);
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  const total = 16 + len;
  if (buf.length < total) return INCOMPLETE;
  if (cmd === 0) return { state: 'ok', header: { version: 2, command: 'local' }, length: total };
  const family = fam >> 4;
  const transport = fam & 0x0f;
  if (family === 0 && transport === 0) return { state: 'ok', header: { version: 2, command: 'local' }, length: total };
  if (transport !== 1) return invalid(`v2: transport ${transport} is not a stream (TCP)`);
  // TCP over IPv4 (family 1) or IPv6 (2): source, destination, then the two ports.
  const af = family === 1 ? { bytes: 4, read: ipv4, name: 'IPv4' } : family === 2 ? { bytes: 16, read: ipv6, name: 'IPv6' } : undefined;
  if (af) {
    const need = 2 * af.bytes + 4;
    if (len < need) return invalid(`v2: TCP over ${af.name} needs ${need} address bytes, got ${len}`);
    const ports = 16 + 2 * af.bytes;
    return {
      state: 'ok',
      header: {
        version: 2,
        command: 'proxy',
        source: { address: af.read(buf, 16), port: buf.readUInt16BE(ports) },
        destination: { address: af.read(buf, 16 + af.bytes), port: buf.readUInt16BE(ports + 2) },
      },
      length: total,
    };
  }
  return invalid(`v2: address family ${family} is not IPv4 or IPv6`);
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(buf: Buffer): ParseResult {
  const scan = Math.min(buf.length, V1_MAX);
  let cr = -1;
  for (let i = V1_PREFIX.length; i < scan; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      cr = i;
      break;
    }
    // Printable US-ASCII only (the spec's line is; anything else is not a header).
    if (c < 0x20 || c > 0x7e) return invalid('v1: a byte that is not printable ASCII');
  }
  if (cr === -1) return buf.length >= V1_MAX ? invalid(`v1: no CRLF within ${V1_MAX} bytes`) : INCOMPLETE;
  // The CRLF must end by byte 107.
  if (cr + 2 > V1_MAX) return invalid(`v1: no CRLF within ${V1_MAX} bytes`);
  if (cr + 1 >= buf.length) return INCOMPLETE;
  if (buf[cr + 1] !== 0x0a) return invalid('v1: CR not followed by LF');
  const length = cr + 2;
  const line = buf.toString('latin1', V1_PREFIX.length, cr);
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { state: 'ok', header: { version: 1, command: 'local' }, length };
  const parts = line.split(' ');
  if (parts.length !== 5) return invalid('v1: expected "PROXY TCP4|TCP6 src dst sport dport"');
  const [proto, src, dst, sport, dport] = parts as [string, string, string, string, string];
  const isFamily = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : undefined;
  if (!isFamily) return invalid(`v1: unknown protocol '${proto.slice(0, 8)}'`);
  if (!isFamily(src) || !isFamily(dst)) return invalid(`v1: an address is not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}`);
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return invalid('v1: a port is not 0-65535');
  return {
    state: 'ok',
    header: {
      version: 1,
      command: 'proxy',
      source: { address: unmap(src.toLowerCase()), port: Number(sport) },
      destination: { address: unmap(dst.toLowerCase()), port: Number(dport) },
    },
    length,
  };
}

function ipv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** RFC 5952 text of 16 bytes; an IPv4-mapped address is given as IPv4 (what the allowlist compares). */
function ipv6(buf: Buffer, at: number): string {
  let mapped = true;
  for (let i = 0; i < 10; i++) if (buf[at + i] !== 0) mapped = false;
  if (mapped && buf[at + 10] === 0xff && buf[at + 11] === 0xff) return ipv4(buf, at + 12);
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(at + 2 * i));
  return formatIpv6Groups(words);
}

/** "::ffff:192.0.2.7" → "192.0.2.7"; anything else unchanged. */
function unmap(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** 16 bytes of an IPv6 address (or of an IPv4 address mapped into IPv6). */
function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(address)) {
    out[10] = 0xff;
    out[11] = 0xff;
    ipv4Bytes(address).copy(out, 12);
    return out;
  }
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  // A trailing dotted quad (e.g. ::ffff:192.0.2.7) is the last two words.
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = ipv4Bytes(last);
    text = `${text.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const gap = text.indexOf('::');
  const words = (part: string): number[] => (part === '' ? [] : part.split(':').map((x) => parseInt(x, 16)));
  let all: number[];
  if (gap === -1) {
    all = words(text);
  } else {
    const h = words(text.slice(0, gap));
    const r = words(text.slice(gap + 2));
    all = [...h, ...new Array<number>(Math.max(0, 8 - h.length - r.length)).fill(0), ...r];
  }
  all.slice(0, 8).forEach((w, i) => out.writeUInt16BE((Number.isFinite(w) ? w : 0) & 0xffff, 2 * i));
  return out;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((x) => Number(x)));
}

/**
 * A PROXY protocol v2 header for a TCP connection from `source` to
 * `destination`. Both are written in one family: IPv4 when both are IPv4
 * (or IPv4-mapped), else IPv6 with IPv4 addresses mapped.
 */
export function encodeProxyV2(source: Endpoint, destination: Endpoint): Buffer {
  const src = unmap(source.address.toLowerCase());
  const dst = unmap(destination.address.toLowerCase());
  const v4 = isIPv4(src) && isIPv4(dst);
  const len = v4 ? 12 : 36;
  const out = Buffer.alloc(16 + len);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(len, 14);
  if (v4) {
    ipv4Bytes(src).copy(out, 16);
    ipv4Bytes(dst).copy(out, 20);
    out.writeUInt16BE(source.port, 24);
    out.writeUInt16BE(destination.port, 26);
  } else {
    ipv6Bytes(src).copy(out, 16);
    ipv6Bytes(dst).copy(out, 32);
    out.writeUInt16BE(source.port, 48);
    out.writeUInt16BE(destination.port, 50);
  }
  return out;
}

/** A PROXY protocol v1 line (used by tests and tools; perimeter sends v2). */
export function encodeProxyV1(source: Endpoint, destination: Endpoint): Buffer {
  const v4 = isIPv4(source.address) && isIPv4(destination.address);
  return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`, 'latin1');
}
