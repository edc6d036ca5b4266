// Node-level settings with real traffic, nftables mode: nodePortAddresses (CIDRs and "primary"), the
// masquerade decision (cluster-CIDR detection, masqueradeAll, neither), and LoadBalancer ingress with ipMode Proxy
// left to the load balancer. Programmed with the real CLI, flags as an operator gives them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { runClient } from '../../scripts/lib/traffic';
import { svcplaneOk } from '../helpers/cli';
import { FEATURE_IPS, FEATURE_NODEPORT, UNALLOCATED, checkInterfaceDetection, checkLocalLbFromNode, checkUnallocatedDrops, featureManifests } from '../helpers/node-features';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables node features');

describe.runIf(haveRoot)('nftables dataplane: nodePortAddresses, masquerade settings, ipMode Proxy (real traffic)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-feat-'));
  const sync = (...flags: string[]) => svcplaneOk(['sync', '--once', '--manifests', dir, '--output', 'json', ...flags], { netns: sb.nodeNs });
  const tcp = (ns: string, addr: string, port: number, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr, port, count: 4, concurrency: 1, timeoutMs });

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    fs.writeFileSync(path.join(dir, 'edge.yaml'), featureManifests(sb));
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('nodePortAddresses: a CIDR, or "primary" with --node-ip, limits where the NodePort answers', async () => {
    const other = '198.18.3.1'; // the node's address toward the sink, outside 198.18.1.0/24
    await sync();
    expect((await tcp(sb.clientNs, other, FEATURE_NODEPORT)).ok).toBe(4); // every local address by default
    for (const flags of [['--nodeport-addresses', '198.18.1.0/24'], ['--nodeport-addresses', 'primary', '--node-ip', sb.nodeIPs.v4]]) {
      await sync(...flags);
      expect((await tcp(sb.clientNs, sb.nodeIPs.v4, FEATURE_NODEPORT)).ok, flags.join(' ')).toBe(4);
      // Not a NodePort there: nothing listens on the node, so the node itself refuses.
      expect((await tcp(sb.clientNs, other, FEATURE_NODEPORT)).errors, flags.join(' ')).toEqual({ ECONNREFUSED: 4 });
    }
  });

  it('masquerade: off-cluster clients with --cluster-cidr, everyone with --masquerade-all, nobody with neither', async () => {
    const pod = sb.backends[0];
    const via = async (ns: string) => Object.keys((await runClient(sb, ns, { proto: 'tcp', addr: FEATURE_IPS.clusterIP, port: 80, count: 12, concurrency: 1 })).sources);
    await sync('--cluster-cidr', sb.podCIDR.v4);
    expect(await via(sb.clientNs)).toEqual([sb.podGateway.v4]);
    const fromPod = await via(pod.ns);
    expect(fromPod).toContain(pod.v4); // pods keep their address (but a hairpin to itself)
    await sync('--masquerade-all');
    expect((await via(pod.ns)).every((s) => s === sb.podGateway.v4)).toBe(true);
    await sync();
    expect(await via(sb.clientNs)).toEqual([sb.clientIP.v4]);
  });

  it('detectLocalMode BridgeInterface / InterfaceNamePrefix (--pod-bridge-interface, --pod-interface-name-prefix): pods told by the interface their traffic arrives on', async () => {
    await checkInterfaceDetection(sb, sync);
    // explain evaluates the interface match when told the interface, and says what it needs when not.
    await sync('--pod-bridge-interface', sb.nodeIfaces.bridge);
    const explain = async (...flags: string[]) => JSON.parse(await svcplaneOk(['explain', 'TCP', `${FEATURE_IPS.clusterIP}:80`, '--output', 'json', ...flags], { netns: sb.nodeNs }));
    expect((await explain('--from', sb.backends[0].v4, '--from-interface', sb.nodeIfaces.bridge)).masquerade).toBe(false);
    expect((await explain('--from', sb.clientIP.v4, '--from-interface', sb.nodeIfaces.toClient)).masquerade).toBe(true);
    expect((await explain('--from', sb.clientIP.v4)).warnings).toContain('pods are told by the interface their traffic arrives on (detectLocalMode BridgeInterface / InterfaceNamePrefix): give --from-interface');
  });

  it('LoadBalancer ingress with ipMode Proxy is left to the load balancer; ipMode VIP is programmed', async () => {
    await sync('--cluster-cidr', sb.podCIDR.v4);
    expect((await tcp(sb.clientNs, FEATURE_IPS.lbVip, 80)).ok).toBe(4);
    // Not programmed: routed on to the sink, which drops it.
    expect((await tcp(sb.clientNs, FEATURE_IPS.lbProxy, 80, 1200)).errors).toEqual({ ETIMEDOUT: 4 });
  });

  it('loadBalancerSourceRanges holding the node\'s address: the node reaches its own local LB IP (source = the LB IP), as kube-proxy allows', async () => {
    await checkLocalLbFromNode(sb, dir, sync);
  });

  it('--service-cidr: new traffic to an address of the Service CIDRs that no Service holds is dropped at the node, not routed out (kube-proxy\'s unallocated-ClusterIP drop)', async () => {
    await checkUnallocatedDrops(sb, sync);
    // explain reads the drop back from the kernel's rules, and says what it is.
    const e = JSON.parse(await svcplaneOk(['explain', 'TCP', `${sb.serviceIP(UNALLOCATED).v4}:80`, '--output', 'json'], { netns: sb.nodeNs }));
    expect(e.verdict).toBe('dropped');
    expect(e.why.join('\n')).toContain('is inside the Service CIDRs, but no Service holds it: dropped');
  });
});
