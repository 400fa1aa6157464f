import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { Backend } from '../../src/upstream/backend.js';
import { createBalancer } from '../../src/upstream/balancers.js';
import { LATENCY_HALF_LIFE_MS, SUCCESS_RATE_HALF_LIFE_MS, newEstimate } from '../../src/upstream/stats.js';
import { seededRandom } from '../../bench/balancers-sim.js';

function backend(i: number, weight = 1): Backend {
  return new Backend(`10.0.0.${i}`, 8080, weight, false);
}

function counts(picks: readonly Backend[]): Map<Backend, number> {
  const m = new Map<Backend, number>();
  for (const b of picks) m.set(b, (m.get(b) ?? 0) + 1);
  return m;
}

test('round-robin: exact weights over a cycle, smooth order (nginx 5,1,1)', () => {
  const [a, b, c] = [backend(1, 5), backend(2, 1), backend(3, 1)];
  const rr = createBalancer('round-robin');
  const pool = [a, b, c];
  const order: string[] = [];
  for (let i = 0; i < 7; i++) {
    const p = rr.pick(pool, undefined, 0);
    order.push(p === a ? 'a' : p === b ? 'b' : 'c');
  }
  // nginx's documented smooth sequence for weights 5,1,1.
  assert.equal(order.join(''), 'aabacaa');
  // Over many cycles the split is exact.
  const picks: Backend[] = [];
  for (let i = 0; i < 700; i++) picks.push(rr.pick(pool, undefined, 0));
  const n = counts(picks);
  assert.deepEqual([n.get(a), n.get(b), n.get(c)], [500, 100, 100]);
});

test('round-robin: equal weights alternate; state survives a new candidate array', () => {
  const [a, b, c] = [backend(1), backend(2), backend(3)];
  const rr = createBalancer('round-robin');
  const first = [rr.pick([a, b, c], undefined, 0), rr.pick([a, b, c], undefined, 0)];
  assert.notEqual(first[0], first[1]);
  // The pool replaces its array (same Backend objects, new order, d added): no backend gets a burst.
  const d = backend(4);
  const pool2 = [c, d, b, a];
  const picks: Backend[] = [];
  for (let i = 0; i < 400; i++) picks.push(rr.pick(pool2, undefined, 0));
  const n = counts(picks);
  for (const x of pool2) assert.ok(Math.abs((n.get(x) ?? 0) - 100) <= 2, `share of ${x.key}: ${n.get(x)}`);
  // Never the same backend three times in a row with equal weights.
  for (let i = 2; i < picks.length; i++) assert.ok(!(picks[i] === picks[i - 1] && picks[i] === picks[i - 2]));
});

test('round-robin: exclude skips tried backends, and everything excluded still answers', () => {
  const [a, b] = [backend(1), backend(2)];
  const rr = createBalancer('round-robin');
  for (let i = 0; i < 10; i++) assert.equal(rr.pick([a, b], new Set([a]), 0), b);
  assert.ok([a, b].includes(rr.pick([a, b], new Set([a, b]), 0)));
  const e = rr.explain(a, 0);
  assert.match(e.reason, /^weight 1, current -?\d+$/);
});

test('least-request: power of two choices prefers fewer inflight, weight-aware', () => {
  const lr = createBalancer('least-request', { random: seededRandom(7) });
  const [a, b, c, d] = [backend(1), backend(2), backend(3), backend(4)];
  a.inflight = 0;
  b.inflight = 5;
  c.inflight = 5;
  d.inflight = 5;
  const pool = [a, b, c, d];
  const n = counts(Array.from({ length: 6000 }, () => lr.pick(pool, undefined, 0)));
  // a is in half of the random pairs and wins all of them; the others share the rest.
  assert.ok(Math.abs((n.get(a) ?? 0) / 6000 - 0.5) < 0.03, `a got ${n.get(a)}`);
  // Two candidates: always the one with fewer inflight.
  for (let i = 0; i < 50; i++) assert.equal(lr.pick([b, a], undefined, 0), a);
  // One candidate: returned as is.
  assert.equal(lr.pick([b], undefined, 0), b);
  // Weight: 4 inflight at weight 4 ((4+1)/4) beats 1 inflight at weight 1 ((1+1)/1).
  const heavy = backend(5, 4);
  heavy.inflight = 4;
  const light = backend(6, 1);
  light.inflight = 1;
  for (let i = 0; i < 20; i++) assert.equal(lr.pick([light, heavy], undefined, 0), heavy);
  // Exclude: the excluded one is never chosen while another exists.
  for (let i = 0; i < 50; i++) assert.notEqual(lr.pick(pool, new Set([a]), 0), a);
  assert.equal(lr.explain(b, 0).reason, 'inflight 5 / weight 1');
  assert.equal(lr.explain(b, 0).score, 6);
});

