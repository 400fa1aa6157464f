/**
 * Local admin accounts (admin.users-file): one `name:hash` per line, the hash
 * a PHC-style scrypt string `$scrypt$ln=15,r=8,p=1$<salt>$<key>` (base64,
 * unpadded) so the parameters can be raised later without breaking old
 * lines. Blank lines and lines starting with # are ignored.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';

export const MIN_PASSWORD_LENGTH = 12;
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

const DEFAULT_LN = 15;
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
/** Upper bounds on what a users file may ask for (a hostile or corrupt line must not exhaust memory or CPU). */
const MAX_LN = 20;
const MAX_R = 16;
const MAX_P = 4;

interface ScryptParams {
  readonly ln: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function derive(password: string, salt: Buffer, ln: number, r: number, p: number, keylen: number): Promise<Buffer> {
  const N = 2 ** ln;
  const opts: ScryptOptions = { N, r, p, maxmem: 128 * N * r * p + 64 * 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** The users-file form of a password's hash (a fresh random salt each time). */
export async function hashPassword(password: string, ln = DEFAULT_LN): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const key = await derive(password, salt, ln, 8, 1, KEY_LENGTH);
  return `$scrypt$ln=${ln},r=8,p=1$${salt.toString('base64').replace(/=+$/, '')}$${key.toString('base64').replace(/=+$/, '')}`;
}

function parseHash(encoded: string): ScryptParams | undefined {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{16,})$/.exec(encoded);
  if (!m) return undefined;
  const ln = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (ln < 10 || ln > MAX_LN || r < 1 || r > MAX_R || p < 1 || p > MAX_P) return undefined;
  return { ln, r, p, salt: Buffer.from(m[4]!, 'base64'), key: Buffer.from(m[5]!, 'base64') };
}

export function isValidHash(encoded: string): boolean {
  return parseHash(encoded) !== undefined;
}

/** A hash computed once to compare against when the user does not exist (same work, same timing). */
let dummyHash: Promise<string> | undefined;

/** Whether password matches the stored hash; a missing or unreadable hash still costs a full scrypt. */
export async function verifyPassword(password: string, encoded: string | undefined): Promise<boolean> {
  const parsed = encoded !== undefined ? parseHash(encoded) : undefined;
  if (!parsed) {
    dummyHash ??= hashPassword('perimeter-no-such-user');
    const d = parseHash(await dummyHash)!;
    const key = await derive(password, d.salt, d.ln, d.r, d.p, d.key.length);
    timingSafeEqual(key, d.key);
    return false;
  }
  const key = await derive(password, parsed.salt, parsed.ln, parsed.r, parsed.p, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}

export interface ParsedUsers {
  readonly users: ReadonlyMap<string, string>;
  /** `file:line: what is wrong` (never the hash). */
  readonly problems: readonly string[];
}

export function parseUsers(text: string, file: string): ParsedUsers {
  const users = new Map<string, string>();
  const problems: string[] = [];
  text.split('\n').forEach((rawLine, i) => {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const name = colon === -1 ? '' : line.slice(0, colon);
    const hash = colon === -1 ? '' : line.slice(colon + 1);
    if (!USER_NAME.test(name)) problems.push(`${file}:${i + 1}: not 'name:hash' with a valid user name; recreate the line with 'perimeter admin-user add NAME'`);
    else if (!isValidHash(hash)) problems.push(`${file}:${i + 1}: the hash of user '${name}' is not a perimeter scrypt hash; recreate it with 'perimeter admin-user add ${name}'`);
    else if (users.has(name)) problems.push(`${file}:${i + 1}: user '${name}' appears again; the first line counts`);
    else users.set(name, hash);
  });
  return { users, problems };
}

/** The users file's text with NAME's line set to hash (replacing its old line in place, or appended). */
export function upsertUser(text: string, name: string, hash: string): string {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  let found = false;
  const out = lines.map((l) => {
    if (!found && l.trim().startsWith(`${name}:`)) {
      found = true;
      return `${name}:${hash}`;
    }
    return l;
  });
  if (!found) out.push(`${name}:${hash}`);
  return out.join('\n') + '\n';
}

/**
 * The users file as the UI sees it: re-read when its size or mtime changes,
 * so 'perimeter admin-user add' takes effect without a reload, and a removed
 * user's sessions end at their next request.
 */
export class UsersFile {
  private cached: { readonly key: string; readonly parsed: ParsedUsers } | undefined;

  constructor(readonly file: string) {}

  /** The accounts, or an error message (no secrets) when the file cannot be read. */
  async load(): Promise<ParsedUsers | { readonly error: string }> {
    try {
      const st = await stat(this.file);
      const key = `${st.size}:${st.mtimeMs}:${st.ino}`;
      if (this.cached?.key === key) return this.cached.parsed;
      const parsed = parseUsers(await readFile(this.file, 'utf8'), this.file);
      this.cached = { key, parsed };
      return parsed;
    } catch (err) {
      this.cached = undefined;
      const code = (err as NodeJS.ErrnoException).code;
      return { error: code === 'ENOENT' ? `${this.file} does not exist; create an account with 'perimeter admin-user add NAME'` : `cannot read ${this.file} (${code ?? 'error'})` };
    }
  }
}
