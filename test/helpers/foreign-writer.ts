// Another nftables writer in a namespace: a separate process committing in a loop through its own netlink socket
// (svcplane's addon and record encoder from dist/, so the rate is the kernel's, not a process spawn's per commit),
// as a second agent, iptables-nft or a firewall daemon would. Its commits touch chains in a table of svcplane's
// family made before svcplane's (so it sits ahead of svcplane's table in the kernel's list, where a family-wide
// chain dump counts it) and a table of svcplane's other family.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from './cli';

export const EARLY_TABLE = 'aaa-early';

const SCRIPT = `
const dist = ${JSON.stringify(path.join(REPO, 'dist', 'src', 'dataplane', 'nftables'))};
const { NetlinkNftClient } = require(dist + '/client.js');
const { NftTransaction } = require(dist + '/transaction.js');
const [netns, table, rate, earlyChains, churn] = process.argv.slice(1);
(async () => {
  const c = new NetlinkNftClient({ netns });
  const setup = new NftTransaction();
  setup.addTable(2, table);
  for (let i = 0; i < Number(earlyChains); i++) setup.addChain(2, table, { name: 'early-' + i });
  await c.run(setup);
  const add = new NftTransaction();
  add.addChain(2, table, { name: 'churn' });
  add.addTable(10, 'foreign');
  const del = new NftTransaction();
  del.deleteChain(2, table, 'churn');
  del.deleteTable(10, 'foreign');
  const gapMs = Number(rate) > 0 ? 1000 / Number(rate) : 0;
  const t0 = Date.now();
  let n = 0;
  const report = () => process.stdout.write(n + ' ' + (Date.now() - t0) + '\\n');
  report();
  setInterval(report, 200);
  for (;;) {
    await c.run(n % 2 === 0 ? add : del);
    n++;
    const wait = t0 + n * gapMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
})().catch((e) => { console.error(e); process.exit(1); });
`;

export class ForeignWriter {
  private child: ChildProcess | undefined;
  private last = { commits: 0, ms: 0 };

  /**
   * ratePerSecond: commits per second at most (0: as fast as the kernel takes them). earlyChains: chains the early
   * table holds, so that svcplane's chains come late in a family-wide chain dump, parts after the first. churn:
   * what each pair of commits does (see SCRIPT); 'front' needs earlyChains.
   */
  constructor(
    private readonly netnsPath: string,
    private readonly options: { ratePerSecond?: number; earlyChains?: number; churn?: 'tail' | 'front' } = {},
  ) {}

  /** Starts the writer; resolves once its early table exists (before svcplane's, when svcplane's is not there yet). */
  async start(): Promise<void> {
    const args = [this.netnsPath, EARLY_TABLE, String(this.options.ratePerSecond ?? 0), String(this.options.earlyChains ?? 0), this.options.churn ?? 'tail'];
    const child = spawn(process.execPath, ['-e', SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.child = child;
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          const [commits, ms] = l.split(' ').map(Number);
          this.last = { commits, ms };
        }
        resolve();
      });
      child.on('exit', (code) => reject(new Error(`foreign writer exited (${code})`)));
    });
  }

  get commits(): number {
    return this.last.commits;
  }

  /** Commits per second since start (as of its last report, every 200 ms). */
  rate(): number {
    return this.last.commits / Math.max(0.001, this.last.ms / 1000);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}
