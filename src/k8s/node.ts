// What the agent reads from its own Node object: addresses (for nodePortAddresses "primary"), zone (topology),
// podCIDRs (detectLocalMode NodeCIDR),
// and whether it is going away (for /healthz).
import { canonicalIP, cidrToString, parseCIDR } from '../model/ip';
import { TO_BE_DELETED_TAINT, type NodeState } from '../server/health';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export interface NodeInfo extends NodeState {
  /** Primary IPs, at most one per family: the first InternalIP of each family, else the first ExternalIP (kube-proxy's GetNodeHostIPs). */
  primaryIPs: string[];
  zone?: string;
  /** spec.podCIDRs (else spec.podCIDR), canonical: this node's pod ranges (detectLocalMode NodeCIDR). */
  podCIDRs: string[];
}

interface KubeNode {
  metadata?: { deletionTimestamp?: string; labels?: Record<string, string> };
  spec?: { taints?: Array<{ key?: string }>; podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: Array<{ type?: string; address?: string }> };
}

export function nodeInfoOf(obj: unknown): NodeInfo {
  const n = (obj ?? {}) as KubeNode;
  const addrs = Array.isArray(n.status?.addresses) ? n.status!.addresses! : [];
  const primaryIPs: string[] = [];
  for (const fam of [4, 6]) {
    const of = (type: string) => addrs.filter((a) => a?.type === type).map((a) => canonicalIP(a?.address)).find((ip) => ip !== undefined && (ip.includes(':') ? 6 : 4) === fam);
    const ip = of('InternalIP') ?? of('ExternalIP');
    if (ip) primaryIPs.push(ip);
  }
  const zone = n.metadata?.labels?.[ZONE_LABEL];
  const rawPodCIDRs = Array.isArray(n.spec?.podCIDRs) && n.spec!.podCIDRs!.length ? n.spec!.podCIDRs! : n.spec?.podCIDR ? [n.spec.podCIDR] : [];
  const podCIDRs = rawPodCIDRs.map((c) => parseCIDR(c)).filter((c) => c !== undefined).map(cidrToString);
  return {
    exists: true,
    deleting: !!n.metadata?.deletionTimestamp,
    toBeDeletedTaint: Array.isArray(n.spec?.taints) && n.spec!.taints!.some((t) => t?.key === TO_BE_DELETED_TAINT),
    primaryIPs,
    podCIDRs,
    zone: typeof zone === 'string' && zone !== '' ? zone : undefined,
  };
}
