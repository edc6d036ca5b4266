// kube-proxy's own configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/v1alpha1), read so that an
// existing kube-proxy ConfigMap works unchanged, then overridden by flags spelled as kube-proxy spells them.
//
// Where svcplane follows kube-proxy (staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go, pkg/proxy/apis/config/
// {v1alpha1/defaults.go,validation/validation.go}, cmd/kube-proxy/app/options.go):
// * defaults, applied as v1alpha1's defaulting applies them: its durations and addresses are plain values, so an
//   explicit zero cannot be told from an absent field, and kubeadm's ConfigMap (which writes every field, most of
//   them zero: minSyncPeriod 0s, healthzBindAddress "", conntrack.maxPerCore null...) means kube-proxy's defaults.
//   So in the file: syncPeriod/minSyncPeriod 0s -> 30s/1s (ipvs.minSyncPeriod stays 0), healthzBindAddress and
//   metricsBindAddress "" -> 0.0.0.0:10256 and 127.0.0.1:10249 ([::] and [::1] when bindAddress is IPv6). A flag
//   means what it says: --iptables-min-sync-period 0 is 0 (sync on every change), as in kube-proxy;
// * which sync periods apply: ipvs.* in ipvs mode, nftables.* in nftables mode, iptables.* otherwise, and the
//   --iptables-*sync-period flags set them whenever the mode is not ipvs;
// * unknown fields are reported (with their path) and ignored, as kube-proxy's lenient fallback decoding does;
//   invalid values stop the agent, each reported with its path (the v1alpha1 JSON path, as newest kube-proxy does).
// Where svcplane differs, on purpose:
// * Flags override the file field by field (the contract); kube-proxy ignores most flags once --config is
//   given. Nothing an operator writes is silently dropped either way. --healthz-bind-address "" and
//   --metrics-bind-address "" switch the servers off (kube-proxy's help says so; its flag parser drops an empty
//   value, a bug no working command line relies on).
// * mode "" and "iptables" run the nftables dataplane: svcplane has no iptables mode, and nftables is the
//   iptables mode's successor with the same Service semantics. This is logged at start.
// * syncPeriod is also the period of the full resync that repairs what changed behind svcplane's back (kube-proxy's
//   nftables mode resyncs hourly and uses syncPeriod only as the retry delay and health timeout).
import { parse as parseYAML } from 'yaml';
import { canonicalIP, parseCIDR, parseIP } from '../model/ip';
import { formatGoDuration, parseGoDuration } from './duration';

export const API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
export const KIND = 'KubeProxyConfiguration';

export type ProxyMode = 'nftables' | 'ipvs' | 'ebpf';

/** What the agent runs with, after the file, the flags and the defaults. */
export interface AgentConfig {
  mode: ProxyMode;
  /** Pod CIDRs (one per family at most): local-traffic detection for masquerade (detectLocalMode ClusterCIDR). */
  clusterCIDRs: string[];
  /**
   * How traffic from this node's pods is told from the rest (kube-proxy's detectLocalMode): by clusterCIDR; by the
   * Node's spec.podCIDRs (NodeCIDR); by the interface it arrives on, a bridge (BridgeInterface) or an interface name
   * prefix (InterfaceNamePrefix: each pod's veth).
   */
  localDetect: LocalDetect;
  /**
   * bindAddress / --bind-address when not 0.0.0.0 or :: (kube-proxy's detectNodeIPs): overrides this node's primary
   * IP of its family, which loadBalancerSourceRanges and nodePortAddresses "primary" use (it binds nothing, as in
   * kube-proxy: "the name is a historical artifact"). "" when not given.
   */
  nodeIPOverride: string;
  /** CIDRs, or exactly ["primary"] (the Node's primary addresses). Empty: every local address. */
  nodePortAddresses: string[];
  masqueradeAll: boolean;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  /** Default IPVS scheduler (ipvs mode). */
  ipvsScheduler: string;
  /** How ipvs mode binds Service addresses on svcplane0 (svcplane's --ipvs-bind-mode; not in the file format). */
  ipvsBindMode: 'route' | 'address';
  /** ebpf mode (svcplane's --cgroup-root and --bpf-root; not in the file format): where the socket hooks attach and pin. */
  cgroupRoot?: string;
  bpfRoot: string;
  /**
   * svcplane's --service-cidr (not in the file format): Service CIDRs known without the API (clusters before 1.33
   * have no ServiceCIDR objects); the agent adds the ServiceCIDR objects' ranges to them.
   */
  serviceCIDRs: string[];
  /** host:port, "" disables. */
  healthzBindAddress: string;
  metricsBindAddress: string;
  /** The node's name; "" means the hostname. */
  hostnameOverride: string;
  /** How often informers would resync (accepted for compatibility: svcplane's caches are event-driven). */
  configSyncPeriodMs: number;
  /** clientConnection.kubeconfig */
  kubeconfig: string;
  /** logging.format, when set: "json" or "text". */
  logFormat?: 'json' | 'text';
  /** logging.verbosity, when set (klog's -v). */
  logVerbosity?: number;
}

