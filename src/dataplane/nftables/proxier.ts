// The nftables dataplane: one transaction per sync. A full sync reads what the kernel holds (so a restart adopts
// the existing tables instead of flushing them, and anything changed behind our back is repaired) and sends
// only the difference. A partial sync touches only the changed Service ports' elements (and a pick rule when an endpoint count beyond
// the static ones comes or goes): its cost
// does not depend on how many Services exist. A failed sync forces the next one to be full (kube-proxy's rule).
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import type { Dataplane, StatusReport, SyncResult } from '../types';
import type { NftClient } from './client';
import { applyChanges, diffTable, type ChainChange, type ElementChange } from './diff';
import { Ledger } from './ledger';
import type { NfFamily } from './netlink/constants';
import type { ChainState, TableState } from './objects';
import { elementKey } from './objects';
import { FAMILIES, type Claim, type Fragment, type FragmentElement, type NftablesConfig, type SharedElement, describeClaim, dynamicCounts, familyShape, fragmentsOf, pickChains, skeleton } from './ruleset';
import { statusRows } from './status';
import { NftTransaction } from './transaction';

interface FamilyState {
  /** address:port claims -> the Service ports claiming them (the first one holds it). */
  claims: Ledger<Claim>;
  /** cluster-ips and hairpin elements -> the Service ports wanting them. */
  shared: Ledger<SharedElement>;
  /** Pick rules beyond the static ones (pickRuleId) -> the Service ports needing them: a rule stays while any does. */
  pickUsers: Map<string, Set<ServicePortKey>>;
  /** The pick chains last built, and for which dynamic pick rules. */
  picks?: { signature: string; chains: ChainState[] };
}

export class NftablesProxier implements Dataplane {
  readonly mode = 'nftables';
  private servicePorts = new Map<ServicePortKey, ServicePort>();
  private fragments = new Map<ServicePortKey, Map<NfFamily, Fragment>>();
  private families = new Map<NfFamily, FamilyState>();
  private needFull = true;

  constructor(
    private readonly client: NftClient,
    private readonly config: NftablesConfig,
    private readonly log: Logger = silentLogger,
  ) {}

  async syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    const t0 = process.hrtime.bigint();
    this.needFull = true;
    this.servicePorts = new Map(servicePorts);
    const problems: ModelProblem[] = [];
    const fragments = new Map<ServicePortKey, Map<NfFamily, Fragment>>();
    const families = new Map<NfFamily, FamilyState>();
    for (const fam of FAMILIES) families.set(fam.nf, newFamilyState());
    for (const [key, sp] of servicePorts) {
      const frags = fragmentsOf(sp, this.config);
      fragments.set(key, frags);
      for (const [nf, frag] of frags) this.own(families.get(nf)!, key, frag, problems);
    }

    const tBuilt = process.hrtime.bigint();
    let dumpNs = 0n;
    const tx = new NftTransaction();
    for (const fam of FAMILIES) {
      const st = families.get(fam.nf)!;
      const desired = skeleton(fam.ip, this.config);
      for (const [, claim] of st.claims.entries()) for (const e of claim.elements) desired.elements.get(e.set)!.push(e);
      for (const [, e] of st.shared.entries()) desired.elements.get(e.set)!.push(e);
      for (const c of this.pickChains(fam.ip, st)) desired.chains.set(c.name, c);
      const td = process.hrtime.bigint();
      const current = await this.client.dumpTable(fam.nf, this.config.tableName);
      dumpNs += process.hrtime.bigint() - td;
      diffTable(tx, current, desired);
    }
    const tDiffed = process.hrtime.bigint();
    const res = await this.client.run(tx);
    this.fragments = fragments;
    this.families = families;
    this.needFull = false;
    const out = this.result(true, tx, res, t0, problems);
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
    for (const [key, sp] of changes) {
      if (sp) this.servicePorts.set(key, sp);
      else this.servicePorts.delete(key);
    }
    if (this.needFull) return this.syncFull(this.servicePorts);
    const t0 = process.hrtime.bigint();
    const problems: ModelProblem[] = [];
    const tx = new NftTransaction();
    // Computed first, applied to our state only once the kernel has accepted the batch.
    const newFragments = new Map<ServicePortKey, Map<NfFamily, Fragment> | undefined>();
    for (const [key, sp] of changes) newFragments.set(key, sp ? fragmentsOf(sp, this.config) : undefined);

