// Network-namespace sandbox for kernel tests, the demo and benchmarks: test/demo tooling, not product code (it
// spawns `ip`, `sysctl` and Node helper scripts; the product itself never does).
//
// Topology (one set per createSandbox() call; every name starts with the sandbox's unique prefix P):
//
//   netns P-cli (client)          netns P-node (the node svcplane programs)               netns P-b0..P-bN-1
//   eth0 198.18.1.2/24  ---veth--- cli0  198.18.1.1/24  fd00:1::1/64                       eth0 198.18.2.11/24
//        fd00:1::2/64                br0   198.18.2.1/24  fd00:2::1/64 (pod gateway) --veth--    fd00:2::11/64
//   default via node                 be0..beN-1 (bridge ports, node side of each backend veth)   (.12, ::12, ...)
//                                    sink0 198.18.3.1/30  fd00:3::1/64 ---veth--- netns P-sink  default via gateway
//                                                                                 eth0 198.18.3.2/30, fd00:3::2/64
//
// * Interfaces are created directly inside their namespaces (`ip -n NS link add ... peer ... netns OTHER`), so
//   nothing ever appears in the host's namespace and interface names only need to be unique per namespace.
// * The node forwards (IPv4 and IPv6), has rp_filter off and routes between the client and the pod network
//   without any NAT: the client reaches backend addresses directly.
// * Service range: ClusterIPs live in 198.18.100.0/24 and fd00:100::/64 (serviceCIDR). The node routes that range
//   via sink0 to the sink namespace, whose only routes are its connected subnet and blackhole defaults and which
//   does not forward: a packet to a ClusterIP that svcplane did not DNAT is routed by the node, traverses its
//   forward and postrouting hooks (where reject/drop rules must catch it) and then vanishes silently in the
//   sink, like traffic a real node sends to its default gateway. So "no rule" shows as ETIMEDOUT at the client,
//   never as an accidental ICMP error from the test topology.
// * IPv6 duplicate address detection is off everywhere (accept_dad=0 and nodad), so IPv6 works at once.
// * ICMP rate limiting is off in every namespace, so each rejected packet gets its ICMP error (the kernel default
//   of ~1/s per peer after a burst of 6 turns rejects of a burst of connections into timeouts).
// * br_netfilter: net.bridge.bridge-nf-call-ip{,6}tables=1 in the node (option brNetfilter), so packets bridged
//   between two backends go through the node's netfilter hooks, as Kubernetes requires of a bridge pod network.
// * A TCP connection rejected with an ICMP error may only fail after the SYN retransmission (~1 s): see the note
//   in netns-tools/client.js.
// * Each backend namespace runs netns-tools/backend.js (TCP+UDP on every port of options.ports), started with
//   `ip netns exec`; createSandbox() returns once the client can reach every backend on every port, protocol and
//   family directly.
// * destroy() kills every process it started (and any other process still inside its namespaces, except this
//   one), then deletes its namespaces, which removes their interfaces. It is idempotent. Live sandboxes are also
//   torn down synchronously on process 'exit'; installSignalCleanup() adds SIGINT/SIGTERM handling (the demo).
//   Backends exit on their own when the process that started them dies (their stdin closes), and namespaces
//   left by a process that died without cleaning up are removed by the next createSandbox() (see
//   cleanupStaleSandboxes).

