/**
 * Parsers for the value formats of configuration files: durations, sizes,
 * percentages, addresses, CIDRs, host names, status ranges. Each returns the
 * normalized value or a message and a fix, so the schema and the loader word
 * errors the same way.
 */
import { isIP, isIPv6 } from 'node:net';
import { formatIpv6Groups } from '../net/cidr.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string; fix: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(message: string, fix: string): Parsed<T> => ({ ok: false, message, fix });

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
export const durationPattern = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';
const durationPart = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;

/** "250ms", "5s", "2m", "1h", "1m30s" → milliseconds (> 0). */
export function parseDuration(v: unknown): Parsed<number> {
  if (typeof v === 'number') return bad(`duration ${v} has no unit`, `add a unit, e.g. ${v}s or ${v}ms`);
  if (typeof v !== 'string') return bad(`expected a duration like 5s, got ${describe(v)}`, 'write a duration such as 250ms, 5s, 2m or 1h');
  const s = v.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(s)) return bad(`duration '${s}' has no unit`, `add a unit, e.g. ${s}s or ${s}ms`);
  if (!new RegExp(durationPattern).test(s)) return bad(`'${v}' is not a duration`, 'write a duration such as 250ms, 5s, 2m or 1h (units ms, s, m, h)');
  let ms = 0;
  for (const m of s.matchAll(durationPart)) ms += Number(m[1]) * (durationUnits[m[2] ?? ''] ?? 0);
  ms = Math.round(ms);
  if (ms <= 0) return bad(`duration '${v}' must be more than zero`, 'write a positive duration, e.g. 5s');
  return ok(ms);
}

/** Milliseconds back to the shortest exact form ("1m30s" → "90s" is fine too). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const sizeUnits: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
export const sizePattern = '^[0-9]+[kKmMgG]?[bB]?$';

/** "32k", "1m", "512", 512 → bytes (>= 0); k, m, g are powers of 1024. */
export function parseSize(v: unknown): Parsed<number> {
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) && v >= 0 ? ok(v) : bad(`size ${v} is not a whole, non-negative number of bytes`, 'write a size such as 512, 32k or 1m');
  }
  if (typeof v !== 'string') return bad(`expected a size like 32k, got ${describe(v)}`, 'write a size such as 512, 32k or 1m');
  const m = /^([0-9]+)([kmg]?)b?$/i.exec(v.trim());
  if (!m) return bad(`'${v}' is not a size`, 'write a size in bytes with an optional k, m or g suffix (powers of 1024), e.g. 32k');
  const bytes = Number(m[1]) * (sizeUnits[(m[2] ?? '').toLowerCase()] ?? 1);
  if (!Number.isSafeInteger(bytes)) return bad(`size '${v}' is too large`, 'write a smaller size');
  return ok(bytes);
}

export const percentPattern = '^[0-9]+(\\.[0-9]+)?%$';

/** "20%" or a number 0..100 → 0..100. */
export function parsePercent(v: unknown): Parsed<number> {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^\s*[0-9]+(\.[0-9]+)?\s*%\s*$/.test(v)) n = Number(v.trim().slice(0, -1).trim());
  else return bad(`expected a percentage like 20%, got ${describe(v)}`, "write a percentage such as 20% or a number from 0 to 100");
  if (!(n >= 0 && n <= 100)) return bad(`percentage ${String(v)} is out of range`, 'use a value from 0% to 100%');
  return ok(n);
}

export interface HostPort {
  readonly host: string; // '' when omitted; IPv6 without brackets
  readonly port: number;
}

export type HostRule = 'any' | 'ip'; // what the host part may be

/**
 * "host:port", ":port", "[::1]:port". `hostRequired` for backends;
 * `defaultPort` for DNS servers where the port may be left out.
 */