export type LocalDetect =
  | { mode: 'ClusterCIDR' }
  | { mode: 'NodeCIDR' }
  | { mode: 'BridgeInterface'; interfaceName: string }
  | { mode: 'InterfaceNamePrefix'; interfacePrefix: string };

export const DETECT_LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const;

export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'sh', 'dh', 'sed', 'nq', 'mh'];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** Flags that override the file (undefined: not given). Durations are Go duration strings, as on kube-proxy's CLI. */
export interface ConfigFlags {
  proxyMode?: string;
  hostnameOverride?: string;
  clusterCIDR?: string[];
  nodePortAddresses?: string[];
  masqueradeAll?: boolean;
  ipvsScheduler?: string;
  ipvsBindMode?: string;
  cgroupRoot?: string;
  bpfRoot?: string;
  serviceCIDR?: string[];
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  iptablesSyncPeriod?: string;
  iptablesMinSyncPeriod?: string;
  ipvsSyncPeriod?: string;
  ipvsMinSyncPeriod?: string;
  configSyncPeriod?: string;
  kubeconfig?: string;
  /** kube-proxy's deprecated --healthz-port/--metrics-port: 0 switches the server off; else the port of a bare IP. */
  healthzPort?: string;
  metricsPort?: string;
  detectLocalMode?: string;
  podBridgeInterface?: string;
  bindAddress?: string;
  podInterfaceNamePrefix?: string;
}

// ---- the v1alpha1 schema, for unknown-field detection --------------------------------------------------------

type Schema = { [field: string]: Schema | 'leaf' | 'map' };
const SYNC = { syncPeriod: 'leaf', minSyncPeriod: 'leaf' } as const;
const SCHEMA: Schema = {
  apiVersion: 'leaf', kind: 'leaf', featureGates: 'map',
  clientConnection: { kubeconfig: 'leaf', acceptContentTypes: 'leaf', contentType: 'leaf', qps: 'leaf', burst: 'leaf' },
  logging: 'map', hostnameOverride: 'leaf', bindAddress: 'leaf', healthzBindAddress: 'leaf', metricsBindAddress: 'leaf',
  bindAddressHardFail: 'leaf', enableProfiling: 'leaf', showHiddenMetricsForVersion: 'leaf', mode: 'leaf',
  iptables: { masqueradeBit: 'leaf', masqueradeAll: 'leaf', localhostNodePorts: 'leaf', snatNodeInternalIP: 'leaf', ...SYNC },
  ipvs: { ...SYNC, scheduler: 'leaf', excludeCIDRs: 'leaf', strictARP: 'leaf', tcpTimeout: 'leaf', tcpFinTimeout: 'leaf', udpTimeout: 'leaf' },
  nftables: { masqueradeBit: 'leaf', masqueradeAll: 'leaf', ...SYNC },
  winkernel: { networkName: 'leaf', sourceVip: 'leaf', enableDSR: 'leaf', rootHnsEndpointName: 'leaf', forwardHealthCheckVip: 'leaf' },
  detectLocalMode: 'leaf', detectLocal: { bridgeInterface: 'leaf', interfaceNamePrefix: 'leaf' }, clusterCIDR: 'leaf',
  nodePortAddresses: 'leaf', oomScoreAdj: 'leaf',
  conntrack: { maxPerCore: 'leaf', min: 'leaf', tcpEstablishedTimeout: 'leaf', tcpCloseWaitTimeout: 'leaf', tcpBeLiberal: 'leaf', udpTimeout: 'leaf', udpStreamTimeout: 'leaf' },
  configSyncPeriod: 'leaf', portRange: 'leaf', windowsRunAsService: 'leaf',
};

