// Who wants which set element. Several Service ports can want the same element (two Services with endpoints on
// the same pod want the same hairpin pair; cluster-ips holds a ClusterIP once for all its ports), so an element
// stays programmed while any owner wants it. Two owners wanting the same key with different data (two
// Services claiming the same externalIP:port) is a conflict: the first owner keeps it, the other is reported.
import type { ElementState } from './objects';
import { elementKey, sameElement } from './objects';

interface Entry {
  owners: Map<string, ElementState>; // insertion order: the first owner's element is the effective one
}

export interface Conflict {
  set: string;
  key: string;
  owner: string;
  holder: string;
}

export class ElementLedger {
  private readonly sets = new Map<string, Map<string, Entry>>();

  effective(set: string, key: string): ElementState | undefined {
    const e = this.sets.get(set)?.get(key);
    if (!e) return undefined;
    return e.owners.values().next().value;
  }

  add(set: string, owner: string, element: ElementState): Conflict | undefined {
    let s = this.sets.get(set);
    if (!s) this.sets.set(set, (s = new Map()));
    const key = elementKey(element);
    let e = s.get(key);
    if (!e) s.set(key, (e = { owners: new Map() }));
    e.owners.set(owner, element);
    const [holder, held] = e.owners.entries().next().value as [string, ElementState];
    if (holder !== owner && !sameElement(held, element)) return { set, key, owner, holder };
    return undefined;
  }

  remove(set: string, owner: string, element: ElementState): void {
    const s = this.sets.get(set);
    const key = elementKey(element);
    const e = s?.get(key);
    if (!s || !e) return;
    e.owners.delete(owner);
    if (e.owners.size === 0) s.delete(key);
  }

  /** Every effective element of a set (for building the full desired table). */
  *elements(set: string): IterableIterator<ElementState> {
    const s = this.sets.get(set);
    if (!s) return;
    for (const e of s.values()) {
      const first = e.owners.values().next().value;
      if (first) yield first;
    }
  }

  setNames(): string[] {
    return [...this.sets.keys()];
  }
}
