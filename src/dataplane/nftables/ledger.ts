// Who wants what. Several Service ports can want the same thing: the same hairpin pair (two Services with
// endpoints on the same pod), the same ClusterIP in cluster-ips (one per port of a Service), or, by mistake, the
// same address:port (two Services claiming one externalIP:port). An entry stays while any owner wants it; the
// first owner's value is the effective one, the next in arrival order takes over when it goes; a second owner
// wanting a value `same` does not accept is a conflict, reported to the caller.
//
// Keys are small strings built from what the caller already has (address text, protocol, port), never from
// encoded bytes: a 250k-endpoint sync does one Map operation per claim or shared element, not per map element.

// Most entries have exactly one owner: keep that one inline and allocate a Map only for the rest.
interface Entry<V> {
  owner: string; // the first owner: its value is the effective one
  value: V;
  others?: Map<string, V>; // later owners, in arrival order
}

export interface Conflict {
  id: string;
  owner: string;
  holder: string;
}

export class Ledger<V> {
  private readonly map = new Map<string, Entry<V>>();

  /** `same(a, b)`: whether two owners wanting a and b agree (no conflict). */
  constructor(private readonly same: (a: V, b: V) => boolean) {}

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
    (e.others ??= new Map()).set(owner, value);
    return this.same(e.value, value) ? undefined : { id, owner, holder: e.owner };
  }

  remove(id: string, owner: string): void {
    const e = this.map.get(id);
    if (!e) return;
    if (e.owner !== owner) {
      e.others?.delete(owner);
      return;
    }
    const next = e.others?.entries().next().value as [string, V] | undefined;
    if (!next) {
      this.map.delete(id);
      return;
    }
    e.others!.delete(next[0]);
    e.owner = next[0];
    e.value = next[1];
  }

  /** Every effective value with its id. */
  *entries(): IterableIterator<[string, V]> {
    for (const [id, e] of this.map) yield [id, e.value];
  }
}
