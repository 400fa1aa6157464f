/**
 * Direct writes (src/net/direct-write.ts) on real loopback sockets: bytes
 * arrive complete and in order when the kernel's buffer fills and writes
 * pend in libuv, the caller is told to wait and gets 'drain', every `done`
 * runs once its buffer is written, Writable writes and ends interleave in
 * order, and a write to a reset connection destroys the socket with the
 * errno error instead of throwing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { directWritesEnabled, writeDirect } from '../../src/net/direct-write.js';

/** A connected pair on loopback; the client reads with `onread` (as perimeter's sockets do), so pause() stops its reads. */
async function pair(): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', onread: { buffer: Buffer.alloc(1024), callback: () => true } });
  await once(client, 'connect');
  const [server] = await accepted;
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

test('direct writes are on for the Node.js majors the tests run on', () => {
  const major = Number(process.versions.node.split('.')[0]);
  if ([20, 22, 24].includes(major)) assert.equal(directWritesEnabled, true);
});

test('32 MiB to a reader that starts late: in order, false then drain, every done once after its write', async (t) => {
  const { client, server, close } = await pair();
  t.after(close);
  server.pause(); // the kernel's buffers fill: writes must pend in libuv
  const chunks = Array.from({ length: 512 }, () => randomBytes(64 * 1024));
  const sent = createHash('sha256');
  let doneCount = 0;
  let sawFalse = false;
  let drains = 0;
  client.on('drain', () => drains++);
  for (const c of chunks) {
    sent.update(c);
    const ok = writeDirect(client, c, () => doneCount++);
    if (!ok) sawFalse = true;
  }
  assert.ok(sawFalse, 'a write the kernel could not take at once reports false');
  assert.ok(doneCount < chunks.length, 'buffers still pending are not reported done');
  // Interleave a Writable write and the end: they must come after every direct write.
  const tail = Buffer.from('tail');
  sent.update(tail);
  client.end(tail);
  const got = createHash('sha256');
  let bytes = 0;
  server.on('data', (d: Buffer) => {
    got.update(d);
    bytes += d.length;
  });
  server.resume();
  await once(server, 'end');
  assert.equal(bytes, 32 * 1024 * 1024 + tail.length);
  assert.equal(got.digest('hex'), sent.digest('hex'));
  assert.equal(doneCount, chunks.length);
  if (directWritesEnabled) assert.ok(drains >= 1, "'drain' after the pending direct writes");
});

test('a write to a connection the peer reset destroys the socket with the errno error', async (t) => {
  const { client, server, close } = await pair();
  t.after(close);
  client.pause(); // not reading (onread sockets stop reading): the reset shows on the write, not on a read
  const errored = new Promise<NodeJS.ErrnoException>((resolve) => client.once('error', resolve));
  server.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 50));
  let done = 0;
  // The first write may still be taken by the kernel; keep writing until the reset shows.
  for (let i = 0; i < 50 && !client.destroyed; i++) {
    writeDirect(client, Buffer.alloc(64 * 1024), () => done++);
    await new Promise((r) => setTimeout(r, 10));
  }
  const err = await errored;
  assert.match(String(err.code), /^(EPIPE|ECONNRESET)$/);
  if (directWritesEnabled) assert.equal(err.syscall, 'write');
  assert.equal(client.destroyed, true);
  // Later writes fall back to the Writable, which refuses them on a destroyed socket without throwing.
  assert.doesNotThrow(() => writeDirect(client, Buffer.from('x')));
  assert.ok(done >= 1);
});

test('sockets that are not plain TCP sockets are written through their own write', async () => {
  const { Duplex } = await import('node:stream');
  const seen: Buffer[] = [];
  const d = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      seen.push(chunk);
      cb();
    },
    read() {},
  });
  let done = false;
  assert.equal(writeDirect(d as unknown as net.Socket, Buffer.from('abc'), () => (done = true)), true);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(Buffer.concat(seen).toString(), 'abc');
  assert.equal(done, true);
});
