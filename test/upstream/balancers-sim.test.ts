import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ACCEPTANCE_POOL, simulate, type SimResult } from '../../bench/balancers-sim.js';

// Issue 2 acceptance: one backend 10x slower and one failing 90% fast; the
// expected-latency balancer sends each of them less traffic than round robin.
function share(r: SimResult, name: string): number {
  return r.backends.find((b) => b.name === name)?.share ?? Number.NaN;
}

for (const retryOnce of [false, true]) {
  test(`simulation (retry ${retryOnce ? 'once' : 'never'}): latency beats round robin for slow and fast-failing backends`, () => {
    const common = { backends: ACCEPTANCE_POOL, requests: 20_000, intervalMs: 1, retryOnce, seed: 42 };
    const rr = simulate({ kind: 'round-robin', ...common });
    const lat = simulate({ kind: 'latency', ...common });
    for (const name of ['slow', 'fast-failing']) {
      assert.ok(share(lat, name) < share(rr, name), `${name}: latency ${share(lat, name)} vs round-robin ${share(rr, name)}`);
      assert.ok(share(lat, name) < 0.05, `${name} share ${share(lat, name)}`);
    }
    assert.ok(share(lat, 'normal') > share(lat, 'slow') && share(lat, 'normal') > share(lat, 'fast-failing'));
    assert.ok(share(lat, 'normal') > 0.9);
    // What the client sees is better too.
    assert.ok(lat.clientMeanMs < rr.clientMeanMs, `mean ${lat.clientMeanMs} vs ${rr.clientMeanMs}`);
    assert.ok(lat.clientFailRate <= rr.clientFailRate);
    if (!retryOnce) assert.ok(lat.clientFailRate < 0.01, `failed ${lat.clientFailRate}`);
  });
}

test('simulation: least-request is drawn to the fast-failing backend, latency is not', () => {
  const common = { backends: ACCEPTANCE_POOL, requests: 20_000, intervalMs: 1, retryOnce: false, seed: 42 };
  const lr = simulate({ kind: 'least-request', ...common });
  const lat = simulate({ kind: 'latency', ...common });
  assert.ok(share(lr, 'fast-failing') > 1 / 3, `least-request fast-failing ${share(lr, 'fast-failing')}`);
  assert.ok(share(lat, 'fast-failing') < share(lr, 'fast-failing') / 10);
});

test('simulation: a backend that recovers wins its traffic back; one that starts failing loses it', () => {
  const recovering = simulate({
    kind: 'latency',
    backends: ACCEPTANCE_POOL.map((b) =>
      b.name === 'fast-failing' ? { ...b, changesAfterMs: 5000, then: { successMs: 10, failureMs: 10, failRate: 0 } } : b,
    ),
    requests: 20_000,
    intervalMs: 1,
    retryOnce: false,
    seed: 42,
  });
  const late = (r: SimResult, name: string): number => r.backends.find((b) => b.name === name)?.lastQuarterShare ?? Number.NaN;
  assert.ok(late(recovering, 'fast-failing') > 0.3, `recovered share ${late(recovering, 'fast-failing')}`);
  const degrading = simulate({
    kind: 'latency',
    backends: [
      { name: 'a', successMs: 10, failureMs: 10, failRate: 0, changesAfterMs: 5000, then: { successMs: 10, failureMs: 1, failRate: 0.9 } },
      { name: 'b', successMs: 10, failureMs: 10, failRate: 0 },
      { name: 'slow', successMs: 100, failureMs: 100, failRate: 0 },
    ],
    requests: 20_000,
    intervalMs: 1,
    retryOnce: false,
    seed: 42,
  });
  assert.ok(late(degrading, 'a') < 0.02, `failing share ${late(degrading, 'a')}`);
  assert.ok(late(degrading, 'b') > 0.9);
});

test('simulation: larger pools use two random choices and still avoid bad backends', () => {
  const pool = [
    ...Array.from({ length: 8 }, (_, i) => ({ name: `n${i}`, successMs: 10, failureMs: 10, failRate: 0, capacity: 8 })),
    { name: 'slow', successMs: 100, failureMs: 100, failRate: 0, capacity: 8 },
    { name: 'fast-failing', successMs: 10, failureMs: 1, failRate: 0.9, capacity: 8 },
  ];
  const lat = simulate({ kind: 'latency', backends: pool, requests: 20_000, intervalMs: 0.25, retryOnce: false, seed: 42 });
  assert.ok(share(lat, 'slow') < 0.05 && share(lat, 'fast-failing') < 0.05);
  assert.ok(lat.clientFailRate < 0.03);
});
