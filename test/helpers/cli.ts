// Runs the real CLI (bin/svcplane.js, the built dist/) as a user would, optionally inside a network namespace.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '../..');
export const SVCPLANE = path.join(REPO, 'bin', 'svcplane.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function svcplane(args: string[], opts: { netns?: string } = {}): CliResult {
  const argv = opts.netns ? ['netns', 'exec', opts.netns, process.execPath, SVCPLANE, ...args] : [SVCPLANE, ...args];
  const r = spawnSync(opts.netns ? 'ip' : process.execPath, argv, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