/** Set fields svcplane accepts but does not act on, and why (logged at start, so nothing is silently dropped). */
const NOT_ACTED_ON: Record<string, string> = {
  conntrack: 'svcplane does not tune conntrack sysctls; set them on the node',
  oomScoreAdj: 'set the OOM score in the DaemonSet (svcplane does not change its own)',
  'iptables.masqueradeBit': 'svcplane masquerades without a packet mark',
  'nftables.masqueradeBit': 'svcplane masquerades without a packet mark',
  'iptables.localhostNodePorts': 'NodePorts are not served on 127.0.0.1 (as kube-proxy\'s nftables mode)',
  'ipvs.excludeCIDRs': 'svcplane only ever touches the virtual services it created',
  'ipvs.strictARP': 'svcplane binds Service addresses on its own interface; set arp_ignore/arp_announce on the node if you need them',
  'ipvs.tcpTimeout': 'IPVS timeouts are left at the system values',
  'ipvs.tcpFinTimeout': 'IPVS timeouts are left at the system values',
  'ipvs.udpTimeout': 'IPVS timeouts are left at the system values',
  winkernel: 'Windows only',
  windowsRunAsService: 'Windows only',
  enableProfiling: 'no profiling endpoints',
  bindAddressHardFail: 'svcplane always fails hard when it cannot bind its servers',
  featureGates: 'svcplane has no feature gates',
  portRange: 'unused by kube-proxy too',
  clientConnection: 'only clientConnection.kubeconfig is used',
};

// ---- loading ---------------------------------------------------------------------------------------------------

export interface LoadedFile {
  /** The decoded document (validated only for shape: apiVersion, kind, an object). */
  doc: Record<string, unknown>;
  /** Unknown fields, each as "path: unknown field, ignored". */
  warnings: string[];
}

/** Decodes a KubeProxyConfiguration (YAML or JSON). Bad YAML or another apiVersion/kind is fatal, as in kube-proxy. */
export function decodeKubeProxyConfiguration(text: string, source: string): LoadedFile {
  let doc: unknown;
  try {
    doc = parseYAML(text, { uniqueKeys: true });
  } catch (e) {
    throw new ConfigError([`${source}: not valid YAML: ${(e as Error).message.split('\n')[0]}`]);
  }
  if (!isObject(doc)) throw new ConfigError([`${source}: not a KubeProxyConfiguration object`]);
  if (doc.apiVersion !== API_VERSION || doc.kind !== KIND) {
    throw new ConfigError([`${source}: apiVersion/kind is ${JSON.stringify(doc.apiVersion)}/${JSON.stringify(doc.kind)}, want ${API_VERSION}/${KIND}`]);
  }
  const warnings: string[] = [];
  unknownFields(doc, SCHEMA, '', warnings);
  for (const [path, why] of Object.entries(NOT_ACTED_ON)) {
    if (!isUnset(at(doc, path), path)) warnings.push(`${path}: set, but not acted on: ${why}`);
  }
  return { doc, warnings };
}

function unknownFields(obj: Record<string, unknown>, schema: Schema, prefix: string, out: string[]): void {
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    const s = schema[k];
    if (s === undefined) out.push(`${path}: unknown field, ignored (field names are case-sensitive)`);
    else if (s !== 'leaf' && s !== 'map' && isObject(v)) unknownFields(v, s, path, out);
  }
}

