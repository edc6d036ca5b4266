// End to end: the API-server double serves Services, EndpointSlices and the Node; the real `svcplane run`
// (bin/svcplane.js, as a DaemonSet would start it) watches it and programs a sandbox node namespace; real TCP/UDP
// traffic from a client namespace shows what is programmed. Faults the watch must survive are made by the double:
// dropped watches, 410 Expired, the API server gone for 30 s. The agent runs in the host namespace (where the double
// listens on 127.0.0.1) and programs the node namespace through --netns.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient, startHold } from '../../scripts/lib/traffic';
import { ApiServerDouble, type KubeObject } from '../apiserver/double';
import { AgentProcess, freePort } from '../helpers/agent-process';
import { requireRoot } from '../helpers/root';
import { KUBE_PROXY_NONCONFORMING } from '../../src/server/metrics';

/** Fetched by scripts/setup.sh from Debian's prometheus package. */
const PROMTOOL = '/var/cache/svcplane/promtool';

const haveRoot = requireRoot('agent end-to-end');
const NODE = 'node-a';
const CLUSTER_IP = '198.18.100.10';
const NODE_PORT = 30080;

describe.runIf(haveRoot)('svcplane run against the API-server double, real traffic', () => {
  let sb: Sandbox;
  let api: ApiServerDouble;
  let agent: AgentProcess;
  let kubeconfig: string;
  let healthz: string;
  let metrics: string;
  let agentArgs: string[];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-e2e-'));
  let sliceGeneration = 0;

  const service = (): KubeObject => ({
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      type: 'NodePort', clusterIP: CLUSTER_IP, clusterIPs: [CLUSTER_IP], ipFamilies: ['IPv4'],
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: NODE_PORT }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 8080 }],
    },
  });
  /** The Service's one slice with these backends ready, stamped with a trigger time of now. */
  const slice = (backends: number[]): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name: 'web-abc12', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': new Date().toISOString() },
      generation: ++sliceGeneration,
    },
    addressType: 'IPv4',
    endpoints: backends.map((i) => ({ addresses: [sb.backends[i].v4], conditions: { ready: true, serving: true, terminating: false }, nodeName: NODE })),
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }, { name: 'dns', protocol: 'UDP', port: 8080 }],
  });
  const node = (): KubeObject => ({
    apiVersion: 'v1', kind: 'Node',
    metadata: { name: NODE, labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
    status: { addresses: [{ type: 'InternalIP', address: sb.nodeIPs.v4 }, { type: 'Hostname', address: NODE }] },
  });

  /** Which backends answer 60 TCP connections to the ClusterIP. */
  const reached = async (): Promise<string[]> => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: CLUSTER_IP, port: 80, count: 60 });
    expect(r.errors).toEqual({});
    const names = ['be0', 'be1', 'be2'];
    return names.filter((_, i) => countsFor(r, names)[i] > 0);
  };

  /** Changes the slice and waits for the sync that carries it. */
  const scaleTo = async (backends: number[]) => {
    const from = agent.lines.length;
    api.apply(slice(backends));
    return agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from);
  };

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    api = new ApiServerDouble({ bookmarkIntervalMs: 2000 });
    await api.start();
    api.apply(node());
    api.apply(service());
    api.apply(slice([0, 1]));
    // Something the agent must not take: a Service that names another proxy.
    api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'other', namespace: 'default', labels: { 'service.kubernetes.io/service-proxy-name': 'someone-else' } }, spec: { clusterIP: '198.18.100.20', ports: [{ port: 80 }] } });
    kubeconfig = path.join(tmp, 'kubeconfig');
    fs.writeFileSync(kubeconfig, api.kubeconfig());
    healthz = `127.0.0.1:${await freePort()}`;
    metrics = `127.0.0.1:${await freePort()}`;
    fs.writeFileSync(path.join(tmp, 'kube-proxy.yaml'), [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1', 'kind: KubeProxyConfiguration', 'mode: nftables',
      `clusterCIDR: ${sb.podCIDR.v4}`, 'nftables:', '  minSyncPeriod: 0s', '  syncPeriod: 30s', `healthzBindAddress: ${healthz}`, `metricsBindAddress: ${metrics}`, '',
    ].join('\n'));
    agentArgs = ['--config', path.join(tmp, 'kube-proxy.yaml'), '--kubeconfig', kubeconfig, '--hostname-override', NODE, '--netns', sb.nodeNsPath, '--log-format', 'json'];
    agent = new AgentProcess(agentArgs);
    await agent.waitFor((l) => l.msg === 'synced');
  }, 180_000);

  afterAll(async () => {
    agent?.kill('SIGKILL');
    await api?.stop();
    await sb?.destroy();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('programs the watched Services: ClusterIP and NodePort reach the ready endpoints, and only the Services it owns', async () => {
    expect(await reached()).toEqual(['be0', 'be1']);
    const np = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: NODE_PORT, count: 30 });
    expect(np.errors).toEqual({});
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: CLUSTER_IP, port: 53, count: 30 });
    expect(udp.errors).toEqual({});
    // The Service labelled for another proxy is not programmed: its ClusterIP is not answered.
    const other = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.20', port: 80, count: 1, timeoutMs: 1500 });
    expect(other.ok).toBe(0);
    const status = await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset']);
    expect(status.stdout).not.toContain('default/other');
    expect(agent.syncs()[0]).toMatchObject({ full: true });
    // The ruleset shape chosen for this kernel (kernel.ts) is said once, at start, before the first sync.
    const shape = agent.lines.filter((l) => l.msg === 'nf_tables: ruleset shape chosen for this kernel');
    expect(shape).toHaveLength(1);
    expect(shape[0]).toMatchObject({ level: 'info', kernel: os.release() });
    expect(agent.lines.indexOf(shape[0])).toBeLessThan(agent.lines.findIndex((l) => l.msg === 'synced'));
  });

  it('reflects an EndpointSlice scaled up and down, each through a partial sync', async () => {
    expect(await scaleTo([0, 1, 2])).toMatchObject({ full: false, changed: 2 }); // both ports of web
    expect(await reached()).toEqual(['be0', 'be1', 'be2']);
    expect(await scaleTo([2])).toMatchObject({ full: false });
    expect(await reached()).toEqual(['be2']);
  });

  it('serves a LoadBalancer Service\'s healthCheckNodePort: 200 with this node\'s endpoints, 503 without, gone with the Service', async () => {
    const hc = await freePort();
    const front = (): KubeObject => ({
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'front', namespace: 'default' },
      spec: {
        type: 'LoadBalancer', clusterIP: '198.18.100.21', clusterIPs: ['198.18.100.21'], externalTrafficPolicy: 'Local', healthCheckNodePort: hc,
        ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: NODE_PORT + 1 }],
      },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.21' }] } },
    });
    const frontSlice = (node: string): KubeObject => ({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: 'front-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'front' }, generation: ++sliceGeneration },
      addressType: 'IPv4', ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: [{ addresses: [sb.backends[0].v4], conditions: { ready: true }, nodeName: node }],
    });
    const probe = async () => {
      for (let i = 0; i < 50; i++) {
        const r = await fetch(`http://127.0.0.1:${hc}/healthz`).then(async (x) => ({ code: x.status, body: await x.json() as { localEndpoints: number; service: { name: string } } }), () => undefined);
        if (r) return r;
        await new Promise((res) => setTimeout(res, 100));
      }
      return undefined;
    };
    // The Service and its slice are two watch events: under load they can land in two syncs, the first of which
    // serves 503 (the Service without endpoints). So: probe after each sync until the answer comes, 60 s at most.
    const probeUntil = async (code: number) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const from = agent.lines.length;
        const r = await probe();
        if (r?.code === code || Date.now() > deadline) return r;
        await agent.waitFor((l) => l.msg === 'synced', from, Math.max(1, deadline - Date.now())).catch(() => undefined);
      }
    };
    let from = agent.lines.length;
    api.apply(front());
    api.apply(frontSlice(NODE));
    await agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from);
    const ok = await probeUntil(200);
    expect(ok?.code).toBe(200);
    expect(ok?.body).toMatchObject({ service: { name: 'front' }, localEndpoints: 1 });
    from = agent.lines.length;
    api.apply(frontSlice('elsewhere'));
    await agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from);
    const none = await probeUntil(503);
    expect(none?.code).toBe(503);
    expect(none?.body.localEndpoints).toBe(0);
    from = agent.lines.length;
    api.remove('Service', 'default', 'front');
    await agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from);
    await expect(fetch(`http://127.0.0.1:${hc}/`)).rejects.toThrow();
  });

  it('serves /healthz, /livez and /metrics with kube-proxy\'s names; programming latency is measured', async () => {
    const h = await fetch(`http://${healthz}/healthz`);
    expect(h.status).toBe(200);
    expect(h.headers.get('content-type')).toBe('application/json');
    expect(await h.json()).toMatchObject({ nodeEligible: true, healthy: true });
    expect((await fetch(`http://${healthz}/livez`)).status).toBe(200);
    const text = await (await fetch(`http://${metrics}/metrics`)).text();
    // Prometheus' own linter passes, but for kube-proxy's names kept as they are (listed in README).
    expect(fs.existsSync(PROMTOOL), `${PROMTOOL} (scripts/setup.sh fetches it)`).toBe(true);
    const lint = await new Promise<string>((resolve) => {
      const p = execFile(PROMTOOL, ['check', 'metrics'], (_e, stdout, stderr) => resolve(stdout + stderr));
      p.stdin!.end(text);
    });
    const flagged = lint.split('\n').filter((l) => l.trim()).map((l) => l.split(' ')[0]);
    expect(flagged).toEqual(KUBE_PROXY_NONCONFORMING);
    for (const name of [
      'kubeproxy_sync_proxy_rules_duration_seconds_bucket', 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_endpoint_changes_total', 'kubeproxy_sync_proxy_rules_service_changes_total',
      'kubeproxy_proxy_healthz_total{code="200"}', 'svcplane_sync_transaction_operations_bucket', 'svcplane_programmed_service_ports{mode="nftables"} 2',
    ]) expect(text).toContain(name);
    // Two slice updates with a trigger time after the agent started.
    const count = Number(/kubeproxy_network_programming_duration_seconds_count (\d+)/.exec(text)?.[1]);
    expect(count).toBeGreaterThanOrEqual(2);
    // client-go's REST client metrics, as kube-proxy exports them: the lists and watches made (at least one each of
    // Services, EndpointSlices and the Node), by code, host and method; their latency by host and verb.
    const host = new URL(api.url).host;
    const requests = Number(new RegExp(`rest_client_requests_total\\{code="200",host="${host}",method="GET"\\} (\\d+)`).exec(text)?.[1]);
    expect(requests).toBeGreaterThanOrEqual(6);
    expect(text).toContain(`rest_client_request_duration_seconds_count{host="${host}",verb="GET"}`);
  });

  it('a dropped watch loses nothing: it resumes from its resourceVersion', async () => {
    const lists = api.requests.filter((r) => r.query.watch === undefined && r.path.endsWith('/endpointslices')).length;
    api.dropWatches();
    await new Promise((r) => setTimeout(r, 300));
    expect(await scaleTo([0, 2])).toMatchObject({ full: false });
    expect(await reached()).toEqual(['be0', 'be2']);
    // Resumed, not relisted.
    expect(api.requests.filter((r) => r.query.watch === undefined && r.path.endsWith('/endpointslices')).length).toBe(lists);
  });

  it('410 Expired relists, and what changed meanwhile is applied', async () => {
    const lists = api.requests.filter((r) => r.query.watch === undefined && r.path.endsWith('/endpointslices')).length;
    api.expireWatches();
    expect(await scaleTo([1])).toBeDefined();
    expect(await reached()).toEqual(['be1']);
    expect(api.requests.filter((r) => r.query.watch === undefined && r.path.endsWith('/endpointslices')).length).toBeGreaterThan(lists);
  });

  it('the API server gone for 30 s: the dataplane keeps serving, and changes made meanwhile arrive after', async () => {
    await api.pause();
    // Changes happen while the agent cannot see them (and history is compacted, as a long outage would).
    api.apply(slice([0, 1, 2]));
    api.compact();
    const t0 = Date.now();
    while (Date.now() - t0 < 30_000) {
      expect(await reached()).toEqual(['be1']);
      await new Promise((r) => setTimeout(r, 5000));
    }
    const from = agent.lines.length;
    await api.resume();
    await agent.waitFor((l) => l.msg === 'synced' && (l.changed as number) > 0, from, 90_000);
    expect(await reached()).toEqual(['be0', 'be1', 'be2']);
    expect(agent.lines.slice(from).some((l) => l.level === 'error')).toBe(false);
  }, 180_000);

  it('SIGTERM leaves the dataplane programmed and exits 0; a restarted agent changes nothing and open connections survive', async () => {
    const before = (await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])).stdout;
    // Held from before the SIGTERM until the restarted agent has synced, however long that takes.
    const hold = startHold(sb, sb.clientNs, { addr: CLUSTER_IP, port: 80, holdMs: 600_000, intervalMs: 100 });
    try {
      await hold.established(60_000);
      agent.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
      expect(agent.lines.some((l) => l.msg.startsWith('stopping'))).toBe(true);
      // Nobody is running: traffic still flows.
      expect(await reached()).toEqual(['be0', 'be1', 'be2']);
      agent = new AgentProcess(agentArgs);
      const first = await agent.waitFor((l) => l.msg === 'synced');
      expect(first).toMatchObject({ full: true, operations: 0 });
    } finally {
      const held = await hold.stop();
      expect(held.stoppedBy).toBe('eof');
      expect(held.errors).toEqual({});
      expect(held.switched).toBe(0);
      expect(held.replies).toBeGreaterThan(1);
    }
    expect((await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])).stdout).toBe(before);
  }, 120_000);
});
