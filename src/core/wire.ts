/**
 * Snapshots cross the control → worker IPC channel as JSON; Maps are tagged
 * so they come back as Maps. The snapshot holds only plain data.
 */
import type { Snapshot } from '../config/types.js';

/** Workers get no admin section: they run no admin listener and need no token. */
export function encodeSnapshot(s: Snapshot): string {
  return JSON.stringify({ ...s, admin: undefined, allowlists: s.allowlists.kind === 'postgres' ? { kind: 'postgres', url: '' } : s.allowlists }, (_k, v: unknown) => (v instanceof Map ? { $map: [...v.entries()] } : v));
}

export function decodeSnapshot(text: string): Snapshot {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v !== null && typeof v === 'object' && '$map' in v && Array.isArray((v as { $map: unknown }).$map)) {
      return new Map((v as { $map: [unknown, unknown][] }).$map);
    }
    return v;
  }) as Snapshot;
}