/**
 * The agent's configuration: defaults, then the file (if any), then flags. Throws ConfigError listing every
 * invalid value with its path.
 */
export function resolveAgentConfig(file: Record<string, unknown> | undefined, flags: ConfigFlags = {}): AgentConfig {
  const doc = file ?? {};
  const problems: string[] = [];
  const bad = (path: string, value: unknown, why: string) => problems.push(`${path}: Invalid value: ${JSON.stringify(value)}: ${why}`);

  // mode
  const rawMode = flags.proxyMode ?? at(doc, 'mode') ?? '';
  let mode: ProxyMode = 'nftables';
  let modePath = 'iptables';
  if (rawMode === 'ipvs') {
    mode = 'ipvs';
    modePath = 'ipvs';
  } else if (rawMode === 'nftables') modePath = 'nftables';
  else if (rawMode === 'ebpf') {
    // svcplane's own value (kube-proxy has none): socket-level load balancing in front of the nftables table, whose
    // sync periods it takes (the nftables section of the file).
    mode = 'ebpf';
    modePath = 'nftables';
  } else if (rawMode !== '' && rawMode !== 'iptables') bad(flags.proxyMode !== undefined ? '--proxy-mode' : 'mode', rawMode, 'must be iptables, ipvs, nftables, ebpf (svcplane only) or blank (iptables and blank run svcplane\'s nftables dataplane)');

  // sync periods: the mode's section; 0 or absent means the default (except ipvs.minSyncPeriod).
  const syncFlag = mode === 'ipvs' ? flags.ipvsSyncPeriod : flags.iptablesSyncPeriod;
  const minFlag = mode === 'ipvs' ? flags.ipvsMinSyncPeriod : flags.iptablesMinSyncPeriod;
  const syncPeriodMs = duration(problems, syncFlag !== undefined ? flagName(mode, 'sync-period') : `${modePath}.syncPeriod`, syncFlag ?? at(doc, `${modePath}.syncPeriod`), 30_000, true);
  // minSyncPeriod: in the file, 0s is the default (1s; ipvs 0), as v1alpha1 defaulting makes it; a flag's 0 is 0.
  const minSyncPeriodMs = minFlag !== undefined
    ? duration(problems, flagName(mode, 'min-sync-period'), minFlag, 0, false)
    : duration(problems, `${modePath}.minSyncPeriod`, at(doc, `${modePath}.minSyncPeriod`), mode === 'ipvs' ? 0 : 1000, true);
  if (syncPeriodMs !== undefined && syncPeriodMs <= 0) bad(`${modePath}.syncPeriod`, formatGoDuration(syncPeriodMs), 'must be greater than 0');
  if (minSyncPeriodMs !== undefined && minSyncPeriodMs < 0) bad(`${modePath}.minSyncPeriod`, formatGoDuration(minSyncPeriodMs), 'must be greater than or equal to 0');
  if (syncPeriodMs !== undefined && minSyncPeriodMs !== undefined && syncPeriodMs > 0 && minSyncPeriodMs > syncPeriodMs) {
    bad(`${modePath}.syncPeriod`, formatGoDuration(minSyncPeriodMs), `must be greater than or equal to ${modePath}.minSyncPeriod`);
  }
  const configSyncPeriodMs = duration(problems, flags.configSyncPeriod !== undefined ? '--config-sync-period' : 'configSyncPeriod', flags.configSyncPeriod ?? at(doc, 'configSyncPeriod'), 15 * 60_000, true);
  if (configSyncPeriodMs !== undefined && configSyncPeriodMs <= 0) bad('configSyncPeriod', formatGoDuration(configSyncPeriodMs), 'must be greater than 0');

  // masqueradeAll: nftables.masqueradeAll in nftables mode, iptables.masqueradeAll otherwise (kube-proxy's conversion).
  const masqPath = mode === 'nftables' && rawMode === 'nftables' ? 'nftables.masqueradeAll' : 'iptables.masqueradeAll';
  const masqueradeAll = flags.masqueradeAll ?? bool(problems, masqPath, at(doc, masqPath), false);

  // clusterCIDR: one CIDR or a comma-separated dual-stack pair.
  const clusterCIDRs = flags.clusterCIDR ?? splitList(at(doc, 'clusterCIDR'));
  const cidrPath = flags.clusterCIDR ? '--cluster-cidr' : 'clusterCIDR';
  if (!flags.clusterCIDR && at(doc, 'clusterCIDR') !== undefined && typeof at(doc, 'clusterCIDR') !== 'string') bad(cidrPath, at(doc, 'clusterCIDR'), 'must be a string');
  if (clusterCIDRs.length > 2) bad(cidrPath, clusterCIDRs.join(','), 'must be a either a single CIDR or dual-stack pair of CIDRs');
  const families = new Set<number>();
  clusterCIDRs.forEach((c, i) => {
    const p = parseCIDR(c);
    if (!p) return bad(`${cidrPath}[${i}]`, c, 'must be a valid CIDR');
    if (families.has(p.family)) bad(cidrPath, clusterCIDRs.join(','), 'must be a either a single CIDR or dual-stack pair of CIDRs');
    families.add(p.family);
  });

  // detectLocalMode, validated as kube-proxy's validateDetectLocalMode / validateInterface do ("" is ClusterCIDR).
  const localModePath = flags.detectLocalMode !== undefined ? '--detect-local-mode' : 'detectLocalMode';
  const rawLocalMode = flags.detectLocalMode ?? at(doc, 'detectLocalMode') ?? '';
  let localDetect: LocalDetect = { mode: 'ClusterCIDR' };
  if (rawLocalMode !== '' && !(DETECT_LOCAL_MODES as readonly unknown[]).includes(rawLocalMode)) {
    bad(localModePath, rawLocalMode, 'supported values: "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix", ""');
  } else if (rawLocalMode === 'NodeCIDR') {
    localDetect = { mode: 'NodeCIDR' };
  } else if (rawLocalMode === 'BridgeInterface' || rawLocalMode === 'InterfaceNamePrefix') {
    const bridge = rawLocalMode === 'BridgeInterface';
    const flag = bridge ? flags.podBridgeInterface : flags.podInterfaceNamePrefix;
    const path = flag !== undefined ? (bridge ? '--pod-bridge-interface' : '--pod-interface-name-prefix') : `detectLocal.${bridge ? 'bridgeInterface' : 'interfaceNamePrefix'}`;
    const name = flag ?? at(doc, path) ?? '';
    // The kernel's interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
    if (typeof name !== 'string' || name === '') bad(path, name, 'must not be empty');
    else if (Buffer.byteLength(name) > 15 || /[\s/]/.test(name)) bad(path, name, 'must be an interface name (at most 15 bytes, no spaces or slashes)');
    else localDetect = bridge ? { mode: 'BridgeInterface', interfaceName: name } : { mode: 'InterfaceNamePrefix', interfacePrefix: name };
  }

  // nodePortAddresses: CIDRs, or "primary" alone.
  const npPath = flags.nodePortAddresses ? '--nodeport-addresses' : 'nodePortAddresses';
  const rawNP = flags.nodePortAddresses ?? at(doc, 'nodePortAddresses') ?? [];
  const nodePortAddresses: string[] = [];
  if (!Array.isArray(rawNP)) bad(npPath, rawNP, 'must be a list');
  else rawNP.forEach((a: unknown, i: number) => {
    if (a === 'primary') {
      if (rawNP.length > 1) bad(`${npPath}[${i}]`, a, 'can\'t use both \'primary\' and CIDRs');
      nodePortAddresses.push('primary');
    } else if (typeof a !== 'string' || !parseCIDR(a)) bad(`${npPath}[${i}]`, a, 'must be a valid CIDR');
    else nodePortAddresses.push(a);
  });

  const ipvsScheduler = flags.ipvsScheduler ?? str(problems, 'ipvs.scheduler', at(doc, 'ipvs.scheduler')) ?? '';
  if (ipvsScheduler !== '' && !IPVS_SCHEDULERS.includes(ipvsScheduler)) bad(flags.ipvsScheduler !== undefined ? '--ipvs-scheduler' : 'ipvs.scheduler', ipvsScheduler, `must be one of ${IPVS_SCHEDULERS.join(', ')}`);

  // The file's "" is the default (v1alpha1 defaulting; on IPv6 when bindAddress is IPv6); a flag's "" switches off.
  const v6 = typeof at(doc, 'bindAddress') === 'string' && parseIP(at(doc, 'bindAddress'))?.family === 6;
  const healthzDefault = v6 ? '[::]:10256' : '0.0.0.0:10256';
  const metricsDefault = v6 ? '[::1]:10249' : '127.0.0.1:10249';
  const healthzPort = port(problems, '--healthz-port', flags.healthzPort, 10256);
  const metricsPort = port(problems, '--metrics-port', flags.metricsPort, 10249);
  const healthzBindAddress = healthzPort === 0 ? '' : flags.healthzBindAddress !== undefined
    ? bindAddress(problems, '--healthz-bind-address', flags.healthzBindAddress, healthzDefault, healthzPort)
    : bindAddress(problems, 'healthzBindAddress', at(doc, 'healthzBindAddress') || undefined, healthzDefault, healthzPort);
  const metricsBindAddress = metricsPort === 0 ? '' : flags.metricsBindAddress !== undefined
    ? bindAddress(problems, '--metrics-bind-address', flags.metricsBindAddress, metricsDefault, metricsPort)
    : bindAddress(problems, 'metricsBindAddress', at(doc, 'metricsBindAddress') || undefined, metricsDefault, metricsPort);

  let hostnameOverride = flags.hostnameOverride ?? str(problems, 'hostnameOverride', at(doc, 'hostnameOverride')) ?? '';
  if (flags.hostnameOverride !== undefined && flags.hostnameOverride.trim() === '') bad('--hostname-override', flags.hostnameOverride, 'must not be empty');
  hostnameOverride = hostnameOverride.trim().toLowerCase();

  const kubeconfig = flags.kubeconfig ?? str(problems, 'clientConnection.kubeconfig', at(doc, 'clientConnection.kubeconfig')) ?? '';
  const fmt = at(doc, 'logging.format');
  let logFormat: 'json' | 'text' | undefined;
  if (fmt !== undefined && fmt !== '') {
    if (fmt === 'json' || fmt === 'text') logFormat = fmt;
    else bad('logging.format', fmt, 'Unsupported log format (json or text)');
  }

  const verbosity = at(doc, 'logging.verbosity');
  if (verbosity !== undefined && verbosity !== null && !(Number.isInteger(verbosity) && verbosity >= 0)) bad('logging.verbosity', verbosity, 'must be a verbosity level (0, 1, 2...)');
  const logVerbosity = Number.isInteger(verbosity) && verbosity > 0 ? (verbosity as number) : undefined;

  const ipvsBindMode = flags.ipvsBindMode ?? 'route';
  if (ipvsBindMode !== 'route' && ipvsBindMode !== 'address') bad('--ipvs-bind-mode', ipvsBindMode, 'must be route or address');

  const bindPath = flags.bindAddress !== undefined ? '--bind-address' : 'bindAddress';
  const rawBind = flags.bindAddress ?? at(doc, 'bindAddress') ?? '';
  let nodeIPOverride = '';
  if (rawBind !== '' && (typeof rawBind !== 'string' || !parseIP(rawBind))) bad(bindPath, rawBind, 'must be a valid IP address');
  else if (rawBind !== '' && rawBind !== '0.0.0.0' && !/^[:0]+$/.test(rawBind)) nodeIPOverride = canonicalIP(rawBind)!;

  const serviceCIDRs = flags.serviceCIDR ?? [];
  for (const c of serviceCIDRs) if (!parseCIDR(c)) bad('--service-cidr', c, 'must be a CIDR');

  if (problems.length) throw new ConfigError(problems);
  return {
    ipvsBindMode: ipvsBindMode as 'route' | 'address', serviceCIDRs, nodeIPOverride, cgroupRoot: flags.cgroupRoot, bpfRoot: flags.bpfRoot ?? '/sys/fs/bpf/svcplane',
    mode, clusterCIDRs, localDetect, nodePortAddresses, masqueradeAll, syncPeriodMs: syncPeriodMs!, minSyncPeriodMs: minSyncPeriodMs!,
    ipvsScheduler: ipvsScheduler || 'rr', healthzBindAddress, metricsBindAddress, hostnameOverride,
    configSyncPeriodMs: configSyncPeriodMs!, kubeconfig, logFormat, logVerbosity,
  };
}

