import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifests } from '../../src/source/manifests';
import { buildProxyModel } from '../../src/model/build';

const dirs: string[] = [];

/** A fresh directory under the system temp dir holding FILES (name -> content). */
function manifestDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'svcplane-manifests-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const serviceYAML = (name: string, ip = '10.96.0.10') => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: default
spec:
  clusterIP: ${ip}
  ports:
  - name: http
    port: 80
    targetPort: 8080
`;

const sliceYAML = (name: string, service: string) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}
  namespace: default
  labels:
    kubernetes.io/service-name: ${service}
addressType: IPv4
endpoints:
- addresses: ["10.0.0.1"]
  conditions: {ready: true}
ports:
- name: http
  port: 8080
`;

describe('loadManifests', () => {
  it('reads multi-document YAML, skipping empty documents and other kinds', async () => {
    const dir = manifestDir({
      'app.yaml': [
        '# leading comment',
        serviceYAML('web'),
        '---',
        '---',
        '# only a comment',
        '---',
        sliceYAML('web-abc', 'web'),
        '---',
        'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n',
        '---',
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: "1"}\n',
        '---',
        // Right kind, wrong group/version: not ours either.
        'apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: old}\n',
        '...',
      ].join('\n'),
    });
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.files).toEqual([join(dir, 'app.yaml')]);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['web']);
    expect(r.slices.map((s) => s.metadata?.name)).toEqual(['web-abc']);
    const m = buildProxyModel(r.services, r.slices);
    expect(m.problems).toEqual([]);
    expect(m.servicePorts.get('default/web:http')?.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.0.0.1:8080']);
  });

  it('reads *.yaml, *.yml and *.json in name order, and nothing else, not recursively', async () => {
    const dir = manifestDir({
      'b.yml': serviceYAML('b', '10.96.0.2'),
      'a.yaml': serviceYAML('a', '10.96.0.1'),
      'c.json': JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'c' }, spec: { clusterIP: '10.96.0.3', ports: [{ port: 80 }] } }),
      'README.md': 'not a manifest',
      'd.yaml.bak': serviceYAML('d'),
      'e.txt': serviceYAML('e'),
    });
    mkdirSync(join(dir, 'sub.yaml'));
    mkdirSync(join(dir, 'nested'));
    writeFileSync(join(dir, 'nested', 'f.yaml'), serviceYAML('f'));
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.files).toEqual(['a.yaml', 'b.yml', 'c.json'].map((n) => join(dir, n)));
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['a', 'b', 'c']);
  });

  it('follows symlinked files (a ConfigMap volume)', async () => {
    const dir = manifestDir({});
    mkdirSync(join(dir, '..2024_01_01'));
    writeFileSync(join(dir, '..2024_01_01', 'svc.yaml'), serviceYAML('cm'));
    symlinkSync('..2024_01_01', join(dir, '..data'));
    symlinkSync(join('..data', 'svc.yaml'), join(dir, 'svc.yaml'));
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['cm']);
  });

  it('reads a JSON List as kubectl get -o json writes it', async () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      metadata: { resourceVersion: '' },
      items: [
        JSON.parse(JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'prod' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] } })),
        {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: 'web-x1', namespace: 'prod', labels: { 'kubernetes.io/service-name': 'web' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.0.0.5'] }],
          ports: [{ name: 'http', port: 8080 }],
        },
        { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } },
      ],
    };
    const dir = manifestDir({ 'all.json': JSON.stringify(list, null, 2) });
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.services).toHaveLength(1);
    expect(r.slices).toHaveLength(1);
    const m = buildProxyModel(r.services, r.slices);
    expect(m.problems).toEqual([]);
    expect(m.servicePorts.get('prod/web:http')?.endpoints.map((e) => e.address)).toEqual(['10.0.0.5']);
  });

  it('reads ServiceList and EndpointSliceList whose items lack kind and apiVersion (API list responses)', async () => {
    const dir = manifestDir({
      'services.json': JSON.stringify({
        apiVersion: 'v1',
        kind: 'ServiceList',
        items: [{ metadata: { name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] } }],
      }),
      'slices.yaml': [
        'apiVersion: discovery.k8s.io/v1',
        'kind: EndpointSliceList',
        'items:',
        '- metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}',
        '  addressType: IPv4',
        '  endpoints: [{addresses: [10.0.0.7]}]',
        '  ports: [{name: http, port: 8080}]',
        '',
      ].join('\n'),
    });
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.services[0]).toMatchObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' } });
    expect(r.slices[0]).toMatchObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1' } });
    const m = buildProxyModel(r.services, r.slices);
    expect(m.servicePorts.get('default/web:http')?.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.0.0.7:8080']);
  });

  it('reads a List in YAML, and an empty List', async () => {
    const dir = manifestDir({
      'list.yaml': `apiVersion: v1\nkind: List\nitems:\n- ${serviceYAML('web').trimEnd().split('\n').join('\n  ')}\n`,
      'empty.json': JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [] }),
      'null.json': JSON.stringify({ apiVersion: 'v1', kind: 'List', items: null }),
    });
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['web']);
  });

  it('reports a broken document as "path#N" and still loads the others', async () => {
    const dir = manifestDir({
      'a.yaml': [serviceYAML('one', '10.96.0.1'), '---', 'apiVersion: v1\nkind: Service\nmetadata: {name: two\nspec: [\n', '---', serviceYAML('three', '10.96.0.3')].join('\n'),
      'b.yaml': [serviceYAML('four', '10.96.0.4'), '---', 'kind: Service\nkind: Service\n'].join('\n'),
      'c.json': '{"apiVersion": "v1", "kind": "Service",',
      'd.json': JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'five' }, spec: { clusterIP: '10.96.0.5', ports: [{ port: 80 }] } }),
    });
    const r = await loadManifests(dir);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['one', 'three', 'four', 'five']);
    expect(r.problems.map((p) => p.object)).toEqual([`${join(dir, 'a.yaml')}#2`, `${join(dir, 'b.yaml')}#2`, `${join(dir, 'c.json')}#1`]);
    expect(r.problems[0].message).toMatch(/^invalid YAML: .+; document skipped$/);
    expect(r.problems[0].message).not.toContain('\n');
    expect(r.problems[1].message).toMatch(/Map keys must be unique/);
    expect(r.problems[2].message).toMatch(/^invalid JSON: .+; document skipped$/);
  });

  it('reports a document that is not an object, and a List whose items are not a list', async () => {
    const dir = manifestDir({
      'a.yaml': ['just a string', '---', '- a\n- b', '---', 'apiVersion: v1\nkind: List\nitems: {a: 1}', '---', 'apiVersion: v1\nkind: List\nitems: [42]'].join('\n'),
    });
    const r = await loadManifests(dir);
    const path = join(dir, 'a.yaml');
    expect(r.problems).toEqual([
      { object: `${path}#1`, message: expect.stringMatching(/^a string, not a Kubernetes object/) },
      { object: `${path}#2`, message: expect.stringMatching(/^a list, not a Kubernetes object/) },
      { object: `${path}#3`, message: 'List items is not a list; skipped' },
      { object: `${path}#4 items[0]`, message: expect.stringMatching(/^a number, not a Kubernetes object/) },
    ]);
  });

  it('loads nothing, without a problem, from empty files and an empty directory', async () => {
    const r = await loadManifests(manifestDir({ 'empty.yaml': '', 'blank.json': '  \n', 'comments.yml': '# nothing here\n' }));
    expect(r).toMatchObject({ services: [], slices: [], problems: [] });
    expect(r.files).toHaveLength(3);
    const e = await loadManifests(manifestDir({}));
    expect(e).toEqual({ services: [], slices: [], problems: [], files: [] });
  });

  it('accepts a byte-order mark and YAML merge keys', async () => {
    const dir = manifestDir({
      'bom.json': `\uFEFF${JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bom' }, spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] } })}`,
      'merge.yaml': [
        'apiVersion: v1',
        'kind: Service',
        'metadata: {name: merged}',
        'spec:',
        '  clusterIP: 10.96.0.2',
        '  ports:',
        '  - &base {protocol: TCP, port: 80, name: http}',
        '  - <<: *base',
        '    name: alt',
        '    port: 81',
        '',
      ].join('\n'),
    });
    const r = await loadManifests(dir);
    expect(r.problems).toEqual([]);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['bom', 'merged']);
    expect(r.services[1].spec?.ports).toEqual([
      { protocol: 'TCP', port: 80, name: 'http' },
      { protocol: 'TCP', port: 81, name: 'alt' },
    ]);
  });

  it('reports an unreadable file and goes on', async () => {
    const dir = manifestDir({ 'good.yaml': serviceYAML('good') });
    symlinkSync(join(dir, 'does-not-exist'), join(dir, 'dangling.yaml'));
    const r = await loadManifests(dir);
    expect(r.services.map((s) => s.metadata?.name)).toEqual(['good']);
    expect(r.problems).toEqual([{ object: join(dir, 'dangling.yaml'), message: expect.stringMatching(/^cannot read: ENOENT.*; file skipped$/) }]);
  });

  it('throws, naming the directory, when it is missing or not a directory', async () => {
    const missing = join(tmpdir(), `svcplane-no-such-dir-${process.pid}-${Date.now()}`);
    await expect(loadManifests(missing)).rejects.toThrow(`manifest directory ${missing} does not exist`);
    const dir = manifestDir({ 'x.yaml': '' });
    const file = join(dir, 'x.yaml');
    await expect(loadManifests(file)).rejects.toThrow(`manifest directory ${file} is not a directory`);
  });
});
