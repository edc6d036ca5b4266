// Runs the real CLI (bin/svcplane.js, the built dist/) as a user would, optionally inside a network namespace.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { Sandbox } from '../../scripts/lib/sandbox';

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

/** svcplane(), for set-up steps that must succeed: its stdout, or a throw naming the command and its stderr. */
export function svcplaneOk(args: string[], opts: { netns?: string } = {}): string {
  const r = svcplane(args, opts);
  if (r.code !== 0) throw new Error(`svcplane ${args[0]} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A command in one of the sandbox's namespaces that must succeed (nft, ipvsadm as verifiers): its stdout. */
export async function execOk(sb: Sandbox, ns: string, argv: string[]): Promise<string> {
  const r = await sb.exec(ns, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