/**
 * What kube-proxy would do with this configuration that svcplane does not, although nothing asked for it (so the
 * "set, but not acted on" warnings do not cover it): said once at start, never silently.
 */
export function kubeProxyDifferences(file: Record<string, unknown> | undefined, modeFlag: string | undefined): string[] {
  const doc = file ?? {};
  const notes: string[] = [];
  const mode = modeFlag ?? at(doc, 'mode') ?? '';
  if (mode === '' || mode === 'iptables') {
    let note = `mode "${mode}" runs svcplane's nftables dataplane (svcplane has no iptables mode)`;
    // kube-proxy's nftables mode made the same choice; route_localnet is what CVE-2020-8558 was about.
    if (at(doc, 'iptables.localhostNodePorts') !== false) {
      note += '; NodePorts are not served on 127.0.0.1: kube-proxy\'s iptables mode serves them by setting route_localnet=1, ' +
        'which also lets packets for 127.0.0.0/8 in from other hosts (CVE-2020-8558); its nftables mode does not serve them either';
    }
    notes.push(note);
  }
  if (isUnset(at(doc, 'conntrack'), 'conntrack')) {
    notes.push('conntrack sysctls are left as the node has them: kube-proxy would raise nf_conntrack_max to max(32768 x CPUs, ' +
      '131072) and set the TCP established and close-wait timeouts to 24h and 1h; set them on the node if the node relied on that');
  }
  return notes;
}

