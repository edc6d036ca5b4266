// The IPVS dataplane: virtual services and real servers over generic netlink, Service addresses on a dummy link,
// diffed against what the kernel holds (read once at the first/full sync, then remembered) so only differences
// are sent, many per round trip.
//
// IPVS has no transactions: a sync's operations are applied in an order that never leaves a virtual service
// without its address or a real server without its service, and when the kernel refuses one, the error names it,
// the rest of the batch still applies, and the next sync is full: it re-reads the kernel and converges.
//
// Graceful termination (kubernetes/kubernetes#92019 in mind): a TCP/SCTP real server that is no longer wanted first gets
// weight 0 (no new connections) and is deleted once it has no active or inactive connections, or after
// gracefulTimeoutMs; a UDP one is deleted at once. The state lives in the kernel (weight 0 on a real server
// svcplane does not want), so a restarted svcplane carries on draining instead of leaving weights at 0, and an
// endpoint that comes back gets its weight back.
//
// Masquerade and filtering (what kube-proxy keeps in iptables and ipset) are one svcplane nftables table per family
// (filter.ts, nftables.ts), updated in the same sync, after IPVS. IPVS needs net.ipv4.vs.conntrack=1 for nf_nat's
// masquerade to apply to its traffic; svcplane sets it and kube-proxy's other IPVS sysctls at every full sync.
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import { claimConflictProblem, claimPrecedence } from '../../model/precedence';
import * as rtnl from '../../netlink/rtnl';
import type { KernelReport } from '../nftables/kernel';
import type { NftClient } from '../nftables/client';
import { TABLE_NAME, defaultConfig as defaultNftConfig } from '../nftables/ruleset';
import type { Dataplane, StatusReport, StatusRow, SyncPlan, SyncResult } from '../types';
import { PlanCounter, UNNAMED } from '../plan';
import { NftTransaction } from '../nftables/transaction';
import { IpvsClient, IpvsOperationError, OpBatch, type ApplyResult } from './client';
import { IpvsNftables } from './nftables';
import { describeVirtualService } from './describe';
import type { ConntrackCleaner, StaleFlow } from '../conntrack';
import { type Clock, realClock } from '../../sync/clock';
import { type DesiredService, OWNED_FLAG, destKey, nodePortAddressesOf, planServicePort, vsKey } from './desired';
import * as ipvs from '../../netlink/ipvs';

export interface IpvsProxierConfig {
  /** Default scheduler (--ipvs-scheduler). */
  scheduler: string;
  /** NodePorts answer on local addresses in these CIDRs; empty: every address but loopback and link-local. */
  nodePortAddresses: string[];
  /** The dummy link holding Service addresses. */
  interfaceName: string;
  /** Longest a weight-0 real server waits for its connections to end. */
  gracefulTimeoutMs: number;
  /** Pod CIDRs: ClusterIP traffic from outside them is masqueraded (as in nftables mode). */
  clusterCIDRs: string[];
  /** Pods told by the interface their traffic arrives on instead (detectLocalMode BridgeInterface / InterfaceNamePrefix). */
  podInterface?: { name: string; prefix: boolean };
  masqueradeAll: boolean;
  masqueradeBit: number;
  /** This node's name: local endpoints (traffic policies Local), hairpin pairs for its endpoints only. */
  nodeName?: string;
  /** This node's zone (topology hints). */
  nodeZone?: string;
  /** This node's primary addresses (loadBalancerSourceRanges holding one accept the LB IPs as sources too). */
  nodeIPs?: string[];
  /** The cluster's Service CIDRs: new traffic to an address in them that is no ClusterIP is dropped (filter.ts). */
  serviceCIDRs?: string[];
  /** The nftables table beside IPVS (both families). */
  tableName: string;
  /**
   * How Service addresses are made local on svcplane0: 'route' (default) binds each as a local route
   * (`local <ip> dev svcplane0 table local proto 88`), 'address' as an address (what kube-proxy does on kube-ipvs0).
   * Both deliver the same way (the kernel's "local address" is the local-table route an address creates), but
   * adding an address walks the link's whole address list, so N addresses on one link cost O(N^2): 10k took 5.3 s
   * in the test guest, 10k routes 0.78 s. 'address' is there for tools that look for them with `ip addr`.
   */
  bindMode: 'route' | 'address';
}

export function defaultIpvsConfig(over: Partial<IpvsProxierConfig> = {}): IpvsProxierConfig {
  return {
    scheduler: 'rr', nodePortAddresses: [], interfaceName: 'svcplane0', gracefulTimeoutMs: 15 * 60_000,
    clusterCIDRs: [], masqueradeAll: false, masqueradeBit: 14, tableName: TABLE_NAME, bindMode: 'route', ...over,
  };
}

/**
 * The sysctls kube-proxy's IPVS mode sets (pkg/proxy/ipvs/proxier.go NewProxier), and why svcplane needs them:
 * conntrack: IPVS keeps the connection's conntrack entry, so nftables' masquerade applies to IPVS traffic;
 * expire_nodest_conn: a connection whose real server was deleted is expired at its next packet instead of
 * black-holed (UDP/SCTP real servers are deleted at once); expire_quiescent_template: persistence templates of a
 * weight-0 (draining) real server expire, so sessionAffinity stops sending new connections there; ip_forward:
 * replies from the endpoints are forwarded back through IPVS.
 */
