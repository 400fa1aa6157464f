/**
 * The browser acceptance: Chromium logs in to the admin UI, adds an
 * allowlist entry, sees it listed (its hostile note shown as text), gets
 * the service's error for a malformed CIDR and for 0.0.0.0/0, searches an
 * address and sees the admitting entry, reads the history, and removes the
 * entry. Screenshots of every step are in test-results/screenshots/admin-ui/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, USER, startUiPerimeter } from './harness.js';
import { openBrowser } from './browser.js';

test('admin UI in Chromium: log in, add, list, malformed CIDR, search, history, remove', async (t) => {
  const p = await startUiPerimeter();
  const b = await openBrowser(t, 'admin-ui').catch(async (err: unknown) => {
    await p.closeAll();
    throw err;
  });
  t.after(async () => {
    await b.close();
    await p.closeAll();
  });
  const { page } = b;

  // Log in (the UI sends an anonymous visitor to the login page).
  await page.goto(`${p.admin}/`);
  assert.match(page.url(), /\/ui\/login\?next=%2Fui%2F$/);
  await b.shot('login');
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Allowlists' }).waitFor();
  assert.match(await page.locator('header').innerText(), /Signed in as\s+alice/);
  await b.shot('logged-in');

  // Add an entry to a new list.
  await page.getByRole('link', { name: 'Add an entry' }).first().click();
  await page.getByLabel('List').fill('content-partners');
  await page.getByLabel('Address or CIDR range').fill('198.51.100.0/24');
  await page.getByLabel('Partner').fill('Acme Media');
  await page.getByLabel('Note').fill('<script>alert(1)</script>');
  await page.getByLabel('Reason for this change').fill('ticket OPS-1: new upload server');
  await b.shot('add-form');
  await page.getByRole('button', { name: 'Add entry' }).click();
  await page.getByRole('heading', { level: 1, name: 'Allowlist content-partners' }).waitFor();
  assert.match(await page.getByRole('status').innerText(), /Entry added/);
  const row = page.locator('tbody tr', { hasText: 'Acme Media' });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /198\.51\.100\.0\/24/);
  // The note is text, not markup: shown literally, nothing ran.
  assert.equal(await row.locator('td').nth(1).innerText(), '<script>alert(1)</script>');
  assert.equal(await page.locator('main script').count(), 0);
  assert.match(await row.innerText(), /alice/);
  await b.shot('entry-listed');

  // A malformed CIDR: the form comes back with the input and the service's message on the field.
  await page.getByRole('link', { name: 'Add an entry to content-partners' }).click();
  await page.getByLabel('Address or CIDR range').fill('198.51.100.300/24');
  await page.getByLabel('Partner').fill('Broken Partner');
  await page.getByLabel('Reason for this change').fill('typo test');
  await page.getByRole('button', { name: 'Add entry' }).click();
  const cidr = page.getByLabel('Address or CIDR range');
  assert.equal(await cidr.getAttribute('aria-invalid'), 'true');
  assert.equal(await cidr.inputValue(), '198.51.100.300/24', 'the input is kept');
  assert.equal(await page.getByLabel('Partner').inputValue(), 'Broken Partner');
  const fieldError = page.locator('#f-cidr-error');
  assert.match(await fieldError.innerText(), /198\.51\.100\.300/);
  assert.match((await cidr.getAttribute('aria-describedby')) ?? '', /f-cidr-error/);
  assert.match(await page.getByRole('alert').first().innerText(), /Not saved/);
  await b.shot('malformed-cidr');

  // The whole internet is refused with the service's message.
  await cidr.fill('0.0.0.0/0');
  await page.getByRole('button', { name: 'Add entry' }).click();
  assert.equal(await page.getByLabel('Address or CIDR range').getAttribute('aria-invalid'), 'true');
  const wholeInternet = await page.locator('#f-cidr-error').innerText();
  assert.ok(wholeInternet.length > 10);
  await b.shot('whole-internet-refused');

  // Search an address: allowed, by which entry.
  await page.getByRole('link', { name: 'Address search' }).click();
  await page.getByLabel('Address').fill('198.51.100.7');
  await page.getByRole('button', { name: 'Check' }).click();
  const result = page.locator('main table tbody tr', { hasText: 'content-partners' });
  assert.match(await result.innerText(), /yes/);
  assert.match(await result.innerText(), /198\.51\.100\.0\/24/);
  assert.match(await result.innerText(), /Acme Media/);
  assert.match(await page.getByRole('status').innerText(), /Allowed/);
  await b.shot('search-allowed');
  await page.getByLabel('Address').fill('203.0.113.9');
  await page.getByRole('button', { name: 'Check' }).click();
  assert.match(await page.getByRole('status').innerText(), /Not allowed/);
  await b.shot('search-not-allowed');

  // History: who, what, why.
  await page.getByRole('link', { name: 'Change history' }).click();
  const add = page.locator('main tbody tr', { hasText: 'ticket OPS-1' });
  assert.equal(await add.count(), 1);
  assert.match(await add.innerText(), /alice\s+add\s+content-partners/);
  await b.shot('history');

  // Remove with a reason; the search no longer admits the address; the history has both changes.
  await page.goto(`${p.admin}/ui/lists/content-partners`);
  await page.getByRole('link', { name: /^Remove/ }).first().click();
  await page.getByLabel('Reason').fill('contract ended');
  await page.getByRole('button', { name: 'Remove this entry' }).click();
  assert.match(await page.getByRole('status').innerText(), /Entry removed/);
  assert.equal(await page.locator('tbody tr', { hasText: 'Acme Media' }).count(), 0);
  await b.shot('removed');
  await page.goto(`${p.admin}/ui/search?address=198.51.100.7&list=content-partners`);
  assert.match(await page.getByRole('status').innerText(), /Not allowed/);
  await page.goto(`${p.admin}/ui/history?list=content-partners`);
  const rows = await page.locator('main tbody tr').allInnerTexts();
  assert.equal(rows.length, 2);
  assert.match(rows[0]!, /remove[\s\S]*contract ended/);
  await b.shot('history-after-remove');

  // The other pages render in the browser too.
  for (const [link, heading] of [
    ['Sites', 'Sites'],
    ['Backends', 'Backends'],
    ['Configuration', 'Configuration'],
  ] as const) {
    await page.getByRole('link', { name: link, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
    await b.shot(link.toLowerCase());
  }
  await page.getByRole('button', { name: 'Log out' }).click();
  assert.match(page.url(), /\/ui\/login\?out=1$/);
  // The refused forms answered 422, which Chromium reports on the console; anything else (a CSP violation, a missing resource) is a bug.
  assert.deepEqual(
    b.problems.filter((m) => !/status of 422/.test(m)),
    [],
    'no console errors (CSP violations, missing resources), page errors or dialogs',
  );
});
