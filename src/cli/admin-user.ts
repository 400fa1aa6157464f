/**
 * `perimeter admin-user add|rm|ls`: manage the admin web UI's local accounts
 * in admin.users-file (one `name:scrypt-hash` per line). The running
 * perimeter re-reads the file at the next login, so no reload is needed.
 */
import { readFile, rename, writeFile, unlink } from 'node:fs/promises';
import { dirname, join, resolve, basename } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import { MIN_PASSWORD_LENGTH, USER_NAME, hashPassword, parseUsers, upsertUser } from '../admin/ui/users.js';

export const help = `Usage: perimeter admin-user add NAME [--password-stdin] [--users-file FILE | --config DIR]
       perimeter admin-user rm NAME [--users-file FILE | --config DIR]
       perimeter admin-user ls [--users-file FILE | --config DIR]

Manage the local accounts of the admin web UI (docs/admin-ui.md). 'add'
creates the account or sets a new password for it; the password is read
from a prompt (twice, not echoed), or from standard input with
--password-stdin (one line; for scripts). Passwords need at least
${MIN_PASSWORD_LENGTH} characters. The file stores only salted scrypt hashes and is
written with mode 0600. A running perimeter uses the change at the next
login; removing an account ends its sessions at their next request.

Options:
  --users-file FILE   the users file (default: admin.users-file in
                      DIR/perimeter.yaml)
  --config DIR        the configuration directory (default: .)
  --password-stdin    read the password from standard input

Then point perimeter.yaml at the file, if it does not already:

  admin:
    listen: "127.0.0.1:9901"
    users-file: admin-users

Exit status: 0 done, 1 refused (short password, invalid name, no such
user), 2 usage error, 3 the file could not be read or written.
`;

class Usage extends Error {}

async function usersFileFrom(values: { 'users-file'?: string; config?: string }): Promise<string> {
  if (values['users-file'] !== undefined) return resolve(values['users-file']);
  const dir = resolve(values.config ?? '.');
  const file = join(dir, 'perimeter.yaml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new Usage(`no --users-file given and ${file} cannot be read; pass --users-file FILE or --config DIR`);
  }
  const doc = parseDocument(text);
  const v = doc.getIn(['admin', 'users-file']);
  if (typeof v !== 'string' || v === '') throw new Usage(`${file} sets no admin.users-file; add 'users-file: admin-users' under admin:, or pass --users-file FILE`);
  return resolve(dir, v);
}

async function readExisting(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** Replace the file in one step (a crash leaves the old or the new file, never half of one). */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** One line from the terminal without echo. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolvePw, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    let buf = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const onData = (s: string): void => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolvePw(buf);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new Usage('interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1);
        else buf += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) {
    const text = await readStdin();
    // One line: the newline a pipe or heredoc adds is not part of it.
    return text.replace(/\r?\n$/, '');
  }
  if (!process.stdin.isTTY) throw new Usage('standard input is not a terminal: pass --password-stdin to read the password from it');
  const first = await promptHidden('Password: ');
  const again = await promptHidden('Password again: ');
  if (first !== again) throw new Refused('the two passwords differ; nothing was changed');
  return first;
}

class Refused extends Error {}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { 'users-file': { type: 'string' }, config: { type: 'string' }, 'password-stdin': { type: 'boolean' } },
    });
  } catch (err) {
    process.stderr.write(`perimeter admin-user: ${(err as Error).message}\n\n${help}`);
    return 2;
  }
  const [sub, name, ...extra] = parsed.positionals;
  const values = parsed.values;
  try {
    if (sub !== 'add' && sub !== 'rm' && sub !== 'ls') throw new Usage(sub === undefined ? 'say add, rm or ls' : `unknown subcommand '${sub}'; use add, rm or ls`);
    if (extra.length > 0) throw new Usage(`unexpected argument '${extra[0]}'`);
    if (sub !== 'ls' && name === undefined) throw new Usage(`admin-user ${sub} needs a user NAME`);
    if (name !== undefined && sub === 'ls') throw new Usage(`admin-user ls takes no NAME`);
    if (name !== undefined && !USER_NAME.test(name)) throw new Refused(`'${name}' is not a valid user name: use up to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit`);
    const file = await usersFileFrom(values);
    let text: string;
    try {
      text = await readExisting(file);
    } catch (err) {
      process.stderr.write(`perimeter admin-user: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 3;
    }
    const { users, problems } = parseUsers(text, file);
    if (sub === 'ls') {
      for (const u of users.keys()) process.stdout.write(`${u}\n`);
      for (const p of problems) process.stderr.write(`warning: ${p}\n`);
      return 0;
    }
    let next: string;
    if (sub === 'rm') {
      if (!users.has(name!)) throw new Refused(`no user '${name}' in ${file}`);
      next = text
        .split('\n')
        .filter((l) => !l.trim().startsWith(`${name}:`))
        .join('\n');
    } else {
      const password = await readPassword(values['password-stdin'] === true);
      if ([...password].length < MIN_PASSWORD_LENGTH) throw new Refused(`the password is too short: use at least ${MIN_PASSWORD_LENGTH} characters (a passphrase of several words is easy to type and hard to guess)`);
      if (/[\r\n]/.test(password)) throw new Refused('the password contains a line break; give one line');
      next = upsertUser(text, name!, await hashPassword(password));
    }
    try {
      await writeAtomic(file, next);
    } catch (err) {
      process.stderr.write(`perimeter admin-user: cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 3;
    }
    process.stdout.write(sub === 'rm' ? `removed user ${name} from ${file}\n` : `${users.has(name!) ? 'updated the password of' : 'added'} user ${name} in ${file}\n`);
    return 0;
  } catch (err) {
    if (err instanceof Usage) {
      process.stderr.write(`perimeter admin-user: ${err.message}\n\n${help}`);
      return 2;
    }
    if (err instanceof Refused) {
      process.stderr.write(`perimeter admin-user: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
