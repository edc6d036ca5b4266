import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KubeConfigError, clusterIPHint, inCluster, loadClusterAccess, withMaster, type ClusterAccess } from '../../src/k8s/kubeconfig';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-kc-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = path.join(dir, name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, text);
  return f;
}

const config = (user: string, extra = '') => `apiVersion: v1
kind: Config
current-context: c1
clusters:
- name: k1
  cluster:
    server: https://api.example:6443/
    certificate-authority: pki/ca.crt
${extra}
contexts:
- name: c1
  context: {cluster: k1, user: u1}
users:
- name: u1
  user:
${user}
`;

describe('kubeconfig', () => {
  write('pki/ca.crt', 'CA');
  write('pki/token', 'tok-from-file\n');

  it('reads server, CA (relative to the file), and a token file read fresh each time', () => {
    const f = write('a.yaml', config('    tokenFile: pki/token'));
    const a = loadClusterAccess(f) as ClusterAccess;
    expect(a.server).toBe('https://api.example:6443');
    expect(a.ca?.toString()).toBe('CA');
    expect(a.token?.()).toBe('tok-from-file');
    write('pki/token', 'rotated');
    expect(a.token?.()).toBe('rotated');
  });

  it('reads client certificates as data, and basic auth', () => {
    const f = write('b.yaml', config(`    client-certificate-data: ${Buffer.from('CERT').toString('base64')}\n    client-key-data: ${Buffer.from('KEY').toString('base64')}\n    username: u\n    password: p`));
    const a = loadClusterAccess(f) as ClusterAccess;
    expect([a.cert?.toString(), a.key?.toString(), a.basic]).toEqual(['CERT', 'KEY', { username: 'u', password: 'p' }]);
  });

  it('hands exec plugins and auth providers to client-node', () => {
    const f = write('c.yaml', config('    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws'));
    expect(loadClusterAccess(f)).toEqual({ needsClientNode: true, file: f, reason: 'exec credential plugin' });
  });

  it('merges KUBECONFIG files, the first to set a name winning; then ~/.kube/config; then in-cluster', () => {
    const first = write('m1.yaml', 'current-context: c1\nusers:\n- name: u1\n  user: {token: first}\n');
    const second = write('m2.yaml', config('    token: second'));
    const a = loadClusterAccess(undefined, { KUBECONFIG: `${first}${path.delimiter}${second}`, HOME: dir }) as ClusterAccess;
    expect(a.token?.()).toBe('first');
    expect(a.server).toBe('https://api.example:6443');
    write('home/.kube/config', config('    token: home'));
    write('home/.kube/pki/ca.crt', 'CA');
    expect((loadClusterAccess(undefined, { HOME: path.join(dir, 'home') }) as ClusterAccess).token?.()).toBe('home');
    expect(() => loadClusterAccess(undefined, { HOME: path.join(dir, 'nohome') })).toThrow(/no kubeconfig/);
  });

  it('in-cluster: the service host and port, the service account token and CA', () => {
    write('sa/token', 'sa-token');
    write('sa/ca.crt', 'SA-CA');
    const a = inCluster({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, path.join(dir, 'sa'));
    expect([a.server, a.token?.(), a.ca?.toString()]).toEqual(['https://[fd00::1]:443', 'sa-token', 'SA-CA']);
  });

  it('--master replaces the server and keeps the credentials (kubeconfig or in-cluster); alone, it is the address alone', () => {
    write('sa2/token', 'sa-token');
    const sa = () => inCluster({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, path.join(dir, 'sa2'));
    const a = withMaster('https://192.0.2.10:6443/', sa) as ClusterAccess;
    expect([a.server, a.token?.(), a.source]).toEqual(['https://192.0.2.10:6443', 'sa-token', 'in-cluster service account, server from --master']);
    expect((withMaster('192.0.2.10:6443', sa) as ClusterAccess).server).toBe('https://192.0.2.10:6443');
    const none = () => {
      throw new KubeConfigError('no kubeconfig: ...');
    };
    expect(withMaster('http://127.0.0.1:8080', none)).toEqual({ server: 'http://127.0.0.1:8080', source: '--master (no credentials)', insecureSkipTLSVerify: false });
    expect(() => withMaster('https://[nope', sa)).toThrow('--master: "https://[nope" is not a URL');
  });

  it('hints when the server is the kubernetes Service\'s ClusterIP from kubelet\'s service environment, and only then', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443', KUBERNETES_PORT: 'tcp://10.96.0.1:443' };
    expect(clusterIPHint('https://10.96.0.1:443', env)).toMatch(/^10\.96\.0\.1 is the "kubernetes" Service's ClusterIP .*k8sServiceHost/);
    expect(clusterIPHint('https://[fd00:96::1]:443', { KUBERNETES_PORT: 'tcp://[fd00:96::1]:443' })).toMatch(/^\[fd00:96::1\] is the/);
    // The DaemonSet's k8sServiceHost overrides KUBERNETES_SERVICE_HOST; KUBERNETES_PORT stays kubelet's.
    expect(clusterIPHint('https://192.0.2.10:6443', env)).toBeUndefined();
    expect(clusterIPHint('https://10.96.0.1:443', {})).toBeUndefined();
  });

  it('names what is wrong with a broken kubeconfig', () => {
    const f = write('d.yaml', 'current-context: nope\ncontexts: []\n');
    expect(() => loadClusterAccess(f)).toThrow(`kubeconfig ${f}: current-context "nope" is not defined`);
  });
});
