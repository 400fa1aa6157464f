/**
 * Read a TLS ClientHello before the handshake starts, to learn the SNI name
 * and the ALPN protocols the client offers. Needed for ACME TLS-ALPN-01
 * (RFC 8737): the challenge certificate may be shown only to a client whose
 * ALPN list is exactly "acme-tls/1", and Node chooses the certificate (SNI
 * callback) before ALPN is known.
 *
 * Only the first TLS record is read; anything unusual (not a handshake
 * record, a ClientHello split across records, malformed lengths) gives
 * `undefined` and the connection goes on to the normal TLS server, which
 * handles or rejects it as usual.
 */
import type net from 'node:net';

export interface ClientHelloInfo {
  readonly servername: string;
  readonly alpn: readonly string[];
}

const MAX_RECORD = 16384 + 5;

export function parseClientHello(buf: Buffer): ClientHelloInfo | undefined {
  if (buf.length < 5 || buf[0] !== 0x16) return undefined;
  const recLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recLen) return undefined;
  let p = 5;
  const end = 5 + recLen;
  if (buf[p] !== 0x01) return undefined; // ClientHello
  p += 4; // type + 24-bit length
  p += 2 + 32; // client_version, random
  if (p >= end) return undefined;
  p += 1 + buf[p]!; // session_id
  if (p + 2 > end) return undefined;
  p += 2 + buf.readUInt16BE(p); // cipher_suites
  if (p >= end) return undefined;
  p += 1 + buf[p]!; // compression_methods
  if (p + 2 > end) return { servername: '', alpn: [] };
  const extEnd = Math.min(end, p + 2 + buf.readUInt16BE(p));
  p += 2;
  let servername = '';
  const alpn: string[] = [];
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    const data = p + 4;
    if (data + len > extEnd) return undefined;
    if (type === 0x0000 && len >= 5) {
      // server_name: list length, name type 0 (host_name), name length, name
      const nameLen = buf.readUInt16BE(data + 3);
      if (buf[data + 2] === 0 && data + 5 + nameLen <= data + len) servername = buf.toString('latin1', data + 5, data + 5 + nameLen).toLowerCase();
    } else if (type === 0x0010 && len >= 2) {
      let q = data + 2;
      const listEnd = Math.min(data + len, data + 2 + buf.readUInt16BE(data));
      while (q < listEnd) {
        const l = buf[q]!;
        if (q + 1 + l > listEnd) return undefined;
        alpn.push(buf.toString('latin1', q + 1, q + 1 + l));
        q += 1 + l;
      }
    }
    p = data + len;
  }
  return { servername, alpn };
}

/**
 * Collect the first TLS record of `socket`, then call `done` with what it
 * says (or undefined) and the bytes read, which the caller must hand on
 * (socket.unshift) before the TLS layer reads.
 */
export function peekClientHello(socket: net.Socket, timeoutMs: number, done: (info: ClientHelloInfo | undefined, head: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (info: ClientHelloInfo | undefined): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    done(info, buf);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (buf.length >= 5) {
      if (buf[0] !== 0x16) return finish(undefined);
      const need = 5 + buf.readUInt16BE(3);
      if (need > MAX_RECORD) return finish(undefined);
      if (buf.length >= need) return finish(parseClientHello(buf));
    }
  };
  const timer = setTimeout(() => finish(undefined), timeoutMs);
  timer.unref();
  socket.on('data', onData);
}
