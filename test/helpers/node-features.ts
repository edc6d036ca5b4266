// Manifests for the node-level settings (nodePortAddresses, masqueradeAll, cluster-CIDR detection,
// LoadBalancer ipMode Proxy), shared by the nftables kernel test and the IPVS guest test.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import type { Sandbox } from '../../scripts/lib/sandbox';
import { runClient } from '../../scripts/lib/traffic';
import { endpointSlice } from './web-manifest';

export const FEATURE_IPS = { clusterIP: '198.18.100.30', lbVip: '198.18.100.31', lbProxy: '198.18.100.32' } as const;
export const FEATURE_NODEPORT = 30130;

export function featureManifests(sb: Sandbox): string {
  return `apiVersion: v1
kind: Service
metadata: {name: edge, namespace: features}
spec:
  type: LoadBalancer
  clusterIP: ${FEATURE_IPS.clusterIP}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: ${FEATURE_NODEPORT}}]
status:
  loadBalancer:
    ingress: [{ip: ${FEATURE_IPS.lbVip}, ipMode: VIP}, {ip: ${FEATURE_IPS.lbProxy}, ipMode: Proxy}]
---
${endpointSlice('edge', 'features', sb.backends.map((b) => b.v4))}`;
}

/**
 * A LoadBalancer whose LB IP is a local address of the node (as VIP-style load balancers often make it) and whose
 * source ranges hold the node's primary address: the node's own requests to it come from the LB IP itself, which
 * kube-proxy then allows (allowFromNode). The test adds FEATURE_LOCAL_LB on the node's lo.
 */
export const FEATURE_LOCAL_LB = '198.18.100.33';

export function localLbManifest(sb: Sandbox): string {
  return `apiVersion: v1
kind: Service
metadata: {name: local-lb, namespace: features}
spec:
  type: LoadBalancer
  clusterIP: 198.18.100.34
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30131}]
  loadBalancerSourceRanges: [${sb.nodeIPs.v4}/32]
status:
  loadBalancer:
    ingress: [{ip: ${FEATURE_LOCAL_LB}}]
---
${endpointSlice('local-lb', 'features', [sb.backends[0].v4])}`;
}

/** An address of the Service range that no Service holds (sb.serviceIP(77)). */
export const UNALLOCATED = 77;

/**
 * Packets the sink namespace received for these addresses: the independent witness of "the node routed it out"
 * (the sink is where the node routes the Service range; it drops everything). A counter rule per address, made
 * with nft in the sink (test tooling), read back with `nft -j`.
 */
export async function sinkCounters(sb: Sandbox, addresses: string[]): Promise<() => Promise<number[]>> {
  const rules = addresses.map((a) => `add rule ${a.includes(':') ? 'ip6' : 'ip'} sink_witness in ${a.includes(':') ? 'ip6' : 'ip'} daddr ${a} counter`);
  const script = ['ip', 'ip6'].flatMap((fam) => [`add table ${fam} sink_witness`, `flush table ${fam} sink_witness`,
    `add chain ${fam} sink_witness in { type filter hook prerouting priority 0; }`]).concat(rules).join('\n') + '\n';
  const made = await sb.exec(sb.sinkNs, ['nft', '-f', '-'], { input: script });
  if (made.code !== 0) throw new Error(`nft in the sink: ${made.stderr}`);
  return async () => {
    const out: number[] = [];
    for (const fam of ['ip', 'ip6']) {
      const r = await sb.exec(sb.sinkNs, ['nft', '-j', 'list', 'table', fam, 'sink_witness']);
      for (const item of JSON.parse(r.stdout).nftables as Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }>) {
        const c = item.rule?.expr.find((e) => e.counter)?.counter;
        if (c) out.push(c.packets);
      }
    }
    return out;
  };
}

/**
 * Unallocated addresses of the Service CIDRs (kube-proxy's "Drop traffic to unallocated ClusterIPs"), for either
 * mode: `sync(...flags)` programs the feature manifests with these flags. Without --service-cidr a new connection
 * to an address no Service holds follows the node's routes out (the sink counts it); with it, it is dropped at the
 * node, from a client, from a pod and from the node itself (the sink counts nothing), in both families, while the
 * ClusterIP still answers on its port and refuses others.
 */
