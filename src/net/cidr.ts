/**
 * CIDR sets for allowlists and trusted proxies, on node's native BlockList
 * (address parsing and matching in C++, no per-check allocation in JS).
 */
import { BlockList, isIP } from 'node:net';

export class CidrSet {
  private readonly list = new BlockList();
  readonly cidrs: readonly string[];
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    this.cidrs = cidrs;
    this.empty = cidrs.length === 0;
    for (const c of cidrs) {
      const { address, prefix, family } = parseCidr(c);
      this.list.addSubnet(address, prefix, family);
    }
  }

  has(address: string): boolean {
    if (this.empty) return false;
    const family = isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const slash = cidr.indexOf('/');
  const address = slash === -1 ? cidr : cidr.slice(0, slash);
  const fam = isIP(address);
  if (fam === 0) throw new Error(`'${cidr}' is not an IP address or CIDR`);
  const max = fam === 6 ? 128 : 32;
  const prefix = slash === -1 ? max : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`'${cidr}' has an invalid prefix length`);
  return { address, prefix, family: fam === 6 ? 'ipv6' : 'ipv4' };
}

/** The client address as perimeter reports it: IPv4-mapped IPv6 shown as IPv4. */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/**
 * RFC 5952 text of an IPv6 address given as its eight 16-bit groups: lower
 * case, no leading zeros, the first longest run of two or more zero groups
 * as "::". The one formatter for config values, allowlist entries and PROXY
 * headers.
 */
export function formatIpv6Groups(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
