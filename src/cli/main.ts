// svcplane's one entry point. Exit codes: 0 done, 1 the kernel (or the system) refused, 2 usage or input error.
// What only one command needs is loaded by that command: the agent (`run`: prom-client, the API client, the
// configuration; src/cli/run.ts) and the YAML parser (`sync`, `run`) are most of the modules a start would load,
// and status, explain and cleanup are run often (by operators, by scripts, in the tests' emulated guest).
import { IpvsClient } from '../dataplane/ipvs/client';
import { ConntrackCleaner } from '../dataplane/conntrack';
import { type FlowQuery, formatExplanation } from '../dataplane/explain';
import { readNodeAddresses } from '../dataplane/nodeAddresses';
import { SCHEDULERS } from '../dataplane/ipvs/desired';
import { IpvsProxier } from '../dataplane/ipvs/proxier';
import { EbpfProxier } from '../dataplane/ebpf/proxier';
import { LibbpfKernel, defaultObjectPath } from '../dataplane/ebpf/kernel';
import { cgroupRoot } from '../dataplane/ebpf/cgroup';
import { removeEbpfLeftovers } from '../dataplane/ebpf/leftovers';
import { removeIpvsLeftovers } from '../dataplane/ipvs/leftovers';
import { EbpfPreflightError } from '../dataplane/ebpf/preflight';
import { defaultIpvsConfig } from '../dataplane/ipvs/config';
import { NetlinkNftClient } from '../dataplane/nftables/client';
import { NftablesProxier } from '../dataplane/nftables/proxier';
import { defaultConfig } from '../dataplane/nftables/rules/config';
import { unhonouredFeatures } from '../dataplane/limits';
import type { Dataplane } from '../dataplane/types';
import { acquireWriterLock } from '../dataplane/writerLock';
import { createLogger, type Logger } from '../log';
import { canonicalIP, parseCIDR, parseIP } from '../model/ip';
import { buildProxyModel } from '../model/build';
import type { ModelProblem } from '../model/types';
import { FlagSpec, ParsedFlags, UsageError, bool, cidrList, formatFlags, list, parseFlags, str } from './args';
import { formatPlan, formatStatus, formatSyncSummary } from './format';
import { BPF_ROOT, CGROUP_ROOT, CLUSTER_CIDR, HELP, IPVS_BIND_MODE, IPVS_SCHEDULER, LOG, MASQUERADE_ALL, MODE, NETNS, OUTPUT, SERVICE_CIDR } from './flags';
import { KUBE_PROXY_FLAGS, SVCPLANE_RUN_FLAGS } from './runFlags';
import { formatVersion, versionInfo } from '../version';
import { BENCH_DEFAULTS } from '../bench/options';

const SYNC_FLAGS: FlagSpec[] = [
  { name: 'dry-run', type: 'boolean', help: 'show what the sync would change, per Service port, and change nothing' },
  { name: 'once', type: 'boolean', help: 'program once and exit (the long-running agent is `svcplane run`)' },
  MODE,
  { name: 'manifests', type: 'string', value: 'DIR', help: 'directory of *.yaml, *.yml, *.json with Services and EndpointSlices (multi-document YAML, v1 List)' },
  { name: 'node-name', type: 'string', value: 'NAME', help: 'this node\'s name, as EndpointSlices name it; hairpin masquerade is then kept only for this node\'s endpoints (without it, every endpoint is treated as possibly local)' },
  { name: 'node-zone', type: 'string', value: 'ZONE', help: 'this node\'s zone (its topology.kubernetes.io/zone label): EndpointSlice zone hints are used for it' },
  { name: 'node-ip', type: 'list', value: 'IP', help: 'this node\'s primary address(es), repeatable; used by --nodeport-addresses primary, and by loadBalancerSourceRanges (a range holding it accepts the LB IPs as sources, as kube-proxy)' },
  CLUSTER_CIDR,
  { name: 'pod-bridge-interface', type: 'string', value: 'NAME', help: 'pods are what arrives on this bridge (kube-proxy\'s detectLocalMode BridgeInterface), instead of --cluster-cidr' },
  { name: 'pod-interface-name-prefix', type: 'string', value: 'PREFIX', help: 'pods are what arrives on interfaces named PREFIX* (detectLocalMode InterfaceNamePrefix), instead of --cluster-cidr' },
  { name: 'nodeport-addresses', type: 'list', value: 'CIDR', help: 'NodePorts answer only on local addresses in these CIDRs, or "primary" (the --node-ip addresses); default: every local address but loopback' },
  SERVICE_CIDR, MASQUERADE_ALL, { ...IPVS_SCHEDULER, default: 'rr' }, { ...IPVS_BIND_MODE, default: 'route' }, CGROUP_ROOT, BPF_ROOT, OUTPUT, NETNS, LOG, HELP,
];
// kube-proxy's flags, all of them (src/cli/runFlags.ts), then svcplane's own.
const RUN_FLAGS: FlagSpec[] = [...KUBE_PROXY_FLAGS, ...SVCPLANE_RUN_FLAGS, NETNS, LOG, HELP];
const STATUS_FLAGS: FlagSpec[] = [MODE, BPF_ROOT, CGROUP_ROOT, OUTPUT, NETNS, HELP];
const EXPLAIN_FLAGS: FlagSpec[] = [
  MODE,
  { name: 'from', type: 'string', value: 'ADDRESS', help: 'the client\'s address (policy, source ranges, masquerade and affinity depend on it)' },
  { name: 'from-interface', type: 'string', value: 'NAME', help: 'the interface the client\'s traffic arrives on, where pods are told by interface (--pod-bridge-interface, --pod-interface-name-prefix)' },
  BPF_ROOT, CGROUP_ROOT, OUTPUT, { ...NETNS, help: 'read the network namespace at FILE instead of the current one' }, HELP,
];
const CLEANUP_FLAGS: FlagSpec[] = [MODE, BPF_ROOT, CGROUP_ROOT, OUTPUT, NETNS, HELP];

