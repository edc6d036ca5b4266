// Every name the nftables mode's tables use, in one place (kube-proxy's pkg/proxy/nftables/proxier.go keeps them
// in one constants block too): the table, its chains, its sets and maps, and the endpoint counts whose rules are
// always there. `status`, `explain` and the tests read the kernel's tables back by these names. The IPVS mode's
// table (ipvs/filter.ts, IPVS_CHAINS / IPVS_SETS) takes from here the names of what it has in common with this one
// and adds its own.
import type { IPFamily } from '../../../model/types';
import { NFPROTO_IPV4, NFPROTO_IPV6, type NfFamily } from '../netlink/constants';

/** One table per family (ip, ip6), both with this name, like kube-proxy's `kube-proxy` tables. */
export const TABLE_NAME = 'svcplane';

export const FAMILIES: Array<{ ip: IPFamily; nf: NfFamily }> = [
  { ip: 4, nf: NFPROTO_IPV4 },
  { ip: 6, nf: NFPROTO_IPV6 },
];

export const CHAINS = {
  // Base chains (where each hooks: baseChains.ts).
  natPrerouting: 'nat-prerouting',
  natOutput: 'nat-output',
  natPostrouting: 'nat-postrouting',
  filterPrerouting: 'filter-prerouting',
  /** The IPVS mode's only (ipvs/filter.ts): before IPVS takes new connections at LOCAL_IN. */
  filterInput: 'filter-input',
  filterOutput: 'filter-output',
  filterForward: 'filter-forward',
  filterOutputPostDnat: 'filter-output-post-dnat',
  // Regular chains (skeleton.ts).
  services: 'services',
  masquerading: 'masquerading',
  endpointsCheck: 'endpoints-check',
  clusterIPsCheck: 'cluster-ips-check',
  reject: 'reject-chain',
  // Pick chains, one per way to a set of endpoint slots (picks.ts).
  pickIPs: 'pick-ips',
  pickNodePorts: 'pick-nodeports',
  pickLocalIPs: 'pick-local-ips',
  pickLocalNodePorts: 'pick-local-nodeports',
} as const;

export const SETS = {
  serviceIPs: 'service-ips',
  /** externalIPs and LoadBalancer IPs of externalTrafficPolicy Cluster: always masqueraded. */
  externalIPs: 'external-ips',
  serviceEndpoints: 'service-endpoints',
  nodePortEndpoints: 'nodeport-endpoints',
  serviceNodePorts: 'service-nodeports',
  /** NodePorts of externalTrafficPolicy Cluster: always masqueraded. */
  masqNodePorts: 'masq-nodeports',
  /** externalTrafficPolicy Local: the addresses / NodePorts (masqueraded only from the node itself). */
  localPolicyIPs: 'local-policy-ips',
  localPolicyNodePorts: 'local-policy-nodeports',
  /** externalTrafficPolicy Local: this node's endpoints, for clients from outside the node (source kept). */
  localIPs: 'local-ips',
  localEndpoints: 'local-endpoints',
  localNodePorts: 'local-nodeports',
  localNodePortEndpoints: 'local-nodeport-endpoints',
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  /** Endpoints exist, none here, under a Local policy: dropped (kube-proxy), so a client can try another node. */
  dropServices: 'drop-services',
  dropExternal: 'drop-external',
  dropNodePorts: 'drop-nodeports',
  clusterIPs: 'cluster-ips',
  hairpin: 'hairpin-endpoints',
  /** LoadBalancer IPs with loadBalancerSourceRanges (address . proto . port)... */
  firewallIPs: 'firewall-ips',
  /** ...and the sources each accepts: address . proto . port . source range (a set of concatenated ranges). */
  firewallAllow: 'firewall-allow',
} as const;

/** The sets of remembered clients: for addresses, and for NodePorts (no destination address in the key). */
export const AFFINITY_SETS = { ip: 'affinity', nodeport: 'affinity-nodeport' } as const;

/** Endpoint counts whose pick rules are always there (see picks.ts). */
export const STATIC_PICK_COUNTS = 32;

/**
 * Affinity rules for counts up to this exist whenever a timeout is in use (one id per kind and timeout), so adding or
 * removing an endpoint of an affinity port is elements only, as without affinity; counts beyond it get their own.
 * (Measured, bench/affinity.ts: rules per count made each such change rebuild the pick chain, ~80 operations.)
 */
export const STATIC_AFFINITY_COUNTS = 16;