/** The effective configuration as a KubeProxyConfiguration document (--write-config-to). */
export function toKubeProxyConfiguration(c: AgentConfig): Record<string, unknown> {
  const sync = { syncPeriod: formatGoDuration(c.syncPeriodMs), minSyncPeriod: formatGoDuration(c.minSyncPeriodMs) };
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    mode: c.mode,
    clientConnection: { kubeconfig: c.kubeconfig },
    hostnameOverride: c.hostnameOverride,
    ...(c.nodeIPOverride ? { bindAddress: c.nodeIPOverride } : {}),
    clusterCIDR: c.clusterCIDRs.join(','),
    detectLocalMode: c.localDetect.mode,
    ...(c.localDetect.mode === 'BridgeInterface' ? { detectLocal: { bridgeInterface: c.localDetect.interfaceName } } : {}),
    ...(c.localDetect.mode === 'InterfaceNamePrefix' ? { detectLocal: { interfaceNamePrefix: c.localDetect.interfacePrefix } } : {}),
    nodePortAddresses: c.nodePortAddresses.length ? c.nodePortAddresses : null,
    healthzBindAddress: c.healthzBindAddress,
    metricsBindAddress: c.metricsBindAddress,
    configSyncPeriod: formatGoDuration(c.configSyncPeriodMs),
    nftables: c.mode === 'nftables' ? { masqueradeAll: c.masqueradeAll, ...sync } : {},
    ipvs: c.mode === 'ipvs' ? { scheduler: c.ipvsScheduler, ...sync } : { scheduler: c.ipvsScheduler },
    iptables: c.mode === 'ipvs' ? { masqueradeAll: c.masqueradeAll } : {},
    ...(c.logFormat || c.logVerbosity ? { logging: { ...(c.logFormat ? { format: c.logFormat } : {}), ...(c.logVerbosity ? { verbosity: c.logVerbosity } : {}) } } : {}),
  };
}

