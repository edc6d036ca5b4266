// The sysctls the IPVS mode needs, set at every full sync where they differ.
import type { Logger } from '../../log';
import type { IpvsKernel } from './ipvsKernel';

/**
 * The sysctls kube-proxy's IPVS mode sets (pkg/proxy/ipvs/proxier.go NewProxier), and why svcplane needs them:
 * conntrack: IPVS keeps the connection's conntrack entry, so nftables' masquerade applies to IPVS traffic;
 * expire_nodest_conn: a connection whose real server was deleted is expired at its next packet instead of
 * black-holed (UDP/SCTP real servers are deleted at once); expire_quiescent_template: persistence templates of a
 * weight-0 (draining) real server expire, so sessionAffinity stops sending new connections there; ip_forward:
 * replies from the endpoints are forwarded back through IPVS.
 */
export const IPVS_SYSCTLS: ReadonlyArray<[string, string]> = [
  ['net.ipv4.vs.conntrack', '1'],
  ['net.ipv4.vs.expire_nodest_conn', '1'],
  ['net.ipv4.vs.expire_quiescent_template', '1'],
  ['net.ipv4.ip_forward', '1'],
];

/** What goes wrong without each (said with the warning when one cannot be written, e.g. a read-only /proc/sys). */
const IPVS_SYSCTL_MEANING: Record<string, string> = {
  'net.ipv4.vs.conntrack': 'IPVS traffic gets no conntrack entry, so it cannot be masqueraded',
  'net.ipv4.vs.expire_nodest_conn': 'connections to a deleted real server hang until they time out instead of ending at their next packet',
  'net.ipv4.vs.expire_quiescent_template': 'sessionAffinity keeps sending a client to a draining endpoint until its template expires',
  'net.ipv4.ip_forward': 'the node does not forward, so Service traffic from pods and other machines to endpoints fails',
};

/**
 * Sets IPVS_SYSCTLS where they differ. Without vs.conntrack masquerade cannot work: that one is required (thrown);
 * the others are warned about. `firstTime`: log what was set or not (later syncs stay quiet).
 */
export async function ensureIpvsSysctls(kernel: IpvsKernel, log: Logger, firstTime: boolean): Promise<void> {
  await Promise.all(IPVS_SYSCTLS.map(async ([name, value]) => {
    try {
      const cur = await kernel.sysctl(name);
      if (cur === value) return;
      await kernel.sysctl(name, value);
      if (firstTime) log.info('sysctl set', { name, value, was: cur });
    } catch (e) {
      const msg = `sysctl ${name}=${value}: ${e instanceof Error ? e.message : String(e)}`;
      if (name === 'net.ipv4.vs.conntrack') throw new Error(`${msg} (IPVS mode needs it for masquerade)`);
      if (firstTime) log.warn('sysctl not set', { name, value, error: msg, without: IPVS_SYSCTL_MEANING[name] });
    }
  }));
}