export function parseHostPort(
  v: unknown,
  what: string,
  opts: { hostRequired: boolean; hostRule: HostRule; defaultPort?: number; allowZero?: boolean },
): Parsed<HostPort> {
  const example = opts.hostRequired ? (opts.hostRule === 'ip' ? '127.0.0.1:53' : '10.0.0.5:8080') : ':8080';
  if (typeof v === 'number') {
    return bad(`${what} ${v} is not an address`, opts.hostRequired ? `write 'host:${v}', e.g. '10.0.0.5:${v}'` : `write ':${v}' to listen on every address, or '127.0.0.1:${v}'`);
  }
  if (typeof v !== 'string') return bad(`expected ${what} like '${example}', got ${describe(v)}`, `write "${example}"`);
  const s = v.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return bad(`${what} '${v}' must not have a scheme`, `write only host:port, e.g. '${s.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '')}'`);
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(s);
  if (bracket) {
    host = bracket[1] ?? '';
    portText = bracket[2];
    if (!isIPv6(host)) return bad(`'${host}' in ${what} '${v}' is not an IPv6 address`, 'brackets are for IPv6 addresses, e.g. [::1]:8080');
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) {
      if (isIPv6(s) && opts.defaultPort !== undefined && opts.hostRule === 'ip') return ok({ host: s.toLowerCase(), port: opts.defaultPort });
      if (isIPv6(s)) return bad(`${what} '${v}' is an IPv6 address without a port`, `write '[${s}]:PORT', e.g. '[${s}]:8080'`);
      return bad(`'${v}' is not a valid ${what}`, `write host:port, e.g. '${example}' (IPv6 in brackets: '[::1]:8080')`);
    }
    const i = s.lastIndexOf(':');
    host = i < 0 ? s : s.slice(0, i);
    portText = i < 0 ? undefined : s.slice(i + 1);
  }
  let port: number;
  if (portText === undefined || portText === '') {
    if (opts.defaultPort === undefined) return bad(`${what} '${v}' has no port`, `add a port, e.g. '${host || '127.0.0.1'}:8080'`);
    port = opts.defaultPort;
  } else {
    if (!/^[0-9]+$/.test(portText)) return bad(`port '${portText}' in ${what} '${v}' is not a number`, 'use a port number from 1 to 65535');
    port = Number(portText);
    if (port < (opts.allowZero ? 0 : 1) || port > 65535) {
      return bad(`port ${port} in ${what} '${v}' is out of range`, `use a port number from 1 to 65535${opts.allowZero ? ' (0: any free port, for tests)' : ''}`);
    }
  }
  if (host === '') {
    if (opts.hostRequired) return bad(`${what} '${v}' has no host`, `write host:port, e.g. '${example}'`);
  } else if (opts.hostRule === 'ip') {
    if (!isIP(host)) return bad(`'${host}' in ${what} '${v}' is not an IP address`, `write an IP address and port, e.g. '${example}'`);
  } else if (!isIP(host)) {
    const h = checkDnsName(host);
    if (!h.ok) return bad(`'${host}' in ${what} '${v}' is not an IP address or host name: ${h.message}`, `write host:port, e.g. '${example}'`);
    host = h.value;
  }
  return ok({ host: host.toLowerCase(), port });
}

/** A DNS name (no wildcard), lower-cased, trailing dot removed. */
export function checkDnsName(v: string): Parsed<string> {
  const s = v.toLowerCase().replace(/\.$/, '');
  if (s.length === 0) return bad('the name is empty', 'write a host name such as www.example.com');
  if (s.length > 253) return bad('the name is longer than 253 characters', 'use a shorter name');
  for (const label of s.split('.')) {
    if (label.length === 0) return bad(`'${v}' has an empty label`, 'remove the repeated or leading dot');
    if (label.length > 63) return bad(`label '${label}' is longer than 63 characters`, 'use labels of at most 63 characters');
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(label)) {
      return bad(`label '${label}' may only hold letters, digits and inner hyphens`, 'use letters, digits and hyphens, e.g. www.example.com');
    }
  }
  return ok(s);
}

/**
 * A site name: a DNS name with an optional leading "*." wildcard. Names a
 * URL, a port or a path with a fix that shows the bare host.
 */
