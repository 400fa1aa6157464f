/**
 * The session ticket keyring (src/tls/tickets.ts) with a clock of its own:
 * new tickets under the current epoch's key, tickets of this and the
 * previous epoch accepted and renewed, older and unknown ones refused, the
 * same keys in every worker (same secret), other keys for another secret.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TICKET_EPOCH_MS, TicketKeyring, ticketKeys } from '../../src/tls/tickets.js';

test('tickets: issued under the current epoch, renewed for this and the last epoch, refused after', () => {
  const secret = randomBytes(32);
  let now = 100 * TICKET_EPOCH_MS + 5;
  const ring = new TicketKeyring(secret, () => now);
  const [code, hmac, aes, name, iv] = ring.answer(Buffer.alloc(16), true);
  assert.equal(code, 1);
  const expected = ticketKeys(secret, 100);
  assert.deepEqual([name, hmac, aes], [expected.subarray(0, 16), expected.subarray(16, 32), expected.subarray(32, 48)]);
  assert.equal(iv?.length, 16);
  // This epoch: valid, renew.
  assert.deepEqual(ring.answer(name!, false), [2, hmac, aes]);
  // Next epoch: still accepted (and renewed under the new key on the next encrypt).
  now += TICKET_EPOCH_MS;
  assert.deepEqual(ring.answer(name!, false), [2, hmac, aes]);
  const [, , , newName] = ring.answer(Buffer.alloc(16), true);
  assert.notDeepEqual(newName, name);
  // Two epochs on: refused, a full handshake.
  now += TICKET_EPOCH_MS;
  assert.equal(ring.answer(name!, false)[0], 0);
  // Refusals carry 16-byte keys too: Node reads them whatever the code (and aborts without them).
  const unknown = ring.answer(randomBytes(16), false);
  assert.equal(unknown[0], 0);
  assert.deepEqual([unknown[1].length, unknown[2].length], [16, 16]);
});

test('tickets: two workers with the run\'s secret share keys; another secret does not accept them', () => {
  const secret = randomBytes(32);
  const now = () => 7 * TICKET_EPOCH_MS;
  const [, , , name] = new TicketKeyring(secret, now).answer(Buffer.alloc(16), true);
  assert.equal(new TicketKeyring(Buffer.from(secret), now).answer(name!, false)[0], 2);
  assert.equal(new TicketKeyring(randomBytes(32), now).answer(name!, false)[0], 0);
});
