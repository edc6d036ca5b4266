import { describe, expect, it } from 'vitest';
import { formatGoDuration, parseGoDuration } from '../../src/config/duration';
import { ConfigError, decodeKubeProxyConfiguration, resolveAgentConfig, toKubeProxyConfiguration } from '../../src/config/kubeProxyConfig';

const HEAD = 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';

// What `kubeadm init` (v1.31-1.36) writes as the kube-proxy ConfigMap's config.conf: every v1alpha1 field, each
// zero unless kubeadm sets it (bindAddress, clientConnection.kubeconfig, clusterCIDR from podSubnet).
const KUBEADM_CONFIG_CONF = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
`;

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('Go durations', () => {
  it('parses and formats as Go does', () => {
    expect(parseGoDuration('30s')).toBe(30_000);
    expect(parseGoDuration('1m0s')).toBe(60_000);
    expect(parseGoDuration('1h2m3.5s')).toBe(3_723_500);
    expect(parseGoDuration('250ms')).toBe(250);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('-1s')).toBe(-1000);
    for (const bad of ['30', '1d', 's', '', '1m s']) expect(parseGoDuration(bad)).toBeUndefined();
    expect(formatGoDuration(30_000)).toBe('30s');
    expect(formatGoDuration(60_000)).toBe('1m0s');
    expect(formatGoDuration(15 * 60_000)).toBe('15m0s');
    expect(formatGoDuration(3_723_500)).toBe('1h2m3.5s');
    expect(formatGoDuration(250)).toBe('250ms');
    expect(formatGoDuration(0)).toBe('0s');
  });
});

describe('KubeProxyConfiguration', () => {
  it('kube-proxy defaults with no file: nftables, 30s/1s, the usual bind addresses', () => {
    expect(resolveAgentConfig(undefined)).toEqual({
      mode: 'nftables', clusterCIDRs: [], nodePortAddresses: [], masqueradeAll: false, syncPeriodMs: 30_000, minSyncPeriodMs: 1000,
      ipvsScheduler: 'rr', ipvsBindMode: 'route', serviceCIDRs: [], localDetect: { mode: 'ClusterCIDR' }, nodeIPOverride: '', healthzBindAddress: '0.0.0.0:10256', metricsBindAddress: '127.0.0.1:10249', hostnameOverride: '',
      configSyncPeriodMs: 900_000, kubeconfig: '', logFormat: undefined, bpfRoot: '/sys/fs/bpf/svcplane',
    });
  });

  it('mode ebpf (svcplane\'s own value): the nftables section\'s periods; --cgroup-root and --bpf-root taken', () => {
    const c = resolveAgentConfig({ mode: 'ebpf', nftables: { syncPeriod: '20s', minSyncPeriod: '2s' } }, { cgroupRoot: '/sys/fs/cgroup', bpfRoot: '/sys/fs/bpf/x' });
    expect(c).toMatchObject({ mode: 'ebpf', syncPeriodMs: 20_000, minSyncPeriodMs: 2000, cgroupRoot: '/sys/fs/cgroup', bpfRoot: '/sys/fs/bpf/x' });
    expect(resolveAgentConfig(undefined, { proxyMode: 'ebpf' }).mode).toBe('ebpf');
  });

  it('reads a kind-style kube-proxy ConfigMap unchanged, taking the mode\'s own section', () => {
    const { doc, warnings } = decodeKubeProxyConfiguration(`${HEAD}
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpCloseWaitTimeout: 1h0m0s
  tcpEstablishedTimeout: 24h0m0s
detectLocalMode: ClusterCIDR
enableProfiling: false
healthzBindAddress: 0.0.0.0:10256
hostnameOverride: ""
iptables:
  masqueradeAll: false
  minSyncPeriod: 1s
  syncPeriod: 30s
ipvs:
  minSyncPeriod: 0s
  scheduler: ""
  syncPeriod: 30s
metricsBindAddress: 0.0.0.0:10249
mode: nftables
nftables:
  masqueradeAll: true
  minSyncPeriod: 2s
  syncPeriod: 45s
