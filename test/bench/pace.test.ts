/**
 * The reload scenario's load generator (bench/pace.c) and how its log is read and split
 * (bench/harness.ts). Needs cc, as `npm run bench` does (the machine builds native addons with it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePaceLog, parsePaceSummary, percentile, splitByChanges, type PacedRequest } from '../../bench/harness.js';

const PACE_C = fileURLToPath(new URL('../../../bench/pace.c', import.meta.url));

test('percentiles as wrk computes them, and the split of a run at its changes', () => {
  const values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(percentile(values, 50), 6); // rank round(5.5) = 6
  assert.equal(percentile(values, 20), 3); // rank round(2.5) = 3
  assert.equal(percentile(values, 99), 10);
  assert.equal(percentile(values, 0), 1);
  assert.ok(Number.isNaN(percentile([], 99)));

  const req = (startUs: number, latencyUs: number): PacedRequest => ({ startUs, latencyUs, status: 200 });
  const requests = [req(900, 1), req(1000, 2), req(1049, 3), req(1050, 4), req(2000, 5), req(2010, 6), req(3000, 7)];
  const { after, between } = splitByChanges(requests, [1000, 2000], 50);
  assert.deepEqual(after, [2, 3, 5, 6]); // at a change and up to 49 µs after it
  assert.deepEqual(between, [1, 4, 7]); // before the first change, 50 µs or more after one
  assert.deepEqual(splitByChanges(requests, [], 50).between.length, requests.length);

  assert.deepEqual(parsePaceLog('1796578158425756 466 200\n1796578158425788 479 503\n'), [
    { startUs: 1796578158425756, latencyUs: 466, status: 200 },
    { startUs: 1796578158425788, latencyUs: 479, status: 503 },
  ]);
  assert.throws(() => parsePaceLog('12 13\n'), /not a pace log line/);
  assert.deepEqual(parsePaceSummary('pace: something\nrequests 8895 errors 20 non2xx 1\n'), { requests: 8895, errors: 20, non2xx: 1 });
  assert.throws(() => parsePaceSummary('pace: connect: Connection refused\n'), /no summary/);
});

test('pace: paced keep-alive requests, each logged; a connection the server closes is a socket error and is opened again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pace-'));
  let connections = 0;
  let answered = 0;
  const server = createServer((req, res) => {
    answered++;
    // Every 50th request: the server closes the connection instead of answering.
    if (answered % 50 === 0) {
      req.socket.destroy();
      return;
    }
    res.end(req.url === '/small' ? 'x'.repeat(100) : 'other');
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const pace = join(dir, 'pace');
    const cc = spawnSync('cc', ['-O2', '-o', pace, PACE_C], { encoding: 'utf8' });
    assert.equal(cc.status, 0, `cc is needed to build bench/pace.c: ${cc.error?.message ?? cc.stderr}`);
    const log = join(dir, 'log.txt');
    const port = (server.address() as AddressInfo).port;
    const before = Date.now() * 1000;
    const stderr = await new Promise<string>((resolve, reject) => {
      const child = spawn(pace, [String(port), 'bench.test', '/small', '4', '1', '5', log]);
      let text = '';
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', reject);
      child.on('exit', () => resolve(text));
    });
    const summary = parsePaceSummary(stderr);
    const requests = parsePaceLog(readFileSync(log, 'utf8'));
    assert.equal(requests.length, summary.requests);
    // 4 connections, one request per ~5 ms each, for 1 s: a few hundred, not thousands (paced).
    assert.ok(summary.requests > 200 && summary.requests < 900, `${summary.requests} requests`);
    assert.ok(requests.every((r) => r.status === 200 && r.latencyUs > 0 && r.startUs >= before - 1e6 && r.startUs <= Date.now() * 1000));
    const closed = Math.floor(answered / 50);
    assert.ok(closed >= 4, `${answered} requests reached the server`);
    // Each close is one error; the last one may have come as the run ended.
    assert.ok(summary.errors >= closed - 1 && summary.errors <= closed, `${summary.errors} errors for ${closed} closes`);
    assert.equal(summary.non2xx, 0);
    assert.ok(connections >= 4 + closed - 1, `${connections} connections: each close is followed by a new one`);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