const BENCH_FLAGS: FlagSpec[] = [
  { name: 'mode', type: 'string', value: 'MODE', help: 'nftables, ebpf, ipvs, or all of them (a mode this kernel cannot run is reported as skipped, with why)', default: BENCH_DEFAULTS.mode, choices: ['nftables', 'ebpf', 'ipvs', 'all'] },
  { name: 'services', type: 'list', value: 'N[,N...]', help: 'cluster sizes to measure, in Services (one port each)', default: BENCH_DEFAULTS.services },
  { name: 'endpoints', type: 'string', value: 'M', help: 'endpoints per Service', default: BENCH_DEFAULTS.endpoints },
  { name: 'churn', type: 'string', value: 'RATE/s', help: 'changes per second in the churn phase, as a rolling deployment makes them (endpoint added, terminating, removed; 2% Services removed and re-added)', default: BENCH_DEFAULTS.churn },
  { name: 'duration', type: 'string', value: 'D', help: 'how long the churn phase runs per mode and size (10s, 2m)', default: BENCH_DEFAULTS.duration },
  { name: 'warmup', type: 'string', value: 'D', help: 'an unrecorded churn phase first, at the same rate: the figures then leave out a fresh process\'s first syncs, which run while V8 still compiles them', default: BENCH_DEFAULTS.warmup },
  OUTPUT,
  { name: 'peers', type: 'boolean', help: 'also time kube-proxy-shaped peers on the same Services, each in an empty namespace: nft -f (its nftables mode), iptables-restore (its iptables mode) and, with the ipvs mode, ipvsadm --restore (its IPVS mode), with the ratios to svcplane\'s matching mode' },
  { name: 'plot', type: 'string', value: 'FILE.svg', help: 'also write an SVG plot: per mode, the full sync and the change p99 against Services' },
  { name: 'schema', type: 'boolean', help: 'print the JSON Schema of --output json and exit' },
  { ...NETNS, help: 'program the network namespace at FILE instead of a throwaway one (it must hold no svcplane table)' },
  HELP,
];

const COMMANDS: Record<string, { summary: string; flags: FlagSpec[]; args?: string }> = {
  run: { summary: 'the node agent: watch the cluster and keep the dataplane in sync (replaces kube-proxy)', flags: RUN_FLAGS },
  sync: { summary: 'program Services and EndpointSlices from manifests into the kernel', flags: SYNC_FLAGS },
  diff: { summary: 'what `sync --once` would change, per Service port, changing nothing (sync --once --dry-run)', flags: SYNC_FLAGS.filter((f) => f.name !== 'once' && f.name !== 'dry-run') },
  status: { summary: 'show what is programmed, read back from the kernel', flags: STATUS_FLAGS },
  cleanup: { summary: 'remove everything svcplane programmed, and nothing else', flags: CLEANUP_FLAGS },
  version: { summary: 'print the version, the commit and the libnftnl/libmnl versions the addon was built with', flags: [OUTPUT, HELP] },
  bench: { summary: 'measure this kernel: full syncs of N Services and change latency under churn, per mode, in a throwaway network namespace', flags: BENCH_FLAGS },
  explain: { summary: 'explain a flow as the kernel will handle it: the Service port it matches, the endpoints a new connection can reach and why', flags: EXPLAIN_FLAGS, args: '<TCP|UDP|SCTP> <address>:<port>' },
};

