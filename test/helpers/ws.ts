import type { WebSocket } from 'ws';

/** Send `messages` once `ws` is open and resolve with as many replies, in order. */
export function echoes(ws: WebSocket, messages: readonly string[]): Promise<string[]> {
  const replies: string[] = [];
  return new Promise((resolve, reject) => {
    ws.on('open', () => {
      for (const m of messages) ws.send(m);
    });
    ws.on('message', (m) => {
      replies.push(m.toString());
      if (replies.length === messages.length) resolve(replies);
    });
    ws.on('error', reject);
  });
}
