/**
 * A small writer of MaxMind DB (mmdb, format 2.0) files: sorted,
 * non-overlapping address ranges → one IPv6 search tree (IPv4 under ::/96,
 * where readers look for it) with 32-bit records and a deduplicated data
 * section. It exists because the registry ships the ASN data we want as CSV
 * only; the built file is read by the same `maxmind` reader as any other.
 * Spec: https://maxmind.github.io/MaxMind-DB/
 */
import { isIP } from 'node:net';

/** Integers that must be written with a given mmdb type (metadata fields are typed). */
export class U16 {
  constructor(readonly value: number) {}
}
export class U64 {
  constructor(readonly value: bigint) {}
}

export type MmdbValue = string | number | boolean | U16 | U64 | readonly MmdbValue[] | { readonly [k: string]: MmdbValue };

export interface MmdbRange {
  /** First and last address as 128-bit numbers; IPv4 a.b.c.d is the number itself (::a.b.c.d). */
  readonly start: bigint;
  readonly end: bigint;
  /** Index into MmdbInput.records. */
  readonly record: number;
}

export interface MmdbInput {
  readonly databaseType: string;
  readonly description: string;
  readonly buildEpochSeconds: number;
  readonly records: readonly MmdbValue[];
  /** Sorted by start, non-overlapping. */
  readonly ranges: readonly MmdbRange[];
}

const METADATA_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com')]);
const IPV4_SPACE_END = (1n << 32n) - 1n;

/** 128-bit number of an IPv6 or IPv4 address (IPv4 as ::a.b.c.d), or undefined when it is not one. */
export function addressToBigInt(text: string): bigint | undefined {
  const v4 = ipv4ToNumber(text);
  if (v4 !== undefined) return BigInt(v4);
  if (isIP(text) !== 6) return undefined;
  let s = text.toLowerCase();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    const v = ipv4ToNumber(s.slice(lastColon + 1));
    if (v === undefined) return undefined;
    tail = [Math.floor(v / 65_536), v % 65_536];
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const groupsOf = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const halves = s.split('::');
  const head = groupsOf(halves[0] ?? '');
  const rest = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  const fill = halves.length === 2 ? 8 - tail.length - head.length - rest.length : 0;
  const groups = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...rest, ...tail];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

function ipv4ToNumber(text: string): number | undefined {
  // By hand: this runs for every line of a large CSV.
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return undefined;
    } else if (c === 46 && digits > 0 && dots < 3) {
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}

// ---------------------------------------------------------------------------
// data section encoding

class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  take(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function control(out: ByteSink, type: number, size: number): void {
  const typeBits = type <= 7 ? type << 5 : 0;
  let sizeBits: number;
  let extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra = [size - 29];
  } else if (size < 285 + 65_536) {
    sizeBits = 30;
    const v = size - 285;
    extra = [v >> 8, v & 0xff];
  } else {
    sizeBits = 31;
    const v = size - 65_821;
    extra = [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
  }
  out.byte(typeBits | sizeBits);
  if (type > 7) out.byte(type - 7);
  for (const b of extra) out.byte(b);
}

function uintBytes(v: bigint): number[] {
  const bytes: number[] = [];
  let x = v;
  while (x > 0n) {
    bytes.unshift(Number(x & 0xffn));
    x >>= 8n;
  }
  return bytes;
}

function encode(out: ByteSink, v: MmdbValue): void {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    control(out, 2, b.length);
    out.bytes(b);
  } else if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`mmdb writer: only unsigned integers are supported, got ${v}`);
    const type = v <= 0xffff ? 5 : v <= 0xffff_ffff ? 6 : 9;
    const b = uintBytes(BigInt(v));
    control(out, type, b.length);
    for (const x of b) out.byte(x);
  } else if (typeof v === 'boolean') {
    control(out, 14, v ? 1 : 0);
  } else if (v instanceof U16) {
    const b = uintBytes(BigInt(v.value));
    control(out, 5, b.length);
    for (const x of b) out.byte(x);
  } else if (v instanceof U64) {
    const b = uintBytes(v.value);
    control(out, 9, b.length);
    for (const x of b) out.byte(x);
  } else if (Array.isArray(v)) {
    control(out, 11, v.length);
    for (const x of v as readonly MmdbValue[]) encode(out, x);
  } else {
    const entries = Object.entries(v as Record<string, MmdbValue>);
    control(out, 7, entries.length);
    for (const [k, x] of entries) {
      encode(out, k);
      encode(out, x);
    }
  }
}

// ---------------------------------------------------------------------------
// search tree

/** Child references while building: >= 0 a node, EMPTY, or DATA_BASE - record index. */
const EMPTY = -1;
const DATA_BASE = -2;

