// Keeps the nftables table beside IPVS (filter.ts) in step with the Service ports, one transaction per sync.
// Elements are reference-counted (a bound address, a hairpin pair or a NodePort key can be wanted by several
// Service ports): a partial sync sends only the elements whose count went from 0 to 1 or from 1 to 0, so its cost
// is that of the change, not of the cluster. A full sync dumps the kernel's table and sends the difference (a
// restart adopts the table; anything changed behind svcplane's back is repaired).
import type { ServicePort, ServicePortKey } from '../../model/types';
import type { NftClient } from '../nftables/client';
import { diffTable } from '../nftables/diff';
import { type ElementState, type TableState, elementKey } from '../nftables/objects';
import { FAMILIES } from '../nftables/rules/names';
import type { NftablesConfig } from '../nftables/rules/config';
import { NftTransaction } from '../nftables/transaction';
import type { PlanCounter } from '../plan';
import { type ConstructId, type KernelReport, type KernelSupport, kernelReport, probeKernel, requireConstructs } from '../nftables/kernel';

/** The constructs of kernel.ts the table beside IPVS uses (loadBalancerSourceRanges: a set of concatenated ranges). */
export const IPVS_NFT_CONSTRUCTS: readonly ConstructId[] = ['concat-ranges'];
import { type FilterElement, elementsOf, ipvsSkeleton } from './filter';

/** A Service port's elements, per family in FAMILIES order (IPv4, IPv6). */
type Contribution = FilterElement[][];

interface Counted {
  n: number;
  e: FilterElement;
}

/**
 * How many Service ports want each element of one family's table. Keyed by set, then by the key's bytes as
 * latin1 text (the cheapest exact Map key for a few bytes; no set-name concatenation to flatten per lookup).
 */
class ElementCounts {
  private readonly bySet = new Map<string, Map<string, Counted>>();

  private setMap(set: string): Map<string, Counted> {
    let m = this.bySet.get(set);
    if (!m) this.bySet.set(set, (m = new Map()));
    return m;
  }

  /** Adds d to e's count; returns the count before. */
  bump(e: FilterElement, d: number): number {
    const m = this.setMap(e.set);
    const id = e.keyEnd ? `${e.key.toString('latin1')}-${e.keyEnd.toString('latin1')}` : e.key.toString('latin1');
    const got = m.get(id);
    if (!got) {
      if (d > 0) m.set(id, { n: d, e });
      return 0;
    }
    const was = got.n;
    got.n += d;
    if (got.n <= 0) m.delete(id);
    return was;
  }

  *elements(): IterableIterator<FilterElement> {
    for (const m of this.bySet.values()) for (const c of m.values()) yield c.e;
  }
}

export class IpvsNftables {
  private counts: ElementCounts[] = FAMILIES.map(() => new ElementCounts());
  /** The skeleton depends only on the config: built once (its rules are a few dozen RuleBuilder runs). */
  private skeletons: ReturnType<typeof ipvsSkeleton>[];
  private byPort = new Map<ServicePortKey, Contribution>();
  private support?: KernelSupport;

  constructor(private readonly client: NftClient, private readonly config: NftablesConfig) {
    this.skeletons = FAMILIES.map((fam) => ipvsSkeleton(fam.ip, config));
  }

  /** Probes the kernel once; throws NftKernelError when it lacks what this table needs. */
  async prepare(): Promise<KernelReport> {
    this.support ??= await probeKernel(this.client);
    requireConstructs(this.support, IPVS_NFT_CONSTRUCTS, 'ipvs');
    return kernelReport(this.support, IPVS_NFT_CONSTRUCTS);
  }

  /** The probe's findings for status (probing once if nobody did), never throwing for a missing construct. */
  async kernel(): Promise<KernelReport> {
    this.support ??= await probeKernel(this.client);
    return kernelReport(this.support, IPVS_NFT_CONSTRUCTS);
  }

  private contribution(sp: ServicePort, bound: (a: string) => boolean): Contribution {
    return FAMILIES.map((fam) => elementsOf(sp, fam.ip, this.config, bound));
  }

  /** Programs exactly these Service ports; returns the transaction sent (for counts) and the kernel's answer. */
  async full(servicePorts: Map<ServicePortKey, ServicePort>, bound: (a: string) => boolean): Promise<{ tx: NftTransaction; kernelMicros: number; bytes: number; encodeMicros?: number }> {
    const counts = FAMILIES.map(() => new ElementCounts());
    const byPort = new Map<ServicePortKey, Contribution>();
    const tx = new NftTransaction();
    for (const [key, sp] of servicePorts) {
      const c = this.contribution(sp, bound);
      byPort.set(key, c);
      for (let f = 0; f < c.length; f++) for (const e of c[f]) counts[f].bump(e, 1);
    }
    const current = await Promise.all(FAMILIES.map((fam) => this.client.dumpTable(fam.nf, this.config.tableName)));
    FAMILIES.forEach((_fam, f) => {
      const skel = this.skeletons[f];
      const want = { ...skel, elements: new Map([...skel.sets.keys()].map((set) => [set, [] as ElementState[]])) };
      for (const e of counts[f].elements()) want.elements.get(e.set)!.push(stateOf(e));
      diffTable(tx, current[f], want);
    });
    const res = await this.client.run(tx);
    this.counts = counts;
    this.byPort = byPort;
    return { tx, kernelMicros: res.kernelMicros, bytes: res.bytes, encodeMicros: res.encodeMicros };
  }

