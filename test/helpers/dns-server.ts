/**
 * A real authoritative DNS server on 127.0.0.1 (UDP and TCP on the same
 * port 0-assigned number) for discovery tests. Records and TTLs change
 * while it runs; it can drop queries, answer SERVFAIL, or truncate every
 * UDP answer (to exercise TCP fallback), and it counts what it was asked.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { decode, encode, streamEncode } from 'dns-packet';
import type { Answer, Packet, Question } from 'dns-packet';

export interface SrvRecord {
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

export type FailMode = 'none' | 'drop' | 'servfail';

export interface QueryRecord {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly at: number;
}

export interface TestDnsServer {
  readonly host: string;
  readonly port: number;
  /** Queries received (all transports, including dropped ones). */
  readonly queries: number;
  readonly log: readonly QueryRecord[];
  setSrv(name: string, records: readonly SrvRecord[], ttl?: number): void;
  setA(name: string, addrs: readonly string[], ttl?: number): void;
  setAAAA(name: string, addrs: readonly string[], ttl?: number): void;
  /** Remove every record of a name (it then answers NXDOMAIN). */
  remove(name: string): void;
  failMode(mode: FailMode): void;
  /** Put A/AAAA of SRV targets into the additional section. */
  setAdditional(on: boolean): void;
  /** Answer every UDP query with TC set and no records. */
  setTruncateUdp(on: boolean): void;
  /** Negative-caching TTL (SOA minimum) for NXDOMAIN/NODATA answers, seconds. */
  setNegativeTtl(seconds: number): void;
  /** Queries received for `name` (any type). */
  queriesFor(name: string, type?: string): number;
  close(): Promise<void>;
}

type RRType = 'SRV' | 'A' | 'AAAA';
interface RRSet {
  readonly ttl: number;
  readonly data: readonly unknown[];
}

const lower = (n: string): string => n.toLowerCase().replace(/\.$/, '');

export async function startDnsServer(): Promise<TestDnsServer> {
  const zone = new Map<string, Map<RRType, RRSet>>();
  let mode: FailMode = 'none';
  let additional = false;
  let truncateUdp = false;
  let negativeTtl = 1;
  let count = 0;
  const log: QueryRecord[] = [];

  const set = (name: string, type: RRType, rr: RRSet): void => {
    const key = lower(name);
    let types = zone.get(key);
    if (!types) zone.set(key, (types = new Map()));
    if (rr.data.length === 0) types.delete(type);
    else types.set(type, rr);
  };

  const answer = (query: Packet, transport: 'udp' | 'tcp'): Packet | undefined => {
    count++;
    const q: Question | undefined = query.questions?.[0];
    log.push({ name: q?.name ?? '', type: q?.type ?? '', transport, at: Date.now() });
    if (mode === 'drop') return undefined;
    const base = { type: 'response' as const, id: query.id ?? 0, questions: query.questions ?? [] };
    const AA = 0x400;
    if (mode === 'servfail' || !q) return { ...base, flags: AA | 2, answers: [], authorities: [], additionals: [] };
    if (transport === 'udp' && truncateUdp) return { ...base, flags: AA | 0x200, answers: [], authorities: [], additionals: [] };
    const types = zone.get(lower(q.name));
    const rr = types?.get(q.type as RRType);
    if (!rr) {
      const soa: Answer = {
        type: 'SOA',
        name: 'test.',
        ttl: negativeTtl,
        data: { mname: 'ns.test.', rname: 'hostmaster.test.', serial: 1, refresh: 60, retry: 60, expire: 60, minimum: negativeTtl },
      };
      // A name with other record types is NODATA (NOERROR, no answers), else NXDOMAIN.
      const rcode = types && types.size > 0 ? 0 : 3;
      return { ...base, flags: AA | rcode, answers: [], authorities: [soa], additionals: [] };
    }
    const answers = rr.data.map((data) => ({ type: q.type, name: q.name, ttl: rr.ttl, class: 'IN', data }) as Answer);
    const additionals: Answer[] = [];
    if (additional && q.type === 'SRV') {
      for (const d of rr.data as { target: string }[]) {
        const t = zone.get(lower(d.target));
        for (const type of ['A', 'AAAA'] as const) {
          const set = t?.get(type);
          for (const addr of set?.data ?? []) additionals.push({ type, name: d.target, ttl: set!.ttl, class: 'IN', data: addr as string });
        }
      }
    }
    return { ...base, flags: AA, answers, authorities: [], additionals };
  };

  const onUdp = (udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    let query: Packet;
    try {
      query = decode(msg);
    } catch {
      return;
    }
    const reply = answer(query, 'udp');
    if (reply) udp.send(encode(reply), rinfo.port, rinfo.address);
  };

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        let query: Packet;
        try {
          query = decode(msg);
        } catch {
          socket.destroy();
          return;
        }
        const reply = answer(query, 'tcp');
        if (reply) socket.write(streamEncode(reply));
      }
    });
  });
  // TCP must share the UDP port number. The OS picks a free UDP port; when
  // that number is taken for TCP (another test's listener), try another.
  let udp: dgram.Socket | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 50 && port === 0; attempt++) {
    const u = dgram.createSocket('udp4');
    u.on('message', (msg, rinfo) => onUdp(u, msg, rinfo));
    await new Promise<void>((resolve) => u.bind(0, '127.0.0.1', resolve));
    const candidate = u.address().port;
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(candidate, '127.0.0.1', () => resolve(true));
    });
    tcp.removeAllListeners('error');
    if (ok) {
      udp = u;
      port = candidate;
    } else {
      await new Promise<void>((resolve) => u.close(() => resolve()));
    }
  }
  if (!udp) throw new Error('test DNS server: no port free for both UDP and TCP after 50 tries');
  const udpSocket = udp;

  return {
    host: '127.0.0.1',
    port,
    get queries() {
      return count;
    },
    log,
    setSrv: (name, records, ttl = 60) =>
      set(name, 'SRV', {
        ttl,
        data: records.map((r) => ({ target: r.target, port: r.port, priority: r.priority ?? 0, weight: r.weight ?? 0 })),
      }),
    setA: (name, addrs, ttl = 60) => set(name, 'A', { ttl, data: addrs }),
    setAAAA: (name, addrs, ttl = 60) => set(name, 'AAAA', { ttl, data: addrs }),
    remove: (name) => void zone.delete(lower(name)),
    failMode: (m) => void (mode = m),
    setAdditional: (on) => void (additional = on),
    setTruncateUdp: (on) => void (truncateUdp = on),
    setNegativeTtl: (s) => void (negativeTtl = s),
    queriesFor: (name, type) => log.filter((q) => lower(q.name) === lower(name) && (type === undefined || q.type === type)).length,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udpSocket.close(() => resolve())),
        new Promise<void>((resolve) => (tcp.listening ? tcp.close(() => resolve()) : resolve())),
      ]);
    },
  };
}
