/**
 * Session ticket keys that rotate and that every worker derives alike: one
 * secret per perimeter run (made by the control process, handed to workers
 * in their environment), one key per 12-hour epoch, derived with HKDF. A
 * client resumes on whichever worker it reaches; a ticket lives at most two
 * epochs' worth of time after which full handshakes restore forward secrecy.
 */
import { hkdfSync, randomBytes } from 'node:crypto';

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

export function ticketKeys(secret: Buffer, epoch: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.from('perimeter session tickets'), Buffer.from(`epoch ${epoch}`), 48));
}

export function currentEpoch(now = Date.now()): number {
  return Math.floor(now / TICKET_EPOCH_MS);
}
