/**
 * The access log: one JSON line per request, Elastic Common Schema field
 * names as nested objects (what Filebeat, Vector and Fluent Bit expect), the
 * cluster's log policy applied. docs/logging.md lists every field.
 *
 * Writes never block the request path: lines are batched in memory and
 * handed to a SonicBoom (pino's destination), which writes whole lines
 * asynchronously with O_APPEND, so several worker processes share one file.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { destination } from 'pino';
import type { LogOmit } from '../config/types.js';
import type { RequestRecord } from '../web/proxy.js';

type Destination = ReturnType<typeof destination>;

/** ECS version the field names follow. */
const ECS_VERSION = '8.11.0';

/** Lines are handed to the destination in batches of about this many characters. */
const BATCH = 32 * 1024;
/** The destination holds back less than this until the flush timer (only the timer's small batches). */
const MIN_LENGTH = 4096;
const PIPE_BUF = 4096;
/** A quiet site's lines appear within this time. */
const FLUSH_EVERY_MS = 200;
/**
 * Largest single write(2). Buffered lines are written in chunks of whole
 * lines up to this size; on a local filesystem an O_APPEND write of any size
 * lands in one piece, so writers in other processes cannot tear a line.
 */
const MAX_WRITE = 256 * 1024;
/** Memory bound per process if the disk stalls; lines beyond it are dropped and counted. */
const MAX_BUFFERED = 64 * 1024 * 1024;

/**
 * Authorization schemes logged by name (IANA HTTP Authentication Scheme
 * registry and common extensions). Anything else is logged as "other": a
 * header without a scheme would otherwise put the credential itself in the log.
 */
const SCHEMES = new Map(
  ['Basic', 'Bearer', 'Digest', 'DPoP', 'GNAP', 'HOBA', 'Mutual', 'Negotiate', 'NTLM', 'OAuth', 'PrivateToken', 'SCRAM-SHA-1', 'SCRAM-SHA-256', 'vapid', 'AWS4-HMAC-SHA256', 'Token', 'ApiKey'].map(
    (s) => [s.toLowerCase(), s] as const,
  ),
);

const str = JSON.stringify;

function num(n: number): number {
  return Number.isFinite(n) ? n : 0;
}

