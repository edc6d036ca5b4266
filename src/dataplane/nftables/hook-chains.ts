// Reads the base chains of every nftables table in the namespace (any writer's), with the rules a packet entering
// each may meet: its own and those of the regular chains it jumps or goes to. Read-only, over its own nfnetlink
// socket (plain dumps: nothing is ever sent that could change a table). The caller chooses which base chains'
// rules are worth reading (a foreign ruleset may be large), so only those tables' rules are dumped.
import { native } from '../../native';
import {
  type ListedChain, type ListedRule, decodeChain, decodeRule, decodeTable, dumpChainsRequest, dumpRulesRequest, dumpTablesRequest,
} from '../../netlink/nftables';
import { NFT_TABLE_F_DORMANT } from './netlink/constants';

export interface HookChain {
  family: number;
  table: string;
  chain: string;
  type: string;
  hook: number;
  priority: number;
  /** NF_ACCEPT or NF_DROP: what the chain does with a packet no rule gave a verdict. */
  policy: number;
  /** The chain's rules and those of every regular chain reachable from it by jump or goto. */
  rules: ListedRule[];
}

export type BaseChainInfo = Omit<HookChain, 'rules'>;

type Transceiver = InstanceType<ReturnType<typeof native>['NetlinkTransceiver']>;

export class HookChainReader {
  private sock: Transceiver | undefined;

  constructor(private readonly options: { netns?: string } = {}) {}

  private socket(): Transceiver {
    this.sock ??= new (native().NetlinkTransceiver)({ bus: 'netfilter', ...(this.options.netns ? { netns: this.options.netns } : {}) });
    return this.sock;
  }

  /** Base chains of tables that are not dormant, with their reachable rules when `withRules` says so. */
  async read(withRules: (c: BaseChainInfo) => boolean): Promise<HookChain[]> {
    const [tables, chains] = (await this.socket().transact([dumpTablesRequest(), dumpChainsRequest()])).results;
    for (const r of [tables, chains]) if (r.errno) throw Object.assign(new Error(`list nftables chains: ${r.code ?? r.errno}`), { errno: r.errno });
    const dormant = new Set(tables.replies.map(decodeTable).filter((t) => t && t.flags & NFT_TABLE_F_DORMANT).map((t) => `${t!.family}\0${t!.name}`));
    const listed = chains.replies.map(decodeChain).filter((c): c is ListedChain => !!c && !dormant.has(`${c.family}\0${c.table}`));
    const bases: BaseChainInfo[] = listed.filter((c) => c.hook).map((c) => ({
      family: c.family, table: c.table, chain: c.name, type: c.hook!.type, hook: c.hook!.hooknum, priority: c.hook!.priority, policy: c.hook!.policy,
    }));
    const wanted = bases.filter(withRules);
    const tablesToRead = [...new Map(wanted.map((c) => [`${c.family}\0${c.table}`, c])).values()];
    const rulesOf = new Map<string, ListedRule[]>(); // family, table, chain -> rules in order
    if (tablesToRead.length) {
      const res = await this.socket().transact(tablesToRead.map((c) => dumpRulesRequest(c.family, c.table)));
      for (const r of res.results) {
        // A table deleted since the chain dump (ENOENT) simply has no rules to report.
        for (const rule of r.replies.map(decodeRule)) {
          if (!rule) continue;
          const k = `${rule.family}\0${rule.table}\0${rule.chain}`;
          const list = rulesOf.get(k);
          if (list) list.push(rule);
          else rulesOf.set(k, [rule]);
        }
      }
    }
    return bases.map((c) => ({ ...c, rules: wanted.includes(c) ? reachable(c, rulesOf) : [] }));
  }

  close(): void {
    this.sock?.close();
    this.sock = undefined;
  }
}

/** The rules of `c` and of every chain reachable from it (each chain once, so a jump loop cannot hang this). */
function reachable(c: BaseChainInfo, rulesOf: Map<string, ListedRule[]>): ListedRule[] {
  const out: ListedRule[] = [];
  const seen = new Set<string>();
  const queue = [c.chain];
  while (queue.length) {
    const name = queue.shift()!;
    if (seen.has(name)) continue;
    seen.add(name);
    for (const r of rulesOf.get(`${c.family}\0${c.table}\0${name}`) ?? []) {
      out.push(r);
      queue.push(...r.targets);
    }
  }
  return out;
}
