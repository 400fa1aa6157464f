import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/load.js';
import type { Snapshot } from '../../src/config/types.js';
import { snapshotFromWire, snapshotToWire, type WireSnapshot } from '../../src/core/wire.js';

/** What a worker gets: the wire form through the IPC channel's JSON. */
const acrossChannel = (s: Snapshot): Snapshot => snapshotFromWire(JSON.parse(JSON.stringify(snapshotToWire(s))) as WireSnapshot);

const example = (name: string): string => fileURLToPath(new URL(`../../../examples/${name}`, import.meta.url));

test('a snapshot crosses to the workers whole: Maps come back as Maps, the admin section stays behind', async () => {
  for (const name of ['quickstart', 'tcp-allowlist']) {
    const r = await loadConfig(example(name));
    assert.ok(r.ok, `${name} loads`);
    const s = r.snapshot;
    const back = acrossChannel(s);
    const { admin, ...rest } = s;
    assert.deepEqual(back, rest, name);
    assert.ok(admin, `${name} has an admin section, which must stay behind`);
    assert.ok(!Object.hasOwn(back, 'admin'));
    assert.ok(back.sites instanceof Map && back.clusters instanceof Map && back.services instanceof Map && back.tcp instanceof Map);
    assert.ok(back.sites.size > 0 || back.tcp.size > 0, `${name} has sites or TCP listeners`);
  }
});

test('the wire form: Maps inside Maps and arrays, and keys that look like object internals stay data', () => {
  const inner = new Map<string, unknown>([['__proto__', { polluted: true }], ['constructor', 1]]);
  const odd: Record<string, unknown> = { plain: [1, new Map([['k', 'v']])] };
  Object.defineProperty(odd, '__proto__', { value: new Map([['polluted', true]]), writable: true, enumerable: true, configurable: true });
  const s = {
    source: 'x',
    clusters: new Map([['web', { list: [new Map([['a', 1]]), null, 'text'], nested: inner }]]),
    sites: new Map(),
    services: new Map(),
    tcp: new Map(),
    allowlists: { kind: 'sqlite', file: 'f' },
    odd,
  } as unknown as Snapshot;
  const back = acrossChannel(s) as unknown as {
    clusters: Map<string, { list: unknown[]; nested: Map<string, unknown> }>;
    odd: Record<string, unknown>;
  };
  const web = back.clusters.get('web')!;
  assert.deepEqual(web.list[0], new Map([['a', 1]]));
  assert.equal(web.list[1], null);
  assert.deepEqual(web.nested, inner);
  // An own key named __proto__ stays an own key (holding its Map); no prototype is changed.
  assert.ok(Object.hasOwn(back.odd, '__proto__'));
  assert.deepEqual(Object.getOwnPropertyDescriptor(back.odd, '__proto__')?.value, new Map([['polluted', true]]));
  assert.equal(Object.getPrototypeOf(back.odd), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.deepEqual(back.odd.plain, [1, new Map([['k', 'v']])]);
});