export const IPVS_SYSCTLS: ReadonlyArray<[string, string]> = [
  ['net.ipv4.vs.conntrack', '1'],
  ['net.ipv4.vs.expire_nodest_conn', '1'],
  ['net.ipv4.vs.expire_quiescent_template', '1'],
  ['net.ipv4.ip_forward', '1'],
];

/** What goes wrong without each (said with the warning when one cannot be written, e.g. a read-only /proc/sys). */
const IPVS_SYSCTL_MEANING: Record<string, string> = {
  'net.ipv4.vs.conntrack': 'IPVS traffic gets no conntrack entry, so it cannot be masqueraded',
  'net.ipv4.vs.expire_nodest_conn': 'connections to a deleted real server hang until they time out instead of ending at their next packet',
  'net.ipv4.vs.expire_quiescent_template': 'sessionAffinity keeps sending a client to a draining endpoint until its template expires',
  'net.ipv4.ip_forward': 'the node does not forward, so Service traffic from pods and other machines to endpoints fails',
};

interface ProgrammedService {
  vs: ipvs.VirtualService;
  dests: Map<string, ipvs.RealServer>;
}

/** A converge's IPVS operations, as OpBatch codes (described only when the kernel refuses one). */
const IPVS_OP = { addService: 0, updateService: 1, addServer: 2, setWeight: 3, deleteServer: 4, drainServer: 5, deleteService: 6 } as const;
/** Its svcplane0 binding operations. */
const BINDING_OP = { bind: 0, unbind: 1, removeOld: 2 } as const;
const BINDING_VERB = ['bind', 'unbind', 'remove old binding'];

/** Where the scheduler check's dummy virtual service goes (TEST-NET-3, RFC 5737: never a node's traffic). */
const SCHEDULER_PROBE = { address: '203.0.113.253', port: 20000 };

const ENOENT = 2;
const EEXIST = 17;
const ESRCH = 3;
const EADDRNOTAVAIL = 99;

export class IpvsProxier implements Dataplane {
  readonly mode = 'ipvs';
  private servicePorts = new Map<ServicePortKey, ServicePort>();
  /** Desired virtual services by vsKey, and which Service port holds each (the first to claim it). */
  private desired = new Map<string, DesiredService>();
  private plans = new Map<ServicePortKey, ReturnType<typeof planServicePort>>();
  /** Service ports wanting each virtual service, in arrival order (the first holds it; the next takes over). */
  private wanters = new Map<string, ServicePortKey | ServicePortKey[]>();
  /** How many Service ports want each address bound. Kept as syncs go, so a partial sync never scans them all. */
  private addrUsers = new Map<string, number>();
  private programmed: Map<string, ProgrammedService> | undefined;
  /**
   * Virtual services without svcplane's mark, by vsKey, as the last full read found them. Never touched, except one
   * at an address:port a Service wants: see adoptUnmarked().
   */
  private unmarked = new Map<string, ipvs.VirtualServiceState>();
  private boundAddresses = new Set<string>();
  /** Bindings of the other bindMode found on svcplane0 (removed by the next converge). */
  private leftoverBindings: string[] = [];
  private linkIndex = 0;
  private nodeAddresses: string[] = [];
  /** Addresses of the node's other links: an externalIP or LB IP among them is not bound on svcplane0 (kube-proxy). */
  private localAddresses = new Set<string>();
  private readonly filter: IpvsNftables;
  private sysctlsChecked = false;
  private schedulerChecked = false;
  /** Draining real servers: `${vsKey}#${destKey}` -> when draining began (ms, on `clock`). */
  private draining = new Map<string, number>();
  private needFull = true;

  /** UDP flows of real servers deleted by the sync underway (their conntrack entries go after it). */
  private staleFlows: StaleFlow[] = [];

  constructor(
    private readonly client: IpvsClient, nft: NftClient, private readonly config: IpvsProxierConfig, private readonly log: Logger = silentLogger,
    /** Deletes UDP conntrack entries of deleted real servers (none: not done). */
    private readonly conntrack?: ConntrackCleaner,
    /** When draining began and how long it lasts are read from it (tests drive one). */
    private readonly clock: Clock = realClock,
  ) {
    this.filter = new IpvsNftables(nft, defaultNftConfig({
      tableName: config.tableName, clusterCIDRs: config.clusterCIDRs, masqueradeAll: config.masqueradeAll,
      nodePortAddresses: config.nodePortAddresses, masqueradeBit: config.masqueradeBit, nodeName: config.nodeName, nodeZone: config.nodeZone, nodeIPs: config.nodeIPs,
      serviceCIDRs: config.serviceCIDRs, podInterface: config.podInterface,
    }));
  }

  /** Whether svcplane binds this address on svcplane0 (and so filters its unused ports). */
  private readonly bound = (address: string): boolean => !this.localAddresses.has(address);

  /**
   * Preflight, before anything is changed: IPVS itself (its generic netlink family), then what the kernel's
   * nf_tables accepts for the table beside it; each missing piece is refused in words. A sync runs it first, so a
   * kernel without IPVS gets nothing set, not even ip_forward, before the refusal.
   */
  async prepare(): Promise<KernelReport> {
    await this.client.familyId();
    await this.probeScheduler();
    return this.filter.prepare();
  }