import { spawn as cpSpawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';

export interface SandboxOptions {
  /** Name prefix of the namespaces; default `svp<pid>[t<threadId>]x<counter>`, unique per call. */
  prefix?: string;
  /** Number of backend namespaces (default 3, at most 200). */
  backends?: number;
  /** Configure IPv6 too (default true). When false every `v6` field is ''. */
  ipv6?: boolean;
  /** Ports each backend serves TCP and UDP on (default [8080]). */
  ports?: number[];
  /** How long to wait for the backends to answer (default 15000 ms). */
  readyTimeoutMs?: number;
  /**
   * net.bridge.bridge-nf-call-ip{,6}tables in the node netns (default true, as Kubernetes requires with a bridge
   * pod network): bridged backend-to-backend packets go through the node's netfilter hooks.
   */
  brNetfilter?: boolean;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this many ms; default 60000, 0 for no limit. */
  timeoutMs?: number;
  /** Written to the command's stdin (otherwise stdin is /dev/null). */
  input?: string | Buffer;
  /** Environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** A cgroup v2 directory the command runs in (the ebpf mode's socket hooks act on the processes of a cgroup). */
  cgroup?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; 128+n when killed by signal n. */
  code: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface SpawnInOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdio of the child (default ['ignore', 'pipe', 'pipe']). */
  stdio?: Array<'pipe' | 'ignore' | 'inherit'>;
  /** As ExecOptions.cgroup. */
  cgroup?: string;
}

/**
 * `ip netns exec ns argv`, first moved into a cgroup when asked. The move comes first: `ip netns exec` remounts
 * /sys, where the cgroup's directory would no longer be found; the cgroup's hooks then act in any namespace.
 */
function inNetns(ns: string, argv: string[], cgroup?: string): [string, string[]] {
  if (!cgroup) return ['ip', ['netns', 'exec', ns, ...argv]];
  return ['sh', ['-c', 'echo $$ > "$0" && exec "$@"', path.join(cgroup, 'cgroup.procs'), 'ip', 'netns', 'exec', ns, ...argv]];
}

export interface AddressPair {
  v4: string;
  v6: string;
}

export interface BackendServer {
  ns: string;
  name: string;
  ports: number[];
  pid: number;
  process: ChildProcess;
  /** Resolves once the server process has exited. */
  exited: Promise<void>;
  /** Kills the server (SIGKILL) and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

export interface SandboxBackend {
  /** netns name */
  ns: string;
  /** what the backend answers with (be0, be1, ...) */
  name: string;
  v4: string;
  v6: string;
  /** The running server (replaced by Sandbox.restartBackend). */
  server: BackendServer;
}

export interface NodeInterfaces {
  /** node side of the client veth */
  toClient: string;
  /** bridge carrying the pod gateway addresses */
  bridge: string;
  /** node side of each backend veth (bridge ports), in backend order */
  backends: string[];
  /** node side of the sink veth the service range is routed to */
  sink: string;
}

export interface Sandbox {
  prefix: string;
  clientNs: string;
  nodeNs: string;
  backendNs: string[];
  /** netns the service range is routed to (see the file comment) */
  sinkNs: string;
  /** /run/netns/<nodeNs> */
  nodeNsPath: string;
  ipv6: boolean;
  ports: number[];
  clientIP: AddressPair;
  /** the node's addresses facing the client */
  nodeIPs: AddressPair;
  /** the node's addresses on the pod bridge (the backends' default gateway) */
  podGateway: AddressPair;
  backends: SandboxBackend[];
  /** the "cluster CIDR" the backends live in */
  podCIDR: AddressPair;
  /** client <-> node link */
  clientCIDR: AddressPair;
  /** where ClusterIPs live: 198.18.100.0/24 and fd00:100::/64 */
  serviceCIDR: AddressPair;
  /** interface names inside nodeNs */
  nodeIfaces: NodeInterfaces;
  /** Address n (1..254) of the service range: 198.18.100.<n>, fd00:100::<n> (same digits). */
  serviceIP(n: number): AddressPair;
  /** /run/netns/<ns> */
  nsPath(ns: string): string;
  /** Runs argv inside netns ns (`ip netns exec`) and collects its output; never rejects on a non-zero exit. */
  exec(ns: string, argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running process inside ns; destroy() kills it. */
  spawn(ns: string, argv: string[], opts?: SpawnInOptions): ChildProcess;
  /** Stops backend i's server (its namespace and addresses stay). */
  stopBackend(i: number): Promise<void>;
  /** (Re)starts backend i's server, optionally on other ports; resolves when it listens. */
  restartBackend(i: number, ports?: number[]): Promise<BackendServer>;
  /** Kills every process it started, deletes every namespace (and so every link) it made. Idempotent. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// Constants and tool paths

export const SERVICE_CIDR: Readonly<AddressPair> = Object.freeze({ v4: '198.18.100.0/24', v6: 'fd00:100::/64' });
const DEFAULT_PREFIX_RE = /^svp(\d+)(?:t\d+)?x\d+-/;
const MAX_BACKENDS = 200;

function findTool(file: string): string {
  // From source (scripts/lib, vitest) the tools sit next to this file; compiled (dist/scripts/lib) they do not,
  // so walk up to the repository's scripts/lib/netns-tools.
  const candidates = [path.join(__dirname, 'netns-tools', file)];
  for (let dir = __dirname, i = 0; i < 6; i++, dir = path.dirname(dir)) {
    candidates.push(path.join(dir, 'scripts', 'lib', 'netns-tools', file));
  }
  for (const c of candidates) if (fs.existsSync(c)) return c;
  return candidates[0];
}

/** Absolute paths of the helper scripts (run them with process.execPath inside a namespace). */
export const BACKEND_JS = findTool('backend.js');
export const CLIENT_JS = findTool('client.js');
/** SCTP server/client (Python: Node has no SCTP sockets). */
export const SCTP_PY = findTool('sctp.py');

export function nsPath(ns: string): string {
  return `/run/netns/${ns}`;
}

/** "[v6]:port" or "v4:port". */
export function hostPort(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Process helpers

const liveSandboxes = new Set<SandboxImpl>();
/** Every child this module started that may still run (backends, spawn(), exec()). */
const liveChildren = new Set<ChildProcess>();

function track(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
}

function signalCode(signal: NodeJS.Signals | null): number {
  if (!signal) return 1;
  const n = os.constants.signals[signal];
  return 128 + (typeof n === 'number' ? n : 0);
}

/** Runs a command (not in a namespace), collecting output. */
function run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = cpSpawn(cmd, args, {
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    track(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, timeoutMs)
        : undefined;
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const settle = (code: number, signal: NodeJS.Signals | null, extraErr: string): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8') + extraErr;
      if (timedOut) stderr += `\n[killed after ${timeoutMs} ms]`;
      resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr, code, signal, timedOut });
    };
    child.on('error', (e) => settle(127, null, `${cmd}: ${e.message}`));
    child.on('close', (code, signal) => settle(code ?? signalCode(signal), signal, ''));
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        /* the command may exit without reading */
      });
      child.stdin.end(opts.input);
    }
  });
}

