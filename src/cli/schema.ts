/**
 * `perimeter schema [platform|site]`: the JSON Schema of the configuration
 * files, generated from the validator's own schemas, for editor completion
 * (e.g. yaml-language-server's `# yaml-language-server: $schema=...`).
 */
import { jsonSchema } from '../config/schema.js';

export const help = `Usage: perimeter schema [platform|site]

Print the JSON Schema (draft 2020-12) of the configuration files:
  platform   perimeter.yaml
  site       a file in sites/
  (none)     both, as $defs/platform and $defs/site
`;

export async function run(argv: string[]): Promise<number> {
  const [which, ...extra] = argv;
  if (extra.length > 0 || (which !== undefined && which !== 'platform' && which !== 'site')) {
    process.stderr.write(`perimeter schema: expected 'platform', 'site' or nothing\n\n${help}`);
    return 2;
  }
  process.stdout.write(JSON.stringify(jsonSchema(which ?? 'all'), null, 2) + '\n');
  return 0;
}
