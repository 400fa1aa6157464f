/**
 * The quickstart: three demo backends on 127.0.0.1:9101-9103 and perimeter
 * in front of them on http://127.0.0.1:8080, using the configuration in this
 * directory. Run with `npm start` from the repository root.
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { run } from '../../src/cli/run.js';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/examples/quickstart; the YAML lives in examples/quickstart.
const configDir = resolve(here, '../../../examples/quickstart');

function demoBackend(name: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.end('ok\n');
      return;
    }
    const body = JSON.stringify(
      {
        backend: name,
        method: req.method,
        url: req.url,
        host: req.headers.host,
        'x-forwarded-for': req.headers['x-forwarded-for'],
        'x-request-id': req.headers['x-request-id'],
        forwarded: req.headers.forwarded,
      },
      null,
      2,
    );
    res.setHeader('content-type', 'application/json');
    res.end(body + '\n');
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok(server));
  });
}

const servers = await Promise.all([demoBackend('demo-1', 9101), demoBackend('demo-2', 9102), demoBackend('demo-3', 9103)]);
process.stdout.write(
  [
    '',
    'perimeter quickstart: demo backends on 127.0.0.1:9101-9103, perimeter on http://127.0.0.1:8080',
    'try:',
    '  curl http://localhost:8080/',
    '  curl -H "Host: www.example.com" http://127.0.0.1:8080/hello',
    '  curl -H "Host: nobody.example" http://127.0.0.1:8080/     (421: no such site)',
    '  curl http://127.0.0.1:9901/api/pools                      (backends: health, score and why)',
    '  curl http://127.0.0.1:9901/metrics',
    'Ctrl-C stops it.',
    '',
    '',
  ].join('\n'),
);
const code = await run([configDir]);
for (const s of servers) s.close();
process.exit(code);
