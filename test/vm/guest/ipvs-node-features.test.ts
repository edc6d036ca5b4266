// Node-level settings with real traffic, IPVS mode in the guest: nodePortAddresses (CIDRs and "primary"),
// the masquerade decision (cluster-CIDR detection, masqueradeAll, neither), LoadBalancer ingress with ipMode Proxy
// left to the load balancer. The same manifests as the nftables kernel test.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../../scripts/lib/sandbox';
import { runClient } from '../../../scripts/lib/traffic';
import { svcplane, svcplaneOk } from '../../helpers/cli';
import { FEATURE_IPS, FEATURE_NODEPORT, UNALLOCATED, checkInterfaceDetection, checkLocalLbFromNode, checkUnallocatedDrops, featureManifests } from '../../helpers/node-features';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';

describe.runIf(inGuest)('IPVS dataplane: nodePortAddresses, masquerade settings, ipMode Proxy (guest kernel)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ipvs-feat-'));
  const sync = (...flags: string[]) => svcplaneOk(['sync', '--once', '--mode', 'ipvs', '--manifests', dir, '--output', 'json', '--netns', sb.nodeNsPath, ...flags]);
  const tcp = (ns: string, addr: string, port: number, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr, port, count: 3, concurrency: 1, timeoutMs });

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    fs.writeFileSync(path.join(dir, 'edge.yaml'), featureManifests(sb));
  });
  afterAll(async () => {
    if (sb) await svcplane(['cleanup', '--mode', 'ipvs', '--netns', sb.nodeNsPath]);
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('nodePortAddresses: a CIDR, or "primary" with --node-ip, limits the node addresses with a NodePort virtual service', async () => {
    const other = '198.18.3.1';
    await sync();
    expect((await tcp(sb.clientNs, other, FEATURE_NODEPORT)).ok).toBe(3);
    for (const flags of [['--nodeport-addresses', '198.18.1.0/24'], ['--nodeport-addresses', 'primary', '--node-ip', sb.nodeIPs.v4]]) {
      await sync(...flags);
      const vs = (await sb.exec(sb.nodeNs, ['ipvsadm', '-Ln'])).stdout;
      expect(vs, flags.join(' ')).toContain(`${sb.nodeIPs.v4}:${FEATURE_NODEPORT}`);
      expect(vs, flags.join(' ')).not.toContain(`${other}:${FEATURE_NODEPORT}`);
      expect((await tcp(sb.clientNs, sb.nodeIPs.v4, FEATURE_NODEPORT)).ok).toBe(3);
      expect((await tcp(sb.clientNs, other, FEATURE_NODEPORT)).errors).toEqual({ ECONNREFUSED: 3 });
    }
  });

  it('masquerade: off-cluster clients with --cluster-cidr, everyone with --masquerade-all, nobody with neither', async () => {
    const pod = sb.backends[0];
    const via = async (ns: string) => Object.keys((await runClient(sb, ns, { proto: 'tcp', addr: FEATURE_IPS.clusterIP, port: 80, count: 9, concurrency: 1 })).sources);
    await sync('--cluster-cidr', sb.podCIDR.v4);
    expect(await via(sb.clientNs)).toEqual([sb.podGateway.v4]);
    expect(await via(pod.ns)).toContain(pod.v4);
    await sync('--masquerade-all');
    expect((await via(pod.ns)).every((s) => s === sb.podGateway.v4)).toBe(true);
    await sync();
    expect(await via(sb.clientNs)).toEqual([sb.clientIP.v4]);
  });

  it('detectLocalMode BridgeInterface / InterfaceNamePrefix (--pod-bridge-interface, --pod-interface-name-prefix): pods told by the interface their traffic arrives on', async () => {
    await checkInterfaceDetection(sb, sync);
    // explain reads the interface match back from the table beside IPVS.
    await sync('--pod-bridge-interface', sb.nodeIfaces.bridge);
    const explain = async (...flags: string[]) => JSON.parse(await svcplaneOk(['explain', '--mode', 'ipvs', 'TCP', `${FEATURE_IPS.clusterIP}:80`, '--output', 'json', '--netns', sb.nodeNsPath, ...flags]));
    expect((await explain('--from', sb.backends[0].v4, '--from-interface', sb.nodeIfaces.bridge)).masquerade).toBeUndefined();
    expect((await explain('--from', sb.clientIP.v4, '--from-interface', sb.nodeIfaces.toClient)).masquerade).toBe(true);
  });

  it('LoadBalancer ingress with ipMode Proxy is left to the load balancer; ipMode VIP is programmed', async () => {
    await sync('--cluster-cidr', sb.podCIDR.v4);
    const vs = (await sb.exec(sb.nodeNs, ['ipvsadm', '-Ln'])).stdout;
    expect(vs).toContain(`${FEATURE_IPS.lbVip}:80`);
    expect(vs).not.toContain(FEATURE_IPS.lbProxy);
    expect((await tcp(sb.clientNs, FEATURE_IPS.lbVip, 80)).ok).toBe(3);
    expect((await tcp(sb.clientNs, FEATURE_IPS.lbProxy, 80, 1200)).errors).toEqual({ ETIMEDOUT: 3 });
  });

  it('loadBalancerSourceRanges holding the node\'s address: the node reaches its own local LB IP (source = the LB IP), as kube-proxy allows', async () => {
    await checkLocalLbFromNode(sb, dir, sync);
  });

  it('--service-cidr: new traffic to an address of the Service CIDRs that no Service holds is dropped at the node, not routed out (as the nftables mode; kube-proxy\'s IPVS mode routes it out)', async () => {
    await checkUnallocatedDrops(sb, sync);
    const e = JSON.parse(await svcplaneOk(['explain', '--mode', 'ipvs', 'TCP', `${sb.serviceIP(UNALLOCATED).v4}:80`, '--output', 'json', '--netns', sb.nodeNsPath]));
    expect(e.verdict).toBe('dropped');
    expect(e.why.join('\n')).toContain('is inside the Service CIDRs, but no Service holds it: dropped');
  });
});
