/**
 * The TCP proxy example: an SFTP-like demo backend on 127.0.0.1:9201 (it
 * greets and echoes lines) and perimeter's TCP listener on 127.0.0.1:2222 in
 * front of it, admitting only addresses on the `content-partners` allowlist.
 * Run with `npm run example:tcp` from the repository root.
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { run } from '../../src/cli/run.js';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/examples/tcp-allowlist; the YAML lives in examples/tcp-allowlist.
const configDir = resolve(here, '../../../examples/tcp-allowlist');

const backend = net.createServer((socket) => {
  socket.on('error', () => socket.destroy());
  socket.write(`upload-demo: hello ${socket.remoteAddress}, send lines and I echo them\n`);
  socket.pipe(socket);
});
await new Promise<void>((ok, fail) => {
  backend.once('error', fail);
  backend.listen(9201, '127.0.0.1', () => ok());
});

const cli = 'node dist/src/cli/main.js';
process.stdout.write(
  [
    '',
    'perimeter TCP example: demo upload backend on 127.0.0.1:9201, perimeter TCP listener on 127.0.0.1:2222',
    'try, in another terminal:',
    '  nc 127.0.0.1 2222                      (closed at once: the allowlist is empty)',
    `  ${cli} allow add content-partners 127.0.0.1 --partner "Demo Records" --reason "trying the example" -c examples/tcp-allowlist`,
    '  nc 127.0.0.1 2222                      (the backend greets you; type a line)',
    `  ${cli} allow check 127.0.0.1 content-partners -c examples/tcp-allowlist`,
    `  ${cli} allow history -c examples/tcp-allowlist`,
    `  ${cli} admin-user add alice --config examples/tcp-allowlist   then http://127.0.0.1:9911/ui/`,
    'Ctrl-C stops it.',
    '',
    '',
  ].join('\n'),
);
const code = await run([configDir]);
backend.close();
process.exit(code);
