/** Helpers for configuration tests: the repository root and throw-away config directories. */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run compiled from dist/test/config). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Write files (path relative to the dir → text) into a fresh temp directory. */
export async function configDir(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'perimeter-config-'));
  for (const [rel, text] of Object.entries(files)) {
    const p = path.join(dir, rel);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, text);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export const minimalPlatform = `clusters:
  web:
    listen: { http: ":8080" }
discovery:
  static:
    web-frontend: ["127.0.0.1:9001"]
`;
