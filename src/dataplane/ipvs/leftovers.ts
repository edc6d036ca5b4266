// Switching from the IPVS mode to another (nftables, ebpf): the IPVS mode's virtual services and its svcplane0 link
// would stay behind the new mode's back. svcplane0's local routes (or addresses) make every ClusterIP local to the
// node, so packets to them would be delivered to IPVS, which still holds the endpoints of the last IPVS sync, or
// answered with a reset, before the new mode's table ever sees them. kube-proxy's other modes clean the IPVS mode's
// leftovers the same way at start. svcplane0 is the sign that the IPVS mode ran here: without it nothing else is
// looked at, so a node that never ran IPVS never has the ip_vs module loaded by the check.
import type { Logger } from '../../log';
import { NetlinkNftClient } from '../nftables/client';
import { IpvsClient } from './client';
import { defaultIpvsConfig } from './config';
import { IpvsProxier } from './proxier';

export async function removeIpvsLeftovers(netns: string | undefined, tableName: string | undefined, log: Logger): Promise<boolean> {
  const ns = netns ? { netns } : {};
  const config = defaultIpvsConfig(tableName ? { tableName } : {});
  const probe = new IpvsClient(ns);
  let link;
  try {
    link = await probe.link(config.interfaceName);
  } finally {
    probe.close();
  }
  if (!link) return false;
  const ipvs = new IpvsProxier(new IpvsClient(ns), new NetlinkNftClient(ns), config, log);
  try {
    await ipvs.cleanup();
  } catch (e) {
    // Not a reason to refuse the mode asked for (e.g. svcplane0 left while the ip_vs module is gone): said, and on.
    log.warn('the IPVS mode\'s leftovers could not all be removed', { link: config.interfaceName, error: (e as Error).message });
    return false;
  } finally {
    ipvs.close();
  }
  log.info('the IPVS mode\'s virtual services, its table and svcplane0 removed (another mode runs now)', { link: config.interfaceName });
  return true;
}
