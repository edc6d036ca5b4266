// This node's addresses as `explain` counts them: a destination among them may be a NodePort, a source among them
// is the node itself. Loopback's are left out (NodePorts never answer there).
import { native } from '../native';
import * as rtnl from '../netlink/rtnl';

export const LOOPBACK = new Set(['127.0.0.1', '::1']);

/** Every address of every link of the network namespace at `netns` (default: this process's), loopback's left out. */
export async function readNodeAddresses(netns?: string): Promise<string[]> {
  const route = new (native().NetlinkTransceiver)({ bus: 'route', ...(netns ? { netns } : {}) });
  try {
    const r = (await route.transact([rtnl.dumpAddrsRequest()])).results[0];
    if (r.errno) throw new Error(`list the node's addresses: ${r.code} (errno ${r.errno})`);
    return r.replies.map(rtnl.decodeAddr).filter((a): a is rtnl.AddrInfo => !!a).map((a) => a.address).filter((a) => !LOOPBACK.has(a));
  } finally {
    route.close();
  }
}
