// The ebpf dataplane, part 1: socket-level load balancing for connections that start on this node, in front of the
// nftables table for everything else. One sync programs both from the same Service ports: the table first (it is
// the complete dataplane: what the socket hooks leave alone goes there), then the socket-LB maps. The table keeps
// the nftables mode's name, so switching between nftables and ebpf never drops a flow from off the node.
import type { Logger } from '../../log';
import { silentLogger } from '../../log';
import { cidrContains } from '../../model/ip';
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import type { Dataplane, StatusReport, SyncPlan, SyncResult } from '../types';
import type { Explanation, FlowQuery } from '../explain';
import type { KernelReport } from '../nftables/kernel';
import type { NftablesProxier } from '../nftables/proxier';
import { type DesiredSocketLB, type EbpfConfig, addServicePort, backendKey, emptyDesired } from './desired';
import { Ids, type Image, type Ops, applyOps, diffImages, emptyImage, memberKey, opCount, putBackend, putFrontend, putSet, slotKey } from './image';
import { applyToKernel, readImage } from './converge';
import type { EbpfKernel } from './kernel';
import { explainSocket } from './explain';
import { claimPrecedence } from '../../model/precedence';

export interface EbpfProxierConfig {
  /** nodePortAddresses CIDRs (empty: every address of the node). */
  nodePortAddresses: string[];
  node?: EbpfConfig['node'];
  /** This node's addresses (default: read from the kernel at each full sync). */
  nodeAddresses: () => Promise<string[]>;
}

/** The map keys a partial sync compares. */
interface Touched {
  services: Set<string>;
  slots: Set<number>;
  members: Set<number>;
  backends: Set<number>;
}

/** What one Service port asks of the maps, and which of its frontends it holds (another, older one may keep some). */
interface Fragment {
  desired: DesiredSocketLB;
  held: Set<string>;
}

export class EbpfProxier implements Dataplane {
  readonly mode = 'ebpf';
  /** What the maps hold after the last successful sync (they are not changed by anyone else). */
  private programmed: Image = emptyImage();
  private ids = new Ids();
  private fragments = new Map<ServicePortKey, Fragment>();
  /** Backend key -> how many held sets use it. */
  private backendUsers = new Map<string, number>();
  /** Set keys some held frontend uses. */
  private liveSets = new Set<string>();
  /** Frontend key -> the Service port holding it. */
  private holders = new Map<string, ServicePortKey>();
  /** Service ports in a contest for a frontend (a change to one takes a full sync). */
  private contested = new Set<ServicePortKey>();
  private nodeAddresses: string[] = [];
  private needFull = true;
  private prepared = false;

  constructor(
    private readonly kernel: EbpfKernel,
    private readonly nft: NftablesProxier,
    private readonly config: EbpfProxierConfig,
    private readonly log: Logger = silentLogger,
  ) {}

  async prepare(): Promise<KernelReport> {
    if (!this.prepared) this.kernel.preflight();
    const report = await this.nft.prepare();
    if (!this.prepared) {
      await this.kernel.load();
      if (this.kernel.loadedObject?.includes('noretval')) this.log.warn('this kernel has no bpf_set_retval in socket hooks (Linux < 5.18): a Service without endpoints is refused with EPERM instead of ECONNREFUSED');
      const links = await this.kernel.attach();
      const adopted = links.filter((l) => l.adopted).length;
      this.log.detail('socket LB programs attached', { links: links.length, adopted, programs: links.map((l) => l.program) });
      this.prepared = true;
    }
    return report;
  }

  private socketConfig(): EbpfConfig {
    const cidrs = this.config.nodePortAddresses;
    const addrs = this.nodeAddresses.filter((a) => !a.toLowerCase().startsWith('fe80:') && (cidrs.length === 0 || cidrs.some((c) => cidrContains(c, a))));
    return { nodeAddresses: addrs, node: this.config.node };
  }

  async syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult> {
    await this.prepare();
    const nft = await this.nft.syncFull(servicePorts);
    const t0 = process.hrtime.bigint();
    this.needFull = true;
    this.nodeAddresses = await this.config.nodeAddresses();
    const have = await readImage(this.kernel);
    const problems: ModelProblem[] = [];
    // Fragments in claim order: an older Service keeps a contested frontend (model/precedence.ts).
    this.fragments.clear();
    this.holders.clear();
    this.contested.clear();
    const cfg = this.socketConfig();
    for (const sp of [...servicePorts.values()].sort(claimPrecedence)) {
      const desired = emptyDesired();
      addServicePort(desired, sp, cfg);
      problems.push(...desired.problems);
      const held = new Set<string>();
      for (const fk of desired.frontends.keys()) {
        const holder = this.holders.get(fk);
        if (holder) {
          // The same rule as the table's, which reports the loser already: not reported twice.
          this.contested.add(sp.key).add(holder);
        } else {
          this.holders.set(fk, sp.key);
          held.add(fk);
        }
      }
      this.fragments.set(sp.key, { desired, held });
    }
    this.adoptIds(have);
    const want = emptyImage();
    this.backendUsers.clear();
    this.liveSets.clear();
    for (const f of this.fragments.values()) this.contribute(want, f, +1);
    const ops = diffImages(have, want);
    const stats = await applyToKernel(this.kernel, ops);
    this.programmed = want;
    this.commitIds(true);
    this.needFull = false;
    return this.merge(nft, ops, stats, problems, t0, true);
  }