// Under load many requests start in the same millisecond: format it once.
let isoMs = NaN;
let isoText = '';
function isoTime(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

function authorizationScheme(value: string): string {
  const sp = value.indexOf(' ');
  // No space: no scheme, the whole value may be a bare credential.
  if (sp <= 0) return 'other';
  return SCHEMES.get(value.slice(0, sp).toLowerCase()) ?? 'other';
}

/** Appends the names of a Cookie header's pairs (never values) as JSON strings. */
function cookieNames(value: string, out: string[]): void {
  let pos = 0;
  while (pos < value.length) {
    let end = value.indexOf(';', pos);
    if (end === -1) end = value.length;
    const eq = value.indexOf('=', pos);
    // A pair without '=' is all value (RFC 6265 §5.2 gives it an empty name).
    if (eq !== -1 && eq < end) {
      const name = value.slice(pos, eq).trim();
      if (name) out.push(str(name));
    }
    pos = end + 1;
  }
}

/** The query-free form of a referrer: scheme, host and path only. */
function stripQuery(url: string): string {
  const q = url.indexOf('?');
  const f = url.indexOf('#');
  const cut = q === -1 ? f : f === -1 ? q : Math.min(q, f);
  return cut === -1 ? url : url.slice(0, cut);
}

/**
 * The access log line of one request (without the newline). Pure: the
 * record is read, not changed. `omit` is the cluster's policy: 'query'
 * drops url.query and the referrer's query; 'cookies' and 'authorization'
 * drop the cookie names and the authorization scheme (values are never logged).
 */
export function accessLogLine(rec: RequestRecord, omit: readonly LogOmit[]): string {
  const omitQuery = omit.includes('query');
  const omitCookies = omit.includes('cookies');
  const omitAuthorization = omit.includes('authorization');

  let userAgent: string | undefined;
  let referrer: string | undefined;
  let cookies: string[] | undefined;
  let scheme: string | undefined;
  for (const h of rec.headers) {
    switch (h.name) {
      case 'user-agent':
        userAgent = h.value;
        break;
      case 'referer':
        referrer = h.value;
        break;
      case 'cookie':
        if (!omitCookies) cookieNames(h.value, (cookies ??= []));
        break;
      case 'authorization':
        if (!omitAuthorization) scheme = authorizationScheme(h.value);
        break;
    }
  }

  let s = '{"@timestamp":"' + isoTime(num(rec.startMs)) + '","ecs":{"version":"' + ECS_VERSION + '"}';
  s += ',"event":{"duration":' + Math.round(num(rec.durationMs) * 1e6) + '}';
  s += ',"client":{"ip":' + str(rec.clientIp) + ',"port":' + num(rec.clientPort) + '}';

  const target = rec.target;
  if (rec.host || target) {
    s += ',"url":{';
    let sep = '';
    if (rec.host) {
      s += '"domain":' + str(rec.host);
      sep = ',';
    }
    if (target) {
      const q = target.indexOf('?');
      s += sep + '"path":' + str(q === -1 ? target : target.slice(0, q));
      if (!omitQuery && q !== -1 && q < target.length - 1) s += ',"query":' + str(target.slice(q + 1));
    }
    s += '}';
  }

  s += ',"http":{';
  if (rec.httpVersion.startsWith('HTTP/')) s += '"version":' + str(rec.httpVersion.slice(5)) + ',';
  s += '"request":{"id":' + str(rec.requestId);
  if (rec.method) s += ',"method":' + str(rec.method);
  s += ',"bytes":' + num(rec.bytesIn);
  if (referrer !== undefined) s += ',"referrer":' + str(omitQuery ? stripQuery(referrer) : referrer);
  s += '},"response":{"status_code":' + num(rec.status) + ',"bytes":' + num(rec.bytesOut) + '}}';

  if (userAgent !== undefined) s += ',"user_agent":{"original":' + str(userAgent) + '}';
  if (rec.errorCode) s += ',"error":{"code":' + str(rec.errorCode) + '}';

  s += ',"perimeter":{"listener":' + str(rec.listener) + ',"cluster":' + str(rec.cluster);
  if (rec.site) s += ',"site":' + str(rec.site);
  if (rec.service) s += ',"service":' + str(rec.service);
  if (rec.backend) s += ',"backend":' + str(rec.backend);
  s += ',"attempts":' + num(rec.attempts) + ',"retries":' + num(rec.retries) + ',"panic":' + (rec.panic ? 'true' : 'false');
  if (rec.attempts > 0) {
    s += ',"upstream":{';
    if (rec.upstreamStatus > 0) s += '"status":' + rec.upstreamStatus + ',';
    s += '"duration_ms":' + Math.round(num(rec.upstreamMs) * 1000) / 1000 + '}';
  }
  if (rec.reason) s += ',"reason":' + str(rec.reason);
  if (cookies !== undefined && cookies.length > 0) s += ',"cookie_names":[' + cookies.join(',') + ']';
  if (scheme !== undefined) s += ',"authorization_scheme":"' + scheme + '"';
  return s + '}}';
}

/**
 * An open access log. One per process; every worker may open the same path.
 * Errors (disk full, a deleted directory on reopen) go to `onError` and never
 * throw into the request path.
 *
 * Lines are joined here into batches of whole lines and handed to SonicBoom
 * a batch at a time: SonicBoom measures its buffer on every write, which
 * costs more per line than building the line does.
 */
export class AccessLog {
  /** The absolute file path, or 'stdout'. */
  readonly path: string;
  private readonly dest: Destination;
  /** Largest batch handed to the destination (bytes on stdout, characters for a file). */
  private readonly batchLimit: number;
  private readonly timer: NodeJS.Timeout;
  private readonly onExit = (): void => this.handOver();
  /** Lines not yet handed to the destination. */
  private pending = '';
  private pendingLines = 0;
  /** Something was handed over since the last timer flush. */
  private dirty = false;
  private closing: Promise<void> | undefined;
  /** The destination is closed, or its file never opened. */
  private gone = false;
  private droppedLines = 0;
  /** The file has been opened once. */
  private ready: boolean;
  /** Lines handed over while the file was still being opened (lost if it never opens). */
  private linesBeforeReady = 0;

  private constructor(file: string, dest: Destination, batchLimit: number, onError: (err: Error) => void) {
    this.path = file;
    this.dest = dest;
    this.batchLimit = batchLimit;
    this.ready = file === 'stdout';
    dest.once('ready', () => {
      this.ready = true;
      this.linesBeforeReady = 0;
    });
    let lastError: Error | undefined;
    dest.on('error', (err: Error) => {
      // pino's own listener re-emits each error once; report it once.
      if (err === lastError) return;
      lastError = err;
      if (!this.ready) {
        // The file never opened: nothing can be written, and pino's exit hook must not try.
        this.gone = true;
        this.droppedLines += this.linesBeforeReady;
        dest.flushSync = () => {};
      }
      onError(err);
    });
    dest.on('drop', (data: string) => (this.droppedLines += countLines(data)));
    dest.once('close', () => (this.gone = true));
    this.timer = setInterval(() => {
      if (this.closing) return;
      this.handOver();
      if (this.dirty) {
        this.dirty = false;
        dest.flush();
      }
    }, FLUSH_EVERY_MS);
    this.timer.unref();
    // Before pino's own exit hook writes out the destination's buffer (process.exit in a worker).
    process.prependListener('exit', this.onExit);
  }

  /**
   * Open (create, append to) the access log at an absolute path, or 'stdout'.
   * The directory is created; a path that cannot be opened throws here, at
   * startup, with the system's reason, instead of failing every request later.
   */
  static open(file: string, opts: { onError?: (err: Error) => void } = {}): AccessLog {
    const onError = opts.onError ?? ((err: Error) => process.emitWarning(`access log: ${err.message}`));
    if (file === 'stdout') {
      // Writes of at most PIPE_BUF (4096) bytes stay atomic on a pipe shared with the event log.
      const dest = destination({ dest: 1, sync: false, minLength: 2048, maxWrite: PIPE_BUF, maxLength: MAX_BUFFERED });
      return new AccessLog(file, dest, PIPE_BUF, onError);
    }
    if (!path.isAbsolute(file)) throw new Error(`access log path '${file}' is not absolute`);
    mkdirSync(path.dirname(file), { recursive: true });
    closeSync(openSync(file, 'a'));
    const dest = destination({ dest: file, sync: false, append: true, mkdir: true, minLength: MIN_LENGTH, maxWrite: MAX_WRITE, maxLength: MAX_BUFFERED });
    return new AccessLog(file, dest, BATCH, onError);
  }

  /** Lines dropped: written after close(), or beyond the buffer limit when the disk could not keep up. */
  get dropped(): number {
    return this.droppedLines;
  }

  /** Queue one request's line; returns at once. */
  write(rec: RequestRecord, omit: readonly LogOmit[]): void {
    if (this.closing || this.gone) {
      this.droppedLines++;
      return;
    }
    this.writeLine(accessLogLine(rec, omit));
  }

  /** Queue one ready-made JSON line (no newline), e.g. a TCP session's (src/tcp/); returns at once. */
  writeLine(line: string): void {
    if (this.closing || this.gone) {
      this.droppedLines++;
      return;
    }
    const size = this.path === 'stdout' ? Buffer.byteLength(line) + 1 : line.length + 1;
    if (this.pendingLines > 0 && this.pending.length + size > this.batchLimit) this.handOver();
    this.pending += line;
    this.pending += '\n';
    this.pendingLines++;
    if (this.pending.length >= this.batchLimit) this.handOver();
  }

  private handOver(): void {
    if (this.pendingLines === 0) return;
    const batch = this.pending;
    const lines = this.pendingLines;
    this.pending = '';
    this.pendingLines = 0;
    if (this.gone) {
      this.droppedLines += lines;
      return;
    }
    try {
      this.dest.write(batch);
      this.dirty = true;
      if (!this.ready) this.linesBeforeReady += lines;
    } catch {
      // Only if the destination was torn down under us (process exit).
      this.droppedLines += lines;
    }
  }

  /**
   * Reopen the file by name (after logrotate renamed it). Lines buffered or
   * being written finish in the old file or go to the new one; none are lost.
   */
  reopen(): void {
    if (this.path === 'stdout' || this.closing || this.gone) return;
    this.handOver();
    this.dest.reopen();
  }

  /** Resolves when every line written so far is in the file. */
  flush(): Promise<void> {
    if (this.closing) return this.closing;
    this.handOver();
    if (this.gone) return Promise.resolve();
    this.dirty = false;
    // The callback also reports fsync errors (EINVAL on a pipe): the data is written either way.
    return new Promise((resolve) => {
      try {
        this.dest.flush(() => resolve());
      } catch {
        resolve();
      }
    });
  }

  /** Write out everything buffered, then close the file. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.handOver();
    clearInterval(this.timer);
    process.removeListener('exit', this.onExit);
    const dest = this.dest;
    this.closing = this.gone
      ? Promise.resolve()
      : new Promise((resolve) => {
          dest.once('close', () => resolve());
          // A write error while ending means no 'close' will follow.
          dest.once('error', () => resolve());
          try {
            dest.end();
          } catch {
            resolve();
          }
        });
    return this.closing;
  }
}

function countLines(data: string): number {
  let n = 0;
  for (let i = data.indexOf('\n'); i !== -1; i = data.indexOf('\n', i + 1)) n++;
  return n;
}
