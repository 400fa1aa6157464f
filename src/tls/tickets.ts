/**
 * Session ticket keys that rotate and that every worker derives alike: one
 * secret per perimeter run (made by the control process, handed to workers
 * in their environment), one key per 12-hour epoch, derived with HKDF. A
 * client resumes on whichever worker it reaches.
 *
 * Tickets are renewed on every resumption. Node's own ticket handling
 * (`setTicketKeys`) never renews: a TLS 1.3 connection that resumed gets no
 * new ticket, and a client that keeps only the session of its latest
 * connection (OpenSSL-based clients such as curl and wrk) then makes a full
 * handshake every other time (measured: 2,090 of 4,186 connections resumed;
 * with renewal 5,168 of 5,178; nginx renews too). The keyring answers Node's
 * ticket key callback instead: new tickets under the current epoch's key,
 * tickets of the current and the previous epoch accepted and renewed, older
 * ones refused (a full handshake restores forward secrecy after at most two
 * epochs), like nginx's list of `ssl_session_ticket_key` files.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import type tls from 'node:tls';

export const TICKET_EPOCH_MS = 12 * 3600 * 1000;
const ENV = 'PERIMETER_TICKET_SECRET';

/** The run's secret: from the environment (workers) or made now (and exported for workers to inherit). */
export function ticketSecret(): Buffer {
  const fromEnv = process.env[ENV];
  if (fromEnv && /^[0-9a-f]{64}$/.test(fromEnv)) return Buffer.from(fromEnv, 'hex');
  const s = randomBytes(32);
  process.env[ENV] = s.toString('hex');
  return s;
}

/** An epoch's 48 bytes in Node's `ticketKeys` layout: key name, HMAC key, AES key (16 bytes each). */
export function ticketKeys(secret: Buffer, epoch: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.from('perimeter session tickets'), Buffer.from(`epoch ${epoch}`), 48));
}

export function currentEpoch(now = Date.now()): number {
  return Math.floor(now / TICKET_EPOCH_MS);
}

interface EpochKeys {
  readonly name: Buffer;
  readonly hmac: Buffer;
  readonly aes: Buffer;
}

/**
 * What Node's ticket key callback returns: [1 (encrypt) | 0 (unknown
 * ticket) | 2 (valid, renew), HMAC key, AES key, key name, IV] (the last two
 * when encrypting). The two keys must be 16-byte buffers whatever the code:
 * Node reads them before it looks at the code, and aborts the process on
 * anything else (seen with [0] alone).
 */
export type TicketKeyAnswer = [number, Buffer, Buffer, Buffer?, Buffer?];

export class TicketKeyring {
  private readonly epochs = new Map<number, EpochKeys>();

  constructor(
    private readonly secret: Buffer,
    private readonly now: () => number = Date.now,
  ) {}

  private keys(epoch: number): EpochKeys {
    let k = this.epochs.get(epoch);
    if (k === undefined) {
      const b = ticketKeys(this.secret, epoch);
      k = { name: b.subarray(0, 16), hmac: b.subarray(16, 32), aes: b.subarray(32, 48) };
      for (const e of this.epochs.keys()) if (e < epoch - 1) this.epochs.delete(e);
      this.epochs.set(epoch, k);
    }
    return k;
  }

  /** Node's ticket key callback: `enc` for a new ticket, else the key for a ticket named `name`. */
  answer(name: Buffer, enc: boolean): TicketKeyAnswer {
    const epoch = currentEpoch(this.now());
    if (enc) {
      const k = this.keys(epoch);
      return [1, k.hmac, k.aes, k.name, randomBytes(16)];
    }
    for (const e of [epoch, epoch - 1]) {
      const k = this.keys(e);
      if (name.equals(k.name)) return [2, k.hmac, k.aes];
    }
    const k = this.keys(epoch);
    return [0, k.hmac, k.aes];
  }
}

interface TicketCallbackContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, enc: boolean) => TicketKeyAnswer;
}

/**
 * Let `ring` issue and check the server's tickets. Node exposes the ticket
 * key callback on a server's default context (`_sharedCreds.context`, what
 * its own tests use to renew tickets); OpenSSL takes tickets from that
 * context even when SNI picks another certificate's. Returns false when this
 * Node.js has no such hook; the caller then sets fixed keys
 * (`setTicketKeys`), which resume without renewal.
 */
export function useTicketKeyring(server: tls.Server, ring: TicketKeyring): boolean {
  const ctx = (server as unknown as { _sharedCreds?: { context?: TicketCallbackContext } })._sharedCreds?.context;
  if (ctx === undefined || typeof ctx.enableTicketKeyCallback !== 'function') return false;
  ctx.enableTicketKeyCallback();
  ctx.onticketkeycallback = (name, _iv, enc) => ring.answer(name, enc);
  return true;
}
