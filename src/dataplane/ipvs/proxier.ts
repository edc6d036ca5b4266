// The IPVS dataplane: virtual services and real servers over generic netlink, Service addresses on a dummy link,
// diffed against what the kernel holds (read once at the first/full sync, then remembered) so only differences
// are sent, many per round trip.
//
// IPVS has no transactions: a sync's operations are applied in an order that never leaves a virtual service
// without its address or a real server without its service, and when the kernel refuses one, the error names it,
// the rest of the batch still applies, and the next sync is full: it re-reads the kernel and converges.
//
// Graceful termination: a TCP/SCTP real server no longer wanted is drained (weight 0) and deleted once idle (drain.ts);
// a UDP one is deleted at once, and its conntrack entries after the sync.
//
// Masquerade and filtering (what kube-proxy keeps in iptables and ipset) are one svcplane nftables table per family
// (filter.ts, nftables.ts), updated in the same sync, after IPVS. IPVS needs net.ipv4.vs.conntrack=1 for nf_nat's
// masquerade to apply to its traffic; svcplane sets it and kube-proxy's other IPVS sysctls at every full sync.
//
// The parts, one concern each: config.ts (settings), preflight.ts (scheduler check), sysctls.ts, desired.ts (one
// Service port's plan), plans.ts (every plan, who holds what), programmed.ts (reading the kernel), converge.ts
// (the operations that make it so), drain.ts (graceful termination), nftables.ts + filter.ts (the table beside).
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import * as rtnl from '../../netlink/rtnl';
import type { KernelReport } from '../nftables/kernel';
import type { NftClient } from '../nftables/client';
import { defaultConfig as defaultNftConfig } from '../nftables/rules/config';
import type { Dataplane, StatusReport, StatusRow, SyncPlan, SyncResult } from '../types';
import { PlanCounter, UNNAMED } from '../plan';
import { NftTransaction } from '../nftables/transaction';
import { OpBatch, type ApplyResult } from './client';
import type { IpvsProxierConfig } from './config';
import { bindingBatches, ipvsBatch, sameDest, sameService } from './converge';
import { describeVirtualService } from './describe';
import { Drainer, NOTHING_APPLIED } from './drain';
import { ENOENT, ESRCH } from './errno';
import type { IpvsKernel } from './ipvsKernel';
import { IpvsNftables } from './nftables';
import { IpvsPlans } from './plans';
import { checkScheduler } from './preflight';
import { ProgrammedIpvs } from './programmed';
import { ensureIpvsSysctls } from './sysctls';
import type { Explanation, FlowQuery } from '../explain';
import { LOOPBACK } from '../nodeAddresses';
import { explainIpvs } from './explain';
import type { StaleFlow, StaleFlowCleaner } from '../conntrack';
import { type Clock, realClock } from '../../sync/clock';
import { OWNED_FLAG } from './desired';
import * as ipvs from '../../netlink/ipvs';

export class IpvsProxier implements Dataplane {
  readonly mode = 'ipvs';
  private readonly plans: IpvsPlans;
  /** What the kernel holds, as last read and kept as operations are queued; undefined: read it at the next sync. */
  private programmed: ProgrammedIpvs | undefined;
  private readonly filter: IpvsNftables;
  private readonly drainer: Drainer;
  private sysctlsChecked = false;
  private schedulerChecked = false;
  private needFull = true;
  /** UDP flows of real servers deleted by the sync underway (their conntrack entries go after it). */
  private staleFlows: StaleFlow[] = [];

  constructor(
    private readonly kernel: IpvsKernel, nft: NftClient, private readonly config: IpvsProxierConfig, private readonly log: Logger = silentLogger,
    /** Deletes UDP conntrack entries of deleted real servers (none: not done). */
    private readonly conntrack?: StaleFlowCleaner,
    /** When draining began and how long it lasts are read from it (tests drive one). */
    private readonly clock: Clock = realClock,
  ) {
    this.filter = new IpvsNftables(nft, defaultNftConfig({
      tableName: config.tableName, clusterCIDRs: config.clusterCIDRs, masqueradeAll: config.masqueradeAll,
      nodePortAddresses: config.nodePortAddresses, masqueradeBit: config.masqueradeBit, nodeName: config.nodeName, nodeZone: config.nodeZone, nodeIPs: config.nodeIPs,
      serviceCIDRs: config.serviceCIDRs, podInterface: config.podInterface,
    }));
    this.drainer = new Drainer(config.gracefulTimeoutMs, log);
    this.plans = new IpvsPlans(() => ({
      scheduler: this.config.scheduler, nodeAddresses: this.programmed?.nodeAddresses ?? [], bind: this.bound,
      node: { name: this.config.nodeName, zone: this.config.nodeZone },
    }));
  }

  /** Whether svcplane binds this address on svcplane0 (and so filters its unused ports). */
  private readonly bound = (address: string): boolean => !this.programmed?.localAddresses.has(address);

