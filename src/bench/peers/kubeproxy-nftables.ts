// Generator of the `nft -f` input kube-proxy's nftables mode (pkg/proxy/nftables/proxier.go, written
// through sigs.k8s.io/knftables) hands to `nft -f -` on a FULL sync, for the given Services.
//
// Reproduced from kube-proxy (1.31+ layout: cluster-ips set, cluster-ips-check, filter-output-post-dnat,
// service-/nodeport-endpoints-check), with the defaults of a plain cluster:
//   - IPv4 only (table `ip kube-proxy`);
//   - --nodeport-addresses unset (MatchAll): `nodeport-ips` is added then deleted, NodePorts are matched with
//     `fib daddr type local`;
//   - --masquerade-bit 14 (mark 0x00004000, Go's "%#08x"), --masquerade-all=false;
//   - local-traffic detection by cluster CIDR (the `ip saddr != <cidr> jump mark-for-masquerade` rule);
//   - traffic policies Cluster/Cluster, no externalIPs / LoadBalancers;
//   - sessionAffinity ClientIP where a BenchService has affinitySeconds: one dynamic set per endpoint
//     (affinity-<endpoint chain base>, flags dynamic,timeout), an `ip saddr @set goto endpoint-...` rule per
//     endpoint in the service chain before the numgen, and `update @set { ip saddr }` in each endpoint chain;
//   - the first sync of a kube-proxy process (`flushed == false`: base chains are added+deleted first so
//     they can be recreated), on a fresh table, so there are no stale chains or elements to remove.
// The text is byte-for-byte what knftables' writeOperation() produces for those operations, in the order
// syncProxyRules() issues them (Services in the order given: kube-proxy's own order is Go map order).

import { sha256Base32 } from './hash';
import { BenchService, POD_CIDR, SERVICE_CIDRS, portNameOf, servicePortNameString } from '../shape';

export interface KubeProxyNftablesOptions {
  /** Cluster (pod) CIDR for local-traffic detection. Default POD_CIDR; null = no detector (no masq rule). */
  clusterCIDR?: string | null;
  /** Service CIDRs for the "Drop traffic to unallocated ClusterIPs" rule. Default SERVICE_CIDRS; [] = none. */
  serviceCIDRs?: readonly string[];
  /** kube-proxy --masquerade-bit. Default 14. */
  masqueradeBit?: number;
  /** Emit the first-sync add+delete of the base chains (kube-proxy does it once per process). Default true. */
  firstSync?: boolean;
}

const TABLE = 'ip kube-proxy';
// knftables.NameLengthMax (256) - chainNamePrefixLengthMax (16).
const CHAIN_NAME_BASE_LENGTH_MAX = 256 - 16;

/** Go's fmt.Sprintf("%#08x", v): 8 zero-padded hex digits after the 0x. */
export function goMarkString(bit: number): string {
  return `0x${(2 ** bit).toString(16).padStart(8, '0')}`;
}

function hashAndTruncate(name: string): string {
  let out = `${sha256Base32(name, 8)}-${name}`;
  if (out.length > CHAIN_NAME_BASE_LENGTH_MAX) out = `${out.slice(0, CHAIN_NAME_BASE_LENGTH_MAX - 3)}...`;
  return out;
}

/** "HASH-ns/name/proto/portName", kube-proxy's servicePortChainNameBase(). */
export function nftServiceChainBase(svc: BenchService): string {
  return hashAndTruncate(`${svc.namespace}/${svc.name}/${svc.protocol.toLowerCase()}/${portNameOf(svc)}`);
}

/** "HASH-ns/name/proto/portName__ip/port", kube-proxy's servicePortEndpointChainNameBase(). */
export function nftEndpointChainBase(svc: BenchService, ep: { ip: string; port: number }): string {
  const ip = ep.ip.includes(':') ? ep.ip.replace(/:/g, '.') : ep.ip;
  return hashAndTruncate(
    `${svc.namespace}/${svc.name}/${svc.protocol.toLowerCase()}/${portNameOf(svc)}__${ip}/${ep.port}`,
  );
}

interface BaseChain {
  name: string;
  type: 'filter' | 'nat';
  hook: string;
  priority: number;
}

