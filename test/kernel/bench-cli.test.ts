// `svcplane bench` as a user runs it (issue 16): a small run of each mode completes in a throwaway namespace and its
// JSON validates against the published schema; bad flags get clear errors (exit 2); a namespace holding svcplane's
// table is refused; an interrupted run removes what it made. No timing is asserted (timings belong in benchmarks).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BENCH_SCHEMA, type BenchReport } from '../../src/bench/schema';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { NFPROTO_IPV4 } from '../../src/dataplane/nftables/netlink/constants';
import { SVCPLANE, svcplane } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('svcplane bench');
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(BENCH_SCHEMA);

/** The host namespace's nftables tables, as `nft list tables` would name them. */
async function hostTables(): Promise<string[]> {
  const c = new NetlinkNftClient();
  try {
    return (await c.dumpTable(NFPROTO_IPV4, 'svcplane')) ? ['ip svcplane'] : [];
  } finally {
    c.close();
  }
}

/** Runs `svcplane bench ... --output json` as a process; its report, validated. */
async function benchJson(args: string[]): Promise<BenchReport> {
  const r = await svcplane(['bench', ...args, '--output', 'json'], { process: true });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as BenchReport;
  expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
  return report;
}

describe.runIf(haveRoot)('svcplane bench', () => {
  let before: string[];
  beforeAll(async () => {
    before = await hostTables();
  });
  afterAll(async () => {
    // Nothing of the bench's in the host's own namespace, before or after.
    expect(await hostTables()).toEqual(before);
  });

  it('nftables: a full sync and a churn phase at two sizes, in a throwaway namespace, peers beside; the JSON fits the schema; the plot', async () => {
    const plot = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-bench-')), 'bench.svg');
    const r = await benchJson(['--mode', 'nftables', '--services', '20,5', '--endpoints', '3', '--duration', '1s', '--churn', '50/s', '--plot', plot, '--peers']);
    expect(r.netns).toBe('throwaway');
    // The plot: a line per figure of the mode, a point per size.
    const svg = fs.readFileSync(plot, 'utf8');
    expect(svg).toContain('nftables: full sync');
    expect(svg).toContain('nftables: change p99 at 50/s');
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    // --peers: kube-proxy's nft -f and iptables-restore of the same Services, each size, each loaded.
    expect(r.peers!.map((p) => [p.services, p.tool, p.error])).toEqual([[5, 'nft -f', undefined], [5, 'iptables-restore', undefined], [20, 'nft -f', undefined], [20, 'iptables-restore', undefined]]);
    for (const p of r.peers!) expect(p.seconds).toBeGreaterThan(0);
    expect(r.cases.map((c) => [c.mode, c.services, c.endpointsPerService])).toEqual([['nftables', 5, 3], ['nftables', 20, 3]]);
    for (const c of r.cases) {
      expect(c.fullSync!.operations).toBeGreaterThan(c.services);
      expect(c.fullSync!.netlinkMessages).toBeGreaterThan(c.services);
      expect(c.fullSync!.kernelFloorSeconds).toBeGreaterThan(0);
      expect(Object.keys(c.fullSync!.phases)).toEqual(expect.arrayContaining(['build', 'diff', 'encode', 'kernel']));
      // 50/s for 1 s: 50 changes, every one programmed by some sync, the kinds a rollout makes.
      expect(c.churn!.changes).toBe(50);
      expect(c.churn!.syncs).toBeGreaterThan(0);
      expect(Object.keys(c.churn!.byKind)).toEqual(expect.arrayContaining(['endpoint added', 'endpoint terminating', 'endpoint removed']));
      expect(c.churn!.perChange.operations).toBeGreaterThan(0);
    }
  });

  it('ebpf: the socket-LB maps too, in a cgroup and bpffs directory of its own that are gone afterwards; --mode all reports IPVS as skipped with why when the kernel lacks it', async () => {
    const r = await benchJson(['--mode', 'all', '--services', '10', '--duration', '500ms', '--churn', '20/s', '--warmup', '300ms']);
    expect(r.cases.map((c) => c.mode)).toEqual(['nftables', 'ebpf', 'ipvs']);
    // --warmup: an unrecorded churn first; the figures hold the recorded 500 ms only (20/s: 10 changes).
    expect(r.options.warmupSeconds).toBe(0.3);
    for (const c of r.cases.filter((x) => !x.skipped)) expect(c.churn!.changes).toBe(10);
    const ebpf = r.cases.find((c) => c.mode === 'ebpf')!;
    expect(ebpf.skipped).toBeUndefined();
    expect(ebpf.fullSync!.phases.socketLB).toBeGreaterThan(0);
    expect(ebpf.fullSync!.socketLBFloorSeconds).toBeGreaterThan(0);
    expect(ebpf.fullSync!.socketLBEntries).toBeGreaterThan(10);
    const ipvs = r.cases.find((c) => c.mode === 'ipvs')!;
    if (!fs.existsSync('/proc/net/ip_vs')) expect(ipvs.skipped).toMatch(/no IPVS/);
    expect(fs.readdirSync('/sys/fs/bpf').filter((d) => d.startsWith('svcplane-bench-'))).toEqual([]);
  });

  it('a terminal gets a live line (case, phase, elapsed, time left) rewritten in place; a pipe gets none', async () => {
    // `script` gives the run a pseudo-terminal; its stdout is both streams of the run.
    const tty = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', `${process.execPath} ${SVCPLANE} bench --services 5 --duration 1200ms --churn 10/s --warmup 1100ms`, '/dev/null'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`script exited ${code}: ${out}`))));
    });
    expect(tty).toContain('\r\x1b[K[1/1] nftables 5: full sync (');
    expect(tty).toMatch(/\r\x1b\[K\[1\/1\] nftables 5: warm-up \(\d+ s, \d+ s left\)/);
    expect(tty).toMatch(/\r\x1b\[K\[1\/1\] nftables 5: churn \(\d+ s, \d+ s left\)/);
    expect(tty).toContain('svcplane bench: nftables at 5 Services');
    const piped = await svcplane(['bench', '--services', '5', '--duration', '200ms'], { process: true });
    expect(piped.stderr).toBe('');
  });

  it('bad flags: exit 2 naming the flag and what it takes', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--services', '0'], /--services takes whole numbers from 1/],
      [['--services', '10,x'], /--services takes whole numbers.*"x"/],
      [['--churn', 'fast'], /--churn takes changes per second as RATE\/s/],
      [['--duration', '5'], /--duration takes a duration/],
      [['--warmup=-1s'], /--warmup takes a duration from 0s to 1h/],
      [['--warmup', 'soon'], /--warmup takes a duration from 0s to 1h/],
      [['--endpoints', '0'], /--endpoints takes a whole number/],
      [['--mode', 'iptables'], /--mode/],
      [['--netns', '/nonexistent/ns'], /--netns \/nonexistent\/ns: no such file/],
      [['--plot', 'bench.png'], /--plot takes FILE.svg/],
    ];
    for (const [args, message] of cases) {
      const r = await svcplane(['bench', ...args], { process: true });
      expect([args.join(' '), r.code]).toEqual([args.join(' '), 2]);
      expect(r.stderr).toMatch(message);
    }
  });

  it('refuses a --netns that holds svcplane\'s table (a node\'s own?) and changes nothing there', async () => {
    const ns = makeNetns('bench');
    try {
      await svcplane(['sync', '--once', '--manifests', `${SVCPLANE.replace(/bin\/svcplane.js$/, '')}deploy/examples`, '--netns', ns.path], { process: true });
      const r = await svcplane(['bench', '--netns', ns.path, '--services', '5', '--duration', '200ms'], { process: true });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/holds svcplane's table \(ip svcplane.*\), which this bench did not make/);
      expect((await svcplane(['status', '--netns', ns.path, '--output', 'json'], { process: true })).stdout).toContain('"present":true');
    } finally {
      ns.remove();
    }
  });

  it('SIGINT mid-run: exit 130, and the table in a --netns namespace, the cgroup and the pins are gone', async () => {
    const ns = makeNetns('benchint');
    try {
      const child = spawn(process.execPath, [SVCPLANE, 'bench', '--mode', 'ebpf', '--netns', ns.path, '--services', '50', '--duration', '120s', '--churn', '20/s'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const pins = `/sys/fs/bpf/svcplane-bench-${child.pid}`;
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      // In the churn phase once the maps are pinned and the table is there: wait for both, generously.
      const client = new NetlinkNftClient({ netns: ns.path });
      try {
        const deadline = Date.now() + 60_000;
        while (!(fs.existsSync(`${pins}/links`) && (await client.dumpTable(NFPROTO_IPV4, 'svcplane')))) {
          if (Date.now() > deadline) throw new Error(`bench never programmed: ${stderr}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        child.kill('SIGINT');
        expect(await exited).toBe(130);
        expect(stderr).toMatch(/SIGINT: removing what the bench made/);
        expect(await client.dumpTable(NFPROTO_IPV4, 'svcplane')).toBeUndefined();
        expect(fs.existsSync(pins)).toBe(false);
        const cgroups = fs.readdirSync('/sys/fs/cgroup').filter((d) => d === `svcplane-bench-${child.pid}`);
        expect(cgroups).toEqual([]);
      } finally {
        client.close();
        child.kill('SIGKILL');
      }
    } finally {
      ns.remove();
    }
  });
});
