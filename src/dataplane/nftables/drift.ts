// svcplane's own table checked for what decides whether its rules see packets at all, as opposed to what they do
// with them: the table's dormant flag and each base chain's type, hook, priority and policy. Every rule and element
// can be in place while a dormant table or a base chain with policy drop changes every Service's traffic, so
// `status` and `explain` read these from the kernel and say so (the full sync repairs them: diff.ts).
import { NF_ACCEPT, NF_DROP, NFPROTO_IPV4, NFPROTO_IPV6, NFT_TABLE_F_DORMANT, type NfFamily } from './netlink/constants';
import type { BaseChainSpec, ChainState, TableState } from './objects';
import { policyOf } from './objects';
import { defaultConfig } from './rules/config';
import { skeleton } from './rules/skeleton';

export const HOOK_NAMES: Readonly<Record<number, string>> = { 0: 'prerouting', 1: 'input', 2: 'forward', 3: 'output', 4: 'postrouting' };

export function hookName(hook: number): string {
  return HOOK_NAMES[hook] ?? `hook ${hook}`;
}

export function describePolicy(policy: number): string {
  return policy === NF_ACCEPT ? 'accept' : policy === NF_DROP ? 'drop' : `verdict ${policy}`;
}

/** "type nat hook prerouting priority -100", as nft writes a base chain ("a regular chain" otherwise). */
export function describeSpec(base: BaseChainSpec | undefined): string {
  return base ? `type ${base.type} hook ${hookName(base.hook)} priority ${base.priority}` : 'a regular chain';
}

export function describeBase(c: Pick<ChainState, 'base'>): string {
  return describeSpec(c.base);
}

const expected = new Map<NfFamily, ChainState[]>();

/** svcplane's base chains as every sync programs them: they depend on nothing configurable. */
export function expectedBaseChains(family: NfFamily): ChainState[] {
  let chains = expected.get(family);
  if (!chains) {
    chains = [...skeleton(family === NFPROTO_IPV4 ? 4 : 6, defaultConfig()).chains.values()].filter((c) => c.base);
    expected.set(family, chains);
  }
  return chains;
}

export interface BaseChainDrift {
  chain: string;
  want: BaseChainSpec;
  /** What the kernel holds under that name (undefined: no such chain). */
  have?: BaseChainSpec;
  /**
   * missing: no chain (or a regular one) by that name; moved: another hook or type, so it does not see the packets
   * it is for; priority: same hook, another priority (it still runs, in another order); policy: not accept.
   */
  problem: 'missing' | 'moved' | 'priority' | 'policy';
  policy: number;
}

export interface TableDrift {
  family: NfFamily;
  table: string;
  dormant: boolean;
  chains: BaseChainDrift[];
}

export function tableDrift(t: TableState): TableDrift {
  const out: TableDrift = { family: t.family, table: t.name, dormant: ((t.flags ?? 0) & NFT_TABLE_F_DORMANT) !== 0, chains: [] };
  for (const want of expectedBaseChains(t.family)) {
    const have = t.chains.get(want.name);
    const spec = want.base!;
    const policy = have ? policyOf(have) : NF_ACCEPT;
    const d = { chain: want.name, want: spec, ...(have?.base ? { have: have.base } : {}), policy };
    if (!have?.base) out.chains.push({ ...d, problem: 'missing' });
    else if (have.base.type !== spec.type || have.base.hook !== spec.hook) out.chains.push({ ...d, problem: 'moved' });
    else if (have.base.priority !== spec.priority) out.chains.push({ ...d, problem: 'priority' });
    // A moved chain's policy is reported with it; here the chain is where it belongs.
    if (have?.base && have.base.type === spec.type && have.base.hook === spec.hook && policy !== NF_ACCEPT) out.chains.push({ ...d, problem: 'policy' });
  }
  return out;
}

/**
 * `t` with its flags and base chains as every sync programs them (its other chains, sets and elements as they are):
 * what svcplane's rules would do with a packet if nothing had changed where they are hooked (explain compares).
 */
export function asProgrammed(t: TableState): TableState {
  const chains = new Map(t.chains);
  for (const want of expectedBaseChains(t.family)) chains.set(want.name, want);
  return { ...t, flags: 0, chains };
}

function familyWord(f: NfFamily): string {
  return f === NFPROTO_IPV4 ? 'ip' : 'ip6';
}

/** One sentence per problem, for `status` (and `explain`, beside its verdict). */
export function driftWarnings(d: TableDrift): string[] {
  const table = `table ${familyWord(d.family)} ${d.table}`;
  const out: string[] = [];
  if (d.dormant) out.push(`${table} is dormant: none of its chains sees a packet, so svcplane neither forwards nor refuses any Service address of this family (the next full sync wakes it)`);
  for (const c of d.chains) {
    const chain = `${table} chain ${c.chain}`;
    if (c.problem === 'missing') out.push(`${chain} (${describeSpec(c.want)}) is missing (the next full sync re-creates it)`);
    else if (c.problem === 'moved') out.push(`${chain} is ${describeSpec(c.have)}, not ${describeSpec(c.want)}: it does not see the packets it is for (the next full sync re-creates it)`);
    else if (c.problem === 'priority') out.push(`${chain} has priority ${c.have!.priority}, not ${c.want.priority} (the next full sync re-creates it)`);
    else out.push(`${chain} (${describeSpec(c.want)}) has policy ${describePolicy(c.policy)}: ${c.want.type === 'nat' ? 'every new connection it sees that no rule NATs' : 'every packet it sees'} is dropped (the next full sync sets it back to accept)`);
  }
  return out;
}

/** Warnings for svcplane's tables as dumped (`tables`: those that exist), including a family's table gone missing. */
export function ownTableWarnings(tables: TableState[], name: string): string[] {
  const out = tables.flatMap((t) => driftWarnings(tableDrift(t)));
  if (tables.length === 0) return out;
  for (const f of [NFPROTO_IPV4, NFPROTO_IPV6] as NfFamily[]) {
    if (!tables.some((t) => t.family === f)) out.push(`table ${familyWord(f)} ${name} is missing: svcplane handles no Service address of this family (the next full sync re-creates it)`);
  }
  return out;
}