// knftables writes parsed numeric priorities: dstnat = -100, srcnat = 100.
const BASE_CHAINS: readonly BaseChain[] = [
  { name: 'filter-prerouting', type: 'filter', hook: 'prerouting', priority: -110 },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: -110 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: -110 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: -110 },
  { name: 'filter-output-post-dnat', type: 'filter', hook: 'output', priority: -90 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: 100 },
];

const JUMP_CHAINS: ReadonlyArray<readonly [dst: string, src: string, extra: string]> = [
  ['nodeport-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-forward', 'ct state new'],
  ['service-endpoints-check', 'filter-output', 'ct state new'],
  ['firewall-check', 'filter-prerouting', 'ct state new'],
  ['firewall-check', 'filter-output', 'ct state new'],
  ['services', 'nat-output', ''],
  ['services', 'nat-prerouting', ''],
  ['masquerading', 'nat-postrouting', ''],
  ['cluster-ips-check', 'filter-forward', 'ct state new'],
  ['cluster-ips-check', 'filter-output-post-dnat', 'ct state new'],
];

const q = (s: string): string => JSON.stringify(s); // Go's %q for the ASCII strings used here

/** The full-sync transaction kube-proxy (nftables mode) would pipe to `nft -f -` for these Services. */
export function kubeProxyNftablesRuleset(
  services: readonly BenchService[],
  opts: KubeProxyNftablesOptions = {},
): string {
  const clusterCIDR = opts.clusterCIDR === undefined ? POD_CIDR : opts.clusterCIDR;
  const serviceCIDRs = opts.serviceCIDRs ?? SERVICE_CIDRS;
  const mark = goMarkString(opts.masqueradeBit ?? 14);
  const firstSync = opts.firstSync ?? true;

  const out: string[] = [];
  const w = (line: string): void => {
    out.push(line);
  };
  const created = new Set<string>();
  const ensureChain = (chain: string): void => {
    if (created.has(chain)) return;
    created.add(chain);
    w(`add chain ${TABLE} ${chain}`);
    w(`flush chain ${TABLE} ${chain}`);
  };
  const rule = (chain: string, r: string, comment?: string): void => {
    w(`add rule ${TABLE} ${chain} ${r}${comment === undefined ? '' : ` comment ${q(comment)}`}`);
  };
  const element = (set: string, key: string, value?: string, comment?: string): void => {
    w(
      `add element ${TABLE} ${set} { ${key}${comment === undefined ? '' : ` comment ${q(comment)}`}` +
        `${value === undefined ? '' : ` : ${value}`} }`,
    );
  };

  // ---- setupNFTables()
  w(`add table ${TABLE} { comment "rules for kube-proxy" ; }`);
  if (firstSync) {
    for (const bc of BASE_CHAINS) {
      w(`add chain ${TABLE} ${bc.name}`);
      w(`delete chain ${TABLE} ${bc.name}`);
    }
  }
  for (const bc of BASE_CHAINS) {
    w(`add chain ${TABLE} ${bc.name} { type ${bc.type} hook ${bc.hook} priority ${bc.priority} ; }`);
    w(`flush chain ${TABLE} ${bc.name}`);
  }
  for (const [dst, src, extra] of JUMP_CHAINS) {
    ensureChain(dst);
    rule(src, extra === '' ? `jump ${dst}` : `${extra} jump ${dst}`);
  }
  for (const c of ['services', 'cluster-ips-check', 'masquerading', 'mark-for-masquerade']) ensureChain(c);

  rule('mark-for-masquerade', `mark set mark or ${mark}`);
  rule('masquerading', `mark and ${mark} == 0 return`);
  rule('masquerading', `mark set mark xor ${mark}`);
  rule('masquerading', 'masquerade fully-random');

  w(`add set ${TABLE} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`);
  rule('cluster-ips-check', 'ip daddr @cluster-ips reject', 'Reject traffic to invalid ports of ClusterIPs');
  if (serviceCIDRs.length > 0) {
    rule('cluster-ips-check', `ip daddr { ${serviceCIDRs.join(',')} } drop`, 'Drop traffic to unallocated ClusterIPs');
  }

  w(`add set ${TABLE} nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }`);
  w(`delete set ${TABLE} nodeport-ips`); // nodePortAddresses.MatchAll()

  w(
    `add map ${TABLE} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; ` +
      `comment "vmap to drop or reject packets to services with no endpoints" ; }`,
  );
  w(
    `add map ${TABLE} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; ` +
      `comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`,
  );
  w(`add chain ${TABLE} reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`);
  w(`flush chain ${TABLE} reject-chain`);
  rule('reject-chain', 'reject');
  rule('service-endpoints-check', 'ip daddr . meta l4proto . th dport vmap @no-endpoint-services');
  rule('nodeport-endpoints-check', 'ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports');

  w(
    `add map ${TABLE} firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; ` +
      `comment "destinations that are subject to LoadBalancerSourceRanges" ; }`,
  );
  ensureChain('firewall-check');
  rule('firewall-check', 'ip daddr . meta l4proto . th dport vmap @firewall-ips');

  w(
    `add map ${TABLE} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; ` +
      `comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
  );
  w(`add map ${TABLE} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`);
  rule('services', 'ip daddr . meta l4proto . th dport vmap @service-ips');
  rule('services', 'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports');

  // nftElementStorage.reset() of each container
  w(`flush set ${TABLE} cluster-ips`);
  for (const m of ['service-ips', 'firewall-ips', 'no-endpoint-services', 'no-endpoint-nodeports', 'service-nodeports']) {
    w(`flush map ${TABLE} ${m}`);
  }

  // ---- syncProxyRules(): one iteration per service port
  const clusterIPsSeen = new Set<string>();
  for (const svc of services) {
    const protocol = svc.protocol.toLowerCase();
    const nameString = servicePortNameString(svc);
    const base = nftServiceChainBase(svc);
    const clusterChain = `service-${base}`;
    const externalChain = `external-${base}`;
    const hasEndpoints = svc.endpoints.length > 0;
    const externallyAccessible = svc.nodePort !== undefined && svc.nodePort !== 0;
    const epChains = svc.endpoints.map((ep) => `endpoint-${nftEndpointChainBase(svc, ep)}`);

    for (const c of epChains) ensureChain(c);
    if (hasEndpoints) ensureChain(clusterChain);
    if (hasEndpoints && externallyAccessible) ensureChain(externalChain);

    if (!clusterIPsSeen.has(svc.clusterIP)) {
      clusterIPsSeen.add(svc.clusterIP);
      element('cluster-ips', svc.clusterIP);
    }
    const key = `${svc.clusterIP} . ${protocol} . ${svc.port}`;
    if (hasEndpoints) element('service-ips', key, `goto ${clusterChain}`);
    else element('no-endpoint-services', key, 'goto reject-chain', nameString);

    if (externallyAccessible) {
      const npKey = `${protocol} . ${svc.nodePort}`;
      if (hasEndpoints) element('service-nodeports', npKey, `goto ${externalChain}`);
      else element('no-endpoint-nodeports', npKey, 'goto reject-chain', nameString);
    }

    if (!hasEndpoints) continue;

    if (clusterCIDR !== null) {
      rule(
        clusterChain,
        `ip daddr ${svc.clusterIP} ${protocol} dport ${svc.port} ip saddr != ${clusterCIDR} jump mark-for-masquerade`,
      );
    }
    if (externallyAccessible) {
      rule(externalChain, 'jump mark-for-masquerade');
      rule(externalChain, `goto ${clusterChain}`);
    }
    // Session affinity (proxier.go): the per-endpoint sets, then the service chain's checks before its numgen.
    const affinitySets = svc.affinitySeconds ? svc.endpoints.map((ep) => `affinity-${nftEndpointChainBase(svc, ep)}`) : [];
    for (const set of affinitySets) w(`add set ${TABLE} ${set} { type ipv4_addr ; flags dynamic,timeout ; timeout ${svc.affinitySeconds}s ; }`);
    affinitySets.forEach((set, i) => rule(clusterChain, `ip saddr @${set} goto ${epChains[i]}`));
    const vmap = epChains.map((c, i) => `${i} : goto ${c}`).join(' , ');
    rule(clusterChain, `numgen random mod ${epChains.length} vmap { ${vmap} }`);

    svc.endpoints.forEach((ep, i) => {
      const c = epChains[i] as string;
      rule(c, `ip saddr ${ep.ip} jump mark-for-masquerade`);
      if (affinitySets.length) rule(c, `update @${affinitySets[i]} { ip saddr }`);
      rule(c, `meta l4proto ${protocol} dnat to ${ep.ip}:${ep.port}`);
    });
  }

  out.push('');
  return out.join('\n');
}
