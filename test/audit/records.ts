/** RequestRecord values for access log tests. */
import type { Header } from '../../src/web/http1.js';
import type { RequestRecord } from '../../src/web/proxy.js';

export function header(rawName: string, value: string): Header {
  return { name: rawName.toLowerCase(), rawName, value };
}

/** A proxied GET with every field set; `over` replaces fields. */
export function sampleRecord(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    requestId: 'a1b2c3d4e5f6a7b8-00000001',
    startMs: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
    clientIp: '192.0.2.7',
    clientPort: 54321,
    listener: '0.0.0.0:8080',
    cluster: 'web',
    host: 'www.example.com',
    method: 'GET',
    target: '/search?q=shoes&page=2',
    httpVersion: 'HTTP/1.1',
    headers: [
      header('Host', 'www.example.com'),
      header('User-Agent', 'curl/8.5.0'),
      header('Referer', 'https://www.example.com/start?from=mail'),
      header('Accept', '*/*'),
    ],
    upstreamStatus: 200,
    site: 'www.example.com',
    service: 'web-frontend',
    backend: '10.0.0.5:8080',
    status: 200,
    errorCode: '',
    reason: '',
    attempts: 1,
    retries: 0,
    panic: false,
    bytesIn: 312,
    bytesOut: 5120,
    durationMs: 12.3456789,
    upstreamMs: 11.2004,
    ...over,
  };
}
