/**
 * The event log: what perimeter itself does (config applied, backend
 * health changes, panic mode, listeners). JSON lines with ECS-style field
 * names so any shipper can take them. Per-request records go to the access
 * log, not here.
 */
import { pino, destination, stdTimeFunctions, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: number | string } = {}): Logger {
  const level = opts.level ?? process.env.PERIMETER_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      // No base fields: 'service' in our records is the upstream service name.
      base: undefined,
      messageKey: 'message',
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ log: { level: label } }) },
    },
    destination({ dest: opts.destination ?? 1, sync: false }),
  );
}

/** A logger that drops everything (tests, embedding). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
