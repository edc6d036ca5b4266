// The socket-LB maps as data: what the kernel holds (read back by dump) or should hold (built from the desired
// state with stable ids), and the ordered operations that take one to the other.
//
// Order (Cilium's pkg/loadbalancer reconciler, one difference): new backends, then slots that grow or change, then
// members, then the Service entries (their counts), then Service entries that go, then slots beyond the new counts,
// members, and last the backends nobody uses (Cilium deletes orphan backends first; last means a connect that read
// an old slot still finds its backend). A connect racing the shrink can read a count older than the slots: the
// program re-reads the Service once and otherwise lets nftables decide, so no order here refuses a connection.
import type { BackendValue, Frontend, ServiceValue } from './layout';
import { backendKey, type DesiredFrontend, type DesiredSet, frontendKey } from './desired';

export interface Image {
  /** frontendKey -> entry */
  services: Map<string, { frontend: Frontend; value: ServiceValue }>;
  /** slotKey(set, slot) -> backend id */
  slots: Map<number, number>;
  /** memberKey(set, backend id) */
  members: Set<number>;
  /** backend id -> address, port */
  backends: Map<number, BackendValue>;
}

export function emptyImage(): Image {
  return { services: new Map(), slots: new Map(), members: new Set(), backends: new Map() };
}

// Slot and member keys are numbers, not "set|n" strings: a 30k-Service sync makes ~200k of them, and strings were
// built, hashed and parsed back for every one (a third of a full sync's JS time).
const SLOT_SPAN = 0x10000; // slots are 1..0xffff (svp_svc_val.count is 16 bits)
const MEMBER_SPAN = 0x100000000; // backend ids are u32
/** Set ids stay below this (they are reused, so they stay below the number of live sets): memberKey is exact. */
export const MAX_SET_ID = 2 ** 21;
export const slotKey = (set: number, slot: number): number => set * SLOT_SPAN + slot;
export const splitSlotKey = (k: number): [number, number] => {
  const set = Math.floor(k / SLOT_SPAN);
  return [set, k - set * SLOT_SPAN];
};
export const memberKey = (set: number, backend: number): number => set * MEMBER_SPAN + backend;
export const splitMemberKey = (k: number): [number, number] => {
  const set = Math.floor(k / MEMBER_SPAN);
  return [set, k - set * MEMBER_SPAN];
};

/**
 * Set and backend ids. A restart takes them back from the maps (the sets from the frontends that use them, the
 * backends by address), so a sync after a restart rewrites nothing that is already right and keeps affinity and
 * reverse-translation entries, which are keyed by set.
 *
 * Ids are reused: pod addresses churn for as long as the agent runs, and ids kept for every address ever seen
 * grew the agent's memory without bound. An id given up in a sync (release*) becomes free only after the maps hold
 * that sync (commit()), so no sync writes a new set's slots under an id whose old slots it is still deleting; a
 * connection that remembered the old set (affinity) finds its backend is no member of the new one and chooses again.
 */
export class Ids {
  private readonly sets = new IdPool('backend sets', MAX_SET_ID);
  private readonly backends = new IdPool('backends', 2 ** 32);

  adoptSet(key: string, id: number): void {
    this.sets.adopt(key, id);
  }

  adoptBackend(key: string, id: number): void {
    this.backends.adopt(key, id);
  }

  set(key: string): number {
    return this.sets.take(key);
  }

  /** The set's id if it has one (never allocates). */
  setId(key: string): number | undefined {
    return this.sets.idOf(key);
  }

  backend(key: string): number {
    return this.backends.take(key);
  }

  backendKey(id: number): string | undefined {
    return this.backends.keyOf(id);
  }

  releaseSet(key: string): void {
    this.sets.release(key);
  }

  releaseBackend(key: string): void {
    this.backends.release(key);
  }

  /** After a sync the maps hold: ids released in it (or not used by a full sync) and still unused become free. */
  commit(setUsed: (key: string) => boolean, backendUsed: (key: string) => boolean, sweep = false): void {
    this.sets.commit(setUsed, sweep);
    this.backends.commit(backendUsed, sweep);
  }
}

/** Ids by key, 1 up, reused (see Ids): the freed ones first, then the next never given. */
class IdPool {
  private readonly ids = new Map<string, number>();
  private readonly keys = new Map<number, string>();
  private readonly free: number[] = [];
  private readonly released: string[] = [];
  private next = 1;

  constructor(
    private readonly what: string,
    private readonly limit: number,
  ) {}

  adopt(key: string, id: number): void {
    if (this.ids.has(key) || this.keys.has(id) || id >= this.limit) return;
    this.ids.set(key, id);
    this.keys.set(id, key);
    this.next = Math.max(this.next, id + 1);
  }

  take(key: string): number {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.free.pop() ?? this.next++;
      if (id >= this.limit) throw new Error(`more than ${this.limit} ${this.what} in use`);
      this.ids.set(key, id);
      this.keys.set(id, key);
    }
    return id;
  }

  idOf(key: string): number | undefined {
    return this.ids.get(key);
  }

  keyOf(id: number): string | undefined {
    return this.keys.get(id);
  }

  release(key: string): void {
    this.released.push(key);
  }

  commit(used: (key: string) => boolean, sweep: boolean): void {
    for (const key of sweep ? [...this.ids.keys()] : this.released) {
      const id = this.ids.get(key);
      if (id === undefined || used(key)) continue;
      this.ids.delete(key);
      this.keys.delete(id);
      this.free.push(id);
    }
    this.released.length = 0;
  }
}

