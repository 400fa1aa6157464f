/**
 * Address and CIDR parsing for allowlists: strict validation of what users
 * type (with a fix for every refusal) and fast parsing of socket addresses
 * for lookups.
 *
 * Choices where the issue is silent (see docs/allowlists.md):
 * - Host bits set (198.51.100.7/24) are refused, not silently masked, like
 *   strict parsers (Python's ipaddress with strict=True, Go's netip.ParsePrefix
 *   users checking Masked()): the user probably meant something else.
 * - A bare address is one host: /32 (IPv4) or /128 (IPv6).
 * - IPv4-mapped IPv6 (::ffff:198.51.100.7, ::ffff:198.51.100.0/120) is stored
 *   as IPv4, so one rule covers a client whichever socket family it arrives on.
 * - Too broad: IPv4 shorter than /8 and IPv6 shorter than /32 are refused
 *   (0.0.0.0/0 and ::/0 are the whole internet; /8 was the largest block ever
 *   allocated to one organization; /32 is what a registry allocates to a whole
 *   ISP). An IPv6 range that contains all of ::ffff:0:0/96 is refused too.
 */
import { isIP } from 'node:net';
import { formatIpv6Groups } from '../net/cidr.js';
import { AllowlistInputError } from './types.js';

export const MIN_PREFIX_V4 = 8;
export const MIN_PREFIX_V6 = 32;

/** A parsed address: IPv4 as an unsigned 32-bit number, IPv6 as a 128-bit bigint. */
export type ParsedAddress = { readonly family: 4; readonly v4: number } | { readonly family: 6; readonly v6: bigint };

export interface ParsedCidr {
  readonly family: 4 | 6;
  /** Network address (host bits zero). */
  readonly v4: number;
  readonly v6: bigint;
  readonly prefix: number;
  /** Normalized text: 198.51.100.0/24, 2001:db8::/48. */
  readonly text: string;
}

const MAPPED_PREFIX = 0xffffn << 32n;
const V6_ALL = (1n << 128n) - 1n;

