// Who wants which set element. Several Service ports can want the same element (two Services with endpoints on
// the same pod want the same hairpin pair; cluster-ips holds a ClusterIP once for all its ports), so an element
// stays programmed while any owner wants it. Two owners wanting the same key with different data (two
// Services claiming the same externalIP:port) is a conflict: the first owner keeps it, the other is reported.
import type { ElementState } from './objects';
import { elementKey, sameElement } from './objects';

// Most elements have exactly one owner: keep that one inline and allocate a Map only for the rest (a Map per
// element was a large share of a 30k-Service sync's garbage).
interface Entry {
  owner: string; // the first owner: its element is the effective one
  element: ElementState;
  others?: Map<string, ElementState>; // later owners, in arrival order
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
    return this.sets.get(set)?.get(key)?.element;
  }

  add(set: string, owner: string, element: ElementState): Conflict | undefined {
    let s = this.sets.get(set);
    if (!s) this.sets.set(set, (s = new Map()));
    const key = elementKey(element);
    const e = s.get(key);
    if (!e) {
      s.set(key, { owner, element });
      return undefined;
    }
    if (e.owner === owner) {
      e.element = element;
      return undefined;
    }
    (e.others ??= new Map()).set(owner, element);
    if (!sameElement(e.element, element)) return { set, key, owner, holder: e.owner };
    return undefined;
  }

  remove(set: string, owner: string, element: ElementState): void {
    const s = this.sets.get(set);
    const key = elementKey(element);
    const e = s?.get(key);
    if (!s || !e) return;
    if (e.owner !== owner) {
      e.others?.delete(owner);
      return;
    }
    // The next owner in arrival order takes over (its element becomes the effective one).
    const next = e.others?.entries().next().value as [string, ElementState] | undefined;
    if (!next) {
      s.delete(key);
      return;
    }
    e.others!.delete(next[0]);
    e.owner = next[0];
    e.element = next[1];
  }

  /** Every effective element of a set. */
  *elements(set: string): IterableIterator<ElementState> {
    for (const [, e] of this.entries(set)) yield e;
  }

  /** Every effective element of a set with its elementKey(), so callers need not compute it again. */
  *entries(set: string): IterableIterator<[string, ElementState]> {
    const s = this.sets.get(set);
    if (!s) return;
    for (const [k, e] of s) yield [k, e.element];
  }

  setNames(): string[] {
    return [...this.sets.keys()];
  }
}