/** Adds a set's slots and members to the image. */
export function putSet(img: Image, ids: Ids, set: DesiredSet): void {
  const id = ids.set(set.key);
  set.slots.forEach((bk, i) => {
    const bid = ids.backend(bk);
    img.slots.set(slotKey(id, i + 1), bid);
    img.members.add(memberKey(id, bid));
  });
}

export function putFrontend(img: Image, ids: Ids, f: DesiredFrontend): void {
  img.services.set(frontendKey(f.frontend), {
    frontend: f.frontend,
    value: { set: ids.set(f.set), count: f.count, flags: f.flags, affinitySeconds: f.affinitySeconds },
  });
}

export function putBackend(img: Image, ids: Ids, b: BackendValue): void {
  img.backends.set(ids.backend(backendKey(b)), { address: b.address, port: b.port });
}

/** The writes and deletes from `have` to `want`, by map, in the order they must be sent. */
export interface Ops {
  backendsPut: Array<[number, BackendValue]>;
  slotsPut: Array<[number, number]>;
  membersPut: number[];
  servicesPut: Array<{ frontend: Frontend; value: ServiceValue }>;
  servicesDelete: Frontend[];
  slotsDelete: number[];
  membersDelete: number[];
  backendsDelete: number[];
}

export function opCount(o: Ops): number {
  return o.backendsPut.length + o.slotsPut.length + o.membersPut.length + o.servicesPut.length + o.servicesDelete.length + o.slotsDelete.length + o.membersDelete.length + o.backendsDelete.length;
}

const sameService = (a: ServiceValue, b: ServiceValue) => a.set === b.set && a.count === b.count && a.flags === b.flags && a.affinitySeconds === b.affinitySeconds;

/**
 * The operations from `have` to `want`. With `touched`, only those keys are compared (a partial sync: the keys of
 * the changed Service ports, old and new); without, every key of both.
 */
export function diffImages(have: Image, want: Image, touched?: { services: Iterable<string>; slots: Iterable<number>; members: Iterable<number>; backends: Iterable<number> }): Ops {
  const ops: Ops = { backendsPut: [], slotsPut: [], membersPut: [], servicesPut: [], servicesDelete: [], slotsDelete: [], membersDelete: [], backendsDelete: [] };
  // Every key of either side once: want's, then have's that want lacks (no union set built: 30k Services are 200k
  // keys). A partial sync names its few keys; plain loops there (a generator per map cost ~20 µs of a 100 µs sync).
  const each = <K>(have: Map<K, unknown> | Set<K>, want: Map<K, unknown> | Set<K>, t: Iterable<K> | undefined, f: (k: K) => void): void => {
    if (t) for (const k of t) f(k);
    else {
      for (const k of want.keys()) f(k);
      for (const k of have.keys()) if (!want.has(k)) f(k);
    }
  };
  each(have.backends, want.backends, touched?.backends, (id) => {
    const w = want.backends.get(id);
    const h = have.backends.get(id);
    if (w && (!h || h.address !== w.address || h.port !== w.port)) ops.backendsPut.push([id, w]);
    else if (!w && h) ops.backendsDelete.push(id);
  });
  each(have.slots, want.slots, touched?.slots, (k) => {
    const w = want.slots.get(k);
    const h = have.slots.get(k);
    if (w !== undefined && w !== h) ops.slotsPut.push([k, w]);
    else if (w === undefined && h !== undefined) ops.slotsDelete.push(k);
  });
  each(have.members, want.members, touched?.members, (k) => {
    if (want.members.has(k) && !have.members.has(k)) ops.membersPut.push(k);
    else if (!want.members.has(k) && have.members.has(k)) ops.membersDelete.push(k);
  });
  each(have.services, want.services, touched?.services, (k) => {
    const w = want.services.get(k);
    const h = have.services.get(k);
    if (w && (!h || !sameService(h.value, w.value))) ops.servicesPut.push(w);
    else if (!w && h) ops.servicesDelete.push(h.frontend);
  });
  return ops;
}

/** Applies ops to an image (the one kept in memory as "what the kernel holds" after a successful sync). */
export function applyOps(img: Image, ops: Ops): void {
  for (const [id, b] of ops.backendsPut) img.backends.set(id, b);
  for (const [k, id] of ops.slotsPut) img.slots.set(k, id);
  for (const k of ops.membersPut) img.members.add(k);
  for (const s of ops.servicesPut) img.services.set(frontendKey(s.frontend), s);
  for (const f of ops.servicesDelete) img.services.delete(frontendKey(f));
  for (const k of ops.slotsDelete) img.slots.delete(k);
  for (const k of ops.membersDelete) img.members.delete(k);
  for (const id of ops.backendsDelete) img.backends.delete(id);
}