class Tree {
  private left = new Int32Array(1 << 16);
  private right = new Int32Array(1 << 16);
  count = 0;
  alloc(): number {
    if (this.count === this.left.length) {
      const l = new Int32Array(this.left.length * 2);
      l.set(this.left);
      this.left = l;
      const r = new Int32Array(this.right.length * 2);
      r.set(this.right);
      this.right = r;
    }
    return this.count++;
  }
  set(node: number, l: number, r: number): void {
    this.left[node] = l;
    this.right[node] = r;
  }
  get(node: number): [number, number] {
    return [this.left[node]!, this.right[node]!];
  }
}

/** Build an mmdb file in memory. */
export function writeMmdb(input: MmdbInput): Buffer {
  const v4: { start: number; end: number; record: number }[] = [];
  const v6: MmdbRange[] = [];
  let prevEnd = -1n;
  for (const r of input.ranges) {
    if (r.start > r.end || r.start <= prevEnd) throw new RangeError('mmdb writer: ranges must be sorted and must not overlap');
    prevEnd = r.end;
    if (r.end <= IPV4_SPACE_END) v4.push({ start: Number(r.start), end: Number(r.end), record: r.record });
    else if (r.start > IPV4_SPACE_END) v6.push(r);
    else throw new RangeError('mmdb writer: a range crosses the end of the IPv4 space (::/96)');
  }

  const tree = new Tree();

  // IPv4 within ::/96, with plain numbers (exact up to 2^53) for speed.
  const build4 = (lo: number, bits: number, i: number, j: number): number => {
    if (i >= j) return EMPTY;
    const hi = lo + 2 ** bits - 1;
    const first = v4[i]!;
    if (j - i === 1 && first.start <= lo && first.end >= hi) return DATA_BASE - first.record;
    const node = tree.alloc();
    const mid = lo + 2 ** (bits - 1);
    let k = i;
    while (k < j && v4[k]!.start < mid) k++;
    const leftEnd = k;
    const rightStart = k > i && v4[k - 1]!.end >= mid ? k - 1 : k;
    const l = build4(lo, bits - 1, i, leftEnd);
    const r = build4(mid, bits - 1, rightStart, j);
    tree.set(node, l, r);
    return node;
  };

  const build6 = (lo: bigint, bits: number, i: number, j: number): number => {
    // The subtree holding ::/96 always reaches depth 96, where the IPv4 tree hangs.
    if (lo === 0n && bits === 32) return build4(0, 32, 0, v4.length);
    const holdsV4 = lo === 0n;
    if (i >= j && !holdsV4) return EMPTY;
    const hi = lo + (1n << BigInt(bits)) - 1n;
    if (!holdsV4 && j - i === 1) {
      const only = v6[i]!;
      if (only.start <= lo && only.end >= hi) return DATA_BASE - only.record;
    }
    const node = tree.alloc();
    const mid = lo + (1n << BigInt(bits - 1));
    // Binary search: first range starting at or after mid.
    let a = i;
    let b = j;
    while (a < b) {
      const m = (a + b) >> 1;
      if (v6[m]!.start < mid) a = m + 1;
      else b = m;
    }
    const rightStart = a > i && v6[a - 1]!.end >= mid ? a - 1 : a;
    const l = build6(lo, bits - 1, i, a);
    const r = build6(mid, bits - 1, rightStart, j);
    tree.set(node, l, r);
    return node;
  };

  const root = build6(0n, 128, 0, v6.length);
  if (root < 0) throw new Error('mmdb writer: unreachable, the root is always a node');

  // Data section: each record once.
  const data = new ByteSink();
  const offsets = input.records.map((rec) => {
    const at = data.length;
    encode(data, rec);
    return at;
  });

  const nodeCount = tree.count;
  const treeBytes = Buffer.alloc(nodeCount * 8);
  const value = (ref: number): number => {
    if (ref >= 0) return ref;
    if (ref === EMPTY) return nodeCount;
    const off = offsets[DATA_BASE - ref];
    if (off === undefined) throw new RangeError(`mmdb writer: range refers to record ${DATA_BASE - ref}, which does not exist`);
    return nodeCount + 16 + off;
  };
  for (let n = 0; n < nodeCount; n++) {
    const [l, r] = tree.get(n);
    treeBytes.writeUInt32BE(value(l), n * 8);
    treeBytes.writeUInt32BE(value(r), n * 8 + 4);
  }

  const meta = new ByteSink();
  encode(meta, {
    binary_format_major_version: new U16(2),
    binary_format_minor_version: new U16(0),
    build_epoch: new U64(BigInt(Math.floor(input.buildEpochSeconds))),
    database_type: input.databaseType,
    description: { en: input.description },
    ip_version: new U16(6),
    languages: ['en'],
    node_count: nodeCount,
    record_size: new U16(32),
  });
  return Buffer.concat([treeBytes, Buffer.alloc(16), data.take(), METADATA_MARKER, meta.take()]);
}