nodePortAddresses: null
oomScoreAdj: -999
`, 'kube-proxy.yaml');
    const c = resolveAgentConfig(doc);
    expect(c).toMatchObject({
      mode: 'nftables', clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'], masqueradeAll: true, syncPeriodMs: 45_000,
      minSyncPeriodMs: 2000, metricsBindAddress: '0.0.0.0:10249', kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf',
    });
    // conntrack and oomScoreAdj hold kube-proxy's defaults, written out: nothing was set, nothing to report.
    expect(warnings).toEqual([]);
    // Values of its own are said, once each, not dropped silently.
    const changed = decodeKubeProxyConfiguration(`${HEAD}conntrack:\n  maxPerCore: 65536\n  min: null\noomScoreAdj: -500\nenableProfiling: true\n`, 'f');
    expect(changed.warnings.map((w) => w.split(':')[0])).toEqual(['conntrack', 'oomScoreAdj', 'enableProfiling']);
  });

  it('kubeadm\'s generated config.conf (every field written, most of them zero) means kube-proxy\'s defaults, with nothing reported', () => {
    const { doc, warnings } = decodeKubeProxyConfiguration(KUBEADM_CONFIG_CONF, 'config.conf');
    expect(warnings).toEqual([]);
    expect(resolveAgentConfig(doc)).toEqual({
      ...resolveAgentConfig(undefined), clusterCIDRs: ['10.244.0.0/16'], kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf',
    });
    // minSyncPeriod 0s in a file is 1s (v1alpha1 defaulting); ipvs.minSyncPeriod 0s stays 0; a flag's 0 is 0.
    expect(resolveAgentConfig(doc)).toMatchObject({ syncPeriodMs: 30_000, minSyncPeriodMs: 1000, healthzBindAddress: '0.0.0.0:10256', metricsBindAddress: '127.0.0.1:10249', configSyncPeriodMs: 900_000 });
    expect(resolveAgentConfig(doc, { proxyMode: 'ipvs' })).toMatchObject({ syncPeriodMs: 30_000, minSyncPeriodMs: 0 });
    expect(resolveAgentConfig(doc, { iptablesMinSyncPeriod: '0s' })).toMatchObject({ minSyncPeriodMs: 0 });
    // An IPv6 bindAddress moves the defaults to IPv6, as kube-proxy's getDefaultAddresses does.
    const v6 = decodeKubeProxyConfiguration(KUBEADM_CONFIG_CONF.replace('bindAddress: 0.0.0.0', 'bindAddress: "::"'), 'config.conf');
    expect(v6.warnings).toEqual([]);
    expect(resolveAgentConfig(v6.doc)).toMatchObject({ healthzBindAddress: '[::]:10256', metricsBindAddress: '[::1]:10249' });
    // "" on the command line switches a server off (svcplane's tests and benchmarks run many agents on one host).
    expect(resolveAgentConfig(doc, { healthzBindAddress: '', metricsBindAddress: '' })).toMatchObject({ healthzBindAddress: '', metricsBindAddress: '' });
  });

  it('reports unknown fields with their path and goes on (kube-proxy\'s lenient decoding)', () => {
    const { doc, warnings } = decodeKubeProxyConfiguration(`${HEAD}mode: ipvs\nipvs:\n  schedular: sh\n  syncPeriod: 10s\nmasqueradeALL: true\n`, 'f');
    expect(warnings).toEqual([
      'ipvs.schedular: unknown field, ignored (field names are case-sensitive)',
      'masqueradeALL: unknown field, ignored (field names are case-sensitive)',
    ]);
    // ipvs mode: ipvs.minSyncPeriod defaults to 0 (it really may be 0 there).
    expect(resolveAgentConfig(doc)).toMatchObject({ mode: 'ipvs', syncPeriodMs: 10_000, minSyncPeriodMs: 0, ipvsScheduler: 'rr' });
  });

  it('refuses invalid values, naming each with its path', () => {
    const { doc } = decodeKubeProxyConfiguration(`${HEAD}mode: userspace