function usage(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n');
  return `svcplane: Kubernetes Service proxy that programs nftables directly over netlink

Usage: svcplane <command> [flags]

Commands:
${cmds}

Run 'svcplane <command> --help' for a command's flags.
`;
}

function commandUsage(name: string): string {
  const c = COMMANDS[name];
  return `svcplane ${name}: ${c.summary}\n\nUsage: svcplane ${name} [flags]${c.args ? ` ${c.args}` : ''}\n\nFlags:\n${formatFlags(c.flags)}\n`;
}

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

function openDataplane(flags: ParsedFlags, config = defaultConfig(), log?: Logger): Dataplane {
  const mode = str(flags, 'mode');
  const netns = str(flags, 'netns');
  if (mode === 'ipvs') {
    const scheduler = str(flags, 'ipvs-scheduler') ?? 'rr';
    if (!SCHEDULERS.includes(scheduler)) throw new UsageError(`--ipvs-scheduler must be one of ${SCHEDULERS.join(', ')}, not "${scheduler}"`);
    const ns = netns ? { netns } : {};
    return new IpvsProxier(new IpvsClient(ns), new NetlinkNftClient(ns), defaultIpvsConfig({
      scheduler, nodePortAddresses: config.nodePortAddresses, clusterCIDRs: config.clusterCIDRs, masqueradeAll: config.masqueradeAll,
      nodeName: config.nodeName, nodeZone: config.nodeZone, nodeIPs: config.nodeIPs, serviceCIDRs: config.serviceCIDRs, podInterface: config.podInterface, tableName: config.tableName, bindMode: str(flags, 'ipvs-bind-mode') === 'address' ? 'address' : 'route',
    }), log, new ConntrackCleaner(ns));
  }
  const nft = new NftablesProxier(new NetlinkNftClient(netns ? { netns } : {}), config, log, new ConntrackCleaner(netns ? { netns } : {}), () => readNodeAddresses(netns));
  if (mode === 'ebpf') {
    // The cgroup is looked up when the programs attach (sync), not for status or cleanup.
    const kernel = new LibbpfKernel({ object: defaultObjectPath(), root: str(flags, 'bpf-root') ?? String(BPF_ROOT.default), cgroup: () => cgroupRootOf(flags) });
    return new EbpfProxier(kernel, nft, { nodePortAddresses: config.nodePortAddresses, node: { name: config.nodeName, zone: config.nodeZone }, nodeAddresses: () => readNodeAddresses(netns) }, log);
  }
  return nft;
}

