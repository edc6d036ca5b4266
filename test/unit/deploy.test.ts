// The deployment manifests are checked against the Kubernetes API schemas, so a typo fails the tests:
// * kubernetes-models' validate() (the OpenAPI schemas: types, required fields, enums);
// * kubernetes-types through the TypeScript compiler, which rejects unknown fields (`hostNetwrk`) that the
//   OpenAPI schemas let through (they do not forbid additional properties);
// * the ConfigMap's KubeProxyConfiguration through svcplane's own reader (unknown fields, invalid values);
// * the Grafana dashboard only charts metrics svcplane exports.
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { decodeKubeProxyConfiguration, resolveAgentConfig } from '../../src/config/kubeProxyConfig';
import { ProxyMetrics } from '../../src/server/metrics';

const REPO = path.resolve(__dirname, '../..');
const DIR = path.join(REPO, 'deploy', 'kubernetes');

interface Kind {
  validate(obj: Record<string, unknown>): void;
  /** kubernetes-types module and type name */
  types: [string, string];
}

const KINDS: Record<string, Kind> = {
  DaemonSet: { validate: (o) => new DaemonSet(o as never).validate(), types: ['kubernetes-types/apps/v1', 'DaemonSet'] },
  ServiceAccount: { validate: (o) => new ServiceAccount(o as never).validate(), types: ['kubernetes-types/core/v1', 'ServiceAccount'] },
  ConfigMap: { validate: (o) => new ConfigMap(o as never).validate(), types: ['kubernetes-types/core/v1', 'ConfigMap'] },
  ClusterRole: { validate: (o) => new ClusterRole(o as never).validate(), types: ['kubernetes-types/rbac/v1', 'ClusterRole'] },
  ClusterRoleBinding: { validate: (o) => new ClusterRoleBinding(o as never).validate(), types: ['kubernetes-types/rbac/v1', 'ClusterRoleBinding'] },
};

function manifests(): Array<{ file: string; obj: Record<string, unknown> }> {
  const out: Array<{ file: string; obj: Record<string, unknown> }> = [];
  for (const f of fs.readdirSync(DIR).filter((n) => n.endsWith('.yaml') && n !== 'kind.yaml')) {
    for (const d of parseAllDocuments(fs.readFileSync(path.join(DIR, f), 'utf8'))) {
      if (d.errors.length) throw new Error(`${f}: ${d.errors[0].message}`);
      const obj = d.toJSON() as Record<string, unknown> | null;
      if (obj) out.push({ file: f, obj });
    }
  }
  return out;
}

/** Type-checks objects as the kubernetes-types they claim to be; returns the compiler's messages. */
function typeCheck(objs: Array<{ name: string; kind: Kind; obj: unknown }>): string[] {
  const imports = [...new Set(objs.map((o) => `import type { ${o.kind.types[1]} } from '${o.kind.types[0]}';`))];
  const body = objs.map((o, i) => `// ${o.name}\nexport const m${i}: ${o.kind.types[1]} = ${JSON.stringify(o.obj, null, 2)};`);
  const file = path.join(REPO, 'test', 'unit', `.deploy-typecheck-${process.pid}.ts`);
  fs.writeFileSync(file, [...imports, ...body].join('\n') + '\n');
  try {
    const program = ts.createProgram([file], { strict: true, noEmit: true, skipLibCheck: true, module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10, types: [] });
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  } finally {
    fs.rmSync(file, { force: true });
  }
}

