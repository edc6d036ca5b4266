// What the nftables tables depend on besides the Services: the node's and cluster's settings (pod CIDRs or pod
// interface, masquerade choices, NodePort addresses, Service CIDRs) and what the kernel accepts. Both the nftables
// mode and the IPVS mode's filter table (ipvs/filter.ts) are built from it.
import type { KernelSupport } from '../kernel';
import { TABLE_NAME } from './names';

export interface NftablesConfig {
  /** Table name in both families (tests use others to run side by side). */
  tableName: string;
  /**
   * Pod CIDRs: traffic from outside them to a ClusterIP is masqueraded (kube-proxy's detectLocalMode ClusterCIDR;
   * NodeCIDR gives the Node's podCIDRs here).
   */
  clusterCIDRs: string[];
  /**
   * detectLocalMode BridgeInterface / InterfaceNamePrefix: traffic from pods is what arrives on this interface (or
   * on any whose name starts with it); clusterCIDRs are then not used to tell pods.
   */
  podInterface?: { name: string; prefix: boolean };
  masqueradeAll: boolean;
  /** NodePorts answer on local addresses within these CIDRs; empty: every local address but loopback. */
  nodePortAddresses: string[];
  /** The packet mark bit used to ask for masquerade (kube-proxy: 14, mark 0x4000). */
  masqueradeBit: number;
  /** This node's name (Node object, --hostname-override): hairpin pairs are only needed for its own endpoints. */
  nodeName?: string;
  /** This node's zone (topology.kubernetes.io/zone): topology hints are used only when it is known. */
  nodeZone?: string;
  /**
   * This node's primary addresses (one per family; the Node's InternalIPs, or --node-ip): a LoadBalancer whose
   * source ranges hold one of them also accepts its own LB IPs as sources (firewallElements).
   */
  nodeIPs?: string[];
  /**
   * The cluster's Service CIDRs (ServiceCIDR objects' spec.cidrs, and --service-cidr): new traffic to an address
   * inside them that no Service holds is dropped, as kube-proxy's nftables mode does ("Drop traffic to unallocated
   * ClusterIPs"), instead of following the node's routes out of it. Empty: nothing dropped.
   */
  serviceCIDRs?: string[];
  /**
   * What the kernel's nf_tables accepts (kernel.ts), which picks the ruleset's shape; undefined until probed (the
   * proxier probes before its first sync) and, for the pure functions here, every construct.
   */
  kernel?: KernelSupport;
}

export function defaultConfig(overrides: Partial<NftablesConfig> = {}): NftablesConfig {
  return { tableName: TABLE_NAME, clusterCIDRs: [], masqueradeAll: false, nodePortAddresses: [], masqueradeBit: 14, ...overrides };
}
