// Keeps the nftables table beside IPVS (filter.ts) in step with the Service ports, one transaction per sync.
// Elements are reference-counted (a bound address, a hairpin pair or a NodePort key can be wanted by several
// Service ports): a partial sync sends only the elements whose count went from 0 to 1 or from 1 to 0, so its cost
// is that of the change, not of the cluster. A full sync dumps the kernel's table and sends the difference (a
// restart adopts the table; anything changed behind svcplane's back is repaired).
import type { ServicePort, ServicePortKey } from '../../model/types';
import type { NftClient } from '../nftables/client';
import { diffTable } from '../nftables/diff';
import type { NfFamily } from '../nftables/netlink/constants';
import type { ElementState } from '../nftables/objects';
import { FAMILIES, type NftablesConfig } from '../nftables/ruleset';
import { NftTransaction } from '../nftables/transaction';
import { type FilterElement, elementsOf, ipvsSkeleton } from './filter';

type Contribution = Map<NfFamily, FilterElement[]>;

const idOf = (e: FilterElement) => `${e.set}\0${e.key.toString('latin1')}`;

export class IpvsNftables {
  /** Per family: element id -> how many Service ports want it. */
  private counts = new Map<NfFamily, Map<string, number>>();
  private byPort = new Map<ServicePortKey, Contribution>();

  constructor(private readonly client: NftClient, private readonly config: NftablesConfig) {}

  private contribution(sp: ServicePort, bound: (a: string) => boolean): Contribution {
    const c: Contribution = new Map();
    for (const fam of FAMILIES) c.set(fam.nf, elementsOf(sp, fam.ip, this.config, bound));
    return c;
  }

  /** Programs exactly these Service ports; returns the transaction sent (for counts) and the kernel's answer. */
  async full(servicePorts: Map<ServicePortKey, ServicePort>, bound: (a: string) => boolean): Promise<{ tx: NftTransaction; kernelMicros: number; bytes: number }> {
    const counts = new Map<NfFamily, Map<string, number>>();
    const byPort = new Map<ServicePortKey, Contribution>();
    const tx = new NftTransaction();
    for (const fam of FAMILIES) counts.set(fam.nf, new Map());
    for (const [key, sp] of servicePorts) {
      const c = this.contribution(sp, bound);
      byPort.set(key, c);
      for (const [nf, list] of c) for (const e of list) bump(counts.get(nf)!, idOf(e), 1);
    }
    for (const fam of FAMILIES) {
      const want = ipvsSkeleton(fam.ip, this.config);
      for (const id of counts.get(fam.nf)!.keys()) {
        const e = elementOfId(id);
        want.elements.get(e.set)!.push({ key: e.key });
      }
      diffTable(tx, await this.client.dumpTable(fam.nf, this.config.tableName), want);
    }
    const res = await this.client.run(tx);
    this.counts = counts;
    this.byPort = byPort;
    return { tx, kernelMicros: res.kernelMicros, bytes: res.bytes };
  }

  /** Programs only these changes (undefined: the Service port is gone). Call full() first. */
  async partial(changes: Map<ServicePortKey, ServicePort | undefined>, bound: (a: string) => boolean): Promise<{ tx: NftTransaction; kernelMicros: number; bytes: number }> {
    const delta = new Map<NfFamily, Map<string, number>>();
    for (const fam of FAMILIES) delta.set(fam.nf, new Map());
    const next = new Map<ServicePortKey, Contribution | undefined>();
    for (const [key, sp] of changes) {
      const before = this.byPort.get(key);
      const after = sp ? this.contribution(sp, bound) : undefined;
      next.set(key, after);
      for (const [nf, list] of before ?? []) for (const e of list) bump(delta.get(nf)!, idOf(e), -1);
      for (const [nf, list] of after ?? []) for (const e of list) bump(delta.get(nf)!, idOf(e), 1);
    }
    const tx = new NftTransaction();
    tx.owner = changes.size === 1 ? `Service ${[...changes.keys()][0]}` : undefined;
    // Counts are updated in place, with an undo log: a refused batch applied nothing, so they go back.
    const undo: Array<[Map<string, number>, string, number | undefined]> = [];
    for (const fam of FAMILIES) {
      let counts = this.counts.get(fam.nf);
      if (!counts) this.counts.set(fam.nf, (counts = new Map()));
      const adds = new Map<string, ElementState[]>();
      const dels = new Map<string, ElementState[]>();
      for (const [id, d] of delta.get(fam.nf)!) {
        if (d === 0) continue;
        const was = counts.get(id) ?? 0;
        const now = was + d;
        undo.push([counts, id, counts.get(id)]);
        if (now <= 0) counts.delete(id);
        else counts.set(id, now);
        const e = elementOfId(id);
        if (was === 0 && now > 0) push(adds, e.set, { key: e.key });
        if (was > 0 && now <= 0) push(dels, e.set, { key: e.key });
      }
      for (const [set, list] of dels) tx.deleteElements(fam.nf, this.config.tableName, set, list);
      for (const [set, list] of adds) tx.addElements(fam.nf, this.config.tableName, set, list);
    }
    try {
      const res = await this.client.run(tx);
      for (const [key, c] of next) {
        if (c) this.byPort.set(key, c);
        else this.byPort.delete(key);
      }
      return { tx, kernelMicros: res.kernelMicros, bytes: res.bytes };
    } catch (e) {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [counts, id, v] = undo[i];
        if (v === undefined) counts.delete(id);
        else counts.set(id, v);
      }
      throw e;
    }
  }

  /** Deletes the table in both families (cleanup). */
  async remove(): Promise<boolean> {
    const tx = new NftTransaction();
    for (const fam of FAMILIES) if (await this.client.dumpTable(fam.nf, this.config.tableName)) tx.deleteTable(fam.nf, this.config.tableName);
    if (tx.size) await this.client.run(tx);
    this.counts.clear();
    this.byPort.clear();
    return tx.size > 0;
  }

  close(): void {
    this.client.close();
  }
}

function elementOfId(id: string): FilterElement {
  const nul = id.indexOf('\0');
  return { set: id.slice(0, nul), key: Buffer.from(id.slice(nul + 1), 'latin1') };
}

function bump(m: Map<string, number>, id: string, d: number): void {
  m.set(id, (m.get(id) ?? 0) + d);
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}
