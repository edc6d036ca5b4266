// `svcplane run`'s flags: every flag of kube-proxy's current release (cmd/kube-proxy/app/options.go, Linux; the
// component-base logging and version flags; cadvisor's two id-file flags that kube-proxy's binary also carries), in
// kube-proxy's spellings, so a DaemonSet written for kube-proxy starts. Those svcplane acts on are honoured; the
// rest are accepted and said at start, once, to have no effect, with the reason (`noEffect`). Then svcplane's own.
// Windows-only flags are not here: kube-proxy on Linux does not register them either.
import type { FlagSpec } from './args';
import { BPF_ROOT, CGROUP_ROOT, CLUSTER_CIDR, IPVS_BIND_MODE, IPVS_SCHEDULER, MASQUERADE_ALL, SERVICE_CIDR } from './flags';

const CONNTRACK = 'svcplane does not tune conntrack sysctls; set them on the node';
const IPVS_TIMEOUTS = 'IPVS timeouts are left at the system values';
const LOG_BUFFERS = 'svcplane writes each log line at once, unbuffered, to stderr';

export const KUBE_PROXY_FLAGS: FlagSpec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: 'a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file, e.g. kube-proxy\'s ConfigMap; flags override it' },
  { name: 'write-config-to', type: 'string', value: 'FILE', help: 'write the effective configuration as a KubeProxyConfiguration to FILE and exit' },
  { name: 'cleanup', type: 'boolean', help: 'remove everything svcplane programmed and exit' },
  { name: 'init-only', type: 'boolean', help: 'check the configuration and exit 0 (kube-proxy\'s privileged set-up step; svcplane needs none apart from starting)' },
  { name: 'kubeconfig', type: 'string', value: 'FILE', help: 'kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster config)' },
  { name: 'master', type: 'string', value: 'URL', help: 'the API server\'s address, e.g. https://10.0.0.1:6443: replaces the kubeconfig\'s (or the in-cluster one, a ClusterIP nothing routes before svcplane syncs), keeping their credentials' },
  { name: 'kube-api-content-type', type: 'string', value: 'TYPE', help: 'content type of requests to the API server', noEffect: 'svcplane reads JSON' },
  { name: 'kube-api-qps', type: 'string', value: 'QPS', help: 'client-side request rate limit', noEffect: 'svcplane makes three long-lived watches, not a stream of requests' },
  { name: 'kube-api-burst', type: 'string', value: 'N', help: 'client-side request burst', noEffect: 'svcplane makes three long-lived watches, not a stream of requests' },
  { name: 'hostname-override', type: 'string', value: 'NAME', help: 'this node\'s name (default: the hostname)' },
  { name: 'bind-address', type: 'string', value: 'IP', help: 'overrides this node\'s primary IP of its family (unless 0.0.0.0 or ::), as kube-proxy: for loadBalancerSourceRanges and nodePortAddresses "primary"; binds nothing' },
  { name: 'bind-address-hard-fail', type: 'boolean', help: 'fail when a server cannot bind', noEffect: 'svcplane always fails when it cannot bind its servers' },
  { name: 'healthz-bind-address', type: 'string', value: 'IP:PORT', help: '/healthz and /livez address ("" disables; default 0.0.0.0:10256)' },
  { name: 'healthz-port', type: 'string', value: 'PORT', help: 'deprecated (kube-proxy): the port for a healthz address given without one; 0 disables the server' },
  { name: 'metrics-bind-address', type: 'string', value: 'IP:PORT', help: '/metrics address ("" disables; default 127.0.0.1:10249)' },
  { name: 'metrics-port', type: 'string', value: 'PORT', help: 'deprecated (kube-proxy): the port for a metrics address given without one; 0 disables the server' },
  { name: 'profiling', type: 'boolean', help: 'kube-proxy: /debug/pprof on the metrics server', noEffect: 'svcplane serves no profiling endpoints' },
  { name: 'show-hidden-metrics-for-version', type: 'string', value: 'VERSION', help: 'kube-proxy: re-enable deprecated metrics', noEffect: 'svcplane has no hidden metrics' },
  { name: 'proxy-mode', type: 'string', value: 'MODE', help: 'nftables, ipvs or ebpf (svcplane only: socket-level load balancing, nftables for the rest); iptables and "" run nftables; default nftables' },
  MASQUERADE_ALL,
  { name: 'iptables-masquerade-bit', type: 'string', value: 'BIT', help: 'kube-proxy: the fwmark bit for masquerading', noEffect: 'svcplane masquerades without a packet mark' },
  { name: 'iptables-localhost-nodeports', type: 'boolean', help: 'kube-proxy (iptables mode): NodePorts on 127.0.0.1', noEffect: 'NodePorts are not served on 127.0.0.1 (route_localnet; as kube-proxy\'s nftables mode)' },
  { name: 'iptables-sync-period', type: 'string', value: 'DURATION', help: 'full resync period, e.g. 30s (nftables mode, as in kube-proxy)' },
  { name: 'iptables-min-sync-period', type: 'string', value: 'DURATION', help: 'least time between syncs, e.g. 1s; 0 syncs every change at once (nftables mode)' },
  { name: 'ipvs-sync-period', type: 'string', value: 'DURATION', help: 'full resync period (ipvs mode)' },
  { name: 'ipvs-min-sync-period', type: 'string', value: 'DURATION', help: 'least time between syncs (ipvs mode)' },
  IPVS_SCHEDULER,
  { name: 'ipvs-exclude-cidrs', type: 'list', value: 'CIDR', help: 'kube-proxy: IPVS virtual services in these CIDRs are left alone', noEffect: 'svcplane only ever touches the virtual services it created' },
  { name: 'ipvs-strict-arp', type: 'boolean', help: 'kube-proxy: arp_ignore=1, arp_announce=2', noEffect: 'svcplane binds Service addresses on its own interface; set arp_ignore/arp_announce on the node if you need them' },
  { name: 'ipvs-tcp-timeout', type: 'string', value: 'DURATION', help: 'IPVS TCP idle timeout', noEffect: IPVS_TIMEOUTS },
  { name: 'ipvs-tcpfin-timeout', type: 'string', value: 'DURATION', help: 'IPVS TCP FIN_WAIT timeout', noEffect: IPVS_TIMEOUTS },
  { name: 'ipvs-udp-timeout', type: 'string', value: 'DURATION', help: 'IPVS UDP timeout', noEffect: IPVS_TIMEOUTS },
  { name: 'detect-local-mode', type: 'string', value: 'MODE', help: 'how traffic from local pods is told apart: ClusterCIDR (default), NodeCIDR (the Node\'s spec.podCIDRs), BridgeInterface, InterfaceNamePrefix' },
  { name: 'pod-bridge-interface', type: 'string', value: 'NAME', help: 'detect-local-mode BridgeInterface: traffic arriving on this bridge is from local pods' },
  { name: 'pod-interface-name-prefix', type: 'string', value: 'PREFIX', help: 'detect-local-mode InterfaceNamePrefix: traffic arriving on interfaces named PREFIX* is from local pods' },
  CLUSTER_CIDR,
  { name: 'nodeport-addresses', type: 'list', value: 'CIDR', help: 'NodePorts answer only on local addresses in these CIDRs, or "primary" (the Node\'s primary IPs)' },
  { name: 'oom-score-adj', type: 'string', value: 'N', help: 'kube-proxy: its own OOM score', noEffect: 'set the OOM score in the DaemonSet (svcplane does not change its own)' },
  { name: 'conntrack-max-per-core', type: 'string', value: 'N', help: 'nf_conntrack_max per CPU', noEffect: CONNTRACK },
  { name: 'conntrack-min', type: 'string', value: 'N', help: 'least nf_conntrack_max', noEffect: CONNTRACK },
  { name: 'conntrack-tcp-timeout-established', type: 'string', value: 'DURATION', help: 'nf_conntrack_tcp_timeout_established', noEffect: CONNTRACK },
  { name: 'conntrack-tcp-timeout-close-wait', type: 'string', value: 'DURATION', help: 'nf_conntrack_tcp_timeout_close_wait', noEffect: CONNTRACK },
  { name: 'conntrack-tcp-be-liberal', type: 'boolean', help: 'nf_conntrack_tcp_be_liberal', noEffect: CONNTRACK },
  { name: 'conntrack-udp-timeout', type: 'string', value: 'DURATION', help: 'nf_conntrack_udp_timeout', noEffect: CONNTRACK },
  { name: 'conntrack-udp-timeout-stream', type: 'string', value: 'DURATION', help: 'nf_conntrack_udp_timeout_stream', noEffect: CONNTRACK },
  { name: 'config-sync-period', type: 'string', value: 'DURATION', help: 'kube-proxy\'s informer resync period (validated; svcplane\'s state is event-driven)' },
  { name: 'feature-gates', type: 'map', value: 'KEY=BOOL,...', help: 'kube-proxy\'s feature gates (parsed and reported)', noEffect: 'svcplane has no feature gates; what kube-proxy gates, svcplane either does or says it does not' },
  { name: 'logging-format', type: 'string', value: 'FORMAT', help: 'text or json (kube-proxy\'s name for --log-format)', choices: ['text', 'json'] },
  { name: 'v', short: 'v', type: 'string', value: 'LEVEL', help: 'log verbosity: 0-3 info and above, 4 and more adds debug (watch and transaction detail)' },
  { name: 'vmodule', type: 'string', value: 'PATTERN=N,...', help: 'per-file verbosity', noEffect: 'svcplane has one verbosity' },
  { name: 'log-flush-frequency', type: 'string', value: 'DURATION', help: 'log flush period', noEffect: LOG_BUFFERS },
  { name: 'log-text-split-stream', type: 'boolean', help: 'info to stdout, errors to stderr', noEffect: LOG_BUFFERS },
  { name: 'log-text-info-buffer-size', type: 'string', value: 'SIZE', help: 'info buffer', noEffect: LOG_BUFFERS },
  { name: 'log-json-split-stream', type: 'boolean', help: 'info to stdout, errors to stderr', noEffect: LOG_BUFFERS },
  { name: 'log-json-info-buffer-size', type: 'string', value: 'SIZE', help: 'info buffer', noEffect: LOG_BUFFERS },
  { name: 'boot-id-file', type: 'string', value: 'FILES', help: 'cadvisor\'s flag, carried by kube-proxy\'s binary', noEffect: 'unused by kube-proxy too' },
  { name: 'machine-id-file', type: 'string', value: 'FILES', help: 'cadvisor\'s flag, carried by kube-proxy\'s binary', noEffect: 'unused by kube-proxy too' },
  { name: 'version', type: 'boolean', help: 'print the version, commit and the addon\'s libnftnl/libmnl versions, and exit' },
];

/** svcplane's own `run` flags (not kube-proxy's). */
export const SVCPLANE_RUN_FLAGS: FlagSpec[] = [SERVICE_CIDR, IPVS_BIND_MODE, CGROUP_ROOT, BPF_ROOT];
