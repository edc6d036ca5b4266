// Generator of the iptables-restore input kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go)
// writes on a FULL sync, for the given Services. kube-proxy pipes it to
//   iptables-restore -w 5 -W 100000 --noflush --counters
// (see KUBE_PROXY_IPTABLES_RESTORE_FLAGS), after making sure, with separate `iptables` calls, that the
// jump rules from the built-in chains to its KUBE-* chains exist (kubeProxyIptablesJumpRules() gives those
// as restore input, to apply once before timing).
//
// Reproduced with the defaults of a plain cluster:
//   - IPv4; --nodeport-addresses unset (MatchAll) and --iptables-localhost-nodeports=true (so the
//     KUBE-FIREWALL localnet rule is written and the NodePort jump has no "! -d 127.0.0.0/8");
//   - --masquerade-bit 14 (mark 0x00004000, Go's "%#08x"), --masquerade-all=false; iptables supports
//     --random-fully; nf_conntrack_tcp_be_liberal unset (so the INVALID DROP rule is written);
//   - nfacct counters unavailable (no `-m nfacct` rules: they need the xt_nfacct module and an nfacct
//     object, and only add a rule per NodePort);
//   - local-traffic detection by cluster CIDR ("! -s <cidr> -j KUBE-MARK-MASQ");
//   - traffic policies Cluster/Cluster, no session affinity, no externalIPs / LoadBalancers;
//   - "large cluster mode" (per-endpoint comments dropped) when there are more than 1000 endpoints;
//   - a fresh node: no stale chains to delete.
// Services are written in the order given (kube-proxy's own order is Go map order); so the last Service
// given is the last ClusterIP rule of KUBE-SERVICES.

import { sha256Base32 } from './hash';
import { goMarkString } from './kubeproxy-nftables';
import { BenchService, POD_CIDR, servicePortNameString, totalEndpoints } from '../shape';

export interface KubeProxyIptablesOptions {
  /** Cluster (pod) CIDR for local-traffic detection. Default POD_CIDR; null = no detector (no masq rule). */
  clusterCIDR?: string | null;
  /** kube-proxy --masquerade-bit. Default 14. */
  masqueradeBit?: number;
  /** --iptables-localhost-nodeports. Default true (kube-proxy's default). */
  localhostNodePorts?: boolean;
  /** Force large-cluster mode on/off; default: on when total endpoints > 1000, as kube-proxy. */
  largeClusterMode?: boolean;
}

/** The flags kube-proxy passes to iptables-restore (input on stdin). */
export const KUBE_PROXY_IPTABLES_RESTORE_FLAGS: readonly string[] = ['-w', '5', '-W', '100000', '--noflush', '--counters'];

export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

export function iptablesServiceChain(prefix: 'KUBE-SVC-' | 'KUBE-SVL-' | 'KUBE-EXT-' | 'KUBE-FW-', svc: BenchService): string {
  return prefix + sha256Base32(servicePortNameString(svc) + svc.protocol.toLowerCase(), 16);
}

export function iptablesEndpointChain(svc: BenchService, ep: { ip: string; port: number }): string {
  const hostPort = ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
  return 'KUBE-SEP-' + sha256Base32(servicePortNameString(svc) + svc.protocol.toLowerCase() + hostPort, 16);
}

/** Go's fmt.Sprintf("%0.10f", 1/n). */
function probability(n: number): string {
  return (1 / n).toFixed(10);
}

const chainLine = (c: string): string => `:${c} - [0:0]`;

