// An in-memory kernel for the IPVS dataplane: it answers the same requests IpvsClient sends (generic netlink IPVS
// commands, rtnetlink links, addresses and local routes, sysctls), decoding each message with the decoders the real
// client uses for dumps, and refusing with the errno the kernel gives (ip_vs_ctl.c, devinet.c, fib). Unit tests drive
// IpvsProxier with it; test/contract/ipvs-client.contract.ts holds it and the real client to the same behaviour (the
// real one in the test guest: this machine's kernel has no IPVS), so it cannot drift from the kernel.
import { parseHeader } from '../../netlink/message';
import * as rtnl from '../../netlink/rtnl';
import { splitMessages } from '../../netlink/message';
import { type ApplyResult, type IpvsFailure, IpvsOperationError, OpBatch, type Operation, ipvsError } from './client';
import { SCHEDULERS, destKey, vsKey } from './desired';
import type { IpvsKernel } from './ipvsKernel';
import * as ipvs from '../../netlink/ipvs';

const ERRNO: Record<string, number> = { ENOENT: 2, ESRCH: 3, ENODEV: 19, EEXIST: 17, EINVAL: 22, EROFS: 30, EADDRNOTAVAIL: 99 };
const NLM_F_EXCL = 0x200;
const RTN_LOCAL = 2;

class Refusal {
  constructor(readonly code: keyof typeof ERRNO) {}
}

export interface FakeIpvsOptions {
  /** The node's own links and their addresses (default: lo 127.0.0.1 ::1, eth0 198.18.0.1 fd00::1). */
  links?: Array<{ name: string; addresses: string[] }>;
  /** Schedulers whose module loads (default: every one kube-proxy knows). */
  schedulers?: string[];
  /** A kernel without IPVS (familyId fails as on such a kernel). */
  noIpvs?: boolean;
  /** /proc/sys read-only (a container's view): writes fail with EROFS. */
  readOnlySysctls?: boolean;
}

interface FakeService {
  vs: ipvs.VirtualServiceState;
  dests: Map<string, ipvs.RealServerState>;
}

export class FakeIpvsKernel implements IpvsKernel {
  /** Virtual services by vsKey, with their real servers by destKey. */
  readonly services = new Map<string, FakeService>();
  readonly links = new Map<number, rtnl.LinkInfo>();
  readonly addresses: rtnl.AddrInfo[] = [];
  readonly routes: rtnl.RouteInfo[] = [];
  readonly sysctls = new Map<string, string>([
    ['net.ipv4.vs.conntrack', '0'], ['net.ipv4.vs.expire_nodest_conn', '0'], ['net.ipv4.vs.expire_quiescent_template', '0'], ['net.ipv4.ip_forward', '0'],
  ]);
  /** Operations sent, all buses (for tests that count work). */
  operationsSeen = 0;
  private nextIndex = 1;
  private readonly schedulers: Set<string>;
  /** A test's refusal for matching operations (by the operation's description), as the kernel would refuse. */
  private refuse: ((describe: string) => string | undefined) | undefined;

  constructor(private readonly opts: FakeIpvsOptions = {}) {
    this.schedulers = new Set(opts.schedulers ?? SCHEDULERS);
    const links = opts.links ?? [{ name: 'lo', addresses: ['127.0.0.1', '::1'] }, { name: 'eth0', addresses: ['198.18.0.1', 'fd00::1'] }];
    for (const l of links) {
      const index = this.nextIndex++;
      this.links.set(index, { index, name: l.name, flags: rtnl.IFF_UP });
      for (const a of l.addresses) this.addresses.push({ index, address: a, prefixlen: a.includes(':') ? 64 : 24, scope: l.name === 'lo' ? 254 : 0 });
    }
  }

  /** Refuses every later operation whose description matches with errno `code` (undefined: refuse none). */
  refuseWhere(match: ((describe: string) => boolean) | undefined, code: keyof typeof ERRNO = 'EINVAL'): void {
    this.refuse = match && ((d) => (match(d) ? code : undefined));
  }

  /** Sets a real server's connection counts, as traffic would. */
  setConnections(vs: ipvs.VirtualServiceKey, dest: { address: string; port: number }, active: number, inactive = 0): void {
    const d = this.services.get(vsKey(vs))?.dests.get(destKey(dest));
    if (!d) throw new Error(`no real server ${destKey(dest)} in ${ipvs.serviceKeyString(vs)}`);
    d.activeConns = active;
    d.inactiveConns = inactive;
  }