    this.needFull = true; // until the batch is acknowledged: our ledger is updated before the commit
    for (const fam of FAMILIES) {
      const st = this.families.get(fam.nf)!;
      const touchedClaims = new Set<string>();
      const touchedShared = new Set<string>();
      const olds: Array<[ServicePortKey, Fragment]> = [];
      const news: Array<[ServicePortKey, Fragment]> = [];
      for (const [key, frags] of newFragments) {
        const before = this.fragments.get(key)?.get(fam.nf);
        const after = frags?.get(fam.nf);
        if (before) olds.push([key, before]);
        if (after) news.push([key, after]);
        for (const f of [before, after]) {
          for (const c of f?.claims ?? []) touchedClaims.add(c.id);
          for (const e of f?.shared ?? []) touchedShared.add(e.id);
        }
      }
      const claimsBefore = [...touchedClaims].map((id) => st.claims.effective(id));
      const sharedBefore = [...touchedShared].map((id) => st.shared.effective(id));
      const beforePicks = this.pickChains(fam.ip, st);
      const next = new Map(news);
      for (const [key, frag] of olds) this.disown(st, key, frag, next.get(key));
      for (const [key, frag] of news) this.own(st, key, frag, problems);
      const elements: ElementChange[] = [];
      [...touchedClaims].forEach((id, i) => claimChanges(claimsBefore[i], st.claims.effective(id), elements));
      [...touchedShared].forEach((id, i) => {
        const before = sharedBefore[i];
        const after = st.shared.effective(id);
        if (before || after) elements.push({ set: (before ?? after)!.set, before, after });
      });
      // The pick chains change only when an endpoint count above the static ones comes into use or goes out of use.
      const afterPicks = this.pickChains(fam.ip, st);
      const chains: ChainChange[] = beforePicks.map((c, i) => ({ before: c, after: afterPicks[i] }));
      // Operations are grouped per set, not per Service; when one Service port changed (the usual partial sync),
      // every operation is its own, so a kernel refusal names it.
      const only = changes.size === 1 ? `Service ${[...changes.keys()][0]}` : undefined;
      applyChanges(tx, fam.nf, this.config.tableName, chains, elements, () => only);
    }
    const res = await this.client.run(tx);
    for (const [key, frags] of newFragments) {
      if (frags) this.fragments.set(key, frags);
      else this.fragments.delete(key);
    }
    this.needFull = false;
    return this.result(false, tx, res, t0, problems);
  }

  async cleanup(): Promise<boolean> {
    const tx = new NftTransaction();
    for (const fam of FAMILIES) {
      if (await this.client.dumpTable(fam.nf, this.config.tableName)) tx.deleteTable(fam.nf, this.config.tableName);
    }
    await this.client.run(tx);
    this.fragments.clear();
    this.needFull = true;
    return tx.size > 0;
  }

  async status(): Promise<StatusReport> {
    const tables: TableState[] = [];
    for (const fam of FAMILIES) {
      const t = await this.client.dumpTable(fam.nf, this.config.tableName);
      if (t) tables.push(t);
    }
    return { mode: this.mode, present: tables.length > 0, rows: tables.flatMap((t) => statusRows(t)) };
  }

  close(): void {
    this.client.close();
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
    const signature = `${dynamic.counts.join(',')}/${dynamic.nodePortCounts.join(',')}`;
    if (st.picks?.signature === signature) return st.picks.chains;
    const chains = pickChains(familyShape(ip), dynamic.counts, dynamic.nodePortCounts);
    st.picks = { signature, chains };
    return chains;
  }

  private own(st: FamilyState, key: ServicePortKey, frag: Fragment, problems: ModelProblem[]): void {
    for (const c of frag.claims) {
      const conflict = st.claims.add(c.id, key, c);
      if (conflict) {
        const what = describeClaim(c.id);
        problems.push({ object: `Service ${key}`, message: `${what} is already used by Service ${conflict.holder}; this one is not programmed there` });
        this.log.warn('conflicting Service address', { service: key, holder: conflict.holder, address: what });
      }
    }
    for (const e of frag.shared) st.shared.add(e.id, key, e);
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
  // Two Service ports claiming one address:port always conflict; wanting the same shared element never does.
  return { claims: new Ledger<Claim>(() => false), shared: new Ledger<SharedElement>(() => true), pickUsers: new Map() };
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
