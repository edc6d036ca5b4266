// Runs the real CLI (bin/svcplane.js, the built dist/) as a user would, optionally inside a network namespace.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import type { Sandbox } from '../../scripts/lib/sandbox';

export const REPO = path.resolve(__dirname, '../..');
export const SVCPLANE = path.join(REPO, 'bin', 'svcplane.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function command(args: string[], netns?: string): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, process.execPath, SVCPLANE, ...args]] : [process.execPath, [SVCPLANE, ...args]];
}

// Never spawnSync: a blocked worker reads no IPC, and when it wakes, timers run before I/O, so vitest's fixed 60 s
// worker->main RPC timeout ("Timeout calling onTaskUpdate") fires although the answer sits unread in the pipe. A few
// CLI runs in a row took over 60 s in the TCG guest when two CI runs shared the host's 2 cores.
export function svcplane(args: string[], opts: { netns?: string } = {}): Promise<CliResult> {
  const [file, argv] = command(args, opts.netns);
  return new Promise((resolve) => {
    execFile(file, argv, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** svcplane(), for set-up steps that must succeed: its stdout, or a throw naming the command and its stderr. */
export async function svcplaneOk(args: string[], opts: { netns?: string } = {}): Promise<string> {
  const r = await svcplane(args, opts);
  if (r.code !== 0) throw new Error(`svcplane ${args[0]} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A command in one of the sandbox's namespaces that must succeed (nft, ipvsadm as verifiers): its stdout. */
export async function execOk(sb: Sandbox, ns: string, argv: string[]): Promise<string> {
  const r = await sb.exec(ns, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
