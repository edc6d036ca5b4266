// Service features kube-proxy honours that this version does not program yet. Each is reported once per Service
// port with what svcplane does instead, so an operator never has to guess (the brief: honour or reject with a
// clear, logged reason). Issue 5 implements them; this list shrinks as it does.
import type { ServicePort } from '../model/types';

/**
 * `mode`: the dataplane's ('ipvs' honours sessionAffinity ClientIP as IPVS persistence); `agent`: whether this is
 * the long-running agent (healthCheckNodePorts need a process to answer them: `sync --once` exits).
 */
export function unhonouredFeatures(sp: ServicePort, mode = 'nftables', agent = true): string[] {
  const out: string[] = [];
  const external = sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
  if (sp.sessionAffinity.type === 'ClientIP' && mode !== 'ipvs')
    out.push('sessionAffinity ClientIP is not implemented yet: connections are spread without affinity');
  if (!agent && sp.healthCheckNodePort > 0 && external && sp.externalTrafficPolicy === 'Local')
    out.push(`healthCheckNodePort ${sp.healthCheckNodePort} is served by \`svcplane run\` only (sync --once exits)`);
  return out;
}
