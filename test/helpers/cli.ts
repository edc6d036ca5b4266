// Runs the real CLI (bin/svcplane.js, the built dist/) as a user would, optionally inside a network namespace.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
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

/**
 * In the qemu guest (SVCPLANE_IN_GUEST=1, or SVCPLANE_CLI_IN_PROCESS=1 anywhere) CLI runs are main() of the very
 * dist/ build bin/svcplane.js runs, called in the test's own process, a namespace given as `--netns /run/netns/NS`
 * instead of `ip netns exec`: under TCG with the host's root over 9p a new node process spends 2-7 s loading
 * modules before it does anything (measured 2026-12-03: `sync --once` of deploy/examples 5-7 s in the guest, 0.3 s
 * here), and the guest's suites start hundreds of them. What the guest proves is what the kernel accepts and does;
 * the process boundary (exit codes, stderr, flags) is proven by the same suites on the host, where every run is a
 * process. SVCPLANE_CLI_IN_PROCESS=0 makes every run a process in the guest too; `{ process: true }` does for one.
 */
const IN_PROCESS = process.env.SVCPLANE_CLI_IN_PROCESS === '1' || (process.env.SVCPLANE_IN_GUEST === '1' && process.env.SVCPLANE_CLI_IN_PROCESS !== '0');

type Main = (argv: string[]) => Promise<number>;
let cliMain: Main | undefined;
/** In-process runs one at a time: each borrows process.stdout/stderr.write for its output. */
let inProcessQueue: Promise<unknown> = Promise.resolve();

function svcplaneHere(args: string[], netns?: string): Promise<CliResult> {
  cliMain ??= (createRequire(path.join(REPO, 'package.json'))(path.join(REPO, 'dist', 'src', 'cli', 'main.js')) as { main: Main }).main;
  const main = cliMain;
  const argv = netns ? [...args, '--netns', path.join('/run/netns', netns)] : args;
  const run = async (): Promise<CliResult> => {
    const out: string[] = [];
    const err: string[] = [];
    const [w1, w2] = [process.stdout.write, process.stderr.write];
    process.stdout.write = ((c: string | Uint8Array) => (out.push(String(c)), true)) as typeof process.stdout.write;
    process.stderr.write = ((c: string | Uint8Array) => (err.push(String(c)), true)) as typeof process.stderr.write;
    try {
      const code = await main(argv);
      return { code, stdout: out.join(''), stderr: err.join('') };
    } catch (e) {
      // What bin/svcplane.js prints for a rejection, with its exit code.
      return { code: 1, stdout: out.join(''), stderr: `${err.join('')}svcplane: ${(e as Error).message}\n` };
    } finally {
      process.stdout.write = w1;
      process.stderr.write = w2;
    }
  };
  const result = inProcessQueue.then(run, run);
  inProcessQueue = result.catch(() => undefined);
  return result;
}

// Never spawnSync: a blocked worker reads no IPC, and when it wakes, timers run before I/O, so vitest's fixed 60 s
// worker->main RPC timeout ("Timeout calling onTaskUpdate") fires although the answer sits unread in the pipe. A few
// CLI runs in a row took over 60 s in the TCG guest when two CI runs shared the host's 2 cores.
export function svcplane(args: string[], opts: { netns?: string; process?: boolean } = {}): Promise<CliResult> {
  if (IN_PROCESS && !opts.process) return svcplaneHere(args, opts.netns);
  const [file, argv] = command(args, opts.netns);
  return new Promise((resolve) => {
    execFile(file, argv, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** svcplane(), for set-up steps that must succeed: its stdout, or a throw naming the command and its stderr. */
export async function svcplaneOk(args: string[], opts: { netns?: string; process?: boolean } = {}): Promise<string> {
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
