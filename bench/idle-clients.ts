/**
 * Opens N keep-alive client connections to a proxy, sends one request on
 * each, reads its response, and then keeps them all idle. Run by bench/run.ts
 * in its own process (its own fd limit, pinned away from the proxy):
 *
 *   node dist/bench/idle-clients.js PORT COUNT HOLD_MS HOST PATH
 *
 * Prints one JSON line when every connection has been answered (or failed),
 * `{"phase":"open",...}`, then another after HOLD_MS, `{"phase":"held",...}`,
 * saying how many are still open, and exits (closing them all).
 */
import { connect, type Socket } from 'node:net';

const [portArg, countArg, holdArg, host = 'bench.test', path = '/small'] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const holdMs = Number(holdArg);
// Connects in waves so the proxy's accept backlog never overflows (a SYN
// dropped there would show up as a slow connect, not as the proxy's memory).
const WAVE = 500;

const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
const sockets: Socket[] = [];
let answered = 0;
let failed = 0;
let closedByPeer = 0;
const errors = new Map<string, number>();

function one(): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    let done = false;
    let held = false;
    const finish = (ok: boolean, why?: string): void => {
      if (done) return;
      done = true;
      if (ok) {
        answered++;
        held = true;
      } else {
        failed++;
        if (why) errors.set(why, (errors.get(why) ?? 0) + 1);
        s.destroy();
      }
      resolve();
    };
    s.setTimeout(20_000, () => finish(false, 'timeout'));
    s.on('connect', () => s.write(request));
    s.on('data', (d: Buffer) => {
      if (done) return;
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(buf.slice(0, end));
      if (!buf.startsWith('HTTP/1.1 200')) return finish(false, `status ${buf.slice(9, 12)}`);
      if (len && buf.length - end - 4 >= Number(len[1])) {
        s.setTimeout(0);
        finish(true);
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    s.on('close', () => {
      if (held) closedByPeer++;
      else finish(false, 'closed');
    });
    sockets.push(s);
  });
}

async function main(): Promise<void> {
  const started = Date.now();
  for (let i = 0; i < count; i += WAVE) {
    const wave: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + WAVE); j++) wave.push(one());
    await Promise.all(wave);
  }
  process.stdout.write(JSON.stringify({ phase: 'open', answered, failed, errors: Object.fromEntries(errors), ms: Date.now() - started }) + '\n');
  await new Promise((r) => setTimeout(r, holdMs));
  const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  process.stdout.write(JSON.stringify({ phase: 'held', open, closedByPeer, answered, failed }) + '\n');
  for (const s of sockets) s.destroy();
  process.exit(0);
}

void main();
