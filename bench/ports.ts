/** Free TCP ports on 127.0.0.1 for the bench's contenders (bench/run.ts, bench/compare-builds.ts). */
import { createServer } from 'node:net';

/** A port the kernel hands out for 127.0.0.1 right now (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** `n` free ports, as freePort finds them. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort());
  return out;
}
