// Dry runs (`sync --once --dry-run`, `diff`): what a full sync would change, counted per Service port, sent nowhere.
// Both modes count their nftables table's elements here (an element wanted and not held, or held otherwise, is an
// addition; one held and not wanted a deletion, named by its comment or by the Service address:port its key
// starts with); the IPVS mode adds its virtual services, real servers and address bindings.
import type { ModelProblem } from '../model/types';
import { diffTable } from './nftables/diff';
import { NFPROTO_IPV6 } from './nftables/netlink/constants';
import { type DesiredTable, type TableState, elementKey, sameElement } from './nftables/objects';
import { splitComment } from './nftables/status';
import type { NftTransaction } from './nftables/transaction';
import type { ServicePlan, SyncPlan } from './types';

/** A deleted element no Service port can be named for (a shared hairpin pair, a leftover). */
export const UNNAMED = '(shared or unnamed)';

export class PlanCounter {
  private readonly byService = new Map<string, ServicePlan>();

  count(who: string, what: 'add' | 'delete', thing: string, n = 1): void {
    let p = this.byService.get(who);
    if (!p) this.byService.set(who, (p = { add: {}, delete: {} }));
    p[what][thing] = (p[what][thing] ?? 0) + n;
  }

  /**
   * One family's table: queues the full sync's operations in `tx` (for the totals and the table's own operations)
   * and counts its element changes per Service port; `ownerOf(set, elementKey)` names a wanted element's.
   */
  table(tx: NftTransaction, current: TableState | undefined, want: DesiredTable, ownerOf: (set: string, key: string) => string | undefined): void {
    diffTable(tx, current, want);
    const heldBy = serviceOfHeldKeys(current);
    for (const [set, list] of want.elements) {
      const held = current?.elements.get(set);
      const keys = new Set<string>();
      for (const e of list) {
        const k = elementKey(e);
        keys.add(k);
        const cur = held?.get(k);
        if (!cur || !sameElement(cur, e)) this.count(ownerOf(set, k) ?? UNNAMED, 'add', set);
      }
      for (const [k, e] of held ?? []) if (!keys.has(k)) this.count(splitComment(e.comment).service || heldBy(e.key) || UNNAMED, 'delete', set);
    }
  }

  result(mode: string, tx: NftTransaction, extraOperations: number, problems: ModelProblem[], extraTable: string[] = []): SyncPlan {
    return {
      mode, operations: tx.size + extraOperations, summary: tx.summary(),
      services: Object.fromEntries([...this.byService].sort(([a], [b]) => a.localeCompare(b))),
      table: [...tableOperations(tx), ...extraTable], problems,
    };
  }
}

/** The table's own operations (not elements), runs of the same one counted ("add rule pick-ips x32"). */
function tableOperations(tx: NftTransaction): string[] {
  const out: string[] = [];
  let last = '';
  let run = 0;
  const flush = () => void (run && out.push(run > 1 ? `${last} x${run}` : last));
  for (let i = 0; i < tx.size; i++) {
    const op = tx.operation(i)!;
    if (op.verb.includes('element')) continue;
    const text = `${op.verb} ${op.target}`;
    if (text === last) run++;
    else {
      flush();
      last = text;
      run = 1;
    }
  }
  flush();
  return out;
}

/**
 * The Service port a held element was for, by its key: elements with a comment name their Service port, and the
 * others (endpoint slots, affinity) start with the address . proto . port (or proto . port) of one that has.
 */
function serviceOfHeldKeys(current: TableState | undefined): (key: Buffer) => string | undefined {
  const named = new Map<string, string>();
  for (const set of current?.elements.values() ?? []) {
    for (const e of set.values()) {
      const service = splitComment(e.comment).service;
      if (service) named.set(e.key.toString('latin1'), service);
    }
  }
  const addrLen = current?.family === NFPROTO_IPV6 ? 16 : 4;
  return (key) => named.get(key.subarray(0, addrLen + 8).toString('latin1')) ?? named.get(key.subarray(0, 8).toString('latin1'));
}
