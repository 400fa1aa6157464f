/**
 * `perimeter run DIR`: load, validate and serve a configuration directory
 * with a control process and one data-plane worker per core.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/values.js';
import { Control } from '../core/control.js';
import { createLogger } from '../core/log.js';

export const help = `Usage: perimeter run [options] DIR

Serve the configuration in DIR (perimeter.yaml and sites/*.yaml).

Options:
  --workers N         data-plane worker processes (default: one per core, ${availableParallelism()} here);
                      0 serves from this one process
  --drain-timeout D   on SIGTERM/SIGINT, how long in-flight requests may take (default 10s)
  --no-watch          do not reload when files in DIR change
  --log-level LEVEL   trace|debug|info|warn|error (default info, or $PERIMETER_LOG_LEVEL)
  -h, --help          this help

Reloads: SIGHUP, a change of perimeter.yaml or sites/*.yaml (debounced),
'perimeter reload', or POST /api/reload on the admin listener. A
configuration that fails validation, or that a worker cannot serve (e.g. a
listener address in use), is refused and the running one keeps serving.

Signals: SIGTERM and SIGINT stop accepting, let in-flight requests finish
within the drain timeout, and exit. SIGUSR1 reopens the access log (after
logrotate). A worker that dies is replaced.

Exit status: 0 after a clean shutdown, 1 invalid configuration, 2 usage
error, 3 runtime failure (e.g. a listener could not bind).
`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'log-level': { type: 'string' },
        'drain-timeout': { type: 'string' },
        workers: { type: 'string' },
        'no-watch': { type: 'boolean' },
      },
    });
  } catch (e) {
    process.stderr.write(`perimeter run: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  const dir = parsed.positionals[0];
  if (!dir || parsed.positionals.length > 1) {
    process.stderr.write(`perimeter run: expected one configuration directory\n\n${help}`);
    return 2;
  }
  let drainMs = 10_000;
  let workers = availableParallelism();
  try {
    if (parsed.values['drain-timeout']) {
      const d = parseDuration(parsed.values['drain-timeout']);
      if (!d.ok) throw new Error(`--drain-timeout: ${d.message} (${d.fix})`);
      drainMs = d.value;
    }
    if (parsed.values.workers !== undefined) {
      if (!/^\d{1,3}$/.test(parsed.values.workers)) throw new Error(`--workers wants a number from 0 to 999, got '${parsed.values.workers}'`);
      workers = Number(parsed.values.workers);
    }
  } catch (e) {
    process.stderr.write(`perimeter run: ${(e as Error).message}\n`);
    return 2;
  }
  const log = createLogger({ level: parsed.values['log-level'] });
  const control = new Control({ dir, workers, log, drainMs, watch: !parsed.values['no-watch'] });
  const failed = await control.start();
  if (failed !== undefined) {
    log.flush();
    return failed;
  }
  const onHup = (): void => void control.reload('signal');
  const onUsr1 = (): void => control.reopenLogs();
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      void control.stop(signal).then(() => {
        process.off('SIGHUP', onHup);
        process.off('SIGUSR1', onUsr1);
        log.flush();
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