  /** The dry run of full(): this table's changes counted per Service port into `counter`, queued in `tx`, sent nowhere. */
  async plan(servicePorts: Map<ServicePortKey, ServicePort>, bound: (a: string) => boolean, counter: PlanCounter, tx: NftTransaction): Promise<void> {
    const counts = FAMILIES.map(() => new ElementCounts());
    const owners = FAMILIES.map(() => new Map<string, ServicePortKey>());
    for (const [key, sp] of servicePorts) {
      this.contribution(sp, bound).forEach((list, f) => {
        for (const e of list) {
          counts[f].bump(e, 1);
          const k = `${e.set}|${elementKey(stateOf(e))}`;
          if (!owners[f].has(k)) owners[f].set(k, key);
        }
      });
    }
    for (const [f, fam] of FAMILIES.entries()) {
      const current = await this.client.dumpTable(fam.nf, this.config.tableName);
      const skel = this.skeletons[f];
      const want = { ...skel, elements: new Map([...skel.sets.keys()].map((set) => [set, [] as ElementState[]])) };
      for (const e of counts[f].elements()) want.elements.get(e.set)!.push(stateOf(e));
      counter.table(tx, current, want, (set, k) => owners[f].get(`${set}|${k}`));
    }
  }

  /** Programs only these changes (undefined: the Service port is gone). Call full() first. */
  async partial(changes: Map<ServicePortKey, ServicePort | undefined>, bound: (a: string) => boolean): Promise<{ tx: NftTransaction; kernelMicros: number; bytes: number }> {
    const tx = new NftTransaction();
    tx.owner = changes.size === 1 ? `Service ${[...changes.keys()][0]}` : undefined;
    // Counts change in place, logged: a refused batch applied nothing, so they go back.
    const undo: Array<[number, FilterElement, number]> = [];
    const next = new Map<ServicePortKey, Contribution | undefined>();
    const adds = FAMILIES.map(() => new Map<string, ElementState[]>());
    const dels = FAMILIES.map(() => new Map<string, ElementState[]>());
    const apply = (f: number, e: FilterElement, d: number) => {
      const was = this.counts[f].bump(e, d);
      undo.push([f, e, d]);
      const now = was + d;
      const el = stateOf(e);
      if (was <= 0 && now > 0) push(adds[f], e.set, el);
      if (was > 0 && now <= 0) push(dels[f], e.set, el);
    };
    // Removals first, then additions: an element a change keeps is counted down and up again, never sent.
    const after = new Map<ServicePortKey, Contribution | undefined>();
    for (const [key, sp] of changes) after.set(key, sp ? this.contribution(sp, bound) : undefined);
    for (const key of changes.keys()) {
      const before = this.byPort.get(key);
      if (before) before.forEach((list, f) => list.forEach((e) => apply(f, e, -1)));
    }
    for (const [key, c] of after) {
      next.set(key, c);
      if (c) c.forEach((list, f) => list.forEach((e) => apply(f, e, 1)));
    }
    // An element deleted and added back by the same change (its count went 1 -> 0 -> 1) is no change.
    FAMILIES.forEach((fam, f) => {
      for (const [set, list] of dels[f]) {
        const added = adds[f].get(set);
        if (!added) continue;
        // (Unless its comment changed: the kernel keeps the old one on a re-add, so it is deleted and added.)
        const back = new Map(added.map((e) => [elementKey(e), e.comment]));
        const kept = new Set<string>();
        dels[f].set(set, list.filter((e) => {
          const k = elementKey(e);
          if (back.has(k) && back.get(k) === e.comment) {
            kept.add(k);
            return false;
          }
          return true;
        }));
        adds[f].set(set, added.filter((e) => !kept.has(elementKey(e))));
      }
      for (const [set, list] of dels[f]) if (list.length) tx.deleteElements(fam.nf, this.config.tableName, set, list);
      for (const [set, list] of adds[f]) if (list.length) tx.addElements(fam.nf, this.config.tableName, set, list);
    });
    try {
      const res = await this.client.run(tx);
      for (const [key, c] of next) {
        if (c) this.byPort.set(key, c);
        else this.byPort.delete(key);
      }
      return { tx, kernelMicros: res.kernelMicros, bytes: res.bytes };
    } catch (e) {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [f, el, d] = undo[i];
        this.counts[f].bump(el, -d);
      }
      throw e;
    }
  }

  /** The table of each family as the kernel holds it (FAMILIES order), for status. */
  async dump(): Promise<Array<TableState | undefined>> {
    return Promise.all(FAMILIES.map((fam) => this.client.dumpTable(fam.nf, this.config.tableName)));
  }

  /** Deletes the table in both families (cleanup). */
  async remove(): Promise<boolean> {
    const tx = new NftTransaction();
    for (const fam of FAMILIES) if (await this.client.dumpTable(fam.nf, this.config.tableName)) tx.deleteTable(fam.nf, this.config.tableName);
    if (tx.size) await this.client.run(tx);
    this.counts = FAMILIES.map(() => new ElementCounts());
    this.byPort.clear();
    return tx.size > 0;
  }

  setNodeZone(zone: string | undefined): void {
    this.config.nodeZone = zone;
  }

  /** The Service CIDRs are in the skeleton's rules: rebuilt (the next full sync programs them). */
  setServiceCIDRs(cidrs: string[]): void {
    this.config.serviceCIDRs = [...cidrs];
    this.skeletons = FAMILIES.map((fam) => ipvsSkeleton(fam.ip, this.config));
  }

  close(): void {
    this.client.close();
  }
}

function stateOf(e: FilterElement): ElementState {
  const el: ElementState = e.keyEnd ? { key: e.key, keyEnd: e.keyEnd } : { key: e.key };
  if (e.comment !== undefined) el.comment = e.comment;
  return el;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}
