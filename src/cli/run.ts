/**
 * `perimeter run DIR`: load, validate and serve a configuration directory.
 * SIGHUP reloads it (a config that fails validation is refused and the
 * running one keeps serving); SIGTERM/SIGINT drain and exit.
 */
import { parseArgs } from 'node:util';
import { formatIssue, loadConfig } from '../config/load.js';
import { createLogger } from '../core/log.js';
import { Runtime } from '../core/runtime.js';

export const help = `Usage: perimeter run [options] DIR

Serve the configuration in DIR (perimeter.yaml and sites/*.yaml).

Options:
  --log-level LEVEL   trace|debug|info|warn|error (default info, or $PERIMETER_LOG_LEVEL)
  --drain-timeout D   on SIGTERM, how long in-flight requests may take (default 10s)
  -h, --help          this help

Signals: SIGHUP reloads DIR; SIGTERM and SIGINT stop accepting, finish
in-flight requests within the drain timeout, and exit.

Exit status: 0 after a clean shutdown, 1 invalid configuration, 2 usage
error, 3 runtime failure (e.g. a listener could not bind).
`;

export interface Started {
  runtime: Runtime;
  stop(): Promise<void>;
}

function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(s);
  if (!m) throw new Error(`invalid duration '${s}' (e.g. 10s)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { 'log-level': { type: 'string' }, 'drain-timeout': { type: 'string' } },
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
  try {
    if (parsed.values['drain-timeout']) drainMs = parseDuration(parsed.values['drain-timeout']);
  } catch (e) {
    process.stderr.write(`perimeter run: ${(e as Error).message}\n`);
    return 2;
  }
  const log = createLogger({ level: parsed.values['log-level'] });
  const loaded = await loadConfig(dir);
  if (!loaded.ok) {
    for (const i of loaded.issues) process.stderr.write(formatIssue(i) + '\n');
    process.stderr.write(`perimeter run: ${loaded.issues.length} configuration error(s) in ${dir}; nothing started\n`);
    return 1;
  }
  for (const w of loaded.warnings) log.warn({ file: w.file, line: w.line, column: w.column }, w.message);
  const runtime = new Runtime({ log });
  try {
    await runtime.apply(loaded.snapshot);
  } catch (e) {
    process.stderr.write(`perimeter run: ${(e as Error).message}\n`);
    await runtime.close(0);
    return 3;
  }

  let reloading = Promise.resolve();
  const reload = (): void => {
    reloading = reloading.then(async () => {
      const next = await loadConfig(dir);
      if (!next.ok) {
        log.error(
          { event: { action: 'config-refused' }, errors: next.issues.map(formatIssue) },
          `reload refused: ${next.issues.length} configuration error(s); generation ${runtime.generation} keeps serving`,
        );
        return;
      }
      try {
        await runtime.apply(next.snapshot);
      } catch (e) {
        log.error({ event: { action: 'config-refused' }, err: (e as Error).message }, `reload refused: ${(e as Error).message}`);
      }
    });
  };
  process.on('SIGHUP', reload);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ event: { action: 'shutdown' }, signal }, `${signal}: draining (up to ${drainMs} ms)`);
      void runtime.close(drainMs).then(() => {
        process.off('SIGHUP', reload);
        log.info({ event: { action: 'stopped' } }, 'stopped');
        log.flush();
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
