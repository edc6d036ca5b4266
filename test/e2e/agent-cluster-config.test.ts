// What the agent takes from the cluster besides Services and slices, into its rules: the Service CIDRs of
// ServiceCIDR objects (networking.k8s.io/v1), watched like the other objects and programmed as drops of unallocated
// addresses (a server without the resource, Kubernetes before 1.33, or RBAC without it is said once, and the agent
// runs on); this Node's podCIDRs for detectLocalMode NodeCIDR (waited for, as kube-proxy does). The traffic itself
// is tested in test/kernel/nftables-node-features and the IPVS guest test (--service-cidr, --cluster-cidr). Here:
// an in-process agent, a namespace of its own, the table read back with `nft` (an independent reader).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent';
import { resolveAgentConfig } from '../../src/config/kubeProxyConfig';
import { openTransport } from '../../src/k8s/transport';
import type { Logger } from '../../src/log';
import { ApiServerDouble, type ApiServerOptions } from '../apiserver/double';
import { parseAllDocuments } from 'yaml';
import { REPO } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';

const run = promisify(execFile);
const haveRoot = requireRoot('the agent\'s ServiceCIDR watch');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-servicecidrs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Line = { level: string; msg: string; fields?: Record<string, unknown> };
function recordingLogger(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), detail: at('detail'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function until<T>(what: string, f: () => T | Promise<T>, ms = 60_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`not seen in ${ms / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const serviceCIDR = (name: string, cidrs: string[]) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'ServiceCIDR', metadata: { name }, spec: { cidrs } });

/** An agent against a double with these options, programming a namespace of its own; stopped and removed after. */
async function withAgent(
  opts: ApiServerOptions,
  body: (a: { api: ApiServerDouble; log: ReturnType<typeof recordingLogger>; rules: (family: 'ip' | 'ip6', chain?: string) => Promise<string> }) => Promise<void>,
  more: { file?: Record<string, unknown>; node?: Record<string, unknown>; beforeSync?: (api: ApiServerDouble, log: ReturnType<typeof recordingLogger>) => Promise<void> } = {},
) {
  const api = new ApiServerDouble(opts);
  await api.start();
  const ns = makeNetns('scidr');
  const kubeconfig = path.join(dir, `kubeconfig-${ns.name}`);
  fs.writeFileSync(kubeconfig, api.kubeconfig());
  api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, ...more.node });
  const log = recordingLogger();
  const agent = new Agent({
    config: resolveAgentConfig({ mode: 'nftables', nftables: { syncPeriod: '30s', minSyncPeriod: '0s' }, healthzBindAddress: '', metricsBindAddress: '', ...more.file }),
    nodeName: 'n1', api: await openTransport(kubeconfig), log, netns: ns.path, backoff: { initialMs: 100, maxMs: 400 },
  });
  const rules = async (family: 'ip' | 'ip6', chain = 'cluster-ips-check') => (await run('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'chain', family, 'svcplane', chain])).stdout;
  try {
    const started = agent.start();
    await more.beforeSync?.(api, log);
    await started;
    await until('the first sync', () => log.lines.some((l) => l.msg === 'synced'));
    await body({ api, log, rules });
  } finally {
    await agent.stop();
    await api.stop();
    ns.remove();
  }
}

describe.runIf(haveRoot)('svcplane run: Service CIDRs from ServiceCIDR objects', () => {
  it('drops unallocated addresses of every ServiceCIDR object\'s ranges, following them as they come and go', async () => {
    await withAgent({}, async ({ api, log, rules }) => {
      expect(await rules('ip')).not.toContain('drop');
      api.apply(serviceCIDR('kubernetes', ['198.18.100.0/24', 'fd00:100::/64']));
      await until('the v4 drop', async () => (await rules('ip')).includes('ip daddr 198.18.100.0/24 drop'));
      expect(await rules('ip6')).toContain('ip6 daddr fd00:100::/64 drop');
      expect(log.lines.find((l) => l.msg === 'Service CIDRs changed: full resync')?.fields).toEqual({ before: [], after: ['198.18.100.0/24', 'fd00:100::/64'] });
      // A second object adds its range; deleting the first removes only its own.
      api.apply(serviceCIDR('extra', ['198.18.101.0/24']));
      await until('the second range', async () => (await rules('ip')).includes('ip daddr 198.18.101.0/24 drop'));
      api.remove('ServiceCIDR', undefined, 'kubernetes');
      await until('the first range gone', async () => !(await rules('ip')).includes('198.18.100.0/24'));
      expect(await rules('ip')).toContain('ip daddr 198.18.101.0/24 drop');
      expect(await rules('ip6')).not.toContain('drop');
    });
  });

  it('a server without ServiceCIDRs (before Kubernetes 1.33) is said once at info, RBAC without them once as a warning; the agent runs on', async () => {
    await withAgent({ without: ['ServiceCIDR'] }, async ({ api, log }) => {
      const said = log.lines.filter((l) => l.msg.startsWith('this API server has no ServiceCIDR objects'));
      expect(said.map((l) => l.level)).toEqual(['info']);
      // Not retried: one request for them.
      expect(api.requests.filter((r) => r.path.endsWith('/servicecidrs'))).toHaveLength(1);
    });
    await withAgent({ forbidden: ['ServiceCIDR'] }, async ({ log }) => {
      const said = log.lines.filter((l) => l.msg.startsWith('not allowed to list ServiceCIDRs'));
      expect(said.map((l) => l.level)).toEqual(['warn']);
      expect(String(said[0].fields?.error)).toContain('forbidden');
    });
  });
});

describe.runIf(haveRoot)('svcplane run: detectLocalMode', () => {
  it('NodeCIDR: waits for this Node\'s podCIDRs, then tells pods by them (not by clusterCIDR)', async () => {
    await withAgent({}, async ({ log, rules }) => {
      expect(log.lines.find((l) => l.msg === 'traffic from this node\'s pods is told by')?.fields).toEqual({ detectLocalMode: 'NodeCIDR', cidrs: ['10.244.3.0/24', 'fd00:10:244:3::/64'] });
      expect(await rules('ip', 'services')).toContain('ip saddr != 10.244.3.0/24 ip daddr @cluster-ips meta mark set');
      expect(await rules('ip6', 'services')).toContain('ip6 saddr != fd00:10:244:3::/64 ip6 daddr @cluster-ips meta mark set');
    }, {
      file: { detectLocalMode: 'NodeCIDR', clusterCIDR: '10.0.0.0/8' },
      // The Node has no podCIDRs at first (the node IPAM controller has not got to it): they come a little later.
      // The Node has no podCIDRs at first (the node IPAM controller has not got to it): nothing is programmed until
      // they come.
      beforeSync: async (api, log) => {
        await until('the wait for podCIDRs', () => log.lines.some((l) => l.msg === 'waiting for this Node\'s podCIDRs (detectLocalMode NodeCIDR)'));
        expect(log.lines.some((l) => l.msg === 'synced')).toBe(false);
        api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.3.0/24', podCIDRs: ['10.244.3.0/24', 'fd00:10:244:3::/64'] } });
      },
    });
  });

  it('BridgeInterface and InterfaceNamePrefix from kube-proxy\'s file: pods told by the interface, as kube-proxy writes it', async () => {
    await withAgent({}, async ({ rules }) => {
      expect(await rules('ip', 'services')).toContain('iifname != "cbr0" ip daddr @cluster-ips meta mark set');
    }, { file: { detectLocalMode: 'BridgeInterface', detectLocal: { bridgeInterface: 'cbr0' } } });
    await withAgent({}, async ({ rules }) => {
      expect(await rules('ip6', 'services')).toContain('iifname != "veth*" ip6 daddr @cluster-ips meta mark set');
    }, { file: { detectLocalMode: 'InterfaceNamePrefix', detectLocal: { interfaceNamePrefix: 'veth' } } });
  });
});

describe.runIf(haveRoot)('svcplane run: bindAddress', () => {
  it('overrides the Node\'s primary IP of its family (kube-proxy\'s detectNodeIPs): NodePorts on "primary" follow it', async () => {
    await withAgent({}, async ({ log, rules }) => {
      expect(log.lines.find((l) => l.msg.startsWith('this node\'s primary IPs'))?.fields).toEqual({ ips: ['198.18.9.9', 'fd00:1::1'], from: 'bindAddress, then the Node' });
      const services = await rules('ip', 'services');
      expect(services).toContain('ip daddr 198.18.9.9 ');
      expect(services).not.toContain('198.18.1.1');
    }, {
      file: { bindAddress: '198.18.9.9', nodePortAddresses: ['primary'] },
      node: { status: { addresses: [{ type: 'InternalIP', address: '198.18.1.1' }, { type: 'InternalIP', address: 'fd00:1::1' }] } },
    });
  });
});

describe.runIf(haveRoot)('svcplane run: Events', () => {
  it('posts "Starting" on this Node, and one Warning on a Service it skips (the same problem again: no second)', async () => {
    await withAgent({}, async ({ api }) => {
      const starting = await until('the Starting event', () => api.events.find((e) => e.reason === 'Starting'));
      expect(starting).toMatchObject({
        type: 'Normal', action: 'StartKubeProxy', reportingController: 'svcplane', reportingInstance: 'svcplane-n1',
        regarding: { kind: 'Node', name: 'n1' }, metadata: { namespace: 'default' },
      });
      expect(starting.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      const broken = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'broken', namespace: 'shop' }, spec: { clusterIP: '198.18.100.999', ports: [{ port: 80 }] } };
      api.apply(broken);
      const warning = await until('the Warning', () => api.events.find((e) => e.reason === 'NotProgrammed'));
      expect(warning).toMatchObject({ type: 'Warning', action: 'Sync', regarding: { kind: 'Service', apiVersion: 'v1', namespace: 'shop', name: 'broken' }, metadata: { namespace: 'shop' } });
      expect(warning.note).toContain('198.18.100.999');
      // The same object broken the same way again (a label added): rate limited to the one event.
      api.apply({ ...broken, metadata: { ...broken.metadata, labels: { touched: 'yes' } } });
      const marker = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'also-broken', namespace: 'shop' }, spec: { clusterIP: 'nope', ports: [{ port: 80 }] } };
      api.apply(marker);
      await until('the second object\'s Warning', () => api.events.find((e) => e.regarding?.name === 'also-broken'));
      expect(api.events.filter((e) => e.regarding?.name === 'broken')).toHaveLength(1);
      // RBAC (deploy/kubernetes/rbac.yaml) grants exactly what the agent does: each request allowed by a rule, and
      // each rule's verb used by some request.
      type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
      const role = parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy/kubernetes/rbac.yaml'), 'utf8')).map((d) => d.toJSON()).find((d) => d?.kind === 'ClusterRole');
      const granted = new Set((role.rules as Rule[]).flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)))));
      const used = new Set(api.requests.map((q) => {
        const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/(?:namespaces\/[^/]+\/)?([^/]+)(\/[^/]+)?$/.exec(q.path);
        if (!m) throw new Error(`unexpected request path ${q.path}`);
        const verb = q.method === 'POST' ? 'create' : m[3] ? 'get' : q.query.watch === 'true' || q.query.watch === '1' ? 'watch' : 'list';
        return `${m[1] ?? ''}/${m[2]}:${verb}`;
      }));
      expect([...used].sort()).toEqual([...granted].sort());
    });
  });
});

describe.runIf(haveRoot)('svcplane run: preflight', () => {
  it('conntrack netlink is checked at start (a harmless stats read): it answers here, so no warning', async () => {
    await withAgent({}, async ({ log }) => {
      expect(log.lines.some((l) => l.msg === 'conntrack netlink answers (stale UDP entries are deleted)')).toBe(true);
      expect(log.lines.filter((l) => l.msg.startsWith('conntrack netlink does not answer'))).toEqual([]);
    });
  });
});
