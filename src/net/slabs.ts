/**
 * Reusable buffers for the large copies of the web and TCP proxies.
 *
 * Web reads land in one shared buffer per process (web/upstream-conn.ts,
 * web/proxy.ts adoptSocket), so every byte forwarded is first copied into a buffer the
 * write can keep. Small copies come from Node's own Buffer pool; a large one
 * (a 64 KiB body read) would be a fresh allocation outside the V8 heap each
 * time, whose churn makes V8 schedule full garbage collections (seen as a
 * 30–40 ms p99 and a bimodal req/s on 64 KiB responses). Instead large
 * copies use slabs that go back to a free list when the socket reports the
 * write done: allocated once, reused.
 */

/** A read is at most 64 KiB; a response head rides along with the first body bytes. */
export const SLAB_BYTES = 80 * 1024;
/** Below this, Buffer.allocUnsafe (Node's pool) is cheaper than a slab. */
export const SLAB_MIN = 4 * 1024;
/** Free slabs kept (2.5 MiB); more in flight at once are allocated and left to the GC. */
const MAX_FREE = 32;

const free: Buffer[] = [];

/** A free slab of SLAB_BYTES (a new one when none is free); callers use `subarray(0, size)` of it. */
export function takeSlab(): Buffer {
  return free.pop() ?? Buffer.allocUnsafe(SLAB_BYTES);
}

/** Give a slab back once no write holds it any more. */
export function returnSlab(slab: Buffer): void {
  if (free.length < MAX_FREE) free.push(slab);
}

/** How many free slabs are kept (tests). */
export function freeSlabs(): number {
  return free.length;
}
