// The kernel objects svcplane's nftables tables are made of, as plain values: what we want (built by the
// ruleset) and what the kernel holds (decoded from a dump) have this one shape, so the diff is a comparison.
import { NFT_DATA_VERDICT, NF_ACCEPT, type NfFamily } from './netlink/constants';

export interface BaseChainSpec {
  type: 'filter' | 'nat';
  hook: number;
  priority: number;
}

export interface ChainState {
  name: string;
  base?: BaseChainSpec;
  /**
   * Base chains: what happens to a packet no rule gave a verdict (NF_ACCEPT, NF_DROP). Undefined in what svcplane
   * wants, which is always accept; a dump has the kernel's.
   */
  policy?: number;
  /** Rule bodies (see netlink/expr.ts), in order. */
  rules: Buffer[];
}

export interface SetSpec {
  name: string;
  flags: number;
  keyType: number;
  keyLen: number;
  /** Maps only: NFT_DATA_VERDICT for verdict maps. */
  dataType?: number;
  dataLen?: number;
  /** Concatenated range sets: each field's length in bytes (NFTA_SET_DESC_CONCAT). */
  concat?: number[];
  /** The most elements the set may hold (NFTA_SET_DESC_SIZE); dynamic sets get a default of 65535 otherwise. */
  size?: number;
}

export interface ElementState {
  key: Buffer;
  /** Range sets: the last key of the range (inclusive). */
  keyEnd?: Buffer;
  flags?: number;
  /** Verdict maps: verdict code and target chain. */
  verdict?: number;
  chain?: string;
  data?: Buffer;
  /** Shown by `nft list` and read back by status: which Service port the element belongs to. Not compared. */
  comment?: string;
  /** Dumped elements of a timeout set: milliseconds left (the kernel's; never written by svcplane). */
  expiresMs?: number;
}

export interface TableState {
  family: NfFamily;
  name: string;
  /** NFT_TABLE_F_* (dormant: no base chain of the table is hooked). Undefined in what svcplane wants: 0. */
  flags?: number;
  chains: Map<string, ChainState>;
  sets: Map<string, SetSpec>;
  /** set name -> elementKey() -> element */
  elements: Map<string, Map<string, ElementState>>;
}

/**
 * What a sync wants: a TableState whose sets' elements are lists. A cold start programs them as they are; only
 * against a programmed table are they keyed, so a 500k-element sync builds no map it does not need.
 */
export interface DesiredTable extends Omit<TableState, 'elements'> {
  elements: Map<string, ElementState[]>;
}

export function desiredOf(t: TableState): DesiredTable {
  return { ...t, elements: new Map([...t.elements].map(([set, m]) => [set, [...m.values()]])) };
}

export function emptyTable(family: NfFamily, name: string): TableState {
  return { family, name, chains: new Map(), sets: new Map(), elements: new Map() };
}

/** Identity of an element within its set: its key bytes as a (latin1) string, cheap to build and compare. */
export function elementKey(e: ElementState): string {
  return e.keyEnd ? `${e.key.toString('latin1')}-${e.keyEnd.toString('latin1')}` : e.key.toString('latin1');
}

export function sameElement(a: ElementState, b: ElementState): boolean {
  return (
    (a.flags ?? 0) === (b.flags ?? 0) &&
    a.verdict === b.verdict &&
    a.chain === b.chain &&
    (a.data === undefined ? b.data === undefined : b.data !== undefined && a.data.equals(b.data))
  );
}

/**
 * Whether a set as the kernel holds it is the set wanted: a different spec (flags, key, data type and length, the
 * concatenation's fields, the size) means re-creating it, as the kernel cannot change a set's spec in place.
 * A verdict map's data length is the kernel's (sizeof(struct nft_verdict)), never given, so not compared.
 */
export function sameSetSpec(a: SetSpec, b: SetSpec): boolean {
  const verdict = (a.dataType ?? 0) === NFT_DATA_VERDICT;
  return a.flags === b.flags && a.keyType === b.keyType && a.keyLen === b.keyLen && (a.dataType ?? 0) === (b.dataType ?? 0) &&
    (verdict || (a.dataLen ?? 0) === (b.dataLen ?? 0)) && (a.concat ?? []).join() === (b.concat ?? []).join() && (a.size ?? 0) === (b.size ?? 0);
}

export function sameBase(a?: BaseChainSpec, b?: BaseChainSpec): boolean {
  if (!a || !b) return a === b;
  return a.type === b.type && a.hook === b.hook && a.priority === b.priority;
}

/** A base chain's policy, accept when unset (svcplane never programs another). */
export function policyOf(c: ChainState): number {
  return c.policy ?? NF_ACCEPT;
}

export function sameRules(a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!a[i].equals(b[i])) return false;
  return true;
}