  async syncPartial(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult> {
    if (this.needFull || [...changes.keys()].some((k) => this.contested.has(k))) return this.syncFull(await this.allServicePorts(changes));
    const nft = await this.nft.syncPartial(changes);
    const t0 = process.hrtime.bigint();
    const cfg = this.socketConfig();
    const problems: ModelProblem[] = [];
    const touched: Touched = { services: new Set(), slots: new Set(), members: new Set(), backends: new Set() };
    const wantPart = emptyImage();
    const next = new Map<ServicePortKey, Fragment | undefined>();
    for (const [key, sp] of changes) {
      let frag: Fragment | undefined;
      if (sp) {
        const desired = emptyDesired();
        addServicePort(desired, sp, cfg);
        problems.push(...desired.problems);
        // A frontend another Service port holds: settle the contest in a full sync.
        for (const fk of desired.frontends.keys()) {
          const holder = this.holders.get(fk);
          if (holder && holder !== key && !changes.has(holder)) return this.syncFull(await this.allServicePorts(changes));
        }
        frag = { desired, held: new Set(desired.frontends.keys()) };
      }
      next.set(key, frag);
    }
    this.needFull = true; // until the maps say otherwise
    for (const [key, frag] of next) {
      const old = this.fragments.get(key);
      if (old) {
        this.touch(touched, old);
        this.contribute(emptyImage(), old, -1);
        for (const fk of old.held) this.holders.delete(fk);
      }
      if (frag) {
        this.contribute(wantPart, frag, +1);
        this.touch(touched, frag);
        for (const fk of frag.held) this.holders.set(fk, key);
        this.fragments.set(key, frag);
      } else this.fragments.delete(key);
    }
    for (const bid of touched.backends) {
      const key = this.ids.backendKey(bid);
      if (key !== undefined && (this.backendUsers.get(key) ?? 0) > 0) putBackend(wantPart, this.ids, addressPort(key));
    }
    const ops = diffImages(this.programmed, wantPart, touched);
    const stats = await applyToKernel(this.kernel, ops);
    applyOps(this.programmed, ops);
    this.commitIds(false);
    this.needFull = false;
    return this.merge(nft, ops, stats, problems, t0, false);
  }

  /** The Service ports after `changes`, for a partial sync that has to become full. */
  private async allServicePorts(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<Map<ServicePortKey, ServicePort>> {
    const all = new Map(this.nft.currentServicePorts());
    for (const [k, sp] of changes) {
      if (sp) all.set(k, sp);
      else all.delete(k);
    }
    return all;
  }

  /** Set ids from the frontends the maps hold, backend ids by address: a restart rewrites nothing that is right. */
  private adoptIds(have: Image): void {
    for (const f of this.fragments.values())
      for (const fk of f.held) {
        const d = f.desired.frontends.get(fk)!;
        const entry = have.services.get(fk);
        if (entry) this.ids.adoptSet(d.set, entry.value.set);
      }
    for (const [id, b] of have.backends) this.ids.adoptBackend(backendKey(b), id);
  }

  /** Ids released in the sync the maps now hold become free (a full sync: every id no held object uses). */
  private commitIds(full: boolean): void {
    this.ids.commit((k) => this.liveSets.has(k), (k) => this.backendUsers.has(k), full);
  }

  /** Adds (+1) a fragment's entries to an image, or (-1) only releases its sets and backend uses. */
  private contribute(img: Image, f: Fragment, sign: 1 | -1): void {
    const sets = new Set<string>();
    for (const fk of f.held) sets.add(f.desired.frontends.get(fk)!.set);
    for (const key of sets) {
      if (sign > 0) this.liveSets.add(key);
      else if (this.liveSets.delete(key)) this.ids.releaseSet(key);
      const set = f.desired.sets.get(key);
      if (!set) continue;
      if (sign > 0) putSet(img, this.ids, set);
      for (const bk of new Set(set.slots)) {
        const n = (this.backendUsers.get(bk) ?? 0) + sign;
        if (n > 0) this.backendUsers.set(bk, n);
        else if (this.backendUsers.delete(bk)) this.ids.releaseBackend(bk);
        if (sign > 0) putBackend(img, this.ids, f.desired.backends.get(bk)!);
      }
    }
    if (sign > 0) for (const fk of f.held) putFrontend(img, this.ids, f.desired.frontends.get(fk)!);
  }

  /** The keys a fragment's entries live at. */
  private touch(t: Touched, f: Fragment): void {
    const sets = new Set<string>();
    for (const fk of f.held) {
      t.services.add(fk);
      sets.add(f.desired.frontends.get(fk)!.set);
    }
    for (const key of sets) {
      const id = this.ids.setId(key);
      if (id === undefined) continue;
      // Every slot the set holds and will hold: the old fragment's (what the maps hold) and the new one's.
      const set = f.desired.sets.get(key);
      set?.slots.forEach((bk, i) => {
        const bid = this.ids.backend(bk);
        t.slots.add(slotKey(id, i + 1));
        t.members.add(memberKey(id, bid));
        t.backends.add(bid);
      });
    }
  }

  private merge(nft: SyncResult, ops: Ops, stats: { syscalls: number; micros: number; bytes: number }, problems: ModelProblem[], t0: bigint, full: boolean): SyncResult {
    const summary = { ...nft.summary };
    const writes = ops.backendsPut.length + ops.slotsPut.length + ops.membersPut.length + ops.servicesPut.length;
    const deletes = opCount(ops) - writes;
    if (writes) summary['bpf map writes'] = writes;
    if (deletes) summary['bpf map deletes'] = deletes;
    const micros = Number((process.hrtime.bigint() - t0) / 1000n);
    return {
      ...nft,
      full: full || nft.full,
      operations: nft.operations + opCount(ops),
      summary,
      bytes: nft.bytes + stats.bytes,
      kernelMicros: nft.kernelMicros + stats.micros,
      totalMicros: nft.totalMicros + micros,
      phases: { ...(nft.phases ?? {}), socketLB: micros, socketLBKernel: stats.micros },
      problems: [...nft.problems, ...dedupe(problems, nft.problems)],
    };
  }

  plan(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncPlan> {
    return this.nft.plan(servicePorts).then((p) => ({ ...p, mode: this.mode }));
  }

  async explain(flows: FlowQuery[]): Promise<Explanation[]> {
    const nft = await this.nft.explain(flows);
    if (!this.kernel.pinned()) return nft;
    if (!this.prepared) await this.kernel.load();
    return explainSocket(this.kernel, flows, nft);
  }

  async cleanup(): Promise<boolean> {
    const links = this.kernel.pinned();
    const detached = this.kernel.detach();
    if (detached) this.log.info('socket LB links detached and maps unpinned', { links: detached });
    const table = await this.nft.cleanup();
    this.programmed = emptyImage();
    this.needFull = true;
    return links || table;
  }

  async status(): Promise<StatusReport> {
    const st = await this.nft.status();
    const links = this.kernel.links();
    let frontends = 0;
    let rows = st.rows;
    if (this.kernel.pinned() && links.length) {
      if (!this.prepared) await this.kernel.load();
      const img = await readImage(this.kernel);
      frontends = img.services.size;
      // Each row as the socket sees it; a NodePort row ("*") by its port on any node address in the maps.
      const byPort = new Map<string, number>();
      for (const { frontend, value } of img.services.values()) byPort.set(`${frontend.protocol}|${frontend.port}`, value.count);
      rows = st.rows.map((r) => {
        const count = r.address === '*' ? byPort.get(`${r.protocol}|${r.port}`) : img.services.get(`${r.protocol}|${r.address}|${r.port}`)?.value.count;
        return count === undefined ? r : { ...r, socket: count === 0 ? 'refused' : 'translated' };
      });
    }
    const memory = this.kernel.maps().reduce((a, m) => a + m.memlock, 0);
    return { ...st, rows, mode: this.mode, present: st.present || links.length > 0, socketLB: { links: links.length, frontends, mapBytes: memory } };
  }

  setNodeZone(zone: string | undefined): void {
    this.nft.setNodeZone(zone);
    this.config.node = { ...(this.config.node ?? {}), zone };
    this.needFull = true;
  }

  setServiceCIDRs(cidrs: string[]): void {
    this.nft.setServiceCIDRs(cidrs);
  }

  close(): void {
    this.kernel.close();
    this.nft.close();
  }
}

function addressPort(key: string): { address: string; port: number } {
  const i = key.lastIndexOf('|');
  return { address: key.slice(0, i), port: Number(key.slice(i + 1)) };
}

function dedupe(add: ModelProblem[], have: ModelProblem[]): ModelProblem[] {
  const seen = new Set(have.map((p) => `${p.object}\u0000${p.message}`));
  return add.filter((p) => !seen.has(`${p.object}\u0000${p.message}`));
}

