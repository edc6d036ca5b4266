// Flags more than one command takes, defined once: `sync` and `run` share the dataplane settings, every command the
// namespace, output, log and help flags. (kube-proxy's own flags for `run` are in runFlags.ts, which uses these.)
import type { FlagSpec } from './args';

export const MODE: FlagSpec = { name: 'mode', type: 'string', value: 'MODE', help: 'dataplane: nftables, ipvs or ebpf (socket-level load balancing for connections from this node, nftables for the rest)', default: 'nftables', choices: ['nftables', 'ipvs', 'ebpf'] };
export const OUTPUT: FlagSpec = { name: 'output', type: 'string', value: 'FORMAT', help: 'text or json', default: 'text', choices: ['text', 'json'] };
export const NETNS: FlagSpec = { name: 'netns', type: 'string', value: 'FILE', help: 'program the network namespace at FILE (e.g. /run/netns/node) instead of the current one' };
export const HELP: FlagSpec = { name: 'help', short: 'h', type: 'boolean', help: 'show this help' };
export const LOG: FlagSpec = { name: 'log-format', type: 'string', value: 'FORMAT', help: 'text (klog\'s layout, the default) or json (kube-proxy\'s spelling: --logging-format)', choices: ['json', 'text'] };

export const CLUSTER_CIDR: FlagSpec = { name: 'cluster-cidr', type: 'list', value: 'CIDR', help: 'pod CIDR(s), one per family: traffic from outside them to a ClusterIP is masqueraded (detectLocalMode ClusterCIDR)' };
export const MASQUERADE_ALL: FlagSpec = { name: 'masquerade-all', type: 'boolean', help: 'masquerade all traffic to Service addresses' };
export const SERVICE_CIDR: FlagSpec = { name: 'service-cidr', type: 'list', value: 'CIDR', help: 'svcplane only: the cluster\'s Service CIDR(s) (the API server\'s --service-cluster-ip-range): new traffic to an address in them that no Service holds is dropped, as kube-proxy does with the ServiceCIDR objects it watches (`run` watches them too and adds these: clusters before Kubernetes 1.33 have none)' };
export const IPVS_SCHEDULER: FlagSpec = { name: 'ipvs-scheduler', type: 'string', value: 'NAME', help: 'ipvs mode: the default scheduler (rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq, mh); per Service: annotation svcplane.io/ipvs-scheduler' };
export const IPVS_BIND_MODE: FlagSpec = { name: 'ipvs-bind-mode', type: 'string', value: 'MODE', help: 'svcplane only, ipvs mode: make Service addresses local on svcplane0 as local routes ("route", default: O(1) each) or as addresses ("address", as kube-proxy does on kube-ipvs0; O(n) each in the kernel)', choices: ['route', 'address'] };
export const CGROUP_ROOT: FlagSpec = { name: 'cgroup-root', type: 'string', value: 'DIR', help: 'ebpf mode: the cgroup v2 directory the socket hooks attach to (default: the cgroup2 mount, i.e. every process of the node)' };
export const BPF_ROOT: FlagSpec = { name: 'bpf-root', type: 'string', value: 'DIR', help: 'ebpf mode: the bpffs directory svcplane pins its maps and links in', default: '/sys/fs/bpf/svcplane' };