  /**
   * The default scheduler, checked as kube-proxy checks it (CanUseIPVSProxier): a dummy virtual service with it,
   * added and deleted at once. The kernel loads ip_vs_<scheduler> on demand; where it cannot (not built, no
   * /lib/modules in the container), every sync would fail on every Service. The dummy is at a TEST-NET-3 address no
   * packet of this node goes to; one already there (EEXIST) is left alone and the check skipped.
   */
  private async probeScheduler(): Promise<void> {
    if (this.schedulerChecked) return;
    const fam = await this.client.familyId();
    const vs: ipvs.VirtualService = { family: 4, protocol: 'TCP', address: SCHEDULER_PROBE.address, port: SCHEDULER_PROBE.port, scheduler: this.config.scheduler, flags: 0, timeout: 0, netmask: 0xffffffff };
    const add = new OpBatch();
    ipvs.writeNewService(add.w, fam, vs);
    add.op(`add the dummy virtual service ${ipvs.serviceKeyString(vs)} (scheduler check)`);
    const r = await this.client.applyIpvs(add);
    const f = r.failures[0];
    if (f?.errno === EEXIST) {
      this.schedulerChecked = true; // someone else's: not ours to delete
      return;
    }
    if (f) {
      const what = f.errno === ENOENT ? `the module ip_vs_${this.config.scheduler} is not built for this kernel or cannot be loaded` : f.code;
      throw new IpvsOperationError(`IPVS scheduler "${this.config.scheduler}" is not available in this kernel (${what}); nothing was changed. ` +
        'Load the module on the node, or choose another with --ipvs-scheduler (rr needs ip_vs_rr)', f.errno, f.code, 'check scheduler', r.failures);
    }
    const del = new OpBatch();
    ipvs.writeDelService(del.w, fam, vs);
    del.op(`delete the dummy virtual service ${ipvs.serviceKeyString(vs)} (scheduler check)`, [ESRCH]);
    const d = await this.client.applyIpvs(del);
    if (d.failures.length) throw this.client.error(d.failures);
    this.schedulerChecked = true;
  }

