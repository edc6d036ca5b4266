// `svcplane run` as an operator meets it before anything is programmed: help, configuration errors, and
// --write-config-to. (The running agent is tested end to end in test/e2e/agent.test.ts.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { svcplane } from '../helpers/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-run-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('svcplane run (before it runs)', () => {
  it('documents kube-proxy\'s flags', async () => {
    const r = await svcplane(['run', '--help']);
    expect(r.code).toBe(0);
    for (const f of ['--config', '--kubeconfig', '--master', '--proxy-mode', '--hostname-override', '--cluster-cidr', '--nodeport-addresses', '--masquerade-all',
      '--ipvs-scheduler', '--healthz-bind-address', '--metrics-bind-address', '--iptables-sync-period', '--iptables-min-sync-period',
      '--ipvs-sync-period', '--ipvs-min-sync-period', '--write-config-to', '--cleanup']) expect(r.stdout).toContain(f);
  });

  it('refuses an invalid configuration with every problem and its path, exit 2, before touching anything', async () => {
    const cfg = path.join(dir, 'bad.yaml');
    fs.writeFileSync(cfg, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: userspace\nclusterCIDR: 10.0.0.0/33\n');
    const r = await svcplane(['run', '--config', cfg, '--iptables-sync-period', 'often']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('mode: Invalid value: "userspace"');
    expect(r.stderr).toContain('clusterCIDR[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR');
    expect(r.stderr).toContain('--iptables-sync-period: Invalid value: "often"');
  });

  it('--write-config-to writes the effective configuration (file overridden by flags) and exits', async () => {
    const cfg = path.join(dir, 'in.yaml');
    const out = path.join(dir, 'out.yaml');
    fs.writeFileSync(cfg, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nclusterCIDR: 10.244.0.0/16\nnftables:\n  syncPeriod: 45s\nconntrack:\n  maxPerCore: 1\nbogus: 1\n');
    const r = await svcplane(['run', '--config', cfg, '--masquerade-all', '--iptables-min-sync-period', '250ms', '--write-config-to', out, '--log-format', 'json']);
    expect(r.code).toBe(0);
    const doc = parse(fs.readFileSync(out, 'utf8'));
    expect(doc).toMatchObject({ kind: 'KubeProxyConfiguration', mode: 'nftables', clusterCIDR: '10.244.0.0/16', nftables: { masqueradeAll: true, syncPeriod: '45s', minSyncPeriod: '250ms' } });
    // Unknown and unused fields are said, not dropped silently.
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
    const warnings = lines.filter((l) => l.level === 'warn').map((l) => l.msg);
    expect(warnings).toEqual([`${cfg}: bogus: unknown field, ignored (field names are case-sensitive)`, `${cfg}: conntrack: set, but not acted on: svcplane does not tune conntrack sysctls; set them on the node`]);
    // conntrack was set (and warned about); mode nftables is svcplane's own: nothing more to say.
    expect(lines.filter((l) => l.level === 'info' && /conntrack sysctls|mode "/.test(l.msg))).toEqual([]);
  });

  it('says once at start what kube-proxy would do unasked that svcplane does not (kubeadm\'s config: mode "", conntrack unset)', async () => {
    const cfg = path.join(dir, 'kubeadm.yaml');
    fs.writeFileSync(cfg, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ""\nmetricsBindAddress: ""\nconntrack:\n  maxPerCore: null\niptables:\n  minSyncPeriod: 0s\n');
    const out = path.join(dir, 'kubeadm-out.yaml');
    const r = await svcplane(['run', '--config', cfg, '--write-config-to', out, '--log-format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(lines.filter((l) => l.level === 'warn')).toEqual([]);
    const infos = lines.filter((l) => l.level === 'info').map((l) => l.msg);
    expect(infos.filter((m) => m.startsWith('mode ""'))).toHaveLength(1);
    expect(infos.find((m) => m.startsWith('mode ""'))).toContain('NodePorts are not served on 127.0.0.1');
    expect(infos.filter((m) => m.startsWith('conntrack sysctls are left as the node has them'))).toHaveLength(1);
    // Zero values are kube-proxy's defaults: metrics on 127.0.0.1:10249, minSyncPeriod 1s.
    expect(parse(fs.readFileSync(out, 'utf8'))).toMatchObject({ metricsBindAddress: '127.0.0.1:10249', nftables: { minSyncPeriod: '1s', syncPeriod: '30s' } });
  });

  it('takes a kube-proxy DaemonSet\'s command line as it is: honours what applies, says once what has no effect', async () => {
    const out = path.join(dir, 'kp-out.yaml');
    const r = await svcplane(['run', '--master=https://192.0.2.1:6443', '--kubeconfig=/var/lib/kube-proxy/kubeconfig', '--cluster-cidr=10.64.0.0/14',
      '--oom-score-adj=-998', '--v=2', '--feature-gates=ServiceTrafficDistribution=true', '--iptables-sync-period=1m', '--iptables-min-sync-period=10s',
      '--ipvs-sync-period=1m', '--ipvs-min-sync-period=10s', '--detect-local-mode=ClusterCIDR', '--conntrack_max_per_core=0', '--profiling',
      '--healthz-bind-address=0.0.0.0:10256', '--metrics-bind-address=127.0.0.1', '--metrics-port=10250', '--logging-format=json', '--write-config-to', out]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(lines.filter((l) => l.msg.includes('accepted, no effect')).map((l) => l.msg.split(':')[0])).toEqual(
      ['--profiling', '--oom-score-adj', '--conntrack-max-per-core', '--feature-gates']);
    expect(parse(fs.readFileSync(out, 'utf8'))).toMatchObject({ clusterCIDR: '10.64.0.0/14', metricsBindAddress: '127.0.0.1:10250',
      healthzBindAddress: '0.0.0.0:10256', nftables: { syncPeriod: '1m0s', minSyncPeriod: '10s' } });
    // --init-only (kube-proxy's init container step) exits 0 once the configuration is valid.
    const init = await svcplane(['run', '--init-only', '--log-format', 'json']);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toContain('--init-only: the configuration is valid');
    // --healthz-port 0 switches the server off, as kube-proxy's deprecated flag does.
    const off = path.join(dir, 'off.yaml');
    expect((await svcplane(['run', '--healthz-port=0', '--write-config-to', off])).code).toBe(0);
    expect(parse(fs.readFileSync(off, 'utf8'))).toMatchObject({ healthzBindAddress: '' });
  });

  it('--version, `svcplane version` and `run --version` print the version, the commit and the addon\'s libraries', async () => {
    for (const argv of [['--version'], ['version'], ['run', '--version']]) {
      const r = await svcplane(argv);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^svcplane \d+\.\d+\.\d+ \(commit ([0-9a-f]{40}|unknown); libnftnl \d+\.\d+(\.\d+)?, libmnl \d+\.\d+(\.\d+)?; node \d+/);
    }
  });

  it('a missing --config file or --manifests directory is an input error (exit 2) naming the flag', async () => {
    const c = await svcplane(['run', '--config', path.join(dir, 'no-such.yaml')]);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain(`--config: cannot read ${path.join(dir, 'no-such.yaml')}: no such file`);
    const m = await svcplane(['sync', '--once', '--manifests', path.join(dir, 'no-such-dir')]);
    expect(m.code).toBe(2);
    expect(m.stderr).toContain(`--manifests: manifest directory ${path.join(dir, 'no-such-dir')} does not exist`);
  });

  it('says clearly when there is no way to reach an API server', async () => {
    const r = await svcplane(['run', '--kubeconfig', path.join(dir, 'missing'), '--healthz-bind-address', '', '--metrics-bind-address', '']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/missing/);
  });
});
