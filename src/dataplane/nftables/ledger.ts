// Who wants what. Several Service ports can want the same thing: the same hairpin pair (two Services with
// endpoints on the same pod), the same ClusterIP in cluster-ips (one per port of a Service), or, by mistake, the
// same address:port (two Services claiming one externalIP:port). An entry stays while any owner wants it; the
// first owner's value is the effective one, the next in arrival order takes over when it goes; a second owner
// wanting a value `same` does not accept is a conflict, reported to the caller. A ledger given `precedes` ranks
// owners by their values instead of by arrival (claims: the older Service keeps an address:port, whichever sync
// kind saw it first; model/precedence.ts).
//
// Keys are small strings built from what the caller already has (address text, protocol, port), never from
// encoded bytes: a 250k-endpoint sync does one Map operation per claim or shared element, not per map element.

// Most entries have exactly one owner: keep that one inline and the rest in a small array (a Map costs ~450 bytes
// even for one entry, and tens of thousands of hairpin pairs have two owners).
interface Entry<V> {
  owner: string; // the first owner: its value is the effective one
  value: V;
  others?: Array<[string, V]>; // later owners, in arrival order
}

export interface Conflict {
  id: string;
  /** The owner that does not hold the entry (the newcomer, or the holder it displaced). */
  owner: string;
  holder: string;
}

export class Ledger<V> {
  private readonly map = new Map<string, Entry<V>>();

  /**
   * `same(a, b)`: whether two owners wanting a and b agree (no conflict). `precedes(a, b)`: whether an owner
   * wanting a holds the entry before one wanting b (without it, the earlier arrival holds it).
   */
  constructor(private readonly same: (a: V, b: V) => boolean, private readonly precedes?: (a: V, b: V) => boolean) {}

  get size(): number {
    return this.map.size;
  }

  effective(id: string): V | undefined {
    return this.map.get(id)?.value;
  }

  holder(id: string): string | undefined {
    return this.map.get(id)?.owner;
  }

  /** Adds (or, for an existing owner, replaces in place, keeping its place in line) `owner`'s value for `id`. */
  add(id: string, owner: string, value: V): Conflict | undefined {
    const e = this.map.get(id);
    if (!e) {
      this.map.set(id, { owner, value });
      return undefined;
    }
    if (e.owner === owner) {
      e.value = value;
      return undefined;
    }
    const others = (e.others ??= []);
    const i = others.findIndex(([o]) => o === owner);
    if (i >= 0) others[i][1] = value;
    else others.push([owner, value]);
    if (this.precedes?.(value, e.value)) {
      // The newcomer outranks the holder: it takes the entry, the holder waits in line.
      const j = others.findIndex(([o]) => o === owner);
      others[j] = [e.owner, e.value];
      e.owner = owner;
      e.value = value;
      return this.same(e.value, others[j][1]) ? undefined : { id, owner: others[j][0], holder: owner };
    }
    return this.same(e.value, value) ? undefined : { id, owner, holder: e.owner };
  }

  remove(id: string, owner: string): void {
    const e = this.map.get(id);
    if (!e) return;
    if (e.owner !== owner) {
      const i = e.others?.findIndex(([o]) => o === owner) ?? -1;
      if (i >= 0) e.others!.splice(i, 1);
      if (e.others?.length === 0) e.others = undefined;
      return;
    }
    const next = this.precedes ? this.takeFirst(e.others) : e.others?.shift();
    if (!next) {
      this.map.delete(id);
      return;
    }
    if (e.others!.length === 0) e.others = undefined;
    e.owner = next[0];
    e.value = next[1];
  }

  /** Removes and returns the waiting owner that precedes the others. */
  private takeFirst(others: Array<[string, V]> | undefined): [string, V] | undefined {
    if (!others?.length) return undefined;
    let best = 0;
    for (let i = 1; i < others.length; i++) if (this.precedes!(others[i][1], others[best][1])) best = i;
    return others.splice(best, 1)[0];
  }

  /** Every effective value with its id. */
  *entries(): IterableIterator<[string, V]> {
    for (const [id, e] of this.map) yield [id, e.value];
  }
}