/** Parses an IPv4 dotted quad (no leading zeros) into an unsigned number, or -1. */
function parseV4(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // leading zero
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/** Parses IPv6 text (validated by isIP first) into a bigint; a zone (%eth0) is ignored. */
function parseV6(s: string): bigint {
  const pct = s.indexOf('%');
  if (pct !== -1) s = s.slice(0, pct);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes the last two groups.
  const lastColon = s.lastIndexOf(':');
  const maybeV4 = s.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const n = parseV4(maybeV4);
    if (n < 0) throw new Error('bad embedded IPv4');
    s = `${s.slice(0, lastColon + 1)}${Math.floor(n / 65536).toString(16)}:${(n % 65536).toString(16)}`;
  }
  const dbl = s.indexOf('::');
  let groups: number[];
  const hex = (g: string): number => (g === '' ? 0 : parseInt(g, 16));
  if (dbl === -1) {
    groups = s === '' ? [] : s.split(':').map(hex);
  } else {
    const head = s.slice(0, dbl);
    const rest = s.slice(dbl + 2);
    const h = head === '' ? [] : head.split(':').map(hex);
    const r = rest === '' ? [] : rest.split(':').map(hex);
    const fill = 8 - h.length - r.length;
    groups = [...h, ...new Array<number>(Math.max(0, fill)).fill(0), ...r];
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

/**
 * Parses a socket or user address for lookup. IPv4-mapped IPv6 comes back as
 * IPv4. Returns undefined for anything that is not an address.
 */
export function parseAddress(address: string): ParsedAddress | undefined {
  const n = parseV4(address);
  if (n >= 0) return { family: 4, v4: n };
  if (isIP(address) !== 6) return undefined;
  const v6 = parseV6(address);
  if (v6 >> 32n === 0xffffn) return { family: 4, v4: Number(v6 & 0xffffffffn) };
  return { family: 6, v6 };
}

export function formatV4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** RFC 5952 text (see formatIpv6Groups). */
export function formatV6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return formatIpv6Groups(groups);
}

export function maskV4(n: number, prefix: number): number {
  if (prefix === 0) return 0;
  return (n & (0xffffffff << (32 - prefix))) >>> 0;
}

export function maskV6(v: bigint, prefix: number): bigint {
  if (prefix === 0) return 0n;
  return v & (V6_ALL ^ ((1n << BigInt(128 - prefix)) - 1n));
}

function refuse(message: string, fix: string): never {
  throw new AllowlistInputError('cidr', message, fix);
}

/**
 * Validates and normalizes what a user typed as an allowlist entry.
 * Throws AllowlistInputError (field 'cidr') with a fix on anything refused.
 */
export function normalizeCidr(input: string): ParsedCidr {
  const raw = typeof input === 'string' ? input.trim() : '';
  if (raw === '') refuse('the address is empty', 'give an IPv4 or IPv6 address (198.51.100.7) or a CIDR range (198.51.100.0/24)');
  if (raw.length > 100) refuse('the address is too long to be an address or CIDR', 'give an address such as 198.51.100.7 or a range such as 2001:db8::/48');
  const slash = raw.indexOf('/');
  const addrText = slash === -1 ? raw : raw.slice(0, slash);
  const prefixText = slash === -1 ? undefined : raw.slice(slash + 1);
  if (addrText.includes('%')) refuse(`'${raw}' has a zone index (%...)`, 'leave out the zone: allowlists hold global addresses, e.g. 2001:db8::1');
  const fam = isIP(addrText);
  if (fam === 0) {
    const hint = /^\d+(\.\d+){0,2}$/.test(addrText)
      ? 'write all four parts of an IPv4 address, e.g. 198.51.100.0/24'
      : /(^|\.)0\d/.test(addrText)
        ? 'leave out leading zeros, e.g. 10.1.2.3 instead of 010.001.002.003'
        : 'give an IPv4 address (198.51.100.7), an IPv6 address (2001:db8::7) or a CIDR range (198.51.100.0/24, 2001:db8::/48)';
    refuse(`'${raw}' is not an IP address or CIDR range`, hint);
  }
  let family: 4 | 6 = fam === 6 ? 6 : 4;
  const max = family === 6 ? 128 : 32;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      refuse(`'${raw}' has an invalid prefix length '/${prefixText}'`, `use a prefix length from 0 to ${max}, e.g. ${addrText}/${max === 32 ? 24 : 48}`);
    }
    prefix = Number(prefixText);
  }
  let v4 = 0;
  let v6 = 0n;
  if (family === 4) {
    v4 = parseV4(addrText);
    if (v4 < 0) refuse(`'${raw}' is not an IP address or CIDR range`, 'give an IPv4 address such as 198.51.100.7');
  } else {
    v6 = parseV6(addrText);
    if (v6 >> 32n === 0xffffn && prefix >= 96) {
      // IPv4-mapped: store as IPv4 so it matches clients on either socket family.
      family = 4;
      v4 = Number(v6 & 0xffffffffn);
      prefix -= 96;
    }
  }
  if (family === 4) {
    const net = maskV4(v4, prefix);
    if (net !== v4) {
      const meant = `${formatV4(net)}/${prefix}`;
      refuse(`'${raw}' has host bits set after the /${prefix} prefix`, `did you mean ${meant} (the whole range) or ${formatV4(v4)}/32 (this one address)?`);
    }
    if (prefix < MIN_PREFIX_V4) {
      const whole = prefix === 0 ? ' — that is the whole internet' : '';
      refuse(`'${raw}' is too broad: ${2 ** (32 - prefix)} addresses${whole}`, `list the partner's own addresses; IPv4 ranges must be /${MIN_PREFIX_V4} or longer`);
    }
    return { family: 4, v4, v6: 0n, prefix, text: `${formatV4(v4)}/${prefix}` };
  }
  const net = maskV6(v6, prefix);
  if (net !== v6) {
    const meant = `${formatV6(net)}/${prefix}`;
    refuse(`'${raw}' has host bits set after the /${prefix} prefix`, `did you mean ${meant} (the whole range) or ${formatV6(v6)}/128 (this one address)?`);
  }
  if (prefix < MIN_PREFIX_V6) {
    const whole = prefix === 0 ? ' — that is the whole internet' : '';
    refuse(`'${raw}' is too broad: a /${prefix} IPv6 range${whole}`, `list the partner's own addresses; IPv6 ranges must be /${MIN_PREFIX_V6} or longer (a partner's site is typically a /48)`);
  }
  if (prefix < 96 && maskV6(MAPPED_PREFIX, prefix) === net) {
    refuse(`'${raw}' contains every IPv4-mapped address (::ffff:0:0/96), i.e. the whole IPv4 internet`, 'list IPv4 partners as IPv4 addresses or ranges, e.g. 198.51.100.0/24');
  }
  return { family: 6, v4: 0, v6, prefix, text: `${formatV6(v6)}/${prefix}` };
}
