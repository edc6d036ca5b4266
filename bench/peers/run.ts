// Running the peers (nft -f, iptables-{legacy,nft}-restore) on generated input inside a network namespace,
// timed. Root only (ip netns).

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, openSync, closeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KUBE_PROXY_IPTABLES_RESTORE_FLAGS } from '../../src/bench/peers/kubeproxy-iptables';

export interface RunPeerOptions {
  /** Network namespace to run in (`ip netns exec <netns> ...`). */
  netns: string;
  /** Kill the peer (its whole process group) after this long. Typically 120000. */
  timeoutMs: number;
  /**
   * How the input reaches the peer: 'file' (default) appends the input file's path to argv (or replaces a
   * final "-" argument with it); 'stdin' opens the file as the peer's stdin (how kube-proxy feeds both nft
   * and iptables-restore).
   */
  input?: 'file' | 'stdin';
}

export interface PeerResult {
  /** Wall time from spawn to exit, seconds; null when it timed out. */
  seconds: number | null;
  timedOut: boolean;
  /** Exit code; -1 when killed by a signal (incl. the timeout). */
  code: number;
  /** stderr (and stdout), trimmed to the last 64 KiB. */
  stderr: string;
}

/** argv prefixes for the peers as kube-proxy runs them (kube-proxy pipes the input; use input: 'stdin'). */
export const PEER_ARGV = {
  nft: ['nft', '-f', '-'],
  iptablesLegacy: ['iptables-legacy-restore', ...KUBE_PROXY_IPTABLES_RESTORE_FLAGS],
  iptablesNft: ['iptables-nft-restore', ...KUBE_PROXY_IPTABLES_RESTORE_FLAGS],
} as const;

const OUTPUT_KEEP = 64 * 1024;

/**
 * Write `input` to a temporary file, run `ip netns exec <netns> <argv...> [file]` (or with the file as stdin),
 * and time it with process.hrtime. The child gets its own process group, killed with SIGKILL on timeout.
 * The time includes `ip netns exec`'s own start-up (a few ms).
 */
export async function runPeer(argv: readonly string[], input: string, opts: RunPeerOptions): Promise<PeerResult> {
  if (argv.length === 0) throw new Error('runPeer: empty argv');
  const mode = opts.input ?? 'file';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'svcplane-peer-'));
  const file = path.join(dir, 'input');
  try {
    await fs.writeFile(file, input);
    const args = ['netns', 'exec', opts.netns, ...argv];
    if (mode === 'file') {
      if (args[args.length - 1] === '-') args[args.length - 1] = file; // e.g. `nft -f -` -> `nft -f FILE`
      else args.push(file);
    }
    const stdinFd = mode === 'stdin' ? openSync(file, 'r') : undefined;
    try {
      return await new Promise<PeerResult>((resolve, reject) => {
        let out = '';
        const keep = (chunk: Buffer): void => {
          out += chunk.toString('utf8');
          if (out.length > 2 * OUTPUT_KEEP) out = out.slice(-OUTPUT_KEEP);
        };
        const start = process.hrtime.bigint();
        const child = spawn('ip', args, {
          stdio: [stdinFd ?? 'ignore', 'pipe', 'pipe'],
          detached: true, // own process group, so the timeout can kill everything it started
        });
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          if (child.pid !== undefined) {
            try {
              process.kill(-child.pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
        }, opts.timeoutMs);
        child.stdout?.on('data', keep);
        child.stderr?.on('data', keep);
        child.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.on('close', (code, signal) => {
          const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
          clearTimeout(timer);
          resolve({
            seconds: timedOut ? null : elapsed,
            timedOut,
            code: code ?? (signal ? -1 : 0),
            stderr: out.length > OUTPUT_KEEP ? out.slice(-OUTPUT_KEEP) : out,
          });
        });
      });
    } finally {
      if (stdinFd !== undefined) closeSync(stdinFd);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function ipCmd(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Run a command inside a netns and return its stdout (rejects on non-zero exit). */
export function execInNetns(netns: string, argv: readonly string[]): Promise<string> {
  return ipCmd(['netns', 'exec', netns, ...argv]);
}

/**
 * Create a uniquely named network namespace with lo up, run fn in it, and delete the namespace afterwards,
 * also when fn throws.
 */
export async function withFreshNetns<T>(fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `svcplane-peer-${process.pid}-${randomBytes(4).toString('hex')}`;
  await ipCmd(['netns', 'add', ns]);
  let result: T;
  try {
    await ipCmd(['-n', ns, 'link', 'set', 'lo', 'up']);
    result = await fn(ns);
  } catch (err) {
    // Delete anyway, but report fn's error rather than a deletion error.
    await teardown(ns).catch(() => undefined);
    throw err;
  }
  await teardown(ns);
  return result;
}

// The kernel frees a deleted namespace's netfilter state asynchronously (in a kworker), which could overlap
// the next timed run; flushing the nftables ruleset first (nft and iptables-nft tables; ~0.1 s even for
// tens of thousands of chains) does most of that work synchronously. Best effort.
async function teardown(ns: string): Promise<void> {
  await ipCmd(['netns', 'exec', ns, 'nft', 'flush', 'ruleset']).catch(() => undefined);
  await ipCmd(['netns', 'del', ns]);
}
