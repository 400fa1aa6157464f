#!/usr/bin/env node
/**
 * perimeter CLI entry point: one file per command in this folder, each
 * exporting `run(argv): Promise<number>` (the exit status) and `help`.
 */
import { pathToFileURL } from 'node:url';

interface Command {
  readonly summary: string;
  load(): Promise<{ run(argv: string[]): Promise<number>; help: string }>;
}

const commands: Record<string, Command> = {
  run: { summary: 'run perimeter on a configuration directory', load: () => import('./run.js') },
  validate: { summary: 'check a configuration directory; exit 1 listing every error', load: () => import('./validate.js') },
  schema: { summary: 'print the JSON Schema of perimeter.yaml and site files', load: () => import('./schema.js') },
  sites: { summary: 'the site inventory: cluster, service, owner, listeners, TLS, source file', load: () => import('./sites.js') },
  tcp: { summary: 'the TCP proxy listeners: address, service, allowlist, PROXY protocol, limits, source file', load: () => import('./tcp.js') },
  explain: { summary: 'what perimeter would do with a request, and why (sends nothing)', load: () => import('./explain.js') },
  reload: { summary: 'make the running perimeter reload its configuration', load: () => import('./reload.js') },
  allow: { summary: 'add, remove, list and check allowlist entries (through the admin API)', load: () => import('./allow.js') },
  'admin-user': { summary: 'add, remove or list admin web UI accounts (admin.users-file)', load: () => import('./admin-user.js') },
};

export const usage = `perimeter — a self-service network perimeter

Usage: perimeter <command> [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}

Run 'perimeter <command> --help' for a command's options.

Exit status: 0 success, 1 the command's check failed (e.g. invalid config),
2 usage error, 3 runtime failure (e.g. a listener could not bind).
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage);
    return name ? 0 : 2;
  }
  if (name === '--version') {
    process.stdout.write('perimeter 0.1.0\n');
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`perimeter: unknown command '${name}'\n\n${usage}`);
    return 2;
  }
  const mod = await cmd.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(mod.help);
    return 0;
  }
  return mod.run(rest);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`perimeter: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 3;
    },
  );
}