test('least-request: the picks spread evenly when inflight is kept by the caller', () => {
  const lr = createBalancer('least-request', { random: seededRandom(3) });
  const pool = [backend(1), backend(2), backend(3)];
  // Each pick holds a request until 30 picks later, as a steady load would.
  const held: Backend[] = [];
  const n = new Map<Backend, number>();
  for (let i = 0; i < 3000; i++) {
    const b = lr.pick(pool, undefined, i);
    b.inflight++;
    n.set(b, (n.get(b) ?? 0) + 1);
    held.push(b);
    if (held.length > 30) (held.shift() as Backend).inflight--;
  }
  for (const b of pool) assert.ok(Math.abs((n.get(b) ?? 0) - 1000) < 60, `${b.key}: ${n.get(b)}`);
});

test('latency: explain shows the numbers the score is made of', () => {
  const lb = createBalancer('latency', { random: seededRandom(1) });
  const a = backend(1);
  const b = backend(2);
  const t = 1_000_000;
  for (let i = 0; i < 200; i++) a.stats.onSuccess(12, t + i);
  for (let i = 0; i < 100; i++) b.stats.onSuccess(20, t + i);
  for (let i = 0; i < 100; i++) b.stats.onFailure(2, t + i);
  a.inflight = 3;
  lb.pick([a, b], undefined, t + 200); // builds the pool prior
  const ea = lb.explain(a, t + 200);
  assert.match(ea.reason, /^ewma success 12\.\d ms, success (99|100)%, failure \d+\.\d ms, inflight 3 => expected (\d+\.\d) ms$/);
  const expected = Number(/expected (\d+(\.\d+)?) ms/.exec(ea.reason)?.[1]);
  assert.ok(Math.abs(expected - ea.score) < 0.1);
  assert.ok(ea.score > 12 * 4 && ea.score < 12 * 4 * 1.2, `score ${ea.score}`);
  const eb = lb.explain(b, t + 200);
  assert.match(eb.reason, /success 50%, failure 2\.\d ms, inflight 0 => expected/);
  // Half failures: more than the success latency alone, by a failure plus a re-send.
  assert.ok(eb.score > 20 + 2, `score ${eb.score}`);
  const unknown = backend(3, 2);
  assert.match(lb.explain(unknown, t + 200).reason, /weight 2 => expected .* \(no recent samples: pool prior\)$/);
});

test('latency: a fast-failing backend does not attract traffic; a slow one gets less', () => {
  const lb = createBalancer('latency', { random: seededRandom(11) });
  const normal = backend(1);
  const slow = backend(2);
  const failing = backend(3);
  const pool = [normal, slow, failing];
  const rand = seededRandom(5);
  // Synthetic time, sequential requests: each outcome is fed back before the next pick.
  let now = 1_000_000;
  const n = new Map<Backend, number>();
  for (let i = 0; i < 3000; i++) {
    const b = lb.pick(pool, undefined, now);
    n.set(b, (n.get(b) ?? 0) + 1);
    if (b === normal) b.stats.onSuccess(10, now + 10);
    else if (b === slow) b.stats.onSuccess(100, now + 100);
    else if (rand() < 0.9) b.stats.onFailure(1, now + 1);
    else b.stats.onSuccess(10, now + 10);
    now += 5;
  }
  const share = (b: Backend): number => (n.get(b) ?? 0) / 3000;
  assert.ok(share(normal) > 0.9, `normal ${share(normal)}`);
  assert.ok(share(slow) < 0.05, `slow ${share(slow)}`);
  assert.ok(share(failing) < 0.05, `failing ${share(failing)}`);
  // A plain latency average would rank the failing backend first (1-10 ms); this one ranks it last.
  assert.ok(lb.explain(failing, now).score > lb.explain(normal, now).score);
});