  async familyId(): Promise<number> {
    if (this.opts.noIpvs) throw new IpvsOperationError('this kernel has no IPVS: its generic netlink family "IPVS" is missing', ERRNO.ENOENT, 'ENOENT', 'resolve family', []);
    return 0x22;
  }

  async listServices(): Promise<ipvs.VirtualServiceState[]> {
    await this.familyId();
    return [...this.services.values()].map((s) => ({ ...s.vs }));
  }

  async listDests(services: ipvs.VirtualServiceKey[]): Promise<ipvs.RealServerState[][]> {
    // The kernel answers a dump of a missing service's real servers with nothing (ip_vs_genl_dump_dests).
    return services.map((s) => [...(this.services.get(vsKey(s))?.dests.values() ?? [])].map((d) => ({ ...d })));
  }

  async applyIpvs(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    await this.familyId();
    return this.apply(ops, (msg) => this.ipvsCommand(msg));
  }

  async applyRoute(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    return this.apply(ops, (msg) => this.routeCommand(msg));
  }

  async allRoutes(): Promise<rtnl.RouteInfo[]> {
    return this.routes.map((r) => ({ ...r }));
  }

  async link(name: string): Promise<rtnl.LinkInfo | undefined> {
    const l = [...this.links.values()].find((x) => x.name === name);
    return l && { ...l };
  }

  async allAddresses(): Promise<rtnl.AddrInfo[]> {
    return this.addresses.map((a) => ({ ...a }));
  }

  async sysctl(name: string, value?: string): Promise<string | undefined> {
    if (value === undefined) {
      const v = this.sysctls.get(name);
      if (v === undefined) throw new Error(`sysctl ${name}: no such file (ENOENT)`);
      return v;
    }
    if (this.opts.readOnlySysctls) throw new Error(`write /proc/sys/${name.replace(/\./g, '/')}: Read-only file system (EROFS)`);
    this.sysctls.set(name, value);
    return undefined;
  }

  close(): void {}

  error(failures: IpvsFailure[]): IpvsOperationError {
    return ipvsError(failures);
  }

  // ---- applying messages ---------------------------------------------------------------------------------------

  private apply(ops: Operation[] | OpBatch, run: (msg: Buffer) => void): ApplyResult {
    const batch = ops instanceof OpBatch;
    const messages = batch ? splitMessages(ops.w.finish()) : ops.map((o) => o.request);
    const failures: IpvsFailure[] = [];
    let bytes = 0;
    messages.forEach((msg, i) => {
      bytes += msg.length;
      this.operationsSeen++;
      const describe = batch ? ops.describe(i) : ops[i].describe;
      try {
        const refused = this.refuse?.(describe);
        if (refused) throw new Refusal(refused as keyof typeof ERRNO);
        run(msg);
      } catch (e) {
        if (!(e instanceof Refusal)) throw e;
        const errno = ERRNO[e.code];
        const tolerated = batch ? ops.tolerated(i, errno) : ops[i].tolerate?.includes(errno);
        if (!tolerated) failures.push({ operation: describe, errno, code: e.code });
      }
    });
    return { operations: messages.length, sends: messages.length ? 1 : 0, bytes, kernelMicros: 0, failures };
  }

  /** One IPVS command, as ip_vs_genl_set_cmd does it (errnos included). */
  private ipvsCommand(msg: Buffer): void {
    const cmd = ipvs.commandOf(msg);
    const s = ipvs.decodeService(msg);
    if (!s) throw new Refusal('EINVAL');
    const k = vsKey(s);
    const svc = this.services.get(k);
    if (cmd === ipvs.CMD.NEW_SERVICE) {
      if (svc) throw new Refusal('EEXIST');
      if (!this.schedulers.has(s.scheduler)) throw new Refusal('ENOENT');
      this.services.set(k, { vs: this.serviceState(s), dests: new Map() });
      return;
    }
    if (!svc) throw new Refusal('ESRCH');
    switch (cmd) {
      case ipvs.CMD.SET_SERVICE:
        if (!this.schedulers.has(s.scheduler)) throw new Refusal('ENOENT');
        svc.vs = this.serviceState(s);
        return;
      case ipvs.CMD.DEL_SERVICE:
        this.services.delete(k);
        return;
    }
    const d = ipvs.decodeDest(msg);
    if (!d) throw new Refusal('EINVAL');
    const dk = destKey(d);
    const have = svc.dests.get(dk);
    switch (cmd) {
      case ipvs.CMD.NEW_DEST:
        if (have) throw new Refusal('EEXIST');
        svc.dests.set(dk, { ...d, activeConns: 0, inactiveConns: 0, persistConns: 0, stats: undefined });
        return;
      case ipvs.CMD.SET_DEST:
        if (!have) throw new Refusal('ENOENT');
        svc.dests.set(dk, { ...have, weight: d.weight, forward: d.forward, upperThreshold: d.upperThreshold, lowerThreshold: d.lowerThreshold });
        return;
      case ipvs.CMD.DEL_DEST:
        if (!have) throw new Refusal('ENOENT');
        svc.dests.delete(dk);
        return;
      default:
        throw new Refusal('EINVAL');
    }
  }

