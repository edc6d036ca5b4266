// The nftables dataplane: one transaction per sync. A full sync reads what the kernel holds (so a restart adopts
// the existing tables instead of flushing them, and anything changed behind our back is repaired) and sends
// only the difference. A partial sync touches only the changed Service ports' elements (and a pick rule when an endpoint count beyond
// the static ones comes or goes): its cost
// does not depend on how many Services exist. A failed sync forces the next one to be full (kube-proxy's rule).
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import { claimConflictProblem, claimPrecedence, claimRank } from '../../model/precedence';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import type { Dataplane, StatusReport, SyncPlan, SyncResult } from '../types';
import { PlanCounter } from '../plan';
import { NftTransactionError, type NftClient } from './client';
import { applyChanges, diffTable, type ChainChange, type ElementChange } from './diff';
import { Ledger } from './ledger';
import type { NfFamily } from './netlink/constants';
import type { ChainState, DesiredTable, TableState } from './objects';
import { elementKey } from './objects';
import { FAMILIES, SETS } from './rules/names';
import type { NftablesConfig } from './rules/config';
import { familyShape } from './rules/match';
import { dynamicCounts, pickChains } from './rules/picks';
import { skeleton } from './rules/skeleton';
import { type Claim, type Fragment, type FragmentElement, describeClaim, fragmentsOf, sharedElementOf } from './rules/fragment';
import { ownTableWarnings, tableDrift } from './drift';
import { describeForeign, readForeignChains } from './foreign';
import { statusRows } from './status';
import { type ConstructId, type KernelReport, type KernelSupport, kernelReport, probeKernel, requireConstructs } from './kernel';
import type { StaleFlow, StaleFlowCleaner } from '../conntrack';
import { staleUdpFlows } from './stale';
import { NftTransaction } from './transaction';
import type { Explanation, FlowQuery } from '../explain';
import { readNodeAddresses } from '../nodeAddresses';
import { explainNftables } from './explain';
import { NFPROTO_IPV4, NFPROTO_IPV6 } from './netlink/constants';

/**
 * What a family's table holds, as owners only. Ledgers remember who holds each claim and shared element, never the
 * elements themselves: those are recomputed from the holder's Service port when a partial sync needs them (a
 * handful per change), so the agent keeps no per-element Buffer alive between syncs (memory at 30k Services).
 */
interface FamilyState {
  /** address:port claims -> the Service ports claiming them, valued by claimRank (the first in rank holds it). */
  claims: Ledger<string>;
  /** cluster-ips and hairpin elements (sharedElementOf(id)) -> the Service ports wanting them. */
  shared: Ledger<number>;
  /** Pick rules beyond the static ones (pickRuleId) -> the Service ports needing them: a rule stays while any does. */
  pickUsers: Map<string, Set<ServicePortKey>>;
  /** The pick chains last built, and for which dynamic pick rules. */
  picks?: { signature: string; chains: ChainState[] };
}

type Fragments = Map<NfFamily, Fragment>;

/** Full syncs tried when another writer's commits keep changing the table under them (see syncFull). */
const FULL_SYNC_ATTEMPTS = 3;

/** The constructs the nftables mode's tables use (kernel.ts); the ones without a fallback are required. */
export const NFTABLES_CONSTRUCTS: readonly ConstructId[] = ['map-membership', 'concat-ranges', 'reject-prerouting', 'dynamic-set-lookup'];

export class NftablesProxier implements Dataplane {
  readonly mode = 'nftables';
  /** The Service ports the table holds (or, after a failure, should hold: the next sync is then full). */
  private servicePorts = new Map<ServicePortKey, ServicePort>();
  private families = new Map<NfFamily, FamilyState>();
  private needFull = true;

  constructor(
    private readonly client: NftClient,
    private readonly config: NftablesConfig,
    private readonly log: Logger = silentLogger,
    /** Deletes UDP conntrack entries of endpoints a sync took away (none: not done, e.g. in unit tests). */
    private readonly conntrack?: StaleFlowCleaner,
    /** This node's addresses, for explain (default: this process's network namespace's). */
    private readonly nodeAddresses: () => Promise<string[]> = () => readNodeAddresses(),
  ) {}

