/** The UI's building blocks: the escaping template, sessions with expiry, the throttle, users-file parsing, expiry input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { html, raw } from '../../src/admin/ui/html.js';
import { LoginThrottle, SessionStore, csrfMatches } from '../../src/admin/ui/sessions.js';
import { hashPassword, parseUsers, upsertUser, verifyPassword } from '../../src/admin/ui/users.js';
import { normalizeExpiry } from '../../src/admin/ui/app.js';

test('html`` escapes every interpolated value unless it is Html', () => {
  const note = `<script>alert(1)</script>"' & \``;
  const out = html`<td title="${note}">${note}</td>${[note, html`<b>${note}</b>`]}${null}${undefined}${false}${0}`.text;
  assert.equal(out.includes('<script>'), false);
  assert.equal(out, '<td title="&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; &amp; &#96;">&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; &amp; &#96;</td>&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; &amp; &#96;<b>&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; &amp; &#96;</b>0');
  assert.equal(html`${raw('<hr>')}`.text, '<hr>');
});

test('sessions: 256-bit ids, idle and absolute expiry, per-session CSRF tokens', () => {
  let now = 1_000_000;
  const store = new SessionStore(() => now, 30 * 60_000, 12 * 3600_000);
  const { id, session } = store.create('alice', 'password');
  assert.equal(Buffer.from(id, 'base64url').length, 32);
  assert.equal(store.get(id), session);
  assert.equal(store.get(id + 'x'), undefined);
  assert.equal(store.get(undefined), undefined);
  assert.ok(csrfMatches(session, session.csrf));
  assert.equal(csrfMatches(session, session.csrf.slice(1)), false);
  assert.equal(csrfMatches(session, undefined), false);
  const other = store.create('bob', 'token');
  assert.notEqual(other.session.csrf, session.csrf);
  // Activity keeps it alive for up to the absolute limit.
  for (let i = 0; i < 23; i++) {
    now += 29 * 60_000;
    assert.ok(store.get(id), `alive after ${i + 1} active periods`);
  }
  now += 29 * 60_000; // 24 × 29 min > 11.5 h; next is past 12 h
  now += 29 * 60_000;
  assert.equal(store.get(id), undefined, 'absolute expiry');
  const idle = store.create('carol', 'password');
  now += 30 * 60_000 + 1;
  assert.equal(store.get(idle.id), undefined, 'idle expiry');
  const t = store.create('tok', 'token');
  // bob's token session went idle long ago (swept at create); only the new one is left to end.
  assert.equal(store.destroyWhere((s) => s.method === 'token'), 1);
  assert.equal(store.get(t.id), undefined);
});

test('throttle: five failures a minute per address, then a wait until the oldest ages out', () => {
  let now = 0;
  const th = new LoginThrottle(5, 60_000, () => now);
  for (let i = 0; i < 5; i++) {
    assert.equal(th.retryAfterMs('10.0.0.1'), 0);
    th.fail('10.0.0.1');
    now += 1000;
  }
  assert.equal(th.retryAfterMs('10.0.0.1'), 55_000);
  assert.equal(th.retryAfterMs('10.0.0.2'), 0, 'per address');
  now = 60_001;
  assert.equal(th.retryAfterMs('10.0.0.1'), 0);
});

test('users file: parse problems name file:line, never the hash; upsert keeps other lines', async () => {
  const h = await hashPassword('twelve chars ok', 10);
  const text = `# comment\nalice:${h}\nbad line\nbob:not-a-hash\nalice:${h}\n`;
  const p = parseUsers(text, '/etc/perimeter/users');
  assert.deepEqual([...p.users.keys()], ['alice']);
  assert.equal(p.problems.length, 3);
  assert.match(p.problems[0]!, /^\/etc\/perimeter\/users:3: /);
  assert.match(p.problems[1]!, /^\/etc\/perimeter\/users:4: the hash of user 'bob'/);
  assert.ok(!p.problems.join('\n').includes(h));
  assert.ok(await verifyPassword('twelve chars ok', p.users.get('alice')));
  assert.equal(await verifyPassword('twelve chars ok', undefined), false, 'unknown user: false, after the same work');
  assert.equal(await verifyPassword('x', '$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA'), false, 'a hostile cost is not honoured');
  const up = upsertUser('# c\nbobby:x\nbob:y\n', 'bob', 'z');
  assert.equal(up, '# c\nbobby:x\nbob:z\n');
  assert.equal(upsertUser('', 'a', 'h'), 'a:h\n');
});

test('expiry input: dates and zone-less times are UTC; anything else is left for the service to judge', () => {
  assert.equal(normalizeExpiry(''), undefined);
  assert.equal(normalizeExpiry('2026-12-31'), '2026-12-31T00:00:00.000Z');
  assert.equal(normalizeExpiry('2026-12-31T18:00'), '2026-12-31T18:00:00Z');
  assert.equal(normalizeExpiry('2026-12-31 18:00:05'), '2026-12-31T18:00:05Z');
  assert.equal(normalizeExpiry('2026-12-31T18:00:00+02:00'), '2026-12-31T18:00:00+02:00');
  assert.equal(normalizeExpiry('tomorrow'), 'tomorrow');
});
