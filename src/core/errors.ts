/**
 * The error catalogue: every answer perimeter gives on its own behalf has a
 * stable code here. Logs, metrics, retry logic and tests match codes, never
 * message text. One line per error: code, HTTP status, where the fault lies,
 * whether a retry on another backend is allowed, and the message users see.
 */
export type ErrorSource = 'downstream' | 'upstream' | 'internal' | 'config';

export interface ErrorDef {
  readonly code: string;
  readonly status: number;
  readonly source: ErrorSource;
  /** A retry on another backend is allowed (still subject to idempotency and budget). */
  readonly retryable: boolean;
  readonly message: string;
}

function def(code: string, status: number, source: ErrorSource, retryable: boolean, message: string): ErrorDef {
  return Object.freeze({ code, status, source, retryable, message });
}

export const Errors = Object.freeze({
  // Client (downstream) faults: answered, connection closed, never forwarded.
  BAD_REQUEST: def('PRM_BAD_REQUEST', 400, 'downstream', false, 'The request is malformed.'),
  SMUGGLING: def('PRM_AMBIGUOUS_FRAMING', 400, 'downstream', false, 'The request has ambiguous or invalid message framing.'),
  BAD_CHUNK: def('PRM_BAD_CHUNK', 400, 'downstream', false, 'The request body has an invalid chunk.'),
  BAD_HEADER: def('PRM_BAD_HEADER', 400, 'downstream', false, 'A request header is malformed.'),
  HOST_MISMATCH: def('PRM_HOST_MISMATCH', 400, 'downstream', false, 'The request target and the Host header disagree.'),
  MISSING_HOST: def('PRM_MISSING_HOST', 400, 'downstream', false, 'The request has no Host header.'),
  URI_TOO_LONG: def('PRM_URI_TOO_LONG', 414, 'downstream', false, 'The request target is too long.'),
  HEADERS_TOO_LARGE: def('PRM_HEADERS_TOO_LARGE', 431, 'downstream', false, 'The request headers are too large or too many.'),
  BODY_TOO_LARGE: def('PRM_BODY_TOO_LARGE', 413, 'downstream', false, 'The request body is too large.'),
  HEADER_TIMEOUT: def('PRM_HEADER_TIMEOUT', 408, 'downstream', false, 'The request headers did not arrive in time.'),
  METHOD_NOT_ALLOWED: def('PRM_METHOD_NOT_SUPPORTED', 501, 'downstream', false, 'The request method is not supported.'),
  VERSION_NOT_SUPPORTED: def('PRM_HTTP_VERSION', 505, 'downstream', false, 'The HTTP version is not supported.'),
  // Routing.
  UNKNOWN_SITE: def('PRM_UNKNOWN_SITE', 421, 'downstream', false, 'No site is configured for this host on this listener.'),
  // Upstream faults.
  NO_BACKEND: def('PRM_NO_BACKEND', 503, 'upstream', false, 'No backend is available for this site.'),
  PANIC_FAIL_FAST: def('PRM_PANIC_FAIL_FAST', 503, 'upstream', false, 'Too few healthy backends; this site is configured to fail fast.'),
  UPSTREAM_CONNECT: def('PRM_UPSTREAM_CONNECT', 502, 'upstream', true, 'Could not connect to a backend.'),
  UPSTREAM_CONNECT_TIMEOUT: def('PRM_UPSTREAM_CONNECT_TIMEOUT', 504, 'upstream', true, 'Connecting to a backend timed out.'),
  UPSTREAM_RESET: def('PRM_UPSTREAM_RESET', 502, 'upstream', true, 'The backend closed the connection before answering.'),
  UPSTREAM_TIMEOUT: def('PRM_UPSTREAM_TIMEOUT', 504, 'upstream', false, 'The backend did not answer in time.'),
  UPSTREAM_PROTOCOL: def('PRM_UPSTREAM_PROTOCOL', 502, 'upstream', false, 'The backend sent an invalid response.'),
  UPGRADE_NOT_SUPPORTED: def('PRM_UPGRADE_NOT_SUPPORTED', 501, 'config', false, "This site's backends are spoken to over HTTP/2 (h2c), which cannot carry a protocol upgrade such as a websocket."),
  // Ours.
  INTERNAL: def('PRM_INTERNAL', 500, 'internal', false, 'perimeter hit an internal error.'),
  SHUTTING_DOWN: def('PRM_SHUTTING_DOWN', 503, 'internal', false, 'perimeter is shutting down.'),
} satisfies Record<string, ErrorDef>);

export type ErrorName = keyof typeof Errors;

/** An error carrying a catalogue entry; thrown or passed where a code must survive. */
export class PerimeterError extends Error {
  readonly def: ErrorDef;
  constructor(d: ErrorDef, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${d.message} ${detail}` : d.message, options);
    this.def = d;
    this.name = 'PerimeterError';
  }
  get code(): string {
    return this.def.code;
  }
}
