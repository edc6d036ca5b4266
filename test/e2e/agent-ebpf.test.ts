// End to end in the ebpf mode: `svcplane run` with kube-proxy's configuration file saying `mode: ebpf` (svcplane's
// own value), watching the API-server double, the socket hooks on a cgroup of the test's own. Clients in that cgroup
// reach the pods unNATed (the backend sees the client), others go through the nftables table (masqueraded); an
// EndpointSlice change reaches the socket LB through a partial sync; a restart of the agent (SIGKILL) adopts what
// is pinned, and a held connection goes on through it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { sandboxCgroup } from '../../scripts/lib/sandbox-cgroup';
import { runClient, startHold } from '../../scripts/lib/traffic';
import { native } from '../../src/native';
import { ApiServerDouble, type KubeObject } from '../apiserver/double';
import { AgentProcess, freePort } from '../helpers/agent-process';
import { svcplane } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('agent end-to-end, ebpf mode');
const NODE = 'node-a';
const CLUSTER_IP = '198.18.100.10';

describe.runIf(haveRoot)('svcplane run --proxy-mode ebpf against the API-server double, real traffic', () => {
  let sb: Sandbox;
  let api: ApiServerDouble;
  let agent: AgentProcess;
  let agentArgs: string[];
  let cgroup: string;
  let removeCgroup: (() => void) | undefined;
  let bpfRoot: string;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-e2e-ebpf-'));

  const service = (): KubeObject => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' },
    spec: { type: 'ClusterIP', clusterIP: CLUSTER_IP, clusterIPs: [CLUSTER_IP], ipFamilies: ['IPv4'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] },
  });
  const slice = (backends: number[]): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: backends.map((i) => ({ addresses: [sb.backends[i].v4], conditions: { ready: true, serving: true, terminating: false }, nodeName: NODE })),
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  });
  const node = (): KubeObject => ({
    apiVersion: 'v1', kind: 'Node', metadata: { name: NODE },
    status: { addresses: [{ type: 'InternalIP', address: sb.nodeIPs.v4 }, { type: 'Hostname', address: NODE }] },
  });

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    ({ cgroup, bpfRoot, remove: removeCgroup } = sandboxCgroup(sb.prefix));
    api = new ApiServerDouble({ bookmarkIntervalMs: 2000 });
    await api.start();
    api.apply(node());
    api.apply(service());
    api.apply(slice([0, 1]));
    const kubeconfig = path.join(tmp, 'kubeconfig');
    fs.writeFileSync(kubeconfig, api.kubeconfig());
    fs.writeFileSync(path.join(tmp, 'kube-proxy.yaml'), [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1', 'kind: KubeProxyConfiguration', 'mode: ebpf',
      `clusterCIDR: ${sb.podCIDR.v4}`, 'nftables:', '  minSyncPeriod: 0s', '  syncPeriod: 30s',
      `healthzBindAddress: 127.0.0.1:${await freePort()}`, `metricsBindAddress: 127.0.0.1:${await freePort()}`, '',
    ].join('\n'));
    agentArgs = ['--config', path.join(tmp, 'kube-proxy.yaml'), '--kubeconfig', kubeconfig, '--hostname-override', NODE, '--netns', sb.nodeNsPath,
      '--cgroup-root', cgroup, '--bpf-root', bpfRoot, '--log-format', 'json'];
    agent = new AgentProcess(agentArgs);
    await agent.waitFor((l) => l.msg === 'synced', 0, 120_000);
  }, 240_000);

  afterAll(async () => {
    agent?.kill('SIGKILL');
    if (sb && fs.existsSync(bpfRoot)) await svcplane(['cleanup', '--mode', 'ebpf', '--netns', sb.nodeNsPath, '--bpf-root', bpfRoot]);
    await api?.stop();
    await sb?.destroy();
    removeCgroup?.();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('translates at the socket for clients in the cgroup, NATs in the table for the rest', async () => {
    const inside = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: CLUSTER_IP, port: 80, count: 40, cgroup });
    expect(inside.errors).toEqual({});
    expect(Object.keys(inside.counts).sort()).toEqual(['be0', 'be1']);
    expect(Object.keys(inside.sources)).toEqual([sb.clientIP.v4]);
    const outside = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: CLUSTER_IP, port: 80, count: 20 });
    expect(outside.errors).toEqual({});
    expect(Object.keys(outside.sources)).toEqual([sb.podGateway.v4]);
  });

  it('an EndpointSlice change reaches the socket LB in a partial sync', async () => {
    const from = agent.lines.length;
    api.apply(slice([2]));
    expect(await agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from)).toMatchObject({ full: false });
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: CLUSTER_IP, port: 80, count: 20, cgroup });
    expect(r.counts).toEqual({ be2: 20 });
  });

  it('a restarted agent adopts the pinned links and maps: a held connection goes on, the links are the same', async () => {
    const linkIds = () => native().ebpfPinnedLinks(path.join(bpfRoot, 'links')).map((l) => l.linkId).sort();
    const before = linkIds();
    expect(before).toHaveLength(8);
    const hold = startHold(sb, sb.clientNs, { addr: CLUSTER_IP, port: 80, count: 1, holdMs: 120_000, cgroup });
    await hold.established(30_000);
    agent.kill('SIGKILL');
    await agent.exited;
    // While no agent runs, the pinned programs and maps go on translating.
    const meanwhile = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: CLUSTER_IP, port: 80, count: 10, cgroup });
    expect(meanwhile.counts).toEqual({ be2: 10 });
    agent = new AgentProcess(agentArgs);
    await agent.waitFor((l) => l.msg === 'synced', 0, 120_000);
    expect(linkIds()).toEqual(before);
    const held = await hold.stop();
    expect(held.errors).toEqual({});
    expect(held.replies).toBeGreaterThan(0);
  });
});