describe('deploy/ manifests', () => {
  const all = manifests();
  const daemonSet = (file = 'daemonset.yaml') => all.find((m) => m.file === file && m.obj.kind === 'DaemonSet')!.obj;

  it('are the kinds svcplane ships, each valid against the OpenAPI schema', () => {
    expect(all.map((m) => `${m.file} ${String(m.obj.kind)}`).sort()).toEqual([
      'configmap.yaml ConfigMap', 'daemonset-ebpf.yaml DaemonSet', 'daemonset.yaml DaemonSet',
      'rbac.yaml ClusterRole', 'rbac.yaml ClusterRoleBinding', 'rbac.yaml ServiceAccount',
    ]);
    for (const m of all) {
      const kind = KINDS[m.obj.kind as string];
      expect(kind, `${m.file}: kind ${String(m.obj.kind)}`).toBeDefined();
      expect(() => kind.validate(m.obj), m.file).not.toThrow();
    }
  });

  it('have no unknown fields (checked by the TypeScript compiler against kubernetes-types)', () => {
    const objs = all.map((m) => ({ name: `${m.file} ${String(m.obj.kind)}`, kind: KINDS[m.obj.kind as string], obj: m.obj }));
    expect(typeCheck(objs)).toEqual([]);
  });

  it('the checks catch typos: an unknown field and a wrong type both fail', () => {
    const ds = daemonSet() as { spec: { template: { spec: Record<string, unknown> } } };
    const typo = structuredClone(ds);
    typo.spec.template.spec.hostNetwrk = true;
    expect(typeCheck([{ name: 'typo', kind: KINDS.DaemonSet, obj: typo }]).join('\n')).toMatch(/hostNetwrk/);
    const wrong = structuredClone(ds);
    wrong.spec.template.spec.hostNetwork = 'yes';
    expect(() => KINDS.DaemonSet.validate(wrong as never)).toThrow();
  });

  it('the ConfigMap carries a KubeProxyConfiguration svcplane reads without warnings', () => {
    const cm = all.find((m) => m.obj.kind === 'ConfigMap')!.obj as { data: Record<string, string> };
    const { doc, warnings } = decodeKubeProxyConfiguration(cm.data['config.conf'], 'configmap.yaml');
    expect(warnings).toEqual([]);
    expect(resolveAgentConfig(doc)).toMatchObject({ mode: 'nftables', healthzBindAddress: '0.0.0.0:10256' });
    const ds = daemonSet() as { spec: { template: { spec: { containers: Array<{ securityContext: { capabilities: { add: string[] } } }> } } } };
    expect(ds.spec.template.spec.containers[0].securityContext.capabilities.add).toEqual(['NET_ADMIN']);
    // The API server's real address from the ConfigMap, overriding kubelet's ClusterIP (deploy/README.md).
    const env = (ds.spec.template.spec.containers[0] as unknown as { env: Array<{ name: string; valueFrom?: { configMapKeyRef?: { name: string; key: string; optional?: boolean } } }> }).env;
    expect(env.filter((e) => e.name.startsWith('KUBERNETES_SERVICE_')).map((e) => [e.name, e.valueFrom?.configMapKeyRef])).toEqual([
      ['KUBERNETES_SERVICE_HOST', { name: 'svcplane', key: 'k8sServiceHost', optional: true }],
      ['KUBERNETES_SERVICE_PORT', { name: 'svcplane', key: 'k8sServicePort', optional: true }],
    ]);
  });

  it('the ebpf variant is daemonset.yaml plus the ebpf mode, bpffs shared with the host and the host\'s cgroup root', () => {
    type Container = { args: string[]; securityContext: Record<string, unknown>; volumeMounts: Array<{ name: string; mountPath: string; mountPropagation?: string }> };
    type Ds = { spec: { template: { spec: { containers: Container[]; volumes: Array<{ name: string; hostPath?: { path: string } }> } } } };
    const plain = structuredClone(daemonSet()) as Ds;
    const ebpf = structuredClone(daemonSet('daemonset-ebpf.yaml')) as Ds;
    const c = ebpf.spec.template.spec.containers[0];
    const flags = Object.fromEntries(c.args.map((a) => a.replace(/^--/, '').split('=')));
    expect(resolveAgentConfig(undefined, { proxyMode: flags['proxy-mode'], cgroupRoot: flags['cgroup-root'] })).toMatchObject({ mode: 'ebpf', cgroupRoot: '/run/svcplane/cgroup' });
    const mount = (name: string) => c.volumeMounts.find((m) => m.name === name);
    const hostPath = (name: string) => ebpf.spec.template.spec.volumes.find((v) => v.name === name)?.hostPath?.path;
    expect([mount('bpffs')?.mountPath, mount('bpffs')?.mountPropagation, hostPath('bpffs')]).toEqual(['/sys/fs/bpf', 'Bidirectional', '/sys/fs/bpf']);
    expect([mount('cgroup')?.mountPath, hostPath('cgroup')]).toEqual([flags['cgroup-root'], '/sys/fs/cgroup']);
    expect(c.securityContext.privileged).toBe(true); // Bidirectional propagation is allowed in privileged containers only
    // Everything else is daemonset.yaml's: a change to one that the other misses fails here.
    c.args = c.args.filter((a) => !/^--(proxy-mode|cgroup-root)=/.test(a));
    c.volumeMounts = c.volumeMounts.filter((m) => m.name === 'config');
    ebpf.spec.template.spec.volumes = ebpf.spec.template.spec.volumes.filter((v) => v.name === 'config');
    const pc = plain.spec.template.spec.containers[0];
    c.securityContext = pc.securityContext;
    expect(ebpf).toEqual(plain);
  });

  it('the PodMonitor scrapes the DaemonSet\'s pods on its metrics port, bound off loopback by the ConfigMap', () => {
    const pm = parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy', 'monitoring', 'podmonitor.yaml'), 'utf8'))[0].toJS() as {
      kind: string; spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: Array<{ port: string; path: string }> };
    };
    expect(pm.kind).toBe('PodMonitor');
    const ds = daemonSet() as { spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ ports: Array<{ name: string; containerPort: number }> }> } } } };
    expect(ds.spec.template.metadata.labels).toMatchObject(pm.spec.selector.matchLabels);
    const port = ds.spec.template.spec.containers[0].ports.find((p) => p.name === pm.spec.podMetricsEndpoints[0].port);
    const cm = all.find((m) => m.obj.kind === 'ConfigMap')!.obj as { data: Record<string, string> };
    const { metricsBindAddress } = resolveAgentConfig(decodeKubeProxyConfiguration(cm.data['config.conf'], 'configmap.yaml').doc);
    expect(metricsBindAddress).toBe(`0.0.0.0:${port?.containerPort}`);
  });

  it('the Grafana dashboard charts only metrics svcplane exports', async () => {
    const dash = JSON.parse(fs.readFileSync(path.join(REPO, 'deploy', 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
    const exported = new Set((await new ProxyMetrics({ processMetrics: true }).registry.getMetricsAsJSON()).map((m) => m.name));
    const used = new Set(dash.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\b(kubeproxy|svcplane|process)_[a-z_]+/g) ?? [])));
    const base = (n: string) => n.replace(/_(bucket|count|sum)$/, '');
    expect([...used].filter((n) => !exported.has(base(n)))).toEqual([]);
    expect(used.size).toBeGreaterThan(10);
  });
});
