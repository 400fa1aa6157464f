/**
 * Responses perimeter writes on its own behalf: a stable code, a short body
 * in HTML or JSON (by Accept), the request id, and never anything from the
 * request echoed back unescaped.
 */
import type { ErrorDef } from '../core/errors.js';

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  421: 'Misdirected Request',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Error';
}

export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const j = accept.indexOf('application/json');
  if (j === -1) return false;
  const h = accept.indexOf('text/html');
  return h === -1 || j < h;
}

/** The whole response (head and body) as one buffer, ready to write. */
export function errorResponse(def: ErrorDef, requestId: string, json: boolean, close: boolean, extraHeaders = ''): Buffer {
  const body = json
    ? JSON.stringify({ error: { code: def.code, status: def.status, message: def.message, request_id: requestId } }) + '\n'
    : `<!doctype html><html><head><title>${def.status} ${reasonPhrase(def.status)}</title></head><body><h1>${def.status} ${reasonPhrase(def.status)}</h1><p>${def.message}</p><p>Error code: <code>${def.code}</code><br>Request id: <code>${requestId}</code></p></body></html>\n`;
  const head =
    `HTTP/1.1 ${def.status} ${reasonPhrase(def.status)}\r\n` +
    `Content-Type: ${json ? 'application/json' : 'text/html; charset=utf-8'}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    `X-Request-Id: ${requestId}\r\n` +
    `X-Perimeter-Error: ${def.code}\r\n` +
    'Cache-Control: no-store\r\n' +
    extraHeaders +
    `Connection: ${close ? 'close' : 'keep-alive'}\r\n\r\n`;
  return Buffer.from(head + body, 'latin1');
}