nftables:
  syncPeriod: 5s
  minSyncPeriod: 10s
iptables:
  syncPeriod: "-1s"
clusterCIDR: 10.0.0.0/8,10.1.0.0/16
nodePortAddresses: [primary, 10.0.0.0/8]
healthzBindAddress: "localhost:10256"
metricsBindAddress: "127.0.0.1:99999"
ipvs:
  scheduler: fastest
configSyncPeriod: 15
`, 'f');
    expect(problemsOf(() => resolveAgentConfig(doc))).toEqual([
      'mode: Invalid value: "userspace": must be iptables, ipvs, nftables, ebpf (svcplane only) or blank (iptables and blank run svcplane\'s nftables dataplane)',
      'iptables.syncPeriod: Invalid value: "-1s": must be greater than 0',
      'configSyncPeriod: Invalid value: 15: must be a duration string such as "30s" or "1m0s"',
      'clusterCIDR: Invalid value: "10.0.0.0/8,10.1.0.0/16": must be a either a single CIDR or dual-stack pair of CIDRs',
      'nodePortAddresses[0]: Invalid value: "primary": can\'t use both \'primary\' and CIDRs',
      'ipvs.scheduler: Invalid value: "fastest": must be one of rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq, mh',
      'healthzBindAddress: Invalid value: "localhost:10256": must be a valid IP',
      'metricsBindAddress: Invalid value: "127.0.0.1:99999": must be a valid port',
    ]);
    const { doc: d2 } = decodeKubeProxyConfiguration(`${HEAD}mode: nftables\nnftables:\n  syncPeriod: 5s\n  minSyncPeriod: 10s\n`, 'f');
    expect(problemsOf(() => resolveAgentConfig(d2))).toEqual(['nftables.syncPeriod: Invalid value: "10s": must be greater than or equal to nftables.minSyncPeriod']);
    expect(problemsOf(() => decodeKubeProxyConfiguration('apiVersion: v1\nkind: ConfigMap\n', 'cm.yaml'))).toEqual([
      'cm.yaml: apiVersion/kind is "v1"/"ConfigMap", want kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration',
    ]);
    expect(problemsOf(() => decodeKubeProxyConfiguration(`${HEAD}mode: [`, 'x.yaml'))[0]).toMatch(/^x\.yaml: not valid YAML/);
  });

  it('flags override the file field by field; --iptables-*-sync-period set nftables mode\'s periods, as in kube-proxy', () => {
    const { doc } = decodeKubeProxyConfiguration(`${HEAD}mode: nftables\nclusterCIDR: 10.244.0.0/16\nnftables:\n  syncPeriod: 45s\n`, 'f');
    const c = resolveAgentConfig(doc, { iptablesMinSyncPeriod: '0s', iptablesSyncPeriod: '1m', hostnameOverride: ' Node-A ', healthzBindAddress: '127.0.0.1', metricsBindAddress: '' });
    // A flag's 0 is 0, as in kube-proxy (only the file's 0s is defaulted).
    expect(c).toMatchObject({ syncPeriodMs: 60_000, minSyncPeriodMs: 0, clusterCIDRs: ['10.244.0.0/16'], hostnameOverride: 'node-a', healthzBindAddress: '127.0.0.1:10256', metricsBindAddress: '' });
    expect(resolveAgentConfig(doc, { proxyMode: 'ipvs', ipvsMinSyncPeriod: '0s' })).toMatchObject({ mode: 'ipvs', minSyncPeriodMs: 0, syncPeriodMs: 30_000 });
    expect(problemsOf(() => resolveAgentConfig(doc, { iptablesSyncPeriod: 'soon' }))).toEqual([
      '--iptables-sync-period: Invalid value: "soon": not a duration (examples: "30s", "1m0s", "250ms")',
    ]);
  });

  it('detectLocalMode: all four of kube-proxy\'s, from the file or the flags, validated as kube-proxy does; written back', () => {
    const read = (text: string, flags = {}) => resolveAgentConfig(decodeKubeProxyConfiguration(`${HEAD}${text}`, 'f').doc, flags);
    expect(read('detectLocalMode: ""\n').localDetect).toEqual({ mode: 'ClusterCIDR' });
    expect(read('detectLocalMode: NodeCIDR\n').localDetect).toEqual({ mode: 'NodeCIDR' });
    expect(read('detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n').localDetect).toEqual({ mode: 'BridgeInterface', interfaceName: 'cbr0' });
    expect(read('detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n').localDetect).toEqual({ mode: 'InterfaceNamePrefix', interfacePrefix: 'veth' });
    // Flags, as a kube-proxy DaemonSet passes them.
    expect(read('', { detectLocalMode: 'InterfaceNamePrefix', podInterfaceNamePrefix: 'cali' }).localDetect).toEqual({ mode: 'InterfaceNamePrefix', interfacePrefix: 'cali' });
    expect(read('detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n', { podBridgeInterface: 'br0' }).localDetect).toEqual({ mode: 'BridgeInterface', interfaceName: 'br0' });
    expect(problemsOf(() => read('detectLocalMode: BridgeInterface\n'))).toEqual(['detectLocal.bridgeInterface: Invalid value: "": must not be empty']);
    expect(problemsOf(() => read('', { detectLocalMode: 'InterfaceNamePrefix' }))).toEqual(['detectLocal.interfaceNamePrefix: Invalid value: "": must not be empty']);
    expect(problemsOf(() => read('detectLocalMode: Magic\n'))).toEqual(['detectLocalMode: Invalid value: "Magic": supported values: "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix", ""']);
    expect(problemsOf(() => read('', { detectLocalMode: 'BridgeInterface', podBridgeInterface: 'a-very-long-bridge-name' }))).toEqual(['--pod-bridge-interface: Invalid value: "a-very-long-bridge-name": must be an interface name (at most 15 bytes, no spaces or slashes)']);
    for (const text of ['detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n', 'detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n', 'detectLocalMode: NodeCIDR\n']) {
      const c = read(text);
      expect(resolveAgentConfig(decodeKubeProxyConfiguration(JSON.stringify(toKubeProxyConfiguration(c)), 'w').doc)).toEqual(c);
    }
  });

  it('bindAddress (or --bind-address) overrides the node\'s primary IP unless it is 0.0.0.0 or ::', () => {
    expect(resolveAgentConfig({ bindAddress: '0.0.0.0' }).nodeIPOverride).toBe('');
    expect(resolveAgentConfig({ bindAddress: '::' }).nodeIPOverride).toBe('');
    expect(resolveAgentConfig({ bindAddress: '10.0.0.5' }).nodeIPOverride).toBe('10.0.0.5');
    expect(resolveAgentConfig({ bindAddress: '10.0.0.5' }, { bindAddress: 'fd00::0005' }).nodeIPOverride).toBe('fd00::5');
    expect(problemsOf(() => resolveAgentConfig(undefined, { bindAddress: 'node-a' }))).toEqual(['--bind-address: Invalid value: "node-a": must be a valid IP address']);
    const c = resolveAgentConfig({ bindAddress: '10.0.0.5' });
    expect(resolveAgentConfig(decodeKubeProxyConfiguration(JSON.stringify(toKubeProxyConfiguration(c)), 'w').doc)).toEqual(c);
  });

  it('writes the effective configuration back as a KubeProxyConfiguration that reads the same', () => {
    const c = resolveAgentConfig(undefined, { proxyMode: 'nftables', clusterCIDR: ['10.244.0.0/16'], masqueradeAll: true, iptablesMinSyncPeriod: '250ms' });
    const doc = toKubeProxyConfiguration(c);
    const again = resolveAgentConfig(decodeKubeProxyConfiguration(JSON.stringify(doc), 'w').doc);
    expect(again).toEqual(c);
  });
});