// ---- helpers -----------------------------------------------------------------------------------------------------

function flagName(mode: ProxyMode, what: string): string {
  return `--${mode === 'ipvs' ? 'ipvs' : 'iptables'}-${what}`;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * kube-proxy's defaults for the fields svcplane does not act on: a field holding its default was not "set" (kubeadm
 * writes bindAddress 0.0.0.0; kind writes conntrack's defaults out in full).
 */
const NOT_ACTED_ON_DEFAULTS: Record<string, unknown[]> = {
  bindAddress: ['0.0.0.0', '::'], oomScoreAdj: [-999], 'iptables.masqueradeBit': [14], 'nftables.masqueradeBit': [14],
  'iptables.localhostNodePorts': [true], 'clientConnection.contentType': ['application/vnd.kubernetes.protobuf'],
  'clientConnection.qps': [5], 'clientConnection.burst': [10], 'clientConnection.kubeconfig': [undefined],
  'conntrack.maxPerCore': [32768], 'conntrack.min': [131072], 'conntrack.tcpEstablishedTimeout': ['24h0m0s', '24h'],
  'conntrack.tcpCloseWaitTimeout': ['1h0m0s', '1h'],
};

/**
 * Absent, zero (null, "", false, 0, "0s", [], {}) or kube-proxy's default, field by field: what kubeadm's
 * generated ConfigMap holds for everything it does not set. clientConnection.kubeconfig is read, so it never
 * counts as set here.
 */
function isUnset(v: unknown, path: string): boolean {
  if (path === 'clientConnection.kubeconfig') return true;
  if (v === undefined || v === null || v === '' || v === false || v === 0 || v === '0') return true;
  if (typeof v === 'string' && parseGoDuration(v) === 0) return true;
  if (NOT_ACTED_ON_DEFAULTS[path]?.includes(v)) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isObject(v)) return Object.entries(v).every(([k, x]) => isUnset(x, `${path}.${k}`));
  return false;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function at(doc: Record<string, unknown>, path: string): any {
  let cur: unknown = doc;
  for (const k of path.split('.')) {
    if (!isObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function duration(problems: string[], path: string, v: unknown, def: number, zeroIsUnset: boolean): number | undefined {
  if (v === undefined || v === null || v === '') return def;
  if (typeof v !== 'string') {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a duration string such as "30s" or "1m0s"`);
    return undefined;
  }
  const ms = parseGoDuration(v);
  if (ms === undefined) {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: not a duration (examples: "30s", "1m0s", "250ms")`);
    return undefined;
  }
  return ms === 0 && zeroIsUnset ? def : ms;
}

function bool(problems: string[], path: string, v: unknown, def: boolean): boolean {
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be true or false`);
    return def;
  }
  return v;
}

function str(problems: string[], path: string, v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a string`);
    return undefined;
  }
  return v;
}

function splitList(v: unknown): string[] {
  return typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];
}

/** host:port with an IP host; a bare IP gets the default port (kube-proxy's AppendPortIfNeeded); "" disables. */
function bindAddress(problems: string[], path: string, v: unknown, def: string, defPort: number): string {
  if (v === undefined || v === null) return def;
  if (typeof v !== 'string') {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be IP:port`);
    return def;
  }
  if (v === '') return '';
  let text = v;
  if (parseIP(text.replace(/^\[|\]$/g, ''))) text = text.includes(':') && !text.startsWith('[') ? `[${text}]:${defPort}` : `${text}:${defPort}`;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m) {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be IP:port`);
    return def;
  }
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (!parseIP(host)) problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a valid IP`);
  if (!(port >= 1 && port <= 65535)) problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a valid port`);
  return text;
}

/** A port flag: 0-65535 (0: off), or `def` when not given. */
function port(problems: string[], path: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!(n >= 0 && n <= 65535)) {
    problems.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a port (0 switches the server off)`);
    return def;
  }
  return n;
}

/** Splits "host:port" (IPv6 in brackets) for listen(). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  if (!m) throw new Error(`not host:port: ${addr}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}