  /** A service as the kernel keeps it: hashed, its statistics not kept here. */
  private serviceState(s: ipvs.VirtualServiceState): ipvs.VirtualServiceState {
    return { family: s.family, protocol: s.protocol, address: s.address, port: s.port, scheduler: s.scheduler, flags: s.flags | ipvs.SVC_FLAG.HASHED, timeout: s.timeout, netmask: s.netmask };
  }

  /** One rtnetlink request: links, addresses and local routes, as the kernel answers them. */
  private routeCommand(msg: Buffer): void {
    const h = parseHeader(msg);
    const excl = (h.flags & NLM_F_EXCL) !== 0;
    // The decoders read requests too, given the NEW type of their family (the layouts are the same).
    const as = (type: number) => {
      const copy = Buffer.from(msg);
      copy.writeUInt16LE(type, 4);
      return copy;
    };
    switch (h.type) {
      case rtnl.RTM.NEWLINK: {
        const req = rtnl.decodeLink(msg)!;
        if (req.index === 0) {
          if ([...this.links.values()].some((l) => l.name === req.name)) {
            if (excl) throw new Refusal('EEXIST');
            return;
          }
          const index = this.nextIndex++;
          this.links.set(index, { index, name: req.name, flags: req.flags, kind: req.kind });
          return;
        }
        const link = this.links.get(req.index);
        if (!link) throw new Refusal('ENODEV');
        link.flags = req.flags;
        return;
      }
      case rtnl.RTM.DELLINK: {
        const index = msg.readInt32LE(16 + 4);
        if (!this.links.delete(index)) throw new Refusal('ENODEV');
        removeWhere(this.addresses, (a) => a.index === index);
        removeWhere(this.routes, (r) => r.oif === index);
        return;
      }
      case rtnl.RTM.NEWADDR: {
        const a = rtnl.decodeAddr(msg)!;
        if (!this.links.has(a.index)) throw new Refusal('ENODEV');
        if (this.addresses.some((x) => x.index === a.index && x.address === a.address)) throw new Refusal('EEXIST');
        this.addresses.push(a);
        return;
      }
      case rtnl.RTM.DELADDR: {
        const a = rtnl.decodeAddr(as(rtnl.RTM.NEWADDR))!;
        if (!removeWhere(this.addresses, (x) => x.index === a.index && x.address === a.address)) throw new Refusal('EADDRNOTAVAIL');
        // A link's last IPv4 address gone: the kernel drops every IPv4 route through it (fib_disable_ip).
        const v4 = !a.address.includes(':');
        if (v4 && !this.addresses.some((x) => x.index === a.index && !x.address.includes(':'))) removeWhere(this.routes, (r) => r.family === 4 && r.oif === a.index);
        return;
      }
      case rtnl.RTM_ROUTE.NEWROUTE: {
        const r = rtnl.decodeRoute(msg)!;
        if (r.oif === undefined || !this.links.has(r.oif)) throw new Refusal('ENODEV');
        if (this.routes.some((x) => sameRoute(x, r))) throw new Refusal('EEXIST');
        this.routes.push(r);
        return;
      }
      case rtnl.RTM_ROUTE.DELROUTE: {
        const r = rtnl.decodeRoute(as(rtnl.RTM_ROUTE.NEWROUTE))!;
        if (!removeWhere(this.routes, (x) => sameRoute(x, r) && x.type === RTN_LOCAL)) throw new Refusal('ESRCH');
        return;
      }
      default:
        throw new Refusal('EINVAL');
    }
  }
}

function sameRoute(a: rtnl.RouteInfo, b: rtnl.RouteInfo): boolean {
  return a.family === b.family && a.dst === b.dst && a.dstLen === b.dstLen && a.table === b.table;
}

/** Removes the items matching; whether there were any. */
function removeWhere<T>(list: T[], match: (x: T) => boolean): boolean {
  let kept = 0;
  for (const x of list) if (!match(x)) list[kept++] = x;
  const removed = list.length - kept;
  list.length = kept;
  return removed > 0;
}
