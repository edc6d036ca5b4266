// Bootstrap, as a DaemonSet replacing kube-proxy meets it: nothing routes the `kubernetes` Service's ClusterIP
// (which kubelet puts in KUBERNETES_SERVICE_HOST) until svcplane has synced, so svcplane must reach the API server
// by its real address. Here the API server (the double, HTTPS, demanding the service account's token) runs in the
// sandbox's client namespace and is reachable from the node only at 198.18.1.2; the agent runs in the node
// namespace as the DaemonSet runs it: in-cluster config (service account files at their usual path, in a private
// mount namespace), kubelet's environment, the address from the ConfigMap's k8sServiceHost/k8sServicePort (which
// the DaemonSet maps onto KUBERNETES_SERVICE_HOST/PORT), the shipped ConfigMap's config.conf.
import { execFile, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../scripts/lib/traffic';
import { AgentProcess } from '../helpers/agent-process';
import { REPO, SVCPLANE } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('agent bootstrap');
const NODE = 'node-a';
const WEB_IP = '198.18.100.10';
/** The `kubernetes` Service's ClusterIP, as kubelet's environment names it; nothing routes it (the node sends the
 * Service range to the sandbox's sink, where packets vanish). */
const KUBERNETES_IP = '198.18.100.1';
const TOKEN = 'service-account-token';
const SERVE_JS = path.join(REPO, 'dist', 'test', 'apiserver', 'serve.js');
const SA_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

describe.runIf(haveRoot)('svcplane run reaches the API server before any Service works (a DaemonSet replacing kube-proxy)', () => {
  let sb: Sandbox;
  let api: ChildProcess;
  let apiPort: string;
  let tmp: string;
  let agent: AgentProcess | undefined;

  beforeAll(async () => {
    sb = await createSandbox({ backends: 1, ports: [8080] });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-bootstrap-'));
    const key = path.join(tmp, 'apiserver.key');
    const cert = path.join(tmp, 'apiserver.crt');
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
      '-out', cert, '-days', '2', '-subj', '/CN=kube-apiserver', '-addext', `subjectAltName=IP:${sb.clientIP.v4}`]);
    fs.mkdirSync(path.join(tmp, 'sa'));
    fs.writeFileSync(path.join(tmp, 'sa', 'token'), TOKEN);
    fs.copyFileSync(cert, path.join(tmp, 'sa', 'ca.crt'));
    fs.writeFileSync(path.join(tmp, 'sa', 'namespace'), 'kube-system');
    fs.writeFileSync(path.join(tmp, 'objects.json'), JSON.stringify([
      { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: sb.nodeIPs.v4 }] } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' },
        spec: { type: 'ClusterIP', clusterIP: WEB_IP, clusterIPs: [WEB_IP], ipFamilies: ['IPv4'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4', endpoints: [{ addresses: [sb.backends[0].v4], conditions: { ready: true }, nodeName: NODE }], ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] },
    ]));
    // The shipped ConfigMap's config.conf, with the sandbox's pod CIDR.
    const cm = parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy', 'kubernetes', 'configmap.yaml'), 'utf8'))[0].toJS() as { data: Record<string, string> };
    fs.writeFileSync(path.join(tmp, 'config.conf'), cm.data['config.conf'].replace(/^clusterCIDR: .*$/m, `clusterCIDR: ${sb.podCIDR.v4}`));

    api = sb.spawn(sb.clientNs, [process.execPath, SERVE_JS, '--host', sb.clientIP.v4, '--objects', path.join(tmp, 'objects.json'), '--cert', cert, '--key', key, '--token', TOKEN],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      api.stderr!.on('data', (d) => (err += d));
      api.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]) as { url: string }).url);
      });
      api.on('exit', (code) => reject(new Error(`the API-server double exited (${code}): ${err}`)));
    });
    apiPort = new URL(url).port;
  }, 180_000);

  afterAll(async () => {
    agent?.kill('SIGKILL');
    api?.stdin?.end();
    await sb?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** The agent in the node namespace as the DaemonSet starts it, with kubelet's environment plus `env`. */
  const startAgent = (env: Record<string, string>, args: string[] = [`--config=${path.join(tmp, 'config.conf')}`]) => {
    const script = `mount -t tmpfs tmpfs /run && mkdir -p ${SA_PATH} && cp "$SA_DIR"/* ${SA_PATH}/ && ` +
      `exec "$NODE_BIN" "$SVCPLANE" run ${args.join(' ')} --hostname-override=${NODE} --log-format=json`;
    const { KUBECONFIG: _, ...base } = process.env;
    // kubelet's service environment for the `kubernetes` Service (pkg/kubelet/envvars), in every pod.
    const kubelet = { KUBERNETES_SERVICE_HOST: KUBERNETES_IP, KUBERNETES_SERVICE_PORT: '443', KUBERNETES_SERVICE_PORT_HTTPS: '443',
      KUBERNETES_PORT: `tcp://${KUBERNETES_IP}:443`, KUBERNETES_PORT_443_TCP: `tcp://${KUBERNETES_IP}:443`, KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
      KUBERNETES_PORT_443_TCP_PORT: '443', KUBERNETES_PORT_443_TCP_ADDR: KUBERNETES_IP };
    // unshare -m: the service account files are mounted for this process only (its own /run tmpfs).
    agent = new AgentProcess(sb.spawn(sb.nodeNs, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...base, HOME: tmp, ...kubelet, ...env, SA_DIR: path.join(tmp, 'sa'), NODE_BIN: process.execPath, SVCPLANE },
    }));
    return agent;
  };
  const stopAgent = async () => {
    agent!.kill('SIGTERM');
    expect(await agent!.exited).toBe(0);
    agent = undefined;
  };
  /** GET on the agent's healthz server, inside the node namespace (the DaemonSet's default address). */
  const health = async (p: string) => {
    const r = await sb.exec(sb.nodeNs, [process.execPath, '-e',
      `fetch('http://127.0.0.1:10256${p}').then(async (r) => process.stdout.write(JSON.stringify({ code: r.status, body: await r.json() })))`]);
    return JSON.parse(r.stdout) as { code: number; body: Record<string, unknown> };
  };

  it('the API server\'s real address from the ConfigMap (k8sServiceHost/k8sServicePort): lists with the service account, programs, traffic flows', async () => {
    const a = startAgent({ KUBERNETES_SERVICE_HOST: sb.clientIP.v4, KUBERNETES_SERVICE_PORT: apiPort });
    const starting = await a.waitFor((l) => l.msg === 'starting', 0, 60_000);
    expect(starting).toMatchObject({ apiServer: `https://${sb.clientIP.v4}:${apiPort}`, credentials: 'in-cluster service account' });
    await a.waitFor((l) => l.msg === 'synced', 0, 120_000);
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: WEB_IP, port: 80, count: 5 });
    expect(r.errors).toEqual({});
    expect(countsFor(r, ['be0'])).toEqual([5]);
    expect((await health('/healthz')).code).toBe(200);
    expect(a.lines.filter((l) => l.level === 'warn')).toEqual([]);
    await stopAgent();
  }, 240_000);

  it('kube-proxy\'s own ways: --master (the service account\'s credentials kept), and kubeadm\'s kubeconfig.conf named by clientConnection.kubeconfig', async () => {
    const real = `https://${sb.clientIP.v4}:${apiPort}`;
    let a = startAgent({}, [`--config=${path.join(tmp, 'config.conf')}`, `--master=${real}`]);
    expect(await a.waitFor((l) => l.msg === 'starting', 0, 60_000)).toMatchObject({ apiServer: real, credentials: 'in-cluster service account, server from --master' });
    await a.waitFor((l) => l.msg === 'synced', 0, 120_000);
    await stopAgent();
    // What kubeadm writes into the kube-proxy ConfigMap (kubeconfig.conf), and config.conf pointing at it.
    fs.writeFileSync(path.join(tmp, 'kubeconfig.conf'), [
      'apiVersion: v1', 'kind: Config', 'clusters:', '- cluster:', `    certificate-authority: ${SA_PATH}/ca.crt`, `    server: ${real}`, '  name: default',
      'contexts:', '- context:', '    cluster: default', '    namespace: default', '    user: default', '  name: default', 'current-context: default',
      'users:', '- name: default', '  user:', `    tokenFile: ${SA_PATH}/token`, '',
    ].join('\n'));
    fs.writeFileSync(path.join(tmp, 'kubeadm.conf'), fs.readFileSync(path.join(tmp, 'config.conf'), 'utf8') +
      `clientConnection:\n  kubeconfig: ${path.join(tmp, 'kubeconfig.conf')}\n`);
    a = startAgent({}, [`--config=${path.join(tmp, 'kubeadm.conf')}`]);
    expect(await a.waitFor((l) => l.msg === 'starting', 0, 60_000)).toMatchObject({ apiServer: real });
    await a.waitFor((l) => l.msg === 'synced', 0, 120_000);
    await stopAgent();
  }, 300_000);

  it('only kubelet\'s ClusterIP to go by: a warning with the address, the error and the hint at each backoff step; /healthz 503 with the reason, /livez 200', async () => {
    const a = startAgent({});
    // Each attempt waits out the 10 s connect bound (the address is routed into the void, as on a node whose
    // kube-proxy is gone); the second warning shows the agent keeps saying it, not once.
    // (The ServiceCIDR watch, started beside the Node's, warns the same way.)
    const warned = (l: { level: string; msg: string; [k: string]: unknown }) => l.level === 'warn' && l.msg === 'cannot list from the API server; retrying' && l.resource === 'nodes';
    await a.waitFor(warned, 0, 120_000);
    const first = a.lines.findIndex(warned);
    await a.waitFor(warned, first + 1, 120_000);
    for (const w of a.lines.filter((l) => l.level === 'warn' && l.msg === 'cannot list from the API server; retrying')) {
      expect(w).toMatchObject({ server: `https://${KUBERNETES_IP}:443` });
      expect(['nodes', 'servicecidrs']).toContain(w.resource);
      expect(String(w.error)).toMatch(/could not connect to https:\/\/198\.18\.100\.1:443/);
      expect(String(w.hint)).toMatch(/^198\.18\.100\.1 is the "kubernetes" Service's ClusterIP .*k8sServiceHost/);
    }
    const h = await health('/healthz');
    expect(h.code).toBe(503);
    expect(String(h.body.reason)).toMatch(/(^|; )nodes watch failing for \d+ s \(nothing listed yet\): .*could not connect/);
    expect((await health('/livez')).code).toBe(200);
    await stopAgent();
  }, 300_000);
});