test('latency: stats decay back to the pool prior after a long idle, and the backend is retried', () => {
  const lb = createBalancer('latency', { random: seededRandom(2) });
  const good = backend(1);
  const bad = backend(2);
  let now = 1_000_000;
  for (let i = 0; i < 100; i++) {
    good.stats.onSuccess(10, now);
    bad.stats.onFailure(1, now);
    now += 10;
  }
  lb.pick([good, bad], undefined, now);
  const est = newEstimate();
  const prior = { successMs: 10, successRate: 1, failureMs: 1 };
  assert.ok(bad.stats.read(now, prior, est).successRate < 0.05);
  // After 10 success-rate half-lives without samples, the prior speaks again.
  const later = now + 10 * Math.max(SUCCESS_RATE_HALF_LIFE_MS, LATENCY_HALF_LIFE_MS / 2);
  const r = bad.stats.read(later, prior, est);
  assert.ok(r.successRate > 0.9, `success rate ${r.successRate}`);
  assert.ok(r.samples < 0.2, `samples ${r.samples}`);
  // Meanwhile `good` kept answering: the balancer tries `bad` again.
  for (let t = now; t < later; t += 50) good.stats.onSuccess(10, t);
  good.inflight = 2;
  let tried = 0;
  for (let i = 0; i < 50; i++) if (lb.pick([good, bad], undefined, later + 1000) === bad) tried++;
  assert.ok(tried > 0, 'the recovered backend is tried again');
});

test('latency: a new backend with no samples gets a fair trial', () => {
  const lb = createBalancer('latency', { random: seededRandom(9) });
  const old = [backend(1), backend(2), backend(3)];
  let now = 1_000_000;
  for (let i = 0; i < 300; i++) for (const b of old) b.stats.onSuccess(20, now + i);
  now += 300;
  const fresh = backend(4);
  const pool = [...old, fresh];
  const rand = seededRandom(4);
  // Concurrent load: each pick holds its backend for 8 picks, then reports 20 ms.
  const held: Backend[] = [];
  const n = new Map<Backend, number>();
  for (let i = 0; i < 2000; i++) {
    const b = lb.pick(pool, undefined, now);
    b.inflight++;
    held.push(b);
    n.set(b, (n.get(b) ?? 0) + 1);
    if (held.length > 8) {
      const done = held.shift() as Backend;
      done.inflight--;
      done.stats.onSuccess(18 + 4 * rand(), now);
    }
    now += 2;
  }
  const freshShare = (n.get(fresh) ?? 0) / 2000;
  assert.ok(freshShare > 0.15 && freshShare < 0.35, `fresh share ${freshShare}`);
});

test('latency: exclude is honoured on retries, weight shifts traffic', () => {
  const lb = createBalancer('latency', { random: seededRandom(12) });
  const a = backend(1, 3);
  const b = backend(2, 1);
  const now = 1_000_000;
  for (let i = 0; i < 50; i++) {
    a.stats.onSuccess(10, now);
    b.stats.onSuccess(10, now);
  }
  for (let i = 0; i < 20; i++) assert.equal(lb.pick([a, b], new Set([a]), now), b);
  // Same latency, weight 3 vs 1: a stays preferred until it holds about 3× the requests.
  const held: Backend[] = [];
  const n = new Map<Backend, number>();
  for (let i = 0; i < 4000; i++) {
    const p = lb.pick([a, b], undefined, now);
    p.inflight++;
    held.push(p);
    n.set(p, (n.get(p) ?? 0) + 1);
    if (held.length > 16) (held.shift() as Backend).inflight--;
  }
  const ratio = (n.get(a) ?? 0) / (n.get(b) ?? 1);
  assert.ok(ratio > 2 && ratio < 4.5, `ratio ${ratio}`);
});
