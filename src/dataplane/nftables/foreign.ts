// Other writers' base chains that may take Service traffic before svcplane's rules decide it. svcplane never
// touches another table; it only says, in `status`, `explain` and one warning per full sync, that its answer may
// not be what the kernel does.
//
// "May take the traffic", decided conservatively (a false alarm costs a log line, a miss costs an outage nobody
// can explain):
//  - Where: a base chain of another table (family ip, ip6 or inet, so it sees the Service's packets), not
//    dormant, at a hook where svcplane decides a Service connection, with a priority that runs before (or with:
//    the kernel orders equal priorities by registration, which nobody controls) svcplane's deciding chain there:
//    prerouting and output (svcplane's DNAT, nat priority -100) and forward (svcplane's check for ClusterIP ports
//    nothing answers, filter priority -110). Later chains see the packet after svcplane's DNAT, addressed to an
//    endpoint: what they do is the node's firewall policy, not a competing Service, and so are input and
//    postrouting (svcplane's choice is made by then). netdev and bridge hooks, and iptables-legacy, are not seen.
//  - What: the chain, or a regular chain it jumps or goes to, has a rule with an expression that ends or diverts a
//    packet's path whatever it matched (nat, redir, masq, tproxy, reject, queue, synproxy, fwd), a drop, queue or
//    stolen verdict, or a verdict map (any verdict may come out of it); or the chain's policy is drop. The rule's
//    matches are not evaluated: whether they cover a Service address is for the operator to read. An accept is not
//    counted: it ends only that chain, and the packet goes on to the next chain at the hook, svcplane's included.
import type { Logger } from '../../log';
import type { NftClient } from './client';
import { NF_DROP, NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_PRE_ROUTING, NFPROTO_IPV4, NFPROTO_IPV6, type NfFamily } from './netlink/constants';
import type { ListedRule } from '../../netlink/nftables';
import { NFPROTO_INET } from '../../netlink/nftables';
import { expectedBaseChains, hookName } from './drift';
import type { BaseChainInfo, HookChain } from './hook-chains';
import { CHAINS } from './rules/names';

/** The chain of svcplane's table that decides Service traffic at each hook (its priority is read from the ruleset). */
const DECIDING: ReadonlyArray<[number, string]> = [
  [NF_INET_PRE_ROUTING, CHAINS.natPrerouting],
  [NF_INET_LOCAL_OUT, CHAINS.natOutput],
  [NF_INET_FORWARD, CHAINS.filterForward],
];

/** Expressions that end or divert a packet's path whatever their rule matched. */
const TAKING_EXPRS: Readonly<Record<string, string>> = {
  redir: 'redirect', masq: 'masquerade', tproxy: 'tproxy', reject: 'reject', queue: 'queue', synproxy: 'synproxy', fwd: 'fwd',
};
const NF_STOLEN = 2;
const NF_QUEUE = 3;

export interface ForeignChain {
  /** nft's family word: ip, ip6 or inet. */
  family: string;
  table: string;
  chain: string;
  type: string;
  hook: string;
  priority: number;
  /** svcplane's chain at that hook it runs before. */
  before: { chain: string; priority: number };
  /** What it can do to a packet: "dnat", "drop", "reject", "verdict map", "policy drop", ... */
  can: string[];
  /** The IP families of Service traffic it sees. */
  ipFamilies: Array<4 | 6>;
}

const FAMILY_WORD: Readonly<Record<number, string>> = { [NFPROTO_IPV4]: 'ip', [NFPROTO_IPV6]: 'ip6', [NFPROTO_INET]: 'inet' };

function ipFamiliesOf(family: number): Array<4 | 6> {
  return family === NFPROTO_IPV4 ? [4] : family === NFPROTO_IPV6 ? [6] : family === NFPROTO_INET ? [4, 6] : [];
}

/** svcplane's deciding chain at the chain's hook, when the chain runs before (or with) it; else undefined. */
function decidingAfter(c: BaseChainInfo): { chain: string; priority: number } | undefined {
  const name = DECIDING.find(([hook]) => hook === c.hook)?.[1];
  if (!name) return undefined;
  // The same in both families; the IPv4 table's is read.
  const own = expectedBaseChains(NFPROTO_IPV4 as NfFamily).find((x) => x.name === name)?.base;
  if (!own || c.priority > own.priority) return undefined;
  return { chain: name, priority: own.priority };
}

/** Which base chains' rules are worth reading (reader's selector): other tables' chains that run first. */
export function runsBeforeSvcplane(ownTable: string): (c: BaseChainInfo) => boolean {
  return (c) => !(c.table === ownTable && (c.family === NFPROTO_IPV4 || c.family === NFPROTO_IPV6)) &&
    ipFamiliesOf(c.family).length > 0 && decidingAfter(c) !== undefined;
}

function ruleCan(r: ListedRule): string[] {
  const out: string[] = [...r.nat];
  for (const e of r.exprs) if (TAKING_EXPRS[e]) out.push(TAKING_EXPRS[e]);
  for (const v of r.verdicts) {
    if (v === NF_DROP) out.push('drop');
    else if (v === NF_QUEUE) out.push('queue');
    else if (v === NF_STOLEN) out.push('steal');
  }
  if (r.verdictMap) out.push('verdict map');
  return out;
}

/** The other tables' base chains that may take Service traffic before svcplane's (see the file comment). */
export function foreignChains(chains: HookChain[], ownTable: string): ForeignChain[] {
  const selected = runsBeforeSvcplane(ownTable);
  const out: ForeignChain[] = [];
  for (const c of chains) {
    if (!selected(c)) continue;
    const can = new Set<string>();
    for (const r of c.rules) for (const x of ruleCan(r)) can.add(x);
    if (c.policy === NF_DROP) can.add('policy drop');
    if (can.size === 0) continue;
    out.push({
      family: FAMILY_WORD[c.family], table: c.table, chain: c.chain, type: c.type, hook: hookName(c.hook), priority: c.priority,
      before: decidingAfter(c)!, can: [...can], ipFamilies: ipFamiliesOf(c.family),
    });
  }
  return out;
}

/** One sentence per chain, for the log, `status` and `explain`. */
export function describeForeign(f: ForeignChain): string {
  return `a foreign rule at the same hook may take Service traffic before svcplane: table ${f.family} ${f.table} chain ${f.chain} ` +
    `(type ${f.type} hook ${f.hook} priority ${f.priority}, before svcplane's ${f.before.chain} at ${f.before.priority}) can ${f.can.join(', ')}; ` +
    'svcplane leaves it alone';
}

/**
 * The foreign chains that may take Service traffic, read from the kernel behind `client`; none when the client
 * cannot list other tables (the fake) or the listing fails (logged: a warning is not worth failing a sync for).
 */
export async function readForeignChains(client: NftClient, ownTable: string, log: Logger): Promise<ForeignChain[]> {
  if (!client.hookChains) return [];
  try {
    return foreignChains(await client.hookChains(runsBeforeSvcplane(ownTable)), ownTable);
  } catch (e) {
    log.warn('other tables\' base chains could not be read', { error: (e as Error).message });
    return [];
  }
}