/** The full-sync iptables-restore input kube-proxy (iptables mode) would write for these Services. */
export function kubeProxyIptablesRestore(
  services: readonly BenchService[],
  opts: KubeProxyIptablesOptions = {},
): string {
  const clusterCIDR = opts.clusterCIDR === undefined ? POD_CIDR : opts.clusterCIDR;
  const mark = goMarkString(opts.masqueradeBit ?? 14);
  const localhostNodePorts = opts.localhostNodePorts ?? true;
  const largeCluster = opts.largeClusterMode ?? totalEndpoints(services) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;

  const filterChains: string[] = [];
  const filterRules: string[] = [];
  const natChains: string[] = [];
  const natRules: string[] = [];

  for (const c of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL']) {
    filterChains.push(chainLine(c));
  }
  for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) natChains.push(chainLine(c));

  natRules.push(`-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`);
  natRules.push(`-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`);
  natRules.push('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully');
  natRules.push(`-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`);

  if (localhostNodePorts) {
    filterChains.push(chainLine('KUBE-FIREWALL'));
    filterRules.push(
      '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 ' +
        '-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    );
  }

  for (const svc of services) {
    const protocol = svc.protocol.toLowerCase();
    const name = servicePortNameString(svc);
    const svcChain = iptablesServiceChain('KUBE-SVC-', svc);
    const extChain = iptablesServiceChain('KUBE-EXT-', svc);
    const hasEndpoints = svc.endpoints.length > 0;
    const nodePort = svc.nodePort !== undefined && svc.nodePort !== 0 ? svc.nodePort : undefined;
    const usesExt = hasEndpoints && nodePort !== undefined;
    const dst = `-m ${protocol} -p ${protocol} -d ${svc.clusterIP} --dport ${svc.port}`;

    // Capture the clusterIP.
    if (hasEndpoints) {
      natRules.push(`-A KUBE-SERVICES -m comment --comment "${name} cluster IP" ${dst} -j ${svcChain}`);
    } else {
      filterRules.push(`-A KUBE-SERVICES -m comment --comment "${name} has no endpoints" ${dst} -j REJECT`);
    }
    // Capture nodeports.
    if (nodePort !== undefined) {
      if (hasEndpoints) {
        natRules.push(`-A KUBE-NODEPORTS -m comment --comment ${name} -m ${protocol} -p ${protocol} --dport ${nodePort} -j ${extChain}`);
      } else {
        filterRules.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment "${name} has no endpoints" -m addrtype --dst-type LOCAL ` +
            `-m ${protocol} -p ${protocol} --dport ${nodePort} -j REJECT`,
        );
      }
    }
    if (!hasEndpoints) continue;

    // Internal traffic handling.
    if (clusterCIDR !== null) {
      natRules.push(`-A ${svcChain} -m comment --comment "${name} cluster IP" ${dst} ! -s ${clusterCIDR} -j KUBE-MARK-MASQ`);
    }
    // External traffic handling.
    if (usesExt) {
      natChains.push(chainLine(extChain));
      natRules.push(`-A ${extChain} -m comment --comment "masquerade traffic for ${name} external destinations" -j KUBE-MARK-MASQ`);
      natRules.push(`-A ${extChain} -j ${svcChain}`);
    }
    // Cluster policy chain: probabilistic jumps to the endpoints.
    natChains.push(chainLine(svcChain));
    const sepChains = svc.endpoints.map((ep) => iptablesEndpointChain(svc, ep));
    const n = svc.endpoints.length;
    svc.endpoints.forEach((ep, i) => {
      const comment = largeCluster ? '' : ` -m comment --comment "${name} -> ${ep.ip}:${ep.port}"`;
      const stat = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      natRules.push(`-A ${svcChain}${comment}${stat} -j ${sepChains[i] as string}`);
    });
    // Endpoint chains.
    svc.endpoints.forEach((ep, i) => {
      const sep = sepChains[i] as string;
      natChains.push(chainLine(sep));
      const head = largeCluster ? `-A ${sep}` : `-A ${sep} -m comment --comment ${name}`;
      natRules.push(`${head} -s ${ep.ip} -j KUBE-MARK-MASQ`);
      natRules.push(`${head} -m ${protocol} -p ${protocol} -j DNAT --to-destination ${ep.ip}:${ep.port}`);
    });
  }

  // Tail-call to the nodePorts chain: must be the last rule of KUBE-SERVICES.
  natRules.push(
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" ' +
      `-m addrtype --dst-type LOCAL${localhostNodePorts ? '' : ' ! -d 127.0.0.0/8'} -j KUBE-NODEPORTS`,
  );

  filterRules.push('-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP');
  filterRules.push(`-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`);
  filterRules.push(
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );

  return [
    '*filter',
    ...filterChains,
    ...filterRules,
    'COMMIT',
    '*nat',
    ...natChains,
    ...natRules,
    'COMMIT',
    '',
  ].join('\n');
}

/**
 * The jump rules kube-proxy ensures (with `iptables -C` / `iptables -I`, outside the restore) from the built-in
 * chains to its own, plus kubelet's KUBE-FIREWALL jumps, as iptables-restore input for a fresh (network
 * namespace's) iptables: apply it once with `--noflush` BEFORE the timed restore, so that the chains the
 * restore fills are actually traversed. Each rule is inserted at the head, as EnsureRule(Prepend) does.
 */
export function kubeProxyIptablesJumpRules(): string {
  const ct = '-m conntrack --ctstate NEW';
  return [
    '*filter',
    ':KUBE-EXTERNAL-SERVICES - [0:0]',
    ':KUBE-NODEPORTS - [0:0]',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-FORWARD - [0:0]',
    ':KUBE-PROXY-FIREWALL - [0:0]',
    ':KUBE-FIREWALL - [0:0]',
    `-I INPUT ${ct} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
    `-I FORWARD ${ct} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
    '-I INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
    `-I FORWARD ${ct} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
    `-I OUTPUT ${ct} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
    '-I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    `-I INPUT ${ct} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`,
    `-I OUTPUT ${ct} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`,
    `-I FORWARD ${ct} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`,
    '-I INPUT -j KUBE-FIREWALL',
    '-I OUTPUT -j KUBE-FIREWALL',
    'COMMIT',
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-POSTROUTING - [0:0]',
    '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    'COMMIT',
    '',
  ].join('\n');
}