  /**
   * Preflight, before anything is changed: IPVS itself (its generic netlink family), then what the kernel's
   * nf_tables accepts for the table beside it; each missing piece is refused in words. A sync runs it first, so a
   * kernel without IPVS gets nothing set, not even ip_forward, before the refusal.
   */
  async prepare(): Promise<KernelReport> {
    await this.kernel.familyId();
    if (!this.schedulerChecked) {
      await checkScheduler(this.kernel, this.config.scheduler);
      this.schedulerChecked = true;
    }
    return this.filter.prepare();
  }

  async syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    const t0 = process.hrtime.bigint();
    await this.prepare();
    this.needFull = true;
    // Independent reads on different sockets (and the sysctls, off the JS thread too): in parallel.
    const [, read] = await Promise.all([this.ensureSysctls(), ProgrammedIpvs.read(this.kernel, this.config, true)]);
    const programmed = read.programmed;
    this.programmed = programmed;
    const tRead = process.hrtime.bigint();
    const problems = this.plans.replaceAll(servicePorts);
    const touched = new Set(this.plans.desired.keys());
    for (const k of programmed.services.keys()) touched.add(k);
    const addrs = new Set(this.plans.addrUsers.keys());
    for (const a of programmed.bound) addrs.add(a);
    const tPlan = process.hrtime.bigint();
    const adopted = await programmed.adoptUnmarked(this.kernel, this.plans.desired);
    const res = await this.converge(touched, addrs);
    const tIpvs = process.hrtime.bigint();
    const nft = await this.filter.full(this.plans.servicePorts, this.bound);
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

