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
import { FAMILIES, type Fragment, type NftablesConfig, fragmentsOf, skeleton } from './ruleset';
import { statusRows } from './status';
import { NftTransaction } from './transaction';

interface FamilyState {
  ledger: ElementLedger;
  /** chain name -> owning Service port (for error messages). */
  chainOwner: Map<string, ServicePortKey>;
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
    for (const fam of FAMILIES) families.set(fam.nf, { ledger: new ElementLedger(), chainOwner: new Map() });
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
      for (const [set, elems] of desired.elements) for (const e of st.ledger.elements(set)) elems.set(elementKey(e), e);
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
      const chains: ChainChange[] = [];
      const touched = new Map<string, { set: string; key: string }>();
      const olds: Array<[ServicePortKey, Fragment]> = [];
      const news: Array<[ServicePortKey, Fragment]> = [];
      for (const [key, frags] of newFragments) {
        const before = this.fragments.get(key)?.get(fam.nf);
        const after = frags?.get(fam.nf);
        if (before) olds.push([key, before]);
        if (after) news.push([key, after]);
        const byName = new Map<string, ChainChange>();
        for (const c of before?.chains ?? []) byName.set(c.name, { before: c });
        for (const c of after?.chains ?? []) byName.set(c.name, { ...byName.get(c.name), after: c });
        chains.push(...byName.values());
        for (const f of [before, after]) for (const e of f?.elements ?? []) {
          const k = elementKey(e.element);
          touched.set(`${e.set}\0${k}`, { set: e.set, key: k });
        }
      }
      const beforeEff = new Map([...touched].map(([id, t]) => [id, st.ledger.effective(t.set, t.key)]));
      for (const [key, frag] of olds) this.disown(st, key, frag);
      for (const [key, frag] of news) this.own(st, key, frag, problems);
      const elements: ElementChange[] = [...touched].map(([id, t]) => ({
        set: t.set,
        before: beforeEff.get(id),
        after: st.ledger.effective(t.set, t.key),
      }));
      applyChanges(tx, fam.nf, this.config.tableName, chains, elements, (chain) => {
        const owner = st.chainOwner.get(chain) ?? this.ownerOfRemoved(chain, olds);
        return owner ? `Service ${owner}` : undefined;
      });
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

  private own(st: FamilyState, key: ServicePortKey, frag: Fragment, problems: ModelProblem[]): void {
    for (const c of frag.chains) st.chainOwner.set(c.name, key);
    for (const e of frag.elements) {
      const conflict = st.ledger.add(e.set, key, e.element);
      if (conflict) {
        const p = { object: `Service ${key}`, message: `${e.set} entry already used by Service ${conflict.holder}; this one is not programmed there` };
        problems.push(p);
        this.log.warn('conflicting Service address', { service: key, holder: conflict.holder, set: e.set });
      }
    }
  }

  private disown(st: FamilyState, key: ServicePortKey, frag: Fragment): void {
    for (const c of frag.chains) if (st.chainOwner.get(c.name) === key) st.chainOwner.delete(c.name);
    for (const e of frag.elements) st.ledger.remove(e.set, key, e.element);
  }

  private ownerOfRemoved(chain: string, olds: Array<[ServicePortKey, Fragment]>): string | undefined {
    for (const [key, frag] of olds) if (frag.chains.some((c: ChainState) => c.name === chain)) return key;
    return undefined;
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