export function parseSiteHost(v: string): Parsed<string> {
  const s = v.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (scheme) {
    const host = s.slice(scheme[0].length).replace(/[/?#].*$/, '').replace(/:[0-9]*$/, '');
    return bad(`site name '${v}' is a URL; a site is named by its host alone`, `write '${host.toLowerCase()}:' as the key (the platform decides ${scheme[1]?.toLowerCase()} and ports)`);
  }
  if (/[/?#]/.test(s)) {
    const host = s.replace(/[/?#].*$/, '');
    return bad(`site name '${v}' has a path; a site is named by its host alone`, `write '${host.toLowerCase()}:' as the key; a site serves every path of its host`);
  }
  const port = /^(.*):([0-9]*)$/.exec(s);
  if (port && !s.includes('[')) {
    return bad(`site name '${v}' has a port; a site is named by its host alone`, `write '${(port[1] ?? '').toLowerCase()}:' as the key; ports belong to the cluster's listeners`);
  }
  let rest = s;
  let prefix = '';
  if (s.startsWith('*.')) {
    prefix = '*.';
    rest = s.slice(2);
  }
  if (rest.includes('*')) return bad(`site name '${v}' has a '*' that is not a leading '*.'`, "a wildcard is written '*.example.com' and matches any subdomain");
  if (isIP(rest) && prefix === '') return ok(rest.toLowerCase());
  const h = checkDnsName(rest);
  if (!h.ok) return bad(`site name '${v}' is not a valid host name: ${h.message}`, h.fix);
  return ok(prefix + h.value);
}

/** "10.0.0.0/8", "fd00::/8" or a bare address (one host) → normalized "addr/len". */
export function parseCidr(v: unknown): Parsed<string> {
  if (typeof v !== 'string') return bad(`expected a CIDR like 10.0.0.0/8, got ${describe(v)}`, "write an address range such as '10.0.0.0/8' or 'fd00::/8'");
  const s = v.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return bad(`'${v}' is not a CIDR: '${addr}' is not an IP address`, "write an address range such as '10.0.0.0/8' or 'fd00::/8'");
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const t = s.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(t) || Number(t) > max) return bad(`'${v}' has an invalid prefix length '/${t}'`, `use a prefix length from 0 to ${max}`);
    len = Number(t);
  }
  const bytes = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  const masked = maskBytes(bytes, len);
  if (masked.some((b, i) => b !== bytes[i])) {
    const net = family === 4 ? masked.join('.') : formatIPv6(masked);
    return bad(`'${v}' has host bits set below the /${len} prefix`, `write '${net}/${len}'`);
  }
  return ok(`${family === 4 ? addr : formatIPv6(bytes)}/${len}`);
}

function ipv4Bytes(a: string): number[] {
  return a.split('.').map(Number);
}

function ipv6Bytes(a: string): number[] {
  let s = a.toLowerCase();
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes its two hex groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    s = s.slice(0, v4.index) + ((b0 << 8) | b1).toString(16) + ':' + ((b2 << 8) | b3).toString(16);
  }
  const [head = '', rest] = s.split('::');
  const groups = (x: string): number[] => (x === '' ? [] : x.split(':').map((g) => parseInt(g, 16)));
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const words = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  const out: number[] = [];
  for (const w of words) out.push(w >> 8, w & 0xff);
  return out;
}

function formatIPv6(bytes: number[]): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  return formatIpv6Groups(words);
}

function maskBytes(bytes: number[], len: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
}

export const statusPattern = '^[1-5][0-9][0-9](-[1-5][0-9][0-9])?(,\\s*[1-5][0-9][0-9](-[1-5][0-9][0-9])?)*$';

/** "200-399", "200,204", 200 → inclusive ranges. */
export function parseStatusRanges(v: unknown): Parsed<(readonly [number, number])[]> {
  const fix = "write status codes or ranges such as '200-399' or '200,204'";
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text !== 'string') return bad(`expected status codes like '200-399', got ${describe(v)}`, fix);
  const ranges: (readonly [number, number])[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*([0-9]{3})(?:\s*-\s*([0-9]{3}))?\s*$/.exec(part);
    if (!m) return bad(`'${text}' is not a status list`, fix);
    const lo = Number(m[1]);
    const hi = Number(m[2] ?? m[1]);
    if (lo < 100 || hi > 599 || lo > hi) return bad(`status range '${part.trim()}' is invalid`, 'use codes from 100 to 599, low-high');
    ranges.push([lo, hi]);
  }
  return ok(ranges);
}

/** A short description of a YAML value's type, for messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 37) + '...' : v}'`;
  return `${typeof v === 'number' ? 'the number' : typeof v === 'boolean' ? 'the boolean' : typeof v} ${String(v)}`;
}