  /**
   * The dry run of syncFull (`sync --once --dry-run`): virtual services, real servers and svcplane0 bindings to
   * add, change or delete, and the filter table's elements, per Service port; nothing written (no sysctl, no link).
   */
  async plan(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncPlan> {
    // IPVS and the filter table's constructs, but not the scheduler check: it writes (a dummy virtual service).
    await this.kernel.familyId();
    await this.filter.prepare();
    const { programmed, haveLink } = await ProgrammedIpvs.read(this.kernel, this.config, false);
    this.programmed = programmed;
    const problems = this.plans.replaceAll(servicePorts);
    const counter = new PlanCounter();
    let ops = 0;
    const count = (who: string, what: 'add' | 'delete', thing: string, n = 1) => {
      if (n === 0) return;
      counter.count(who, what, thing, n);
      ops += n;
    };
    const desired = this.plans.desired;
    for (const [k, want] of desired) {
      const have = programmed.services.get(k);
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
    for (const k of programmed.services.keys()) if (!desired.has(k)) count(UNNAMED, 'delete', 'ipvs virtual service');
    const iface = this.config.interfaceName;
    const bindingOwner = new Map<string, string>();
    for (const [key, plan] of this.plans.entries()) for (const a of plan.addresses) if (!bindingOwner.has(a)) bindingOwner.set(a, key);
    for (const [a, key] of bindingOwner) if (!programmed.bound.has(a)) count(key, 'add', `${iface} binding`);
    // Bindings no Service port wants, and those of the other bindMode (all removed by a sync).
    for (const a of programmed.bound) if (!this.plans.addrUsers.has(a)) count(UNNAMED, 'delete', `${iface} binding`);
    count(UNNAMED, 'delete', `${iface} binding`, programmed.leftoverBindings.length);
    const tx = new NftTransaction();
    await this.filter.plan(this.plans.servicePorts, this.bound, counter, tx);
    const extra = haveLink ? [] : [`create dummy link ${iface}`];
    return counter.result(this.mode, tx, ops + extra.length, problems, extra);
  }

  async syncPartial(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    const servicePorts = this.plans.servicePorts;
    for (const [key, sp] of changes) {
      if (sp) servicePorts.set(key, sp);
      else servicePorts.delete(key);
    }
    if (this.needFull || !this.programmed) return this.syncFull(servicePorts);
    const t0 = process.hrtime.bigint();
    this.needFull = true; // until both IPVS and the nftables batch are through
    const problems: ModelProblem[] = [];
    const touched = new Set<string>();
    const touchedAddrs = new Set<string>();
    const note = (key: ServicePortKey) => {
      const plan = this.plans.get(key);
      for (const k of plan?.services.keys() ?? []) touched.add(k);
      for (const a of plan?.addresses ?? []) touchedAddrs.add(a);
    };
    for (const key of changes.keys()) {
      note(key);
      this.plans.remove(key);
    }
    for (const [key, sp] of changes) if (sp) {
      this.plans.add(key, sp, problems);
      note(key);
    }
    const res = await this.converge(touched, touchedAddrs);
    const nft = await this.filter.partial(changes, this.bound);
    this.needFull = false;
    const out = this.result(false, res, nft, t0, problems);
    out.conntrackDeleted = await this.cleanConntrack();
    return out;
  }

  async cleanup(): Promise<boolean> {
    const services = (await this.kernel.listServices()).filter((s) => s.flags & OWNED_FLAG);
    const ops = new OpBatch();
    const fam = await this.kernel.familyId();
    for (const s of services) {
      ipvs.writeDelService(ops.w, fam, s);
      ops.op(`delete virtual service ${ipvs.serviceKeyString(s)}`, [ESRCH, ENOENT]);
    }
    const res = await this.kernel.applyIpvs(ops);
    if (res.failures.length) throw this.kernel.error(res.failures);
    const link = await this.kernel.link(this.config.interfaceName);
    if (link) {
      const r = await this.kernel.applyRoute([{ request: rtnl.delLinkRequest(link.index), describe: `delete link ${this.config.interfaceName}` }]);
      if (r.failures.length) throw this.kernel.error(r.failures);
    }
    const table = await this.filter.remove();
    this.programmed = undefined;
    this.needFull = true;
    return services.length > 0 || !!link || table;
  }

  async status(): Promise<StatusReport> {
    const services = (await this.kernel.listServices()).filter((s) => s.flags & OWNED_FLAG);
    const dests = await this.kernel.listDests(services);
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

  /** Each flow against svcplane's virtual services and the table beside them (explain.ts), read once for all. */
  async explain(flows: FlowQuery[]): Promise<Explanation[]> {
    const services = (await this.kernel.listServices()).filter((s) => s.flags & OWNED_FLAG);
    const dests = await this.kernel.listDests(services);
    const [t4, t6] = await this.filter.dump();
    const addresses = (await this.kernel.allAddresses()).map((a) => a.address).filter((a) => !LOOPBACK.has(a));
    return flows.map((q) => explainIpvs(services, dests, q.address.includes(':') ? t6 : t4, q, addresses));
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
    this.kernel.close();
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

  private async ensureSysctls(): Promise<void> {
    await ensureIpvsSysctls(this.kernel, this.log, !this.sysctlsChecked);
    this.sysctlsChecked = true;
  }

  /** Sends what turns the kernel's `touched` virtual services and `touchedAddrs` bindings into the desired ones. */
  private async converge(touched: Set<string>, touchedAddrs: Set<string>): Promise<ApplyResult> {
    const programmed = this.programmed!;
    const fam = await this.kernel.familyId();
    const addrUsers = this.plans.addrUsers;
    const { bind, unbind } = bindingBatches(programmed, addrUsers, touchedAddrs, this.config.interfaceName, this.config.bindMode);
    const ops = ipvsBatch(fam, touched, this.plans.desired, programmed.services, this.drainer, this.clock.now(), this.staleFlows);
    // Order: addresses, then services, then real servers; deletions of services, then of addresses, last.
    const results: ApplyResult[] = [];
    results.push(await this.kernel.applyRoute(bind));
    results.push(await this.kernel.applyIpvs(ops));
    results.push(await this.kernel.applyRoute(unbind));
    for (const a of touchedAddrs) {
      if (addrUsers.has(a)) programmed.bound.add(a);
      else programmed.bound.delete(a);
    }
    results.push(await this.reapDrained());
    const failures = results.flatMap((r) => r.failures);
    if (failures.length) {
      this.programmed = undefined; // re-read on the next (full) sync
      throw this.kernel.error(failures);
    }
    return {
      operations: results.reduce((n, r) => n + r.operations, 0), sends: results.reduce((n, r) => n + r.sends, 0),
      bytes: results.reduce((n, r) => n + r.bytes, 0), kernelMicros: results.reduce((n, r) => n + r.kernelMicros, 0), failures,
    };
  }

  /** Deletes draining real servers whose connections have ended (or that waited gracefulTimeoutMs). */
  async reapDrained(): Promise<ApplyResult> {
    if (this.drainer.size === 0 || !this.programmed) return { ...NOTHING_APPLIED, failures: [] };
    return this.drainer.reap(this.kernel, this.programmed.services, this.clock.now());
  }

  /** Real servers still draining (for status, tests and the agent's periodic reaping). */
  get drainingCount(): number {
    return this.drainer.size;
  }

  housekeepingDue(): boolean {
    return this.drainer.size > 0 && !!this.programmed && !this.needFull;
  }

  /** Deletes drained real servers (the sync loop calls it every few seconds while some drain). */
  async housekeeping(): Promise<void> {
    const r = await this.reapDrained();
    if (r.failures.length) {
      this.programmed = undefined;
      throw this.kernel.error(r.failures);
    }
  }

  private result(full: boolean, res: ApplyResult, nft: { tx: { size: number; summary(): Record<string, number> }; kernelMicros: number; bytes: number; encodeMicros?: number }, t0: bigint, problems: ModelProblem[]): SyncResult {
    const summary: Record<string, number> = { 'ipvs operations': res.operations };
    for (const [k, v] of Object.entries(nft.tx.summary())) summary[`nft ${k}`] = v;
    return {
      full, operations: res.operations + nft.tx.size, summary, bytes: res.bytes + nft.bytes, kernelMicros: res.kernelMicros + nft.kernelMicros,
      totalMicros: Number((process.hrtime.bigint() - t0) / 1000n), servicePorts: this.plans.servicePorts.size, problems,
    };
  }
}
