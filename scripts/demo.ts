// `npm run demo`: a sandbox of network namespaces (a client, a node, three backend "pods" serving TCP and UDP),
// the example manifests from deploy/examples programmed into the node by the real CLI, real requests to the
// ClusterIP and the NodePort, the status table, how the requests spread, and a clean-up; then the same Services in
// the ebpf mode, for clients in a cgroup of the demo's own. Needs root.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2MountOf } from '../src/dataplane/ebpf/cgroup';
import { createSandbox, installSignalCleanup, type Sandbox } from './lib/sandbox';
import { chiSquareUniform, countsFor, runClient, type ClientResult } from './lib/traffic';

const REPO = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
const SVCPLANE = path.join(REPO, 'bin', 'svcplane.js');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

function cli(sb: Sandbox, args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, process.execPath, SVCPLANE, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`svcplane ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trimEnd();
}

/** The CLI in this process's mount namespace, programming the node namespace by --netns: the ebpf mode needs the
 * host's /sys (cgroup v2, bpffs), which `ip netns exec` remounts. */
function cliNetns(sb: Sandbox, args: string[]): string {
  const r = spawnSync(process.execPath, [SVCPLANE, ...args, '--netns', sb.nodeNsPath], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`svcplane ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trimEnd();
}

function section(title: string): void {
  console.log(`\n== ${title} ${'='.repeat(Math.max(0, 70 - title.length))}`);
}

/** Prints how the answers spread; the chi-square test is over the backends that should get traffic. */
function spread(label: string, r: ClientResult, names: string[], eligible = names): void {
  const counts = countsFor(r, names);
  const total = counts.reduce((a, b) => a + b, 0);
  const bars = names.map((n, i) => `${n} ${String(counts[i]).padStart(4)} ${'#'.repeat(Math.round((40 * counts[i]) / Math.max(1, total)))}`);
  const chi = total > 0 ? chiSquareUniform(countsFor(r, eligible)) : undefined;
  const errs = Object.entries(r.errors).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`${label}: ${r.ok} answered${errs ? `, errors: ${errs}` : ''}${chi ? `, chi-square p=${chi.pValue.toFixed(3)}` : ''}`);
  for (const b of bars) console.log(`    ${b}`);
  const sources = Object.keys(r.sources);
  if (sources.length) console.log(`    backends saw the client as: ${sources.join(', ')}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('npm run demo needs root (it creates network namespaces and programs nftables in them)');
    process.exit(1);
  }
  installSignalCleanup();
  section('sandbox');
  const sb = await createSandbox({ backends: 3, ports: [8080] });
  try {
    console.log(`client ${sb.clientIP.v4} / ${sb.clientIP.v6}  ->  node ${sb.nodeIPs.v4} / ${sb.nodeIPs.v6}  ->  pods ${sb.backends.map((b) => b.v4).join(', ')}`);
    console.log(`namespaces: ${[sb.clientNs, sb.nodeNs, ...sb.backendNs].join(' ')}`);

    section('svcplane sync --once (programs deploy/examples into the node namespace)');
    const cidr = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    console.log(cli(sb, ['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', cidr, '--log-format', 'text']));

    section('svcplane status (read back from the kernel)');
    console.log(cli(sb, ['status']));

    section('real requests from the client namespace');
    const names = sb.backends.map((b) => b.name);
    spread('TCP  ClusterIP 198.18.100.10:80   x300', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 300 }), names);
    spread('UDP  ClusterIP 198.18.100.10:53   x300', await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.10', port: 53, count: 300 }), names);
    spread(`TCP  NodePort  ${sb.nodeIPs.v4}:30080 x300`, await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 300 }), names);
    spread('TCP  ClusterIP [fd00:100::10]:80  x300', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: 'fd00:100::10', port: 80, count: 300 }), names);
    spread('TCP  ClusterIP 198.18.100.11:8000 x300 (be2 not ready)', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.11', port: 8000, count: 300 }), names, names.slice(0, 2));
    const refused = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.12', port: 80, count: 3, timeoutMs: 3000 });
    console.log(`TCP  ClusterIP 198.18.100.12:80 (no endpoints): ${JSON.stringify(refused.errors)} after ${refused.elapsedMs.toFixed(0)} ms in all`);

    section('svcplane cleanup');
    console.log(cli(sb, ['cleanup']));

    await ebpfSection(sb, cidr, names);
  } finally {
    await sb.destroy();
  }
  console.log('\nsandbox removed; demo done.');
}

/**
 * The ebpf mode beside it: the socket hooks attached to a cgroup of the demo's own (not the machine's root cgroup,
 * which every process here is in), clients started in it. The backends see the client itself (no NAT), and the node
 * tracks no connection to the ClusterIP; a client outside the cgroup still goes through the nftables table.
 */
async function ebpfSection(sb: Sandbox, cidr: string, names: string[]): Promise<void> {
  const mount = cgroup2MountOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (!mount) {
    section('ebpf mode: skipped (no cgroup v2 on this machine)');
    return;
  }
  const cgroup = path.join(mount, sb.prefix);
  const flags = ['--mode', 'ebpf', '--cgroup-root', cgroup, '--bpf-root', `/sys/fs/bpf/${sb.prefix}`];
  fs.mkdirSync(cgroup, { recursive: true });
  try {
    section('ebpf mode: svcplane sync --once --mode ebpf (socket hooks on the demo\'s cgroup, the table for the rest)');
    console.log(cliNetns(sb, ['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', cidr, ...flags]));
    // conntrack(8) as an independent reader: TCP entries to the ClusterIP (those of the runs above last 120 s, so
    // the difference is what each run added).
    const tracked = () => spawnSync('ip', ['netns', 'exec', sb.nodeNs, 'conntrack', '-L', '-p', 'tcp', '--orig-dst', '198.18.100.10'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('198.18.100.10')).length;
    let before = tracked();
    spread('TCP  ClusterIP 198.18.100.10:80 x300, client in the cgroup (socket LB)', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 300, cgroup }), names);
    console.log(`    new conntrack entries to the ClusterIP on the node: ${tracked() - before}`);
    before = tracked();
    spread('TCP  ClusterIP 198.18.100.10:80 x300, client outside it (nftables)', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 300 }), names);
    console.log(`    new conntrack entries to the ClusterIP on the node: ${tracked() - before}`);
    const refused = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.12', port: 80, count: 3, timeoutMs: 3000, cgroup });
    console.log(`TCP  ClusterIP 198.18.100.12:80 (no endpoints), in the cgroup: ${JSON.stringify(refused.errors)} after ${refused.elapsedMs.toFixed(0)} ms in all`);
    section('svcplane explain --mode ebpf TCP 198.18.100.10:80');
    console.log(cliNetns(sb, ['explain', ...flags, 'TCP', '198.18.100.10:80']));
    section('svcplane cleanup --mode ebpf');
    console.log(cliNetns(sb, ['cleanup', ...flags]));
  } finally {
    fs.rmdirSync(cgroup);
  }
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