async function must(cmd: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** Runs `ip -n ns -batch -` with the given lines (stops at the first failing line). */
async function ipBatch(ns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const r = await run('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  if (r.code !== 0) {
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const line = m ? lines[Number(m[1]) - 1] : undefined;
    throw new Error(`ip -n ${ns}: ${line ? `"${line}": ` : ''}${r.stderr.trim()}`);
  }
}

function listNetnsSync(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return parseNetnsList(r.stdout ?? '');
}

async function listNetns(): Promise<string[]> {
  return parseNetnsList((await run('ip', ['netns', 'list'])).stdout);
}

function parseNetnsList(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

function pidsIn(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split(/\s+/)
    .map((s) => Number(s))
    .filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid && n !== process.ppid);
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // a zombie (killed, not yet reaped) is dead for our purposes
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGKILL');
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Backends

/**
 * Starts netns-tools/backend.js in netns ns (`ip netns exec`): TCP+UDP servers on each port answering with name.
 * Resolves once it listens. The server exits by itself when this process dies; stop() kills it. `env`: e.g.
 * BACKEND_UDP_ADDRESSES (see backend.js). The bound is generous: a Node process takes seconds to start in the TCG
 * guest, and 10 s ran out there while other work shared the host's two cores.
 */
export function startBackend(ns: string, name: string, ports: number[], timeoutMs = 60_000, env: Record<string, string> = {}): Promise<BackendServer> {
  if (!/^\S+$/.test(name)) return Promise.reject(new Error(`bad backend name ${JSON.stringify(name)}`));
  if (ports.length === 0) return Promise.reject(new Error('startBackend: no ports'));
  return new Promise((resolve, reject) => {
    const child = cpSpawn('ip', ['netns', 'exec', ns, process.execPath, BACKEND_JS, name, ports.join(',')], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env, BACKEND_EXIT_ON_STDIN_EOF: '1' },
    });
    track(child);
    let stdout = '';
    let stderr = '';
    let ready = false;
    const exited = new Promise<void>((res) => {
      if (child.exitCode !== null) res();
      child.once('exit', () => res());
      child.once('error', () => res());
    });
    const fail = (why: string): void => {
      if (ready) return;
      ready = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`backend ${name} in ${ns}: ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.stdin?.on('error', () => {
      /* the server may be gone */
    });
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-4096);
    });
    child.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString('utf8');
      if (!ready && /^ready$/m.test(stdout)) {
        ready = true;
        clearTimeout(timer);
        // From now on this server must not keep the event loop alive on its own.
        child.unref();
        for (const s of [child.stdin, child.stdout, child.stderr]) {
          const h = s as unknown as { unref?: () => void } | null;
          h?.unref?.();
        }
        const server: BackendServer = {
          ns,
          name,
          ports: [...ports],
          pid: child.pid ?? -1,
          process: child,
          exited,
          stop: () => killChild(child).then(() => exited),
        };
        resolve(server);
      }
    });
    child.once('error', (e) => fail(e.message));
    child.once('exit', (code, signal) => fail(`exited (${signal ?? code}) before it was ready`));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The sandbox

let prefixCounter = 0;
let staleCleaned = false;

function defaultPrefix(): string {
  return `svp${process.pid}${threadId ? `t${threadId}` : ''}x${++prefixCounter}`;
}

class SandboxImpl implements Sandbox {
  readonly prefix: string;
  readonly clientNs: string;
  readonly nodeNs: string;
  readonly backendNs: string[];
  readonly sinkNs: string;
  readonly nodeNsPath: string;
  readonly ipv6: boolean;
  readonly ports: number[];
  readonly clientIP: AddressPair;
  readonly nodeIPs: AddressPair;
  readonly podGateway: AddressPair;
  readonly backends: SandboxBackend[] = [];
  readonly podCIDR: AddressPair;
  readonly clientCIDR: AddressPair;
  readonly serviceCIDR: AddressPair;
  readonly nodeIfaces: NodeInterfaces;
  readonly sinkIPs: AddressPair;
  /** namespaces created so far (what destroy() deletes) */
  readonly createdNs: string[] = [];
  readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | null = null;
  brNetfilter = true;
  brNetfilterExplicit = false;

  constructor(prefix: string, nBackends: number, ipv6: boolean, ports: number[]) {
    const v6 = (s: string): string => (ipv6 ? s : '');
    this.prefix = prefix;
    this.ipv6 = ipv6;
    this.ports = [...ports];
    this.clientNs = `${prefix}-cli`;
    this.nodeNs = `${prefix}-node`;
    this.sinkNs = `${prefix}-sink`;
    this.backendNs = Array.from({ length: nBackends }, (_, i) => `${prefix}-b${i}`);
    this.nodeNsPath = nsPath(this.nodeNs);
    this.clientIP = { v4: '198.18.1.2', v6: v6('fd00:1::2') };
    this.nodeIPs = { v4: '198.18.1.1', v6: v6('fd00:1::1') };
    this.clientCIDR = { v4: '198.18.1.0/24', v6: v6('fd00:1::/64') };
    this.podGateway = { v4: '198.18.2.1', v6: v6('fd00:2::1') };
    this.podCIDR = { v4: '198.18.2.0/24', v6: v6('fd00:2::/64') };
    this.serviceCIDR = { v4: SERVICE_CIDR.v4, v6: v6(SERVICE_CIDR.v6) };
    this.sinkIPs = { v4: '198.18.3.2', v6: v6('fd00:3::2') };
    this.nodeIfaces = {
      toClient: 'cli0',
      bridge: 'br0',
      backends: this.backendNs.map((_, i) => `be${i}`),
      sink: 'sink0',
    };
  }

  allNs(): string[] {
    return [this.nodeNs, this.clientNs, ...this.backendNs, this.sinkNs];
  }

  serviceIP(n: number): AddressPair {
    if (!Number.isInteger(n) || n < 1 || n > 254) throw new RangeError(`serviceIP: ${n} not in 1..254`);
    return { v4: `198.18.100.${n}`, v6: this.ipv6 ? `fd00:100::${n}` : '' };
  }

  nsPath(ns: string): string {
    return nsPath(ns);
  }

  private checkAlive(): void {
    if (this.destroying) throw new Error(`sandbox ${this.prefix} is destroyed`);
  }

  private own(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  async exec(ns: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.checkAlive();
    if (argv.length === 0) throw new Error('exec: empty argv');
    const [cmd, args] = inNetns(ns, argv, opts.cgroup);
    return run(cmd, args, opts);
  }

  spawn(ns: string, argv: string[], opts: SpawnInOptions = {}): ChildProcess {
    this.checkAlive();
    if (argv.length === 0) throw new Error('spawn: empty argv');
    const [cmd, args] = inNetns(ns, argv, opts.cgroup);
    const child = cpSpawn(cmd, args, {
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    track(child);
    return this.own(child);
  }

  async startServer(i: number, ports: number[]): Promise<BackendServer> {
    const ns = this.backendNs[i];
    if (ns === undefined) throw new RangeError(`no backend ${i}`);
    const server = await startBackend(ns, `be${i}`, ports);
    this.own(server.process);
    if (this.destroying) {
      await server.stop();
      throw new Error(`sandbox ${this.prefix} is destroyed`);
    }
    return server;
  }

  async stopBackend(i: number): Promise<void> {
    const b = this.backends[i];
    if (!b) throw new RangeError(`no backend ${i}`);
    await b.server.stop();
  }

  async restartBackend(i: number, ports: number[] = this.ports): Promise<BackendServer> {
    this.checkAlive();
    const b = this.backends[i];
    if (!b) throw new RangeError(`no backend ${i}`);
    await b.server.stop();
    b.server = await this.startServer(i, ports);
    return b.server;
  }

  async setUp(readyTimeoutMs: number): Promise<void> {
    const v6 = this.ipv6;
    // 1. namespaces
    for (const ns of this.allNs()) {
      await must('ip', ['netns', 'add', ns]);
      this.createdNs.push(ns);
    }
    // 2. sysctls first, so that interfaces created afterwards inherit the "default" values
    // No ICMP rate limiting anywhere: rejects (ICMP port unreachable from the node's rules, from a backend's closed
    // port) must show up deterministically, even for many connections in a burst.
    const common = [
      'net.ipv4.icmp_ratelimit=0',
      'net.ipv4.icmp_ratemask=0',
      'net.ipv4.icmp_msgs_per_sec=1000000',
      'net.ipv4.icmp_msgs_burst=1000000',
      ...(v6 ? ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.icmp.ratelimit=0'] : []),
    ];
    const node = [
      'net.ipv4.ip_forward=1',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
      ...(v6 ? ['net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1'] : []),
    ];
    await Promise.all(
      this.allNs().map((ns) =>
        must('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', ...common, ...(ns === this.nodeNs ? node : [])]),
      ),
    );
    // br_netfilter (built into this kernel; a module elsewhere): packets bridged between two backends traverse the
    // node's IP hooks, as Kubernetes requires of bridge-based pod networks, so that a DNATed pod-to-pod reply gets
    // un-NATed. Keys absent (module not loaded): only an explicit brNetfilter: true is an error.
    const brVal = this.brNetfilter ? '1' : '0';
    const br = await run('ip', [
      'netns', 'exec', this.nodeNs, 'sysctl', '-q', '-w',
      `net.bridge.bridge-nf-call-iptables=${brVal}`,
      ...(v6 ? [`net.bridge.bridge-nf-call-ip6tables=${brVal}`] : []),
    ]);
    if (br.code !== 0 && this.brNetfilter && this.brNetfilterExplicit) {
      throw new Error(`brNetfilter: cannot set net.bridge.bridge-nf-call-*: ${br.stderr.trim()} (modprobe br_netfilter?)`);
    }
    // 3. node: links (peers created directly in the other namespaces) and addresses
    const nodeLines = [
      'link set lo up',
      `link add cli0 type veth peer name eth0 netns ${this.clientNs}`,
      'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0',
      ...this.backendNs.flatMap((ns, i) => [
        `link add be${i} type veth peer name eth0 netns ${ns}`,
        `link set be${i} master br0`,
        // Hairpin on every pod port, as the CNI bridge plugin (hairpinMode) and kubelet's hairpin-veth do: with
        // br_netfilter, a pod reaching itself through its Service is DNATed at bridge level back out of the port
        // it came in on, which a bridge port only allows in hairpin mode.
        `link set be${i} type bridge_slave hairpin on`,
        `link set be${i} up`,
      ]),
      `link add sink0 type veth peer name eth0 netns ${this.sinkNs}`,
      'link set cli0 up',
      'link set br0 up',
      'link set sink0 up',
      'addr add 198.18.1.1/24 dev cli0',
      'addr add 198.18.2.1/24 dev br0',
      'addr add 198.18.3.1/30 dev sink0',
      ...(v6
        ? ['addr add fd00:1::1/64 dev cli0 nodad', 'addr add fd00:2::1/64 dev br0 nodad', 'addr add fd00:3::1/64 dev sink0 nodad']
        : []),
    ];
    await ipBatch(this.nodeNs, nodeLines);
    // 4. the other ends
    const leaf = (v4: string, v6addr: string, lines: string[]): string[] => [
      'link set lo up',
      'link set eth0 up',
      `addr add ${v4} dev eth0`,
      ...(v6 ? [`addr add ${v6addr} dev eth0 nodad`] : []),
      ...lines,
    ];
    const jobs: Array<Promise<void>> = [
      ipBatch(
        this.clientNs,
        leaf('198.18.1.2/24', 'fd00:1::2/64', [
          'route add default via 198.18.1.1',
          ...(v6 ? ['route add ::/0 via fd00:1::1'] : []),
        ]),
      ),
      ipBatch(
        this.sinkNs,
        leaf('198.18.3.2/30', 'fd00:3::2/64', [
          'route add blackhole 0.0.0.0/0',
          ...(v6 ? ['route add blackhole ::/0'] : []),
        ]),
      ),
    ];
    this.backendNs.forEach((ns, i) => {
      const host = 11 + i;
      jobs.push(
        ipBatch(
          ns,
          leaf(`198.18.2.${host}/24`, `fd00:2::${host}/64`, [
            'route add default via 198.18.2.1',
            ...(v6 ? ['route add ::/0 via fd00:2::1'] : []),
          ]),
        ),
      );
    });
    await Promise.all(jobs);
    // 5. node: the service range goes to the sink
    await ipBatch(this.nodeNs, [
      `route add ${SERVICE_CIDR.v4} via 198.18.3.2 dev sink0`,
      ...(v6 ? [`route add ${SERVICE_CIDR.v6} via fd00:3::2 dev sink0`] : []),
    ]);
    // 6. servers
    const servers = await Promise.all(this.backendNs.map((_, i) => this.startServer(i, this.ports)));
    servers.forEach((server, i) => {
      const host = 11 + i;
      this.backends.push({
        ns: server.ns,
        name: server.name,
        v4: `198.18.2.${host}`,
        v6: v6 ? `fd00:2::${host}` : '',
        server,
      });
    });
    // 7. wait until the client reaches every server (routed, no NAT) on every port, protocol and family
    const specs = this.backends.flatMap((b) =>
      this.ports.flatMap((port) =>
        [b.v4, b.v6]
          .filter((a) => a !== '')
          .flatMap((addr) => ['tcp', 'udp'].map((proto) => ({ proto, target: hostPort(addr, port) }))),
      ),
    );
    if (specs.length > 0) {
      const r = await this.exec(
        this.clientNs,
        [process.execPath, CLIENT_JS, '--probe', JSON.stringify(specs), '--timeout-ms', String(readyTimeoutMs)],
        { timeoutMs: readyTimeoutMs + 10_000 },
      );
      let ok = false;
      try {
        ok = (JSON.parse(r.stdout) as { ok?: unknown }).ok === true;
      } catch {
        ok = false;
      }
      if (!ok) throw new Error(`sandbox ${this.prefix}: backends unreachable from the client: ${r.stdout.trim()} ${r.stderr.trim()}`);
    }
  }

  destroy(): Promise<void> {
    if (!this.destroying) this.destroying = this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    await Promise.all([...this.children].map((c) => killChild(c)));
    for (const ns of this.createdNs) for (const pid of pidsIn(ns)) killPid(pid);
    const results = await Promise.all(this.createdNs.map((ns) => run('ip', ['netns', 'del', ns])));
    const existing = new Set(await listNetns());
    const left = this.createdNs.filter((ns) => existing.has(ns));
    liveSandboxes.delete(this);
    if (left.length > 0) {
      const why = results
        .map((r) => r.stderr.trim())
        .filter((s) => s)
        .join('; ');
      throw new Error(`sandbox ${this.prefix}: could not delete ${left.join(', ')}: ${why}`);
    }
  }

  /** Synchronous best-effort teardown for process 'exit'. */
  destroySync(): void {
    for (const c of this.children) if (c.pid !== undefined && c.exitCode === null) killPid(c.pid);
    for (const ns of this.createdNs) {
      for (const pid of pidsIn(ns)) killPid(pid);
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    }
    liveSandboxes.delete(this);
  }
}

/**
 * Deletes namespaces left behind by sandboxes (default prefix) of processes that no longer exist, killing what
 * still runs in them. Called once per process by createSandbox(). Returns the namespaces removed.
 */
export async function cleanupStaleSandboxes(): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await listNetns()) {
    const m = DEFAULT_PREFIX_RE.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    for (const p of pidsIn(ns)) killPid(p);
    const r = await run('ip', ['netns', 'del', ns]);
    if (r.code === 0) removed.push(ns);
  }
  return removed;
}

export async function createSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  if (process.getuid?.() !== 0) throw new Error('createSandbox: needs root (network namespaces)');
  const nBackends = opts.backends ?? 3;
  if (!Number.isInteger(nBackends) || nBackends < 0 || nBackends > MAX_BACKENDS) {
    throw new RangeError(`backends must be an integer in 0..${MAX_BACKENDS}`);
  }
  const ports = opts.ports ?? [8080];
  if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    throw new RangeError(`bad ports ${JSON.stringify(ports)}`);
  }
  if (!staleCleaned) {
    staleCleaned = true;
    await cleanupStaleSandboxes();
  }
  const existing = new Set(await listNetns());
  const clash = (p: string): boolean => [...existing].some((ns) => ns.startsWith(`${p}-`));
  let prefix: string;
  if (opts.prefix !== undefined) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$/.test(opts.prefix)) throw new Error(`bad prefix ${JSON.stringify(opts.prefix)}`);
    if (clash(opts.prefix)) throw new Error(`prefix ${opts.prefix} is in use (ip netns list)`);
    prefix = opts.prefix;
  } else {
    do prefix = defaultPrefix();
    while (clash(prefix));
  }
  const sb = new SandboxImpl(prefix, nBackends, opts.ipv6 ?? true, ports);
  sb.brNetfilter = opts.brNetfilter ?? true;
  sb.brNetfilterExplicit = opts.brNetfilter !== undefined;
  liveSandboxes.add(sb);
  try {
    await sb.setUp(opts.readyTimeoutMs ?? 15_000);
  } catch (e) {
    await sb.destroy().catch(() => undefined);
    throw e;
  }
  return sb;
}

/** Destroys every sandbox of this process that is still alive. */
export async function destroyAllSandboxes(): Promise<void> {
  await Promise.allSettled([...liveSandboxes].map((s) => s.destroy()));
}

let signalsInstalled = false;
/**
 * On SIGINT/SIGTERM/SIGHUP: destroys every live sandbox, then exits with 128+signal. For scripts (the demo); test
 * runners have their own handling. Idempotent.
 */
export function installSignalCleanup(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      void destroyAllSandboxes().finally(() => process.exit(signalCode(sig)));
    });
  }
}

process.on('exit', () => {
  for (const s of [...liveSandboxes]) s.destroySync();
  for (const c of liveChildren) if (c.pid !== undefined && c.exitCode === null) killPid(c.pid);
});

/** Test/debug aid: names of this process's live sandboxes' namespaces. */
export function liveSandboxNamespaces(): string[] {
  return [...liveSandboxes].flatMap((s) => s.createdNs);
}

// exported for tests of the tooling itself
export const _internal = { listNetnsSync, parseNetnsList };