function cgroupRootOf(flags: ParsedFlags): string {
  try {
    return cgroupRoot(str(flags, 'cgroup-root'));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function nftablesConfig(flags: ParsedFlags) {
  const clusterCIDRs = list(flags, 'cluster-cidr');
  for (const c of clusterCIDRs) if (!parseCIDR(c)) throw new UsageError(`--cluster-cidr: "${c}" is not a CIDR`);
  const nodeIPs = list(flags, 'node-ip');
  for (const ip of nodeIPs) if (!parseIP(ip)) throw new UsageError(`--node-ip: "${ip}" is not an IP address`);
  const nodePortAddresses: string[] = [];
  for (const a of list(flags, 'nodeport-addresses')) {
    if (a === 'primary') {
      if (nodeIPs.length === 0) throw new UsageError('--nodeport-addresses primary needs --node-ip (the node\'s primary addresses)');
      nodePortAddresses.push(...nodeIPs.map((ip) => (ip.includes(':') ? `${ip}/128` : `${ip}/32`)));
    } else if (!parseCIDR(a)) throw new UsageError(`--nodeport-addresses: "${a}" is not a CIDR or "primary"`);
    else nodePortAddresses.push(a);
  }
  // No hostname default here: manifests written by hand often name made-up nodes, and a wrong node name would
  // silently drop hairpin masquerade for pods that do live here. The agent (`run`) defaults it as kube-proxy does.
  const nodeName = str(flags, 'node-name') || undefined;
  const nodeZone = str(flags, 'node-zone') || undefined;
  const serviceCIDRs = cidrList(flags, 'service-cidr');
  const bridge = str(flags, 'pod-bridge-interface');
  const prefix = str(flags, 'pod-interface-name-prefix');
  const given = [clusterCIDRs.length ? '--cluster-cidr' : '', bridge !== undefined ? '--pod-bridge-interface' : '', prefix !== undefined ? '--pod-interface-name-prefix' : ''].filter(Boolean);
  if (given.length > 1) throw new UsageError(`${given.join(' and ')}: give one way to tell pods from the rest`);
  const name = bridge ?? prefix;
  if (name !== undefined && (name === '' || Buffer.byteLength(name) > 15 || /[\s/]/.test(name))) throw new UsageError(`${given[0]}: "${name}" is not an interface name (1 to 15 bytes, no spaces or slashes)`);
  const podInterface = name !== undefined ? { name, prefix: prefix !== undefined } : undefined;
  return defaultConfig({ clusterCIDRs, podInterface, nodePortAddresses, masqueradeAll: bool(flags, 'masquerade-all'), nodeName, nodeZone, nodeIPs, serviceCIDRs });
}

async function cmdSync(flags: ParsedFlags, log: Logger): Promise<number> {
  if (!bool(flags, 'once')) throw new UsageError('sync needs --once (the continuous agent is `svcplane run`)');
  const dir = str(flags, 'manifests');
  if (!dir) throw new UsageError('sync needs --manifests DIR');
  const config = nftablesConfig(flags);
  // The directory itself missing or unreadable is an input error (exit 2) naming the flag; a bad file in it is a
  // problem reported with the rest.
  const { loadManifests } = await import('../source/manifests');
  const loaded = await loadManifests(dir).catch((e: Error) => {
    throw new UsageError(`--manifests: ${e.message}`);
  });
  const model = buildProxyModel(loaded.services, loaded.slices);
  const problems = [...loaded.problems, ...model.problems];
  for (const p of problems) log.warn(`${p.object}: ${p.message}`, { object: p.object });
  for (const sp of model.servicePorts.values())
    for (const f of unhonouredFeatures(sp, str(flags, 'mode'), false)) log.warn(`Service ${sp.key}: ${f}`, { service: sp.key });
  if (bool(flags, 'dry-run')) return dryRun(flags, config, log, model.servicePorts, loaded.files.length, problems);
  const lock = await acquireWriterLock({ netns: str(flags, 'netns') });
  const dp = openDataplane(flags, config, log);
  if (dp.mode !== 'ebpf') removeEbpfLeftovers(str(flags, 'bpf-root') ?? String(BPF_ROOT.default), log);
  if (dp.mode !== 'ipvs') await removeIpvsLeftovers(str(flags, 'netns'), config.tableName, log);
  try {
    const kernel = await dp.prepare?.();
    const res = await dp.syncFull(model.servicePorts);
    for (const p of res.problems) log.warn(`${p.object}: ${p.message}`, { object: p.object });
    const all = [...problems, ...res.problems];
    if (str(flags, 'output') === 'json') {
      out(JSON.stringify({ mode: dp.mode, files: loaded.files.length, ...res, problems: all, kernel }));
    } else {
      out(formatSyncSummary(dp.mode, loaded.files.length, res, all.length, kernel));
    }
    return 0;
  } finally {
    dp.close();
    lock.release();
  }
}

/**
 * `sync --once --dry-run` / `diff`: the plan of a full sync against what the kernel holds, sent nowhere. It writes
 * nothing, so it takes no writer lock (it may run beside the agent; the plan is then against that moment's table).
 */
async function dryRun(flags: ParsedFlags, config: ReturnType<typeof nftablesConfig>, log: Logger, servicePorts: Parameters<Dataplane['syncFull']>[0], files: number, problems: ModelProblem[]): Promise<number> {
  const dp = openDataplane(flags, config, log);
  try {
    if (!dp.plan) throw new UsageError(`--dry-run: the ${dp.mode} mode has no dry run`);
    const plan = await dp.plan(servicePorts);
    const all = [...problems, ...plan.problems];
    if (str(flags, 'output') === 'json') out(JSON.stringify({ dryRun: true, files, servicePorts: servicePorts.size, ...plan, problems: all }));
    else out(formatPlan(plan, files, servicePorts.size));
    return 0;
  } finally {
    dp.close();
  }
}

/**
 * What an EPERM means. The addon names the namespace when it could not enter it ("setns /run/netns/x: ..."):
 * setns(2) into a network namespace needs CAP_SYS_ADMIN (in the namespace's owning user namespace) besides
 * CAP_NET_ADMIN; everything else svcplane does needs CAP_NET_ADMIN only.
 */
export function permissionHint(message: string, netns: string | undefined): string {
  if (netns && message.includes(netns)) return `entering the network namespace ${netns} (setns) needs CAP_SYS_ADMIN as well as CAP_NET_ADMIN (run as root, or run svcplane inside that namespace without --netns)`;
  return 'programming the kernel needs CAP_NET_ADMIN (run as root)';
}

/** "TCP" "198.18.100.10:80" (or "[fd00::1]:80") -> a flow query. */
function parseFlow(positionals: string[], from: string | undefined): FlowQuery {
  if (positionals.length !== 2) throw new UsageError('explain needs <TCP|UDP|SCTP> <address>:<port>');
  const protocol = positionals[0].toUpperCase();
  if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') throw new UsageError(`protocol "${positionals[0]}" is not TCP, UDP or SCTP`);
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(positionals[1]);
  const address = m ? canonicalIP(m[1] ?? m[2]) : undefined;
  const port = m ? Number(m[3]) : 0;
  if (!address || port < 1 || port > 65535) throw new UsageError(`"${positionals[1]}" is not <address>:<port>`);
  if (from !== undefined && !canonicalIP(from)) throw new UsageError(`--from "${from}" is not an IP address`);
  return { protocol, address, port, from: from !== undefined ? canonicalIP(from) : undefined };
}

async function cmdExplain(flags: ParsedFlags, positionals: string[]): Promise<number> {
  const q = parseFlow(positionals, str(flags, 'from'));
  const fromInterface = str(flags, 'from-interface');
  if (fromInterface !== undefined) q.fromInterface = fromInterface;
  const dp = openDataplane(flags);
  try {
    const [e] = await dp.explain([q]);
    out(str(flags, 'output') === 'json' ? JSON.stringify(e) : formatExplanation(e));
    return 0;
  } finally {
    dp.close();
  }
}

async function cmdStatus(flags: ParsedFlags): Promise<number> {
  const dp = openDataplane(flags);
  try {
    const st = await dp.status();
    out(str(flags, 'output') === 'json' ? JSON.stringify(st) : formatStatus(st));
    return 0;
  } finally {
    dp.close();
  }
}

async function cmdCleanup(flags: ParsedFlags): Promise<number> {
  const lock = await acquireWriterLock({ netns: str(flags, 'netns') });
  const dp = openDataplane(flags);
  try {
    const removed = await dp.cleanup();
    if (str(flags, 'output') === 'json') out(JSON.stringify({ mode: dp.mode, removed }));
    else out(removed ? `svcplane ${dp.mode}: removed svcplane's tables` : `svcplane ${dp.mode}: nothing to remove`);
    return 0;
  } finally {
    dp.close();
    lock.release();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    out(usage());
    return command ? 0 : 2;
  }
  if (command === '--version') {
    out(formatVersion(versionInfo()));
    return 0;
  }
  const spec = COMMANDS[command];
  if (!spec) {
    process.stderr.write(`svcplane: unknown command "${command}"\n\n${usage()}`);
    return 2;
  }
  let flags: ParsedFlags;
  let positionals: string[] = [];
  try {
    const parsed = parseFlags(rest, spec.flags);
    const allowed = command === 'explain' ? 2 : 0;
    if (parsed.positionals.length > allowed) throw new UsageError(`unexpected argument "${parsed.positionals[allowed]}"`);
    flags = parsed.flags;
    positionals = parsed.positionals;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`svcplane ${command}: ${e.message}\n\n${commandUsage(command)}`);
      return 2;
    }
    throw e;
  }
  if (bool(flags, 'help')) {
    out(commandUsage(command));
    return 0;
  }
  if (command === 'version' || bool(flags, 'version')) {
    const v = versionInfo();
    out(str(flags, 'output') === 'json' ? JSON.stringify(v) : formatVersion(v));
    return 0;
  }
  const logFormat = str(flags, 'log-format') as 'json' | 'text' | undefined;
  const log = createLogger({ format: logFormat });
  try {
    if (command === 'run') return await (await import('./run')).cmdRun(flags, openDataplane);
    if (command === 'sync') return await cmdSync(flags, log);
    if (command === 'diff') return await cmdSync({ ...flags, once: true, 'dry-run': true }, log);
    if (command === 'status') return await cmdStatus(flags);
    if (command === 'explain') return await cmdExplain(flags, positionals);
    if (command === 'bench') return await (await import('./bench')).cmdBench(flags, out);
    return await cmdCleanup(flags);
  } catch (e) {
    if (e instanceof UsageError || e instanceof EbpfPreflightError) {
      process.stderr.write(`svcplane ${command}: ${e.message}\n`);
      return 2;
    }
    const err = e as Error & { code?: string };
    process.stderr.write(`svcplane ${command}: ${err.message}\n`);
    if (err.code === 'EPERM') process.stderr.write(`svcplane: ${permissionHint(err.message, str(flags, 'netns'))}\n`);
    return 1;
  }
}
