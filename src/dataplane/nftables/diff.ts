// Diffs (pure): what is programmed vs what is wanted -> operations queued on an NftTransaction, in an order the
// kernel accepts within one batch: the table's flags first; base chains on the wrong hook deleted; new sets and
// chains; element deletions before the chains they point to are flushed and deleted; rules after the chains and
// sets they reference exist; removed chains last.
//
// Besides sets, elements, chains and rules, the full diff compares what decides whether svcplane's rules see a
// packet at all (the table's dormant flag; each base chain's type, hook, priority and policy): a dormant table or
// a base chain with policy drop changes every Service's traffic while every rule and element is still in place.
import { NFT_SET_EVAL, NFT_TABLE_F_DORMANT, type NfFamily } from './netlink/constants';
import type { ChainState, DesiredTable, ElementState, TableState } from './objects';
import { elementKey, policyOf, sameBase, sameElement, sameRules, sameSetSpec } from './objects';
import { describeBase, describePolicy } from './drift';
import type { NftTransaction } from './transaction';

/**
 * Queues everything needed to turn `current` (undefined: no table) into `desired`. Returns what it repairs beyond
 * Services' objects (the table's flags, base chains), one sentence each, for the sync's log.
 */
export function diffTable(tx: NftTransaction, current: TableState | undefined, desired: DesiredTable): string[] {
  const fam = desired.family;
  const t = desired.name;
  const repairs: string[] = [];
  if (!current || needsRebuild(current, desired)) {
    // A structural change (first run, a set's key type, a regular chain where a base chain belongs) rebuilds the
    // table inside the same batch: still atomic, and conntrack keeps established connections' NAT bindings.
    if (current) {
      tx.deleteTable(fam, t);
      repairs.push('the table was rebuilt (a set\'s type or a base chain\'s kind had changed)');
    }
    createTable(tx, desired);
    return repairs;
  }

  // Flags first: waking the table hooks its base chains, those already there and those this batch adds.
  const wantDormant = (desired.flags ?? 0) & NFT_TABLE_F_DORMANT;
  if (((current.flags ?? 0) & NFT_TABLE_F_DORMANT) !== wantDormant) {
    tx.updateTable(fam, t, desired.flags ?? 0);
    repairs.push(wantDormant ? 'the table was made dormant' : 'the table was dormant: woken');
  }
  // The kernel cannot move a chain to another hook or type (nor make a base chain regular): delete and re-create
  // it (with its rules, below) in this same batch. Nothing can reference a base chain, so the delete cannot fail
  // on a jump or a verdict-map element.
  const recreated = new Set<string>();
  for (const [name, chain] of desired.chains) {
    const cur = current.chains.get(name);
    if (!cur?.base || sameBase(cur.base, chain.base)) continue;
    tx.deleteChain(fam, t, name);
    recreated.add(name);
    repairs.push(`chain ${name} was ${describeBase(cur)}: re-created${chain.base ? ` as ${describeBase(chain)}` : ' as a regular chain'}`);
  }
  // A policy is changed in place (a NEWCHAIN naming the same hook updates the chain).
  for (const [name, chain] of desired.chains) {
    const cur = current.chains.get(name);
    if (!cur?.base || recreated.has(name) || policyOf(cur) === policyOf(chain)) continue;
    tx.updateBaseChain(fam, t, chain);
    repairs.push(`chain ${name} had policy ${describePolicy(policyOf(cur))}: set back to ${describePolicy(policyOf(chain))}`);
  }

  for (const [name, chain] of desired.chains) if (chain.base && !current.chains.has(name)) repairs.push(`chain ${name} (${describeBase(chain)}) was missing: re-created`);

  for (const [name, spec] of desired.sets) if (!current.sets.has(name)) tx.addSet(fam, t, spec);
  for (const [name, chain] of desired.chains) if (!current.chains.has(name) || recreated.has(name)) tx.addChain(fam, t, chain);

  // Elements: what to add (missing or with other data) and what to delete (unwanted or with other data).
  const adds = new Map<string, ElementState[]>();
  const gones = new Map<string, ElementState[]>();
  for (const [set, want] of desired.elements) {
    // Elements the kernel adds itself (dynset: sessionAffinity's remembered clients) are not ours to compare.
    if ((desired.sets.get(set)?.flags ?? 0) & NFT_SET_EVAL) continue;
    const cur = current.elements.get(set);
    if (!cur || cur.size === 0) {
      if (want.length) adds.set(set, want);
      continue;
    }
    const seen = new Set<string>();
    const add: ElementState[] = [];
    const gone: ElementState[] = [];
    for (const e of want) {
      const k = elementKey(e);
      seen.add(k);
      const c = cur.get(k);
      // A changed comment (why a Service's endpoints are these: explain reads it) is replaced too: the kernel keeps
      // an existing element's user data on a re-add.
      if (c && sameElement(c, e) && (e.comment === undefined || e.comment === c.comment)) continue;
      if (c) gone.push(c);
      add.push(e);
    }
    for (const [k, c] of cur) if (!seen.has(k)) gone.push(c);
    if (add.length) adds.set(set, add);
    if (gone.length) gones.set(set, gone);
  }
  // Leaving (or changing data): delete before anything they point to goes away.
  for (const [set, gone] of gones) tx.deleteElements(fam, t, set, gone);
  for (const set of current.sets.keys()) if (!desired.sets.has(set)) tx.flushSet(fam, t, set);

  // Chains whose rules differ: flush and refill; chains going away: flush now (drops their references).
  for (const [name, chain] of desired.chains) {
    const cur = recreated.has(name) ? undefined : current.chains.get(name);
    if (cur && sameRules(cur.rules, chain.rules)) continue;
    if (cur && cur.rules.length) tx.flushChain(fam, t, name);
    for (const r of chain.rules) tx.addRule(fam, t, name, r);
  }
  for (const [name, cur] of current.chains) if (!desired.chains.has(name) && cur.rules.length) tx.flushChain(fam, t, name);

  for (const [set, add] of adds) tx.addElements(fam, t, set, add);

  for (const [name, cur] of current.chains) if (!desired.chains.has(name) && !cur.base) tx.deleteChain(fam, t, name);
  for (const [name, cur] of current.chains) if (!desired.chains.has(name) && cur.base) tx.deleteChain(fam, t, name);
  for (const set of current.sets.keys()) if (!desired.sets.has(set)) tx.deleteSet(fam, t, set);
  return repairs;
}