  async syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    const t0 = process.hrtime.bigint();
    await this.prepare();
    this.needFull = true;
    // Independent reads on different sockets (and the sysctls, off the JS thread too): in parallel.
    await Promise.all([this.ensureSysctls(), this.readKernel()]);
    const tRead = process.hrtime.bigint();
    const problems = this.planAll(servicePorts);
    const touched = new Set(this.desired.keys());
    for (const k of this.programmed!.keys()) touched.add(k);
    const addrs = new Set(this.addrUsers.keys());
    for (const a of this.boundAddresses) addrs.add(a);
    const tPlan = process.hrtime.bigint();
    const adopted = await this.adoptUnmarked();
    const res = await this.converge(touched, addrs);
    const tIpvs = process.hrtime.bigint();
    const nft = await this.filter.full(this.servicePorts, this.bound);
    this.needFull = false;
    const out = this.result(true, res, nft, t0, problems);
    if (adopted.length) {
      out.warnings = adopted;
      this.log.warn('virtual services were changed behind svcplane\'s back (its mark cleared): taken back and repaired', { repairs: adopted });
    }
    out.conntrackDeleted = await this.cleanConntrack();
    const us = (a: bigint, b: bigint) => Number((b - a) / 1000n);
    // Where a full sync's time goes: reading the kernel, planning, IPVS and bindings (encode + kernel), nftables.
    out.phases = { readMicros: us(t0, tRead), planMicros: us(tRead, tPlan), ipvsMicros: us(tPlan, tIpvs), nftMicros: us(tIpvs, process.hrtime.bigint()), ipvsKernelMicros: res.kernelMicros, nftKernelMicros: nft.kernelMicros, nftEncodeMicros: nft.encodeMicros ?? 0 };
    return out;
  }

  /** Plans every Service port afresh (a full sync, a dry run): what each wants, which addresses, who holds what. */
  private planAll(servicePorts: Map<ServicePortKey, ServicePort>): ModelProblem[] {
    this.servicePorts = new Map(servicePorts);
    this.plans.clear();
    this.desired.clear();
    this.wanters.clear();
    this.addrUsers.clear();
    const problems: ModelProblem[] = [];
    for (const [key, sp] of servicePorts) this.addPlan(key, sp, problems);
    return problems;
  }

  /**
   * The dry run of syncFull (`sync --once --dry-run`): virtual services, real servers and svcplane0 bindings to
   * add, change or delete, and the filter table's elements, per Service port; nothing written (no sysctl, no link).
   */
  async plan(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncPlan> {
    // IPVS and the filter table's constructs, but not the scheduler check: it writes (a dummy virtual service).
    await this.client.familyId();
    await this.filter.prepare();
    const haveLink = await this.readKernel(false);
    const problems = this.planAll(servicePorts);
    const counter = new PlanCounter();
    let ops = 0;
    const count = (who: string, what: 'add' | 'delete', thing: string, n = 1) => {
      if (n === 0) return;
      counter.count(who, what, thing, n);
      ops += n;
    };
    const programmed = this.programmed!;
    for (const [k, want] of this.desired) {
      const have = programmed.get(k);
      if (!have) {
        count(want.owner, 'add', 'ipvs virtual service');
        count(want.owner, 'add', 'ipvs real server', want.dests.size);
        continue;
      }
      if (!sameService(have.vs, want.vs)) count(want.owner, 'add', 'ipvs virtual service (changed)');
      for (const [dk, d] of want.dests) {
        const cur = have.dests.get(dk);
        if (!cur) count(want.owner, 'add', 'ipvs real server');
        else if (!sameDest(cur, d)) count(want.owner, 'add', 'ipvs real server (weight)');
      }
      for (const [dk, cur] of have.dests) {
        if (want.dests.has(dk)) continue;
        // UDP real servers are deleted; TCP/SCTP ones drained (weight 0), then deleted once their connections end.
        if (want.vs.protocol === 'UDP') count(want.owner, 'delete', 'ipvs real server');
        else if (cur.weight !== 0) count(want.owner, 'delete', 'ipvs real server (drained)');
      }
    }
    for (const k of programmed.keys()) if (!this.desired.has(k)) count(UNNAMED, 'delete', 'ipvs virtual service');
    const bindingOwner = new Map<string, string>();
    for (const [key, plan] of this.plans) for (const a of plan.addresses) if (!bindingOwner.has(a)) bindingOwner.set(a, key);
    for (const [a, key] of bindingOwner) if (!this.boundAddresses.has(a)) count(key, 'add', `${this.config.interfaceName} binding`);
    // Bindings no Service port wants, and those of the other bindMode (all removed by a sync).
    for (const a of this.boundAddresses) if (!this.addrUsers.has(a)) count(UNNAMED, 'delete', `${this.config.interfaceName} binding`);
    count(UNNAMED, 'delete', `${this.config.interfaceName} binding`, this.leftoverBindings.length);
    const tx = new NftTransaction();
    await this.filter.plan(this.servicePorts, this.bound, counter, tx);
    const extra = haveLink ? [] : [`create dummy link ${this.config.interfaceName}`];
    return counter.result(this.mode, tx, ops + extra.length, problems, extra);
  }

  async syncPartial(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    for (const [key, sp] of changes) {
      if (sp) this.servicePorts.set(key, sp);
      else this.servicePorts.delete(key);
    }
    if (this.needFull || !this.programmed) return this.syncFull(this.servicePorts);
    const t0 = process.hrtime.bigint();
    this.needFull = true; // until both IPVS and the nftables batch are through
    const problems: ModelProblem[] = [];
    const touched = new Set<string>();
    const touchedAddrs = new Set<string>();
    const note = (plan: ReturnType<typeof planServicePort> | undefined) => {
      for (const k of plan?.services.keys() ?? []) touched.add(k);
      for (const a of plan?.addresses ?? []) touchedAddrs.add(a);
    };
    for (const key of changes.keys()) {
      note(this.plans.get(key));
      this.removePlan(key);
    }
    for (const [key, sp] of changes) if (sp) {
      this.addPlan(key, sp, problems);
      note(this.plans.get(key));
    }
    const res = await this.converge(touched, touchedAddrs);
    const nft = await this.filter.partial(changes, this.bound);
    this.needFull = false;
    const out = this.result(false, res, nft, t0, problems);
    out.conntrackDeleted = await this.cleanConntrack();
    return out;
  }

  async cleanup(): Promise<boolean> {
    const services = (await this.client.listServices()).filter((s) => s.flags & OWNED_FLAG);
    const ops = new OpBatch();
    const fam = await this.client.familyId();
    for (const s of services) {
      ipvs.writeDelService(ops.w, fam, s);
      ops.op(`delete virtual service ${ipvs.serviceKeyString(s)}`, [ESRCH, ENOENT]);
    }
    const res = await this.client.applyIpvs(ops);
    if (res.failures.length) throw this.client.error(res.failures);
    const link = await this.client.link(this.config.interfaceName);
    if (link) {
      const r = await this.client.applyRoute([{ request: rtnl.delLinkRequest(link.index), describe: `delete link ${this.config.interfaceName}` }]);
      if (r.failures.length) throw this.client.error(r.failures);
    }
    const table = await this.filter.remove();
    this.programmed = undefined;
    this.needFull = true;
    return services.length > 0 || !!link || table;
  }

  async status(): Promise<StatusReport> {
    const services = (await this.client.listServices()).filter((s) => s.flags & OWNED_FLAG);
    const dests = await this.client.listDests(services);
    const [t4, t6] = await this.filter.dump();
    const rows: StatusRow[] = services.map((s, i) => {
      // Which Service port and why: the comments of the nftables table beside IPVS (read from the kernel, so a
      // fresh `status` process names Services as the agent does).
      const d = describeVirtualService(s.family === 4 ? t4 : t6, s.protocol, s.address, s.port);
      return {
        family: s.family, protocol: s.protocol, address: s.address, port: s.port,
        kind: d.kind, service: d.service, reject: dests[i].length === 0, scheduler: s.scheduler,
        ...(d.policy ? { policy: d.policy } : {}), ...(d.drop ? { drop: true } : {}), ...(d.why.length ? { why: d.why } : {}),
        persistentSeconds: s.flags & ipvs.SVC_FLAG.PERSISTENT ? s.timeout : undefined,
        endpoints: dests[i].map((e) => ({ address: e.address, port: e.port, weight: e.weight, activeConns: e.activeConns, inactiveConns: e.inactiveConns })),
      };
    });
    return { mode: this.mode, present: services.length > 0, rows, kernel: await this.filter.kernel() };
  }

  setServiceCIDRs(cidrs: string[]): void {
    if ((this.config.serviceCIDRs ?? []).join() === cidrs.join()) return;
    this.config.serviceCIDRs = [...cidrs];
    this.filter.setServiceCIDRs(cidrs);
    this.needFull = true;
  }

  setNodeZone(zone: string | undefined): void {
    if (this.config.nodeZone === zone) return;
    this.config.nodeZone = zone;
    this.filter.setNodeZone(zone);
    this.needFull = true;
  }

  close(): void {
    this.client.close();
    this.filter.close();
    this.conntrack?.close();
  }

  /** Deletes the conntrack entries of UDP real servers this sync deleted (conntrack.ts); never fails the sync. */
  private async cleanConntrack(): Promise<{ 4: number; 6: number } | undefined> {
    const flows = this.staleFlows;
    this.staleFlows = [];
    if (!this.conntrack || flows.length === 0) return undefined;
    try {
      const r = await this.conntrack.deleteStale(flows);
      for (const e of r.errors) this.log.warn('stale UDP conntrack entries not deleted', { error: e });
      if (r.deleted[4] + r.deleted[6] > 0) this.log.info('stale UDP conntrack entries deleted', { v4: r.deleted[4], v6: r.deleted[6], flows: flows.length });
      return r.deleted;
    } catch (e) {
      this.log.warn('stale UDP conntrack entries not deleted', { error: (e as Error).message });
      return undefined;
    }
  }

  /** Sets IPVS_SYSCTLS where they differ. Without vs.conntrack masquerade cannot work: that one is required. */
  private async ensureSysctls(): Promise<void> {
    await Promise.all(IPVS_SYSCTLS.map(async ([name, value]) => {
      try {
        const cur = await this.client.sysctl(name);
        if (cur === value) return;
        await this.client.sysctl(name, value);
        if (!this.sysctlsChecked) this.log.info('sysctl set', { name, value, was: cur });
      } catch (e) {
        const msg = `sysctl ${name}=${value}: ${e instanceof Error ? e.message : String(e)}`;
        if (name === 'net.ipv4.vs.conntrack') throw new Error(`${msg} (IPVS mode needs it for masquerade)`);
        if (!this.sysctlsChecked) this.log.warn('sysctl not set', { name, value, error: msg, without: IPVS_SYSCTL_MEANING[name] });
      }
    }));
    this.sysctlsChecked = true;
  }

  // ---- desired state ---------------------------------------------------------------------------------------

  private addPlan(key: ServicePortKey, sp: ServicePort, problems: ModelProblem[]): void {
    const plan = planServicePort(sp, { scheduler: this.config.scheduler, nodeAddresses: this.nodeAddresses, bind: this.bound, node: { name: this.config.nodeName, zone: this.config.nodeZone } });
    if (plan.schedulerProblem) problems.push({ object: `Service ${key}`, message: plan.schedulerProblem });
    this.plans.set(key, plan);
    for (const a of plan.addresses) this.addrUsers.set(a, (this.addrUsers.get(a) ?? 0) + 1);
    for (const [k, d] of plan.services) {
      // One wanter (the usual case) is kept as the key itself: no array per virtual service.
      const list = this.wanters.get(k);
      if (list === undefined) this.wanters.set(k, key);
      else if (typeof list === 'string') this.wanters.set(k, [list, key]);
      else list.push(key);
      const holder = this.desired.get(k);
      if (holder && holder.owner !== key) {
        // The one first in claim precedence keeps the virtual service, whichever arrived first (model/precedence.ts).
        const held = this.servicePorts.get(holder.owner);
        const newcomerWins = !held || claimPrecedence(sp, held) < 0;
        const [loser, winner] = newcomerWins ? [holder.owner, key] : [key, holder.owner];
        problems.push(claimConflictProblem(ipvs.serviceKeyString(d.vs), loser, winner));
        if (!newcomerWins) continue;
      }
      this.desired.set(k, d);
    }
  }

  /** Drops a Service port's plan; a virtual service it held goes to the next Service port wanting it, if any. */
  private removePlan(key: ServicePortKey): void {
    const plan = this.plans.get(key);
    if (!plan) return;
    for (const a of plan.addresses) {
      const n = (this.addrUsers.get(a) ?? 1) - 1;
      if (n > 0) this.addrUsers.set(a, n);
      else this.addrUsers.delete(a);
    }
    for (const k of plan.services.keys()) {
      const had = this.wanters.get(k);
      const list = (had === undefined ? [] : typeof had === 'string' ? [had] : had).filter((w) => w !== key);
      if (list.length > 1) this.wanters.set(k, list);
      else if (list.length === 1) this.wanters.set(k, list[0]);
      else this.wanters.delete(k);
      if (this.desired.get(k)?.owner !== key) continue;
      const next = list.reduce<ServicePortKey | undefined>((best, w) => (best === undefined || claimPrecedence(this.servicePorts.get(w) ?? { key: w }, this.servicePorts.get(best) ?? { key: best }) < 0 ? w : best), undefined);
      if (next === undefined) this.desired.delete(k);
      else this.desired.set(k, this.plans.get(next)!.services.get(k)!);
    }
    this.plans.delete(key);
  }

  // ---- kernel ------------------------------------------------------------------------------------------------

  /** Reads what the kernel holds: svcplane's virtual services, their real servers, the link and its addresses. */
  /**
   * Reads what IPVS, svcplane0 and the node's addresses hold. With `create` (a sync) a missing svcplane0 is made
   * and set up; without (a dry run) nothing is changed, and a missing link holds nothing.
   */
  private async readKernel(create = true): Promise<boolean> {
    const [[services, dests], link0] = await Promise.all([
      (async () => {
        const all = await this.client.listServices();
        this.unmarked = new Map(all.filter((s) => !(s.flags & OWNED_FLAG)).map((s) => [vsKey(s), s]));
        const services = all.filter((s) => s.flags & OWNED_FLAG);
        return [services, await this.client.listDests(services)] as const;
      })(),
      this.client.link(this.config.interfaceName),
    ]);
    this.programmed = new Map();
    services.forEach((s, i) => {
      const m = new Map<string, ipvs.RealServer>();
      for (const d of dests[i]) m.set(destKey(d), d);
      this.programmed!.set(vsKey(s), { vs: s, dests: m });
    });
    let link = link0;
    if (!link && !create) {
      this.linkIndex = 0;
      const all = await this.client.allAddresses();
      this.boundAddresses = new Set();
      this.leftoverBindings = [];
      this.localAddresses = new Set(all.map((a) => a.address));
      this.nodeAddresses = nodePortAddressesOf(all.map((a) => ({ ...a, link: String(a.index) })), this.config.nodePortAddresses, this.config.interfaceName);
      return false;
    }
    if (!link) {
      const r = await this.client.applyRoute([{ request: rtnl.newDummyLinkRequest(this.config.interfaceName), describe: `create dummy link ${this.config.interfaceName}`, tolerate: [EEXIST] }]);
      if (r.failures.length) throw this.client.error(r.failures);
      link = await this.client.link(this.config.interfaceName);
      if (!link) throw new Error(`link ${this.config.interfaceName} was created but cannot be found`);
    } else if (link.kind && link.kind !== 'dummy') {
      throw new Error(`link ${this.config.interfaceName} exists and is a ${link.kind}, not svcplane's dummy link; remove or rename it`);
    } else if (!(link.flags & rtnl.IFF_UP) && create) {
      const r = await this.client.applyRoute([{ request: rtnl.setLinkUpRequest(link.index), describe: `set ${this.config.interfaceName} up` }]);
      if (r.failures.length) throw this.client.error(r.failures);
    }
    this.linkIndex = link.index;
    const [all, allRoutes] = await Promise.all([this.client.allAddresses(), this.client.allRoutes()]);
    const onLink = all.filter((a) => a.index === link!.index && a.scope !== 253).map((a) => a.address);
    const routes = allRoutes.filter((r) => rtnl.isServiceRoute(r, link!.index)).map((r) => r.dst);
    const [mine, other] = this.config.bindMode === 'route' ? [routes, onLink] : [onLink, routes];
    this.boundAddresses = new Set(mine);
    this.leftoverBindings = other;
    this.localAddresses = new Set(all.filter((a) => a.index !== link!.index).map((a) => a.address));
    const svcLink = this.config.interfaceName;
    this.nodeAddresses = nodePortAddressesOf(all.map((a) => ({ ...a, link: a.index === link!.index ? svcLink : String(a.index) })), this.config.nodePortAddresses, svcLink);
    return true;
  }

  /**
   * A virtual service without svcplane's mark at an address:port a Service wants is taken as svcplane's, with its
   * real servers, so that converge() repairs it like any other (scheduler, flags with the mark, persistence, real
   * servers) instead of failing to add the Service's own with EEXIST at every sync.
   *
   * Why it is svcplane's: `ipvsadm -E` sends every flag with a mask of ~0 (libipvs), so any edit of a virtual
   * service that does not name flag-3 (`-s wlc`, `-p 600`, ...) clears svcplane's mark (seen on 6.1: `-E -s wrr`
   * leaves `-s wrr` with no `-b flag-3`); the kernel keeps what it is sent. The address is the Service's (a
   * ClusterIP, external or LoadBalancer IP, or a node address at its NodePort), and svcplane's promise is that its
   * Services are programmed exactly as the API says (kube-proxy's IPVS mode also takes over whatever sits at a
   * Service's address:port). A virtual service no Service wants stays foreign whatever its address (a port of a
   * ClusterIP no Service uses, a fwmark service): never touched.
   * Returns one sentence per service taken, for the sync's warnings.
   */
  private async adoptUnmarked(): Promise<string[]> {
    const programmed = this.programmed!;
    const taken = [...this.unmarked].filter(([k]) => this.desired.has(k) && !programmed.has(k)).map(([, s]) => s);
    if (taken.length === 0) return [];
    const dests = await this.client.listDests(taken);
    return taken.map((s, i) => {
      const k = vsKey(s);
      programmed.set(k, { vs: s, dests: new Map(dests[i].map((d) => [destKey(d), d])) });
      this.unmarked.delete(k);
      return `virtual service ${ipvs.serviceKeyString(s)} (Service ${this.desired.get(k)!.owner}) had lost svcplane's mark (flag-3; \`ipvsadm -E\` clears it): taken back and repaired`;
    });
  }

  /** Sends what turns the kernel's `touched` virtual services and `touchedAddrs` bindings into the desired ones. */
  private async converge(touched: Set<string>, touchedAddrs: Set<string>): Promise<ApplyResult> {
    const fam = await this.client.familyId();
    const programmed = this.programmed!;
    const now = this.clock.now();
    const iface = this.config.interfaceName;
    const route = this.config.bindMode === 'route';
    const describeBinding = (code: number, a?: string) => `${BINDING_VERB[code]} ${a} ${code === BINDING_OP.bind ? 'on' : 'from'} ${iface}`;
    const bind = new OpBatch(describeBinding);
    const unbind = new OpBatch(describeBinding);
    // Bindings of the other kind (left by a run in the other bindMode) go first: an address's own local route
    // would make adding ours for the same address fail with EEXIST.
    let v4AddressGone = false;
    for (const a of this.leftoverBindings) {
      (route ? rtnl.writeDelAddr : rtnl.writeDelLocalRoute)(bind.w, this.linkIndex, a);
      bind.op(BINDING_OP.removeOld, [ESRCH, ENOENT, EADDRNOTAVAIL], a);
      this.boundAddresses.delete(a);
      touchedAddrs.add(a);
      if (route && !a.includes(':')) v4AddressGone = true;
    }
    this.leftoverBindings = [];
    // When a link's last IPv4 address goes, the kernel deletes every IPv4 route through it (fib_inetaddr_event:
    // fib_disable_ip), svcplane's local routes included: an address added to svcplane0 by hand, removed here, took
    // every IPv4 Service address with it (seen on 6.1; the next full sync found them missing). So in route mode,
    // once an IPv4 address is deleted, svcplane's IPv4 routes are added again after it in the same batch (EEXIST,
    // where another address kept them, is no failure).
    if (v4AddressGone) {
      for (const a of [...this.boundAddresses]) {
        if (a.includes(':') || !this.addrUsers.has(a)) continue; // unwanted ones are still deleted (ENOENT tolerated)
        this.boundAddresses.delete(a);
        touchedAddrs.add(a);
      }
    }
    for (const a of touchedAddrs) {
      const want = this.addrUsers.has(a);
      const have = this.boundAddresses.has(a);
      if (want && !have) {
        (route ? rtnl.writeNewLocalRoute : rtnl.writeNewAddr)(bind.w, this.linkIndex, a);
        bind.op(BINDING_OP.bind, [EEXIST], a);
      }
      if (!want && have) {
        (route ? rtnl.writeDelLocalRoute : rtnl.writeDelAddr)(unbind.w, this.linkIndex, a);
        unbind.op(BINDING_OP.unbind, [ESRCH, ENOENT, EADDRNOTAVAIL], a);
      }
    }

    // One batch in three passes, so its order is: services, then real servers, then deletions of services.
    // Operations carry a code and the virtual service key (and real server key): descriptions are built only for
    // refusals. The programmed state is updated as operations are queued (a refusal makes the next sync re-read it).
    const name = (k: string) => {
      const want = this.desired.get(k);
      return want ? `${ipvs.serviceKeyString(want.vs)} (Service ${want.owner})` : k;
    };
    const ops = new OpBatch((code, k, dk) => {
      const rs = dk?.replace('|', ':');
      switch (code) {
        case IPVS_OP.addService: return `add virtual service ${name(k!)}`;
        case IPVS_OP.updateService: return `update virtual service ${name(k!)}`;
        case IPVS_OP.addServer: return `add real server ${rs} to ${name(k!)}`;
        case IPVS_OP.setWeight: return `set the weight of real server ${rs} in ${name(k!)}`;
        case IPVS_OP.deleteServer: return `delete real server ${rs} from ${name(k!)}`;
        case IPVS_OP.drainServer: return `drain real server ${rs} of ${name(k!)} (weight 0)`;
        default: return `delete virtual service ${k}`;
      }
    });
    const keys = [...touched];
    for (const k of keys) {
      const want = this.desired.get(k);
      if (!want) continue;
      const have = programmed.get(k);
      if (!have) {
        ipvs.writeNewService(ops.w, fam, want.vs);
        ops.op(IPVS_OP.addService, undefined, k);
      } else if (!sameService(have.vs, want.vs)) {
        ipvs.writeSetService(ops.w, fam, want.vs);
        ops.op(IPVS_OP.updateService, undefined, k);
      }
    }
    const gone: ProgrammedService[] = [];
    for (const k of keys) {
      const want = this.desired.get(k);
      const have = programmed.get(k);
      if (!want) {
        if (have) gone.push(have);
        programmed.delete(k);
        continue;
      }
      if (!have) {
        // A new virtual service: every real server is new. Its programmed map is the desired one (never mutated:
        // draining entries only ever go into maps built below).
        for (const [dk, d] of want.dests) {
          ipvs.writeNewDest(ops.w, fam, want.vs, d);
          ops.op(IPVS_OP.addServer, undefined, k, dk);
        }
        programmed.set(k, { vs: want.vs, dests: want.dests });
        continue;
      }
      const dests = new Map<string, ipvs.RealServer>();
      for (const [dk, d] of want.dests) {
        const cur = have.dests.get(dk);
        if (this.draining.size) this.draining.delete(`${k}#${dk}`);
        if (!cur) {
          ipvs.writeNewDest(ops.w, fam, want.vs, d);
          ops.op(IPVS_OP.addServer, undefined, k, dk);
        } else if (!sameDest(cur, d)) {
          ipvs.writeSetDest(ops.w, fam, want.vs, d);
          ops.op(IPVS_OP.setWeight, undefined, k, dk);
        }
        dests.set(dk, d);
      }
      for (const [dk, cur] of have.dests) {
        if (want.dests.has(dk)) continue;
        const id = `${k}#${dk}`;
        if (want.vs.protocol === 'UDP') {
          ipvs.writeDelDest(ops.w, fam, want.vs, cur);
          ops.op(IPVS_OP.deleteServer, [ENOENT], k, dk);
          this.staleFlows.push({ family: want.vs.family, dst: want.vs.address, dport: want.vs.port, endpoint: cur.address, endpointPort: cur.port });
          continue;
        }
        if (!this.draining.has(id)) this.draining.set(id, now);
        if (cur.weight !== 0) {
          ipvs.writeSetDest(ops.w, fam, want.vs, { ...cur, weight: 0 });
          ops.op(IPVS_OP.drainServer, undefined, k, dk);
        }
        dests.set(dk, { ...cur, weight: 0 });
      }
      programmed.set(k, { vs: want.vs, dests });
    }
    for (const have of gone) {
      ipvs.writeDelService(ops.w, fam, have.vs);
      ops.op(IPVS_OP.deleteService, [ESRCH], ipvs.serviceKeyString(have.vs));
    }
    // Order: addresses, then services, then real servers; deletions of services, then of addresses, last.
    const results: ApplyResult[] = [];
    results.push(await this.client.applyRoute(bind));
    results.push(await this.client.applyIpvs(ops));
    results.push(await this.client.applyRoute(unbind));
    for (const a of touchedAddrs) {
      if (this.addrUsers.has(a)) this.boundAddresses.add(a);
      else this.boundAddresses.delete(a);
    }
    results.push(await this.reapDrained());
    const failures = results.flatMap((r) => r.failures);
    if (failures.length) {
      this.programmed = undefined; // re-read on the next (full) sync
      throw this.client.error(failures);
    }
    return {
      operations: results.reduce((n, r) => n + r.operations, 0), sends: results.reduce((n, r) => n + r.sends, 0),
      bytes: results.reduce((n, r) => n + r.bytes, 0), kernelMicros: results.reduce((n, r) => n + r.kernelMicros, 0), failures,
    };
  }

  /** Deletes draining real servers whose connections have ended (or that waited gracefulTimeoutMs). */
  async reapDrained(): Promise<ApplyResult> {
    const empty: ApplyResult = { operations: 0, sends: 0, bytes: 0, kernelMicros: 0, failures: [] };
    if (this.draining.size === 0 || !this.programmed) return empty;
    const fam = await this.client.familyId();
    const byService = new Map<string, string[]>();
    for (const id of this.draining.keys()) {
      const [k, dk] = id.split('#');
      const list = byService.get(k);
      if (list) list.push(dk);
      else byService.set(k, [dk]);
    }
    const keys = [...byService.keys()].filter((k) => this.programmed!.has(k));
    for (const k of byService.keys()) if (!this.programmed.has(k)) for (const dk of byService.get(k)!) this.draining.delete(`${k}#${dk}`);
    const states = await this.client.listDests(keys.map((k) => this.programmed!.get(k)!.vs));
    const ops = new OpBatch();
    let deleted = 0;
    const now = this.clock.now();
    keys.forEach((k, i) => {
      const svc = this.programmed!.get(k)!;
      for (const dk of byService.get(k)!) {
        const id = `${k}#${dk}`;
        const st = states[i].find((d) => destKey(d) === dk);
        if (!st) {
          this.draining.delete(id);
          svc.dests.delete(dk);
          continue;
        }
        const idle = st.activeConns === 0 && st.inactiveConns === 0;
        const expired = now - this.draining.get(id)! >= this.config.gracefulTimeoutMs;
        if (!idle && !expired) continue;
        ipvs.writeDelDest(ops.w, fam, svc.vs, st);
        ops.op(`delete drained real server ${dk.replace('|', ':')} from ${ipvs.serviceKeyString(svc.vs)}${expired && !idle ? ' (graceful period over)' : ''}`, [ENOENT]);
        deleted++;
        this.draining.delete(id);
        svc.dests.delete(dk);
      }
    });
    if (deleted) this.log.info('drained real servers deleted', { count: deleted, draining: this.draining.size });
    return this.client.applyIpvs(ops);
  }

  /** Real servers still draining (for status, tests and the agent's periodic reaping). */
  get drainingCount(): number {
    return this.draining.size;
  }

  housekeepingDue(): boolean {
    return this.draining.size > 0 && !!this.programmed && !this.needFull;
  }

  /** Deletes drained real servers (the sync loop calls it every few seconds while some drain). */
  async housekeeping(): Promise<void> {
    const r = await this.reapDrained();
    if (r.failures.length) {
      this.programmed = undefined;
      throw this.client.error(r.failures);
    }
  }

  private result(full: boolean, res: ApplyResult, nft: { tx: { size: number; summary(): Record<string, number> }; kernelMicros: number; bytes: number; encodeMicros?: number }, t0: bigint, problems: ModelProblem[]): SyncResult {
    const summary: Record<string, number> = { 'ipvs operations': res.operations };
    for (const [k, v] of Object.entries(nft.tx.summary())) summary[`nft ${k}`] = v;
    return {
      full, operations: res.operations + nft.tx.size, summary, bytes: res.bytes + nft.bytes, kernelMicros: res.kernelMicros + nft.kernelMicros,
      totalMicros: Number((process.hrtime.bigint() - t0) / 1000n), servicePorts: this.servicePorts.size, problems,
    };
  }
}

/**
 * Whether a real server is as wanted: weight, forwarding method and connection thresholds (`ipvsadm -e -x/-y` sets
 * those; a set upper threshold stops new connections to it). SET_DEST sends all four.
 */
function sameDest(a: ipvs.RealServer, b: ipvs.RealServer): boolean {
  return a.weight === b.weight && a.forward === b.forward && a.upperThreshold === b.upperThreshold && a.lowerThreshold === b.lowerThreshold;
}

function sameService(a: ipvs.VirtualService, b: ipvs.VirtualService): boolean {
  const flags = (x: number) => x & ~ipvs.SVC_FLAG.HASHED;
  return a.scheduler === b.scheduler && flags(a.flags) === flags(b.flags) && a.timeout === b.timeout && a.netmask === b.netmask;
}
