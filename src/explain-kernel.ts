// What `explain` reads from the kernel for the nftables mode, read once for any number of flows: svcplane's table
// of each family the flows need, the node's addresses (a destination among them may be a NodePort, a source among
// them is the node itself) and other tables' chains at svcplane's hooks. The CLI explains one flow with it; the
// agreement test (test/kernel/explain-agrees.test.ts) explains hundreds against one dump.
import { IpvsClient } from './dataplane/ipvs/client';
import { NetlinkNftClient } from './dataplane/nftables/client';
import { readForeignChains } from './dataplane/nftables/foreign';
import { NFPROTO_IPV4, NFPROTO_IPV6, type NfFamily } from './dataplane/nftables/netlink/constants';
import type { TableState } from './dataplane/nftables/objects';
import { TABLE_NAME } from './dataplane/nftables/rules/names';
import type { Explanation, FlowQuery } from './explain';
import { explainNftables } from './explain-nftables';
import { createLogger } from './log';

/** The node's addresses as `explain` counts them: every link's, loopback's left out (NodePorts never answer there). */
export async function nodeAddresses(route: IpvsClient): Promise<string[]> {
  return (await route.allAddresses()).map((a) => a.address).filter((a) => a !== '127.0.0.1' && a !== '::1');
}

/** Explains each flow against one reading of the kernel (in the network namespace at `netns`, if given). */
export async function explainNftablesFlows(flows: FlowQuery[], opts: { netns?: string } = {}): Promise<Explanation[]> {
  const ns = opts.netns ? { netns: opts.netns } : {};
  const nft = new NetlinkNftClient(ns);
  // IpvsClient holds the route socket: the node's addresses come from it.
  const route = new IpvsClient(ns);
  try {
    const families = new Set<NfFamily>(flows.map((q) => (q.address.includes(':') ? NFPROTO_IPV6 : NFPROTO_IPV4)));
    const tables = new Map<NfFamily, TableState | undefined>();
    for (const f of families) tables.set(f, await nft.dumpTable(f, TABLE_NAME));
    const addrs = await nodeAddresses(route);
    const foreign = await readForeignChains(nft, TABLE_NAME, createLogger());
    return flows.map((q) => explainNftables(tables.get(q.address.includes(':') ? NFPROTO_IPV6 : NFPROTO_IPV4), q, addrs, foreign));
  } finally {
    nft.close();
    route.close();
  }
}
