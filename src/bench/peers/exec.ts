// Running a kube-proxy-shaped peer (nft -f, iptables-restore) inside the bench's throwaway namespace, timed:
// `nsenter --net=/proc/PID/fd/N` (util-linux) enters the namespace, the input is piped in as kube-proxy pipes it.
// Peers are the bench's yardsticks only (--peers): svcplane itself never runs them.
import { execFile, spawn } from 'node:child_process';

export interface PeerRun {
  /** Wall time from spawn to exit; null when it failed or timed out. */
  seconds: number | null;
  /** Why there is no figure: not installed, exit status and stderr's tail, timeout. */
  error?: string;
  /** It was stopped at the time limit (a benchmark's ratio is then a lower bound). */
  timedOut?: true;
}

export function runPeerInNetns(netns: string, argv: readonly string[], input: string, timeoutMs: number): Promise<PeerRun> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('nsenter', [`--net=${netns}`, '--', ...argv], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let settled = false;
    const done = (r: PeerRun) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done({ seconds: null, error: `still running after ${timeoutMs / 1000} s: stopped`, timedOut: true });
    }, timeoutMs);
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('error', (e: NodeJS.ErrnoException) => done({ seconds: null, error: e.code === 'ENOENT' ? 'nsenter is not installed (util-linux)' : e.message }));
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code === 0) done({ seconds });
      // nsenter's exec failing ("No such file or directory") means the peer is not installed.
      else done({ seconds: null, error: /failed to execute|No such file/.test(stderr) ? `${argv[0]} is not installed` : `exit ${code}: ${stderr.trim().split('\n').slice(-2).join(' ')}` });
    });
    child.stdin.on('error', () => undefined); // a peer that exits early closes its stdin: its exit says why
    child.stdin.end(input);
  });
}

/**
 * A command in a namespace, its stdout back (a benchmark's set-up and checks: `ip link add`, `conntrack -L`,
 * `iptables -F`); rejects, with stderr, when it fails.
 */
export function execInNetns(netns: string, argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nsenter', [`--net=${netns}`, '--', ...argv], { maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')} (in ${netns}): ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}
