// Service features kube-proxy honours that svcplane cannot honour in some setting. Each is reported per Service
// port with what svcplane does instead, so an operator never has to guess (the brief: honour or reject with a
// clear, logged reason).
import type { ServicePort } from '../model/types';
import { MAX_AFFINITY_COUNT } from './nftables/rules/picks';

/**
 * `mode`: the dataplane's; `agent`: whether this is the long-running agent (healthCheckNodePorts need a process to
 * answer them: `sync --once` exits).
 */
export function unhonouredFeatures(sp: ServicePort, mode = 'nftables', agent = true): string[] {
  const out: string[] = [];
  const external = sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
  if (mode === 'nftables' && sp.sessionAffinity.type === 'ClientIP' && sp.allEndpoints.length > MAX_AFFINITY_COUNT)
    out.push(`sessionAffinity ClientIP is not applied beyond ${MAX_AFFINITY_COUNT} endpoints in nftables mode: connections are spread without it`);
  if (!agent && sp.healthCheckNodePort > 0 && external && sp.externalTrafficPolicy === 'Local')
    out.push(`healthCheckNodePort ${sp.healthCheckNodePort} is served by \`svcplane run\` only (sync --once exits)`);
  return out;
}