export async function checkUnallocatedDrops(sb: Sandbox, sync: (...flags: string[]) => Promise<unknown>): Promise<void> {
  // Four connections at once: a drop costs one timeout, not four.
  const tcp = (ns: string, addr: string, port: number, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr, port, count: 4, concurrency: 4, timeoutMs });
  const free = sb.serviceIP(UNALLOCATED);
  const targets = [free.v4, ...(sb.ipv6 ? [free.v6] : [])];
  const counted = await sinkCounters(sb, targets);
  await sync('--cluster-cidr', sb.podCIDR.v4);
  for (const a of targets) expect((await tcp(sb.clientNs, a, 80, 1200)).errors, a).toEqual({ ETIMEDOUT: 4 });
  const routedOut = await counted();
  for (const [i, n] of routedOut.entries()) expect(n > 0, `${targets[i]} routed out without --service-cidr`).toBe(true);

  await sync('--cluster-cidr', sb.podCIDR.v4, '--service-cidr', [sb.serviceCIDR.v4, ...(sb.ipv6 ? [sb.serviceCIDR.v6] : [])].join(','));
  for (const a of targets) {
    expect((await tcp(sb.clientNs, a, 80, 1200)).errors, `${a} from the client`).toEqual({ ETIMEDOUT: 4 });
    expect((await tcp(sb.backends[0].ns, a, 80, 1200)).errors, `${a} from a pod`).toEqual({ ETIMEDOUT: 4 });
    // The node's own SYN is dropped at its output hook: connect() fails at once with EPERM (the kernel reports a
    // local netfilter drop to the sender), or, if the drop is only seen on a retransmission, times out.
    const own = await tcp(sb.nodeNs, a, 80, 1200);
    expect(own.ok, `${a} from the node`).toBe(0);
  }
  expect(await counted(), 'nothing reached the sink').toEqual(routedOut);
  // Allocated addresses are untouched: the ClusterIP answers on its port, and refuses others (as before).
  expect((await tcp(sb.clientNs, FEATURE_IPS.clusterIP, 80)).ok).toBe(4);
  expect((await tcp(sb.clientNs, FEATURE_IPS.clusterIP, 81)).errors).toEqual({ ECONNREFUSED: 4 });
  expect((await tcp(sb.nodeNs, FEATURE_IPS.clusterIP, 80)).ok).toBe(4);
}

/**
 * kube-proxy's detectLocalMode BridgeInterface and InterfaceNamePrefix, for either mode, with real traffic to the
 * feature ClusterIP: pods (behind the sandbox's bridge) keep their address, the client (on another interface) is
 * masqueraded. A prefix no interface has makes every source "not a pod", so pods are masqueraded too: the
 * interface match is what decides, not the CIDRs (none is given).
 */
export async function checkInterfaceDetection(sb: Sandbox, sync: (...flags: string[]) => Promise<unknown>): Promise<void> {
  const pod = sb.backends[0];
  const via = async (ns: string) => Object.keys((await runClient(sb, ns, { proto: 'tcp', addr: FEATURE_IPS.clusterIP, port: 80, count: 9, concurrency: 1 })).sources);
  const bridge = sb.nodeIfaces.bridge;
  for (const flags of [['--pod-bridge-interface', bridge], ['--pod-interface-name-prefix', bridge.slice(0, 2)]]) {
    await sync(...flags);
    expect(await via(sb.clientNs), flags.join(' ')).toEqual([sb.podGateway.v4]);
    expect(await via(pod.ns), flags.join(' ')).toContain(pod.v4); // (a hairpin to itself is masqueraded)
  }
  await sync('--pod-interface-name-prefix', 'nomatch');
  expect((await via(pod.ns)).every((s) => s === sb.podGateway.v4), 'pods masqueraded with a prefix nothing has').toBe(true);
  expect(await via(sb.clientNs)).toEqual([sb.podGateway.v4]);
}

/**
 * loadBalancerSourceRanges holding the node's address, for either mode: the node reaches its own local LB IP (its
 * requests come from the LB IP itself), as kube-proxy's allowFromNode lets through; the manifest goes into `dir`
 * and FEATURE_LOCAL_LB onto the node's lo for the test's length.
 */
export async function checkLocalLbFromNode(sb: Sandbox, dir: string, sync: (...flags: string[]) => Promise<unknown>): Promise<void> {
  const tcp = (ns: string, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr: FEATURE_LOCAL_LB, port: 80, count: 3, concurrency: 3, timeoutMs });
  await sb.exec(sb.nodeNs, ['ip', 'addr', 'add', `${FEATURE_LOCAL_LB}/32`, 'dev', 'lo']);
  fs.writeFileSync(path.join(dir, 'local-lb.yaml'), localLbManifest(sb));
  try {
    // Without the node's address known, only the ranges are allowed: the LB IP as source is dropped.
    await sync('--cluster-cidr', sb.podCIDR.v4);
    expect((await tcp(sb.nodeNs, 1200)).errors).toEqual({ ETIMEDOUT: 3 });
    // With it (the Node's InternalIP in the agent; --node-ip here) inside the ranges, the LB IP is let through.
    await sync('--cluster-cidr', sb.podCIDR.v4, '--node-ip', sb.nodeIPs.v4);
    expect((await tcp(sb.nodeNs)).ok).toBe(3);
    // Everyone else still only from the ranges: the client is outside them.
    expect((await tcp(sb.clientNs, 1200)).errors).toEqual({ ETIMEDOUT: 3 });
  } finally {
    fs.rmSync(path.join(dir, 'local-lb.yaml'));
    await sb.exec(sb.nodeNs, ['ip', 'addr', 'del', `${FEATURE_LOCAL_LB}/32`, 'dev', 'lo']);
  }
}