  /** After a committed sync: delete the UDP flows still pointing at endpoints it took away (conntrack.ts). */
  private async cleanConntrack(flows: StaleFlow[]): Promise<{ 4: number; 6: number } | undefined> {
    if (!this.conntrack || flows.length === 0) return undefined;
    const seen = new Set<string>();
    const unique = flows.filter((f) => {
      const k = `${f.family}|${f.dst ?? '*'}|${f.dport}|${f.endpoint}|${f.endpointPort}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    try {
      const r = await this.conntrack.deleteStale(unique);
      for (const e of r.errors) this.log.warn('stale UDP conntrack entries not deleted', { error: e });
      if (r.deleted[4] + r.deleted[6] > 0) this.log.info('stale UDP conntrack entries deleted', { v4: r.deleted[4], v6: r.deleted[6], flows: unique.length });
      return r.deleted;
    } catch (e) {
      // The dataplane is programmed; a failed clean-up is reported, not a failed sync.
      this.log.warn('stale UDP conntrack entries not deleted', { error: (e as Error).message });
      return undefined;
    }
  }

  /**
   * After a full sync that made the table see traffic again (it was dormant, or a NAT base chain was missing or
   * moved): deletes the conntrack entries made meanwhile to Service addresses without DNAT (conntrack.ts says why).
   * Never fails the sync.
   */
  private async cleanUnNatted(servicePorts: Map<ServicePortKey, ServicePort>): Promise<void> {
    if (!this.conntrack) return;
    const addresses = new Set<string>();
    for (const sp of servicePorts.values()) for (const a of [...sp.clusterIPs, ...sp.externalIPs, ...sp.loadBalancerIPs]) addresses.add(a);
    try {
      const r = await this.conntrack.deleteUnNatted(addresses);
      for (const e of r.errors) this.log.warn('conntrack entries that bypassed svcplane\'s NAT not deleted', { error: e });
      if (r.deleted[4] + r.deleted[6] > 0) this.log.info('conntrack entries that bypassed svcplane\'s NAT deleted', { v4: r.deleted[4], v6: r.deleted[6] });
    } catch (e) {
      this.log.warn('conntrack entries that bypassed svcplane\'s NAT not deleted', { error: (e as Error).message });
    }
  }

  /**
   * What this kernel accepts, probed once (kernel.ts) unless the config pinned it, and the shape chosen for it.
   * Throws NftKernelError, naming what is missing, on a kernel this mode cannot run on.
   */
  async prepare(): Promise<KernelReport> {
    const k = await this.kernelSupport();
    requireConstructs(k, NFTABLES_CONSTRUCTS, this.mode);
    return kernelReport(k, NFTABLES_CONSTRUCTS);
  }

  private async kernelSupport(): Promise<KernelSupport> {
    if (!this.config.kernel) {
      this.config.kernel = await probeKernel(this.client);
      this.log.debug('nf_tables constructs probed', { kernel: this.config.kernel.release, missing: this.config.kernel.missing });
    }
    return this.config.kernel;
  }

  /**
   * A full sync's transaction is the difference from a read of the table: if another writer changed the table
   * between that read and the commit (a firewall reload's `flush ruleset`, a hand edit), the kernel refuses it.
   * The ruleset generation then says so, and the sync reads again, a few times, instead of failing.
   */
  async syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    for (let attempt = 1; ; attempt++) {
      const generation = await this.client.generation?.();
      try {
        return await this.syncFullOnce(servicePorts);
      } catch (e) {
        if (!(e instanceof NftTransactionError) || generation === undefined || attempt >= FULL_SYNC_ATTEMPTS) throw e;
        // A refused batch leaves the generation as it was: a move is someone else's commit.
        if ((await this.client.generation!()) === generation) throw e;
        this.log.warn('the ruleset changed while this sync was prepared (another writer): reading it again', { attempt, error: e.message });
      }
    }
  }

  /**
   * What a full sync of these Service ports wants: each family's table (skeleton, elements, pick chains), the claim
   * state behind it, and (when asked) which Service port each element is for.
   */
  private wanted(servicePorts: Map<ServicePortKey, ServicePort>, owners?: Map<string, ServicePortKey>) {
    const problems: ModelProblem[] = [];
    const families = new Map<NfFamily, FamilyState>();
    const desired = new Map<NfFamily, DesiredTable>();
    for (const fam of FAMILIES) {
      families.set(fam.nf, newFamilyState());
      desired.set(fam.nf, skeleton(fam.ip, this.config));
    }
    // In claim precedence order, so the first to own an id is the one that holds it (as a partial sync decides).
    for (const sp of [...servicePorts.values()].sort(claimPrecedence)) {
      for (const [nf, frag] of fragmentsOf(sp, this.config)) {
        const elements = desired.get(nf)!.elements;
        // The first to own an id holds it: its elements are the ones programmed.
        this.own(families.get(nf)!, sp, frag, problems, (e) => {
          elements.get(e.set)!.push(e);
          owners?.set(`${nf}|${e.set}|${elementKey(e)}`, sp.key);
        });
      }
    }
    for (const fam of FAMILIES) for (const c of this.pickChains(fam.ip, families.get(fam.nf)!)) desired.get(fam.nf)!.chains.set(c.name, c);
    return { problems, families, desired };
  }

  /**
   * What a full sync would change, per Service port, without changing anything (`sync --once --dry-run`): the
   * transaction is built against a read of the kernel and never sent.
   */
  async plan(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncPlan> {
    await this.prepare();
    const owners = new Map<string, ServicePortKey>();
    const { problems, desired } = this.wanted(servicePorts, owners);
    const tx = new NftTransaction();
    const counter = new PlanCounter();
    for (const fam of FAMILIES) {
      const current = await this.client.dumpTable(fam.nf, this.config.tableName);
      counter.table(tx, current, desired.get(fam.nf)!, (set, k) => owners.get(`${fam.nf}|${set}|${k}`));
    }
    return counter.result(this.mode, tx, 0, problems);
  }

  private async syncFullOnce(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    const t0 = process.hrtime.bigint();
    await this.prepare();
    this.needFull = true;
    this.servicePorts = new Map(servicePorts);
    const { problems, families, desired } = this.wanted(servicePorts);

    const tBuilt = process.hrtime.bigint();
    let dumpNs = 0n;
    const tx = new NftTransaction();
    const stale: StaleFlow[] = [];
    const repairs: string[] = [];
    let bypassed = false;
    for (const fam of FAMILIES) {
      const want = desired.get(fam.nf)!;
      const td = process.hrtime.bigint();
      const current = await this.client.dumpTable(fam.nf, this.config.tableName);
      dumpNs += process.hrtime.bigint() - td;
      if (current && natBypassed(current)) bypassed = true;
      for (const r of diffTable(tx, current, want)) repairs.push(`table ${fam.ip === 4 ? 'ip' : 'ip6'} ${this.config.tableName}: ${r}`);
      if (this.conntrack && current) for (const [set, addrLen] of slotSets(fam.ip)) stale.push(...staleUdpFlows(fam.ip, addrLen, current.elements.get(set)?.values() ?? [], want.elements.get(set) ?? []));
    }
    const tDiffed = process.hrtime.bigint();
    const res = await this.client.run(tx);
    this.families = families;
    this.needFull = false;
    const out = this.result(true, tx, res, t0, problems);
    out.conntrackDeleted = await this.cleanConntrack(stale);
    if (bypassed) await this.cleanUnNatted(servicePorts);
    // Once per full sync, while it lasts: what was repaired, and other tables' rules that may take Service traffic.
    if (repairs.length) this.log.warn('svcplane\'s tables were changed behind its back: repaired', { repairs });
    const foreign = (await readForeignChains(this.client, this.config.tableName, this.log)).map(describeForeign);
    if (foreign.length) this.log.warn('foreign rules at svcplane\'s hooks may take Service traffic', { chains: foreign });
    if (repairs.length || foreign.length) out.warnings = [...repairs, ...foreign];
    out.phases = {
      buildMicros: Number((tBuilt - t0) / 1000n),
      dumpMicros: Number(dumpNs / 1000n),
      diffMicros: Number((tDiffed - tBuilt - dumpNs) / 1000n),
      encodeMicros: res.encodeMicros ?? 0,
      kernelMicros: res.kernelMicros,
    };
    return out;
  }

  async syncPartial(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    // The Service ports as the table holds them, before this change (their fragments are recomputed from them).
    const before = new Map<ServicePortKey, ServicePort | undefined>();
    for (const key of changes.keys()) before.set(key, this.servicePorts.get(key));
    for (const [key, sp] of changes) {
      if (sp) this.servicePorts.set(key, sp);
      else this.servicePorts.delete(key);
    }
    if (this.needFull) return this.syncFull(this.servicePorts);
    const t0 = process.hrtime.bigint();
    const problems: ModelProblem[] = [];
    const tx = new NftTransaction();
    const oldFragments = new Map<ServicePortKey, Fragments | undefined>();
    const newFragments = new Map<ServicePortKey, Fragments | undefined>();
    for (const [key, sp] of changes) {
      const was = before.get(key);
      oldFragments.set(key, was ? fragmentsOf(was, this.config) : undefined);
      newFragments.set(key, sp ? fragmentsOf(sp, this.config) : undefined);
    }
    // Fragments of Service ports this sync does not change, recomputed when they hold (or come to hold) a claim a
    // changed port touches.
    const unchanged = new Map<ServicePortKey, Fragments>();
    const fragmentsOfHolder = (holder: ServicePortKey, phase: 'before' | 'after'): Fragments | undefined => {
      if (changes.has(holder)) return (phase === 'before' ? oldFragments : newFragments).get(holder);
      let f = unchanged.get(holder);
      if (!f) {
        const sp = this.servicePorts.get(holder);
        if (!sp) return undefined;
        unchanged.set(holder, (f = fragmentsOf(sp, this.config)));
      }
      return f;
    };
    const claimOf = (holder: ServicePortKey | undefined, id: string, nf: NfFamily, phase: 'before' | 'after'): Claim | undefined =>
      holder === undefined ? undefined : fragmentsOfHolder(holder, phase)?.get(nf)?.claims.find((c) => c.id === id);

    this.needFull = true; // until the batch is acknowledged: our ledger is updated before the commit
    const stale: StaleFlow[] = [];
    for (const fam of FAMILIES) {
      const st = this.families.get(fam.nf)!;
      const touchedClaims = new Set<string>();
      const touchedShared = new Set<string>();
      const olds: Array<[ServicePortKey, Fragment]> = [];
      const news: Array<[ServicePortKey, Fragment]> = [];
      for (const key of changes.keys()) {
        const b = oldFragments.get(key)?.get(fam.nf);
        const a = newFragments.get(key)?.get(fam.nf);
        if (b) olds.push([key, b]);
        if (a) news.push([key, a]);
        for (const f of [b, a]) {
          for (const c of f?.claims ?? []) touchedClaims.add(c.id);
          for (const e of f?.shared ?? []) touchedShared.add(e.id);
        }
      }
      const claimsBefore = [...touchedClaims].map((id) => claimOf(st.claims.holder(id), id, fam.nf, 'before'));
      const sharedBefore = [...touchedShared].map((id) => st.shared.holder(id) !== undefined);
      const beforePicks = this.pickChains(fam.ip, st);
      const next = new Map(news);
      for (const [key, frag] of olds) this.disown(st, key, frag, next.get(key));
      for (const [key, frag] of news) this.own(st, changes.get(key)!, frag, problems);
      const elements: ElementChange[] = [];
      [...touchedClaims].forEach((id, i) => claimChanges(claimsBefore[i], claimOf(st.claims.holder(id), id, fam.nf, 'after'), elements));
      [...touchedShared].forEach((id, i) => {
        const had = sharedBefore[i];
        const has = st.shared.holder(id) !== undefined;
        if (had === has) return;
        const e = sharedElementOf(id);
        elements.push({ set: e.set, before: had ? e : undefined, after: has ? e : undefined });
      });
      // The pick chains change only when an endpoint count above the static ones comes into use or goes out of use.
      const afterPicks = this.pickChains(fam.ip, st);
      const chains: ChainChange[] = beforePicks.map((c, i) => ({ before: c, after: afterPicks[i] }));
      // Operations are grouped per set, not per Service; when one Service port changed (the usual partial sync),
      // every operation is its own, so a kernel refusal names it.
      const only = changes.size === 1 ? `Service ${[...changes.keys()][0]}` : undefined;
      applyChanges(tx, fam.nf, this.config.tableName, chains, elements, () => only);
      if (this.conntrack) {
        for (const [set, addrLen] of slotSets(fam.ip)) {
          const of = elements.filter((e) => e.set === set);
          stale.push(...staleUdpFlows(fam.ip, addrLen, of.flatMap((e) => (e.before ? [e.before] : [])), of.flatMap((e) => (e.after ? [e.after] : []))));
        }
      }
    }
    const res = await this.client.run(tx);
    this.needFull = false;
    const out = this.result(false, tx, res, t0, problems);
    out.conntrackDeleted = await this.cleanConntrack(stale);
    return out;
  }

  async cleanup(): Promise<boolean> {
    const tx = new NftTransaction();
    for (const fam of FAMILIES) {
      if (await this.client.dumpTable(fam.nf, this.config.tableName)) tx.deleteTable(fam.nf, this.config.tableName);
    }
    await this.client.run(tx);
    this.families.clear();
    this.needFull = true;
    return tx.size > 0;
  }

  /**
   * The kernel's rules run on each flow's first packet (explain.ts), against one reading of the kernel: svcplane's
   * table of each family the flows need, the node's addresses and other tables' chains at svcplane's hooks.
   */
  async explain(flows: FlowQuery[]): Promise<Explanation[]> {
    const familyOf = (q: FlowQuery): NfFamily => (q.address.includes(':') ? NFPROTO_IPV6 : NFPROTO_IPV4);
    const tables = new Map<NfFamily, TableState | undefined>();
    for (const f of new Set(flows.map(familyOf))) tables.set(f, await this.client.dumpTable(f, this.config.tableName));
    const addresses = await this.nodeAddresses();
    const foreign = await readForeignChains(this.client, this.config.tableName, this.log);
    return flows.map((q) => explainNftables(tables.get(familyOf(q)), q, addresses, foreign));
  }

  async status(): Promise<StatusReport> {
    const tables: TableState[] = [];
    for (const fam of FAMILIES) {
      const t = await this.client.dumpTable(fam.nf, this.config.tableName);
      if (t) tables.push(t);
    }
    const kernel = kernelReport(await this.kernelSupport(), NFTABLES_CONSTRUCTS);
    const foreign = await readForeignChains(this.client, this.config.tableName, this.log);
    const warnings = [...ownTableWarnings(tables, this.config.tableName), ...foreign.map(describeForeign)];
    return {
      mode: this.mode, present: tables.length > 0, rows: tables.flatMap((t) => statusRows(t)), kernel,
      ...(warnings.length ? { warnings } : {}), ...(foreign.length ? { foreign } : {}),
    };
  }

  setNodeZone(zone: string | undefined): void {
    if (this.config.nodeZone === zone) return;
    this.config.nodeZone = zone;
    this.needFull = true;
  }

  setServiceCIDRs(cidrs: string[]): void {
    if ((this.config.serviceCIDRs ?? []).join() === cidrs.join()) return;
    this.config.serviceCIDRs = [...cidrs];
    this.needFull = true;
  }

  /** The Service ports the table holds (or should, after a failure). */
  currentServicePorts(): ReadonlyMap<ServicePortKey, ServicePort> {
    return this.servicePorts;
  }

  close(): void {
    this.client.close();
    this.conntrack?.close();
  }

  /** Whether the next sync must be full (after a failure, or before the first). */
  get fullSyncPending(): boolean {
    return this.needFull;
  }

  /**
   * Pick chains: rules for the static counts plus those Service ports with more endpoints need. They change only
   * when such a count comes or goes, so they are rebuilt only then (a partial sync asks twice).
   */
  private pickChains(ip: 4 | 6, st: FamilyState): ChainState[] {
    const dynamic = dynamicCounts(st.pickUsers.keys());
    const signature = [...st.pickUsers.keys()].sort().join('/');
    if (st.picks?.signature === signature) return st.picks.chains;
    const chains = pickChains(familyShape(ip), dynamic);
    st.picks = { signature, chains };
    return chains;
  }

  /** Records `sp` as an owner of its fragment's ids; `held` gets the elements of every id it is the first to own. */
  private own(st: FamilyState, sp: ServicePort, frag: Fragment, problems: ModelProblem[], held?: (e: FragmentElement) => void): void {
    const key = sp.key;
    for (const c of frag.claims) {
      if (held && st.claims.holder(c.id) === undefined) for (const e of c.elements) held(e);
      const conflict = st.claims.add(c.id, key, claimRank(sp));
      if (!conflict) continue;
      const what = describeClaim(c.id);
      problems.push(claimConflictProblem(what, conflict.owner, conflict.holder));
      this.log.warn('conflicting Service address', { service: conflict.owner, holder: conflict.holder, address: what });
    }
    for (const e of frag.shared) {
      if (held && st.shared.holder(e.id) === undefined) held(e);
      st.shared.add(e.id, key, 1);
    }
    for (const id of frag.picks) {
      const users = st.pickUsers.get(id);
      if (users) users.add(key);
      else st.pickUsers.set(id, new Set([key]));
    }
  }

  /**
   * Drops what `key` owned in `frag`, except what its next fragment still has: own() updates those in place, so
   * a Service port keeps its place in line for a contested element when it changes.
   */
  private disown(st: FamilyState, key: ServicePortKey, frag: Fragment, next?: Fragment): void {
    const keptPicks = new Set(next?.picks);
    const keptClaims = new Set(next?.claims.map((c) => c.id));
    const keptShared = new Set(next?.shared.map((e) => e.id));
    for (const id of frag.picks) {
      if (keptPicks.has(id)) continue;
      const users = st.pickUsers.get(id);
      if (users && users.delete(key) && users.size === 0) st.pickUsers.delete(id);
    }
    for (const c of frag.claims) if (!keptClaims.has(c.id)) st.claims.remove(c.id, key);
    for (const e of frag.shared) if (!keptShared.has(e.id)) st.shared.remove(e.id, key);
  }

  private result(full: boolean, tx: NftTransaction, res: { bytes: number; kernelMicros: number }, t0: bigint, problems: ModelProblem[]): SyncResult {
    return {
      full,
      operations: tx.size,
      summary: tx.summary(),
      bytes: res.bytes,
      kernelMicros: res.kernelMicros,
      totalMicros: Number((process.hrtime.bigint() - t0) / 1000n),
      servicePorts: this.servicePorts.size,
      problems,
    };
  }
}

function newFamilyState(): FamilyState {
  // Two Service ports claiming one address:port always conflict (the one first in claim precedence holds it);
  // wanting the same shared element never does.
  return { claims: new Ledger<string>(() => false, (a, b) => a < b), shared: new Ledger<number>(() => true), pickUsers: new Map() };
}

/** The element changes from one claim's effective elements to another's (either may be absent). */
function claimChanges(before: Claim | undefined, after: Claim | undefined, out: ElementChange[]): void {
  if (before === after) return;
  const old = new Map<string, FragmentElement>();
  for (const e of before?.elements ?? []) old.set(`${e.set}\0${elementKey(e)}`, e);
  for (const e of after?.elements ?? []) {
    const id = `${e.set}\0${elementKey(e)}`;
    const b = old.get(id);
    old.delete(id);
    out.push({ set: e.set, before: b, after: e });
  }
  for (const e of old.values()) out.push({ set: e.set, before: e });
}

/** The endpoint-slot maps of a family's table, with the length of the address their keys start with (0: NodePorts). */
function slotSets(ip: 4 | 6): Array<[string, number]> {
  const a = ip === 4 ? 4 : 16;
  return [[SETS.serviceEndpoints, a], [SETS.nodePortEndpoints, 0], [SETS.localEndpoints, a], [SETS.localNodePortEndpoints, 0]];
}

/** Whether Service traffic went past the table un-NATed: dormant, or a NAT base chain missing or on another hook. */
function natBypassed(t: TableState): boolean {
  const d = tableDrift(t);
  return d.dormant || d.chains.some((c) => c.want.type === 'nat' && (c.problem === 'missing' || c.problem === 'moved'));
}
