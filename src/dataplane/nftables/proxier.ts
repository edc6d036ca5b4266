// The nftables dataplane: one transaction per sync. A full sync reads what the kernel holds (so a restart adopts
// the existing tables instead of flushing them, and anything changed behind our back is repaired) and sends
// only the difference. A partial sync touches only the changed Service ports' chains and elements: its cost
// does not depend on how many Services exist. A failed sync forces the next one to be full (kube-proxy's rule).
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import type { Dataplane, StatusReport, SyncResult } from '../types';
import type { NftClient } from './client';
import { applyChanges, diffTable, type ChainChange, type ElementChange } from './diff';
import { ElementLedger } from './ledger';
import type { NfFamily } from './netlink/constants';
import type { ChainState, TableState } from './objects';
import { elementKey } from './objects';
import { FAMILIES, type Fragment, type NftablesConfig, STATIC_PICK_COUNTS, countsOfPickChains, dispatchChains, familyShape, fragmentsOf, skeleton } from './ruleset';
import { statusRows } from './status';
import { NftTransaction } from './transaction';

interface FamilyState {
  ledger: ElementLedger;
  /** Shared chains (pick-N) -> the Service ports using them: a chain stays while any uses it. */
  chainUsers: Map<string, { chain: ChainState; users: Set<ServicePortKey> }>;
  /** The dispatch chains last built, and which dynamic pick chains they were built for. */
  dispatch?: { signature: string; chains: ChainState[] };
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
    for (const fam of FAMILIES) families.set(fam.nf, { ledger: new ElementLedger(), chainUsers: new Map() });
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
      for (const frags of fragments.values()) {
        const frag = frags.get(fam.nf);
        if (frag) for (const c of frag.chains) desired.chains.set(c.name, c);
      }
      for (const [set, elems] of desired.elements) for (const [k, e] of st.ledger.entries(set)) elems.set(k, e);
      for (const c of this.dispatchChains(fam.ip, st)) desired.chains.set(c.name, c);
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
      const touchedElements = new Map<string, { set: string; key: string }>();
      const touchedChains = new Set<string>();
      const olds: Array<[ServicePortKey, Fragment]> = [];
      const news: Array<[ServicePortKey, Fragment]> = [];
      for (const [key, frags] of newFragments) {
        const before = this.fragments.get(key)?.get(fam.nf);
        const after = frags?.get(fam.nf);
        if (before) olds.push([key, before]);
        if (after) news.push([key, after]);
        for (const f of [before, after]) {
          for (const c of f?.chains ?? []) touchedChains.add(c.name);
          for (const e of f?.elements ?? []) {
            const k = elementKey(e.element);
            touchedElements.set(`${e.set}\0${k}`, { set: e.set, key: k });
          }
        }
      }
      const beforeEff = new Map([...touchedElements].map(([id, t]) => [id, st.ledger.effective(t.set, t.key)]));
      const beforeChains = new Map([...touchedChains].map((n) => [n, st.chainUsers.get(n)?.chain]));
      const beforeDispatch = this.dispatchChains(fam.ip, st);
      const next = new Map(news);
      for (const [key, frag] of olds) this.disown(st, key, frag, next.get(key));
      for (const [key, frag] of news) this.own(st, key, frag, problems);
      const elements: ElementChange[] = [...touchedElements].map(([id, t]) => ({
        set: t.set,
        before: beforeEff.get(id),
        after: st.ledger.effective(t.set, t.key),
      }));
      const chains: ChainChange[] = [...touchedChains].map((n) => ({ before: beforeChains.get(n), after: st.chainUsers.get(n)?.chain }));
      // The dispatch chain changes only when an endpoint count comes into use or goes out of use.
      const afterDispatch = this.dispatchChains(fam.ip, st);
      beforeDispatch.forEach((c, i) => chains.push({ before: c, after: afterDispatch[i] }));
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
   * Dispatch chains: the static counts plus the pick chains Service ports with more endpoints brought in. They
   * change only when such a pick chain comes or goes, so they are rebuilt only then (a partial sync asks twice).
   */
  private dispatchChains(ip: 4 | 6, st: FamilyState): ChainState[] {
    const dynamic = countsOfPickChains(st.chainUsers.keys());
    const signature = `${dynamic.counts.join(',')}/${dynamic.nodePortCounts.join(',')}`;
    if (st.dispatch?.signature === signature) return st.dispatch.chains;
    const statics = Array.from({ length: STATIC_PICK_COUNTS }, (_, i) => i + 1);
    const chains = dispatchChains(familyShape(ip), this.config, [...statics, ...dynamic.counts], [...statics, ...dynamic.nodePortCounts]);
    st.dispatch = { signature, chains };
    return chains;
  }

  private own(st: FamilyState, key: ServicePortKey, frag: Fragment, problems: ModelProblem[]): void {
    for (const c of frag.chains) {
      const u = st.chainUsers.get(c.name);
      if (u) u.users.add(key);
      else st.chainUsers.set(c.name, { chain: c, users: new Set([key]) });
    }
    for (const e of frag.elements) {
      const conflict = st.ledger.add(e.set, key, e.element);
      if (conflict) {
        const p = { object: `Service ${key}`, message: `${e.set} entry already used by Service ${conflict.holder}; this one is not programmed there` };
        problems.push(p);
        this.log.warn('conflicting Service address', { service: key, holder: conflict.holder, set: e.set });
      }
    }
  }

  /**
   * Drops what `key` owned in `frag`, except what its next fragment still has: own() updates those in place, so
   * a Service port keeps its place in line for a contested element when it changes.
   */
  private disown(st: FamilyState, key: ServicePortKey, frag: Fragment, next?: Fragment): void {
    const keptChains = new Set(next?.chains.map((c) => c.name));
    const kept = new Set(next?.elements.map((e) => `${e.set}\0${elementKey(e.element)}`));
    for (const c of frag.chains) {
      if (keptChains.has(c.name)) continue;
      const u = st.chainUsers.get(c.name);
      if (u && u.users.delete(key) && u.users.size === 0) st.chainUsers.delete(c.name);
    }
    for (const e of frag.elements) if (!kept.has(`${e.set}\0${elementKey(e.element)}`)) st.ledger.remove(e.set, key, e.element);
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