function needsRebuild(current: TableState, desired: DesiredTable): boolean {
  for (const [name, spec] of desired.sets) {
    const cur = current.sets.get(name);
    if (cur && !sameSetSpec(cur, spec)) return true;
  }
  // A regular chain where a base chain belongs: other chains may jump to it, so it cannot simply be deleted.
  for (const [name, chain] of desired.chains) {
    const cur = current.chains.get(name);
    if (cur && !cur.base && chain.base) return true;
  }
  return false;
}

export function createTable(tx: NftTransaction, desired: DesiredTable): void {
  const fam = desired.family;
  const t = desired.name;
  tx.addTable(fam, t);
  for (const spec of desired.sets.values()) tx.addSet(fam, t, spec);
  // Regular chains before base chains: a base chain starts seeing packets at commit, all at once anyway,
  // but this keeps every jump target defined before the rule that names it.
  const chains = [...desired.chains.values()];
  for (const c of chains) tx.addChain(fam, t, c);
  // Rules before elements: a rule binding a map (lookup with a data register) walks the map's elements
  // (nf_tables_bind_set); bound while the maps are still empty, it walks nothing.
  for (const c of chains) for (const r of c.rules) tx.addRule(fam, t, c.name, r);
  for (const [set, elems] of desired.elements) if (elems.length) tx.addElements(fam, t, set, elems);
}

/** A change to one chain from a partial sync. */
export interface ChainChange {
  before?: ChainState;
  after?: ChainState;
}

/** A change to one element of one set from a partial sync (before/after are the effective elements). */
export interface ElementChange {
  set: string;
  before?: ElementState;
  after?: ElementState;
}

/** Queues a partial sync's changes to one family's table (same ordering rules as diffTable). */
export function applyChanges(tx: NftTransaction, fam: NfFamily, table: string, chains: ChainChange[], elements: ElementChange[], ownerOf: (chain: string) => string | undefined): void {
  // ownerOf('') names the owner of element operations (grouped per set), when there is a single one.
  for (const c of chains) if (c.after && !c.before) {
    tx.owner = ownerOf(c.after.name);
    tx.addChain(fam, table, c.after);
  }
  const deletes = new Map<string, ElementState[]>();
  const adds = new Map<string, ElementState[]>();
  for (const e of elements) {
    // Same data but another comment (a contested element changing hands): replace it, or status keeps naming
    // the previous holder (the kernel keeps an existing element's user data on a re-add).
    if (e.before && e.after && sameElement(e.before, e.after) && e.before.comment === e.after.comment) continue;
    if (e.before) push(deletes, e.set, e.before);
    if (e.after) push(adds, e.set, e.after);
  }
  tx.owner = ownerOf('');
  for (const [set, list] of deletes) tx.deleteElements(fam, table, set, list);
  for (const c of chains) {
    if (!c.after) continue;
    if (c.before && sameRules(c.before.rules, c.after.rules)) continue;
    tx.owner = ownerOf(c.after.name);
    if (c.before && c.before.rules.length) tx.flushChain(fam, table, c.after.name);
    for (const r of c.after.rules) tx.addRule(fam, table, c.after.name, r);
  }
  tx.owner = ownerOf('');
  for (const [set, list] of adds) tx.addElements(fam, table, set, list);
  // Removed chains: flush them all before deleting any, since one may jump to another.
  const removed = chains.filter((c) => c.before && !c.after).map((c) => c.before!);
  for (const c of removed) if (c.rules.length) {
    tx.owner = ownerOf(c.name);
    tx.flushChain(fam, table, c.name);
  }
  for (const c of removed) {
    tx.owner = ownerOf(c.name);
    tx.deleteChain(fam, table, c.name);
  }
  tx.owner = undefined;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}

