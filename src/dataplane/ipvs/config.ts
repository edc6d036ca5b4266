// The IPVS dataplane's settings (from kube-proxy's flags and config file, see cli/ and agent.ts).
import { TABLE_NAME } from '../nftables/rules/names';

export interface IpvsProxierConfig {
  /** Default scheduler (--ipvs-scheduler). */
  scheduler: string;
  /** NodePorts answer on local addresses in these CIDRs; empty: every address but loopback and link-local. */
  nodePortAddresses: string[];
  /** The dummy link holding Service addresses. */
  interfaceName: string;
  /** Longest a weight-0 real server waits for its connections to end. */
  gracefulTimeoutMs: number;
  /** Pod CIDRs: ClusterIP traffic from outside them is masqueraded (as in nftables mode). */
  clusterCIDRs: string[];
  /** Pods told by the interface their traffic arrives on instead (detectLocalMode BridgeInterface / InterfaceNamePrefix). */
  podInterface?: { name: string; prefix: boolean };
  masqueradeAll: boolean;
  masqueradeBit: number;
  /** This node's name: local endpoints (traffic policies Local), hairpin pairs for its endpoints only. */
  nodeName?: string;
  /** This node's zone (topology hints). */
  nodeZone?: string;
  /** This node's primary addresses (loadBalancerSourceRanges holding one accept the LB IPs as sources too). */
  nodeIPs?: string[];
  /** The cluster's Service CIDRs: new traffic to an address in them that is no ClusterIP is dropped (filter.ts). */
  serviceCIDRs?: string[];
  /** The nftables table beside IPVS (both families). */
  tableName: string;
  /**
   * How Service addresses are made local on svcplane0: 'route' (default) binds each as a local route
   * (`local <ip> dev svcplane0 table local proto 88`), 'address' as an address (what kube-proxy does on kube-ipvs0).
   * Both deliver the same way (the kernel's "local address" is the local-table route an address creates), but
   * adding an address walks the link's whole address list, so N addresses on one link cost O(N^2): 10k took 5.3 s
   * in the test guest, 10k routes 0.78 s. 'address' is there for tools that look for them with `ip addr`.
   */
  bindMode: 'route' | 'address';
}

export function defaultIpvsConfig(over: Partial<IpvsProxierConfig> = {}): IpvsProxierConfig {
  return {
    scheduler: 'rr', nodePortAddresses: [], interfaceName: 'svcplane0', gracefulTimeoutMs: 15 * 60_000,
    clusterCIDRs: [], masqueradeAll: false, masqueradeBit: 14, tableName: TABLE_NAME, bindMode: 'route', ...over,
  };
}
