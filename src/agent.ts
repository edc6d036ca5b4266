// `svcplane run`: the node agent. Watches Services, EndpointSlices, ServiceCIDRs and this Node; syncs the dataplane through the
// SyncLoop; serves health and metrics. Stopping (SIGTERM) stops the watches and leaves the dataplane programmed,
// so traffic keeps flowing until the next agent adopts it.
import { IpvsClient } from './dataplane/ipvs/client';
import { ServiceHealthServers } from './server/serviceHealth';
import { ConntrackCleaner } from './dataplane/conntrack';
import { IpvsProxier } from './dataplane/ipvs/proxier';
import { readNodeAddresses } from './dataplane/nodeAddresses';
import { EbpfProxier } from './dataplane/ebpf/proxier';
import { LibbpfKernel, defaultObjectPath } from './dataplane/ebpf/kernel';
import { cgroupRoot } from './dataplane/ebpf/cgroup';
import { removeEbpfLeftovers } from './dataplane/ebpf/leftovers';
import { removeIpvsLeftovers } from './dataplane/ipvs/leftovers';
import { defaultIpvsConfig } from './dataplane/ipvs/config';
import { NetlinkNftClient } from './dataplane/nftables/client';
import { NftablesProxier } from './dataplane/nftables/proxier';
import { defaultConfig } from './dataplane/nftables/rules/config';
import type { Dataplane } from './dataplane/types';
import type { AgentConfig } from './config/kubeProxyConfig';
import { Reflector, type ReflectorHandlers, type WatchObject } from './k8s/reflector';
import { cidrToString, parseCIDR } from './model/ip';
import { EventRecorder } from './k8s/events';
import { nodeInfoOf, type NodeInfo } from './k8s/node';
import type { ApiTransport } from './k8s/transport';
import type { Logger } from './log';
import type { KubeEndpointSlice, KubeService } from './model/types';
import { ProxyHealth } from './server/health';
import { startHealthServer, startMetricsServer, type RunningServer } from './server/http';
import { ProxyMetrics } from './server/metrics';
import { realClock, type Clock } from './sync/clock';
import { SyncLoop } from './sync/syncLoop';

/**
 * kube-proxy's informer label selector: Services (and their slices) that name another proxy through
 * service.kubernetes.io/service-proxy-name are not ours, and headless ones have nothing to proxy.
 */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

export interface AgentOptions {
  config: AgentConfig;
  nodeName: string;
  api: ApiTransport;
  log: Logger;
  /** Program this network namespace (a /run/netns file) instead of the agent's own. */
  netns?: string;
  clock?: Clock;
  /** Reflector tuning (tests shorten backoffs). */
  backoff?: { initialMs: number; maxMs: number };
  /** How long to wait for this Node's addresses when NodePorts follow them (nodePortAddresses: primary). */
  nodeAddressWaitMs?: number;
}

/** The Node's addresses not known after this long (nodePortAddresses: primary): exit 1, so the kubelet retries. */
export const NODE_ADDRESS_WAIT_MS = 120_000;
/** While waiting for them, say so this often. */
const NODE_WAIT_LOG_MS = 15_000;

export class Agent {
  readonly metrics = new ProxyMetrics({ processMetrics: true });
  readonly health: ProxyHealth;
  loop: SyncLoop | undefined;
  dataplane: Dataplane | undefined;
  node: NodeInfo | undefined;
  private readonly reflectors: Reflector[] = [];
  private readonly servers: RunningServer[] = [];
  /** Waiting for this Node to have something (addresses, podCIDRs): each resolved once its test holds. */
  private nodeWaiters: Array<{ test(n: NodeInfo): boolean; resolve(): void }> = [];
  private nodeListed: (() => void) | undefined;
  private serviceHealth: ServiceHealthServers | undefined;
  events: EventRecorder | undefined;
  /** ServiceCIDR objects by name: their spec.cidrs. */
  private readonly serviceCIDRObjects = new Map<string, string[]>();
  /** The Service CIDRs the dataplane was given. */
  private appliedServiceCIDRs: string[] = [];
  healthAddress = '';
  metricsAddress = '';
  /** stop() was called: a start() still waiting (for the API server, for this Node) gives up at once. */
  private readonly stopping = new AbortController();

  constructor(private readonly o: AgentOptions) {
    this.health = new ProxyHealth(o.clock ?? realClock, 2 * o.config.syncPeriodMs);
    o.api.onRequest = (r) => {
      this.metrics.restRequests.inc({ code: r.code, host: r.host, method: r.verb });
      this.metrics.restRequestDuration.observe({ host: r.host, verb: r.verb }, r.seconds);
    };
  }

  async start(): Promise<void> {
    const { config, log } = this.o;
    if (config.healthzBindAddress) {
      const s = await startHealthServer(config.healthzBindAddress, this.health, this.metrics);
      this.servers.push(s);
      this.healthAddress = s.address;
    }
    if (config.metricsBindAddress) {
      const s = await startMetricsServer(config.metricsBindAddress, this.metrics, config.mode);
      this.servers.push(s);
      this.metricsAddress = s.address;
    }
    log.info('starting', { mode: config.mode, node: this.o.nodeName, apiServer: this.o.api.server, credentials: this.o.api.source, healthz: this.healthAddress, metrics: this.metricsAddress, minSyncPeriodMs: config.minSyncPeriodMs, syncPeriodMs: config.syncPeriodMs });

    // This Node first: its addresses decide where NodePorts listen when nodePortAddresses is "primary".
    // The Node's first list (found or not) before the dataplane: its zone decides topology from the first sync.
    const nodeListed = new Promise<void>((r) => (this.nodeListed = r));
    this.watch('/api/v1/nodes', 'nodes', { fieldSelector: `metadata.name=${this.o.nodeName}` }, {
      listPage: (items, first) => {
        if (first || items.length) this.onNode(items[0]);
        this.nodeListed?.();
      },
      listDone: () => undefined,
      event: (type, obj) => this.onNode(type === 'DELETED' ? undefined : obj),
    });
    let nodePortAddresses = config.nodePortAddresses;
    if (nodePortAddresses.length === 1 && nodePortAddresses[0] === 'primary') {
      if (!config.nodeIPOverride) {
        log.info('waiting for this Node\'s addresses (nodePortAddresses: primary)', { node: this.o.nodeName });
        if (!(await this.waitForNode((n) => n.primaryIPs.length > 0, 'nodePortAddresses "primary"', 'this Node has no InternalIP or ExternalIP address yet'))) return;
      } else if (!(await this.unlessStopped(nodeListed))) return;
      nodePortAddresses = this.primaryIPs().map((ip) => (ip.includes(':') ? `${ip}/128` : `${ip}/32`));
      log.info('NodePorts on the node\'s primary addresses', { addresses: nodePortAddresses });
    }

    // How pods are told from the rest (detectLocalMode): NodeCIDR needs this Node's podCIDRs first (kube-proxy waits
    // for them too); an interface mode needs nothing from the API.
    const local = config.localDetect;
    let clusterCIDRs = config.clusterCIDRs;
    if (local.mode === 'NodeCIDR') {
      log.info('waiting for this Node\'s podCIDRs (detectLocalMode NodeCIDR)', { node: this.o.nodeName });
      if (!(await this.waitForNode((n) => n.podCIDRs.length > 0, 'detectLocalMode NodeCIDR', 'this Node has no spec.podCIDRs yet'))) return;
      clusterCIDRs = this.node!.podCIDRs;
    }
    const podInterface = local.mode === 'BridgeInterface' ? { name: local.interfaceName, prefix: false }
      : local.mode === 'InterfaceNamePrefix' ? { name: local.interfacePrefix, prefix: true } : undefined;
    log.info('traffic from this node\'s pods is told by', {
      detectLocalMode: local.mode,
      ...(podInterface ? { interface: podInterface.prefix ? `${podInterface.name}*` : podInterface.name } : { cidrs: clusterCIDRs }),
    });
    const serviceCIDRsKnown = this.watchServiceCIDRs();
    if (!(await this.unlessStopped(Promise.all([nodeListed, serviceCIDRsKnown])))) return;
    const serviceCIDRs = this.serviceCIDRs();
    this.appliedServiceCIDRs = serviceCIDRs;
    log.info('this node\'s primary IPs (loadBalancerSourceRanges, nodePortAddresses "primary")', { ips: this.primaryIPs(), from: config.nodeIPOverride ? 'bindAddress, then the Node' : 'the Node' });
    if (serviceCIDRs.length) log.info('Service CIDRs: new traffic to their addresses that no Service holds is dropped', { cidrs: serviceCIDRs });
    const nodeZone = this.node?.zone;
    if (nodeZone) log.info('this Node\'s zone (topology hints)', { zone: nodeZone });
    const netns = this.o.netns ? { netns: this.o.netns } : {};
    const conntrack = new ConntrackCleaner(netns);
    if (config.mode === 'ipvs') {
      this.dataplane = new IpvsProxier(new IpvsClient(netns), new NetlinkNftClient(netns), defaultIpvsConfig({
        scheduler: config.ipvsScheduler, nodePortAddresses, clusterCIDRs, podInterface, masqueradeAll: config.masqueradeAll, nodeName: this.o.nodeName, nodeZone,
        nodeIPs: this.primaryIPs(), serviceCIDRs,
        bindMode: config.ipvsBindMode,
      }), log, conntrack, this.o.clock ?? realClock);
    } else {
      const nft = new NftablesProxier(
        new NetlinkNftClient(netns),
        defaultConfig({ clusterCIDRs, podInterface, nodePortAddresses, masqueradeAll: config.masqueradeAll, nodeName: this.o.nodeName, nodeZone, nodeIPs: this.primaryIPs(), serviceCIDRs }),
        log,
        conntrack,
      );
      if (config.mode === 'ebpf') {
        const kernel = new LibbpfKernel({ object: defaultObjectPath(), root: config.bpfRoot, cgroup: () => cgroupRoot(config.cgroupRoot) });
        this.dataplane = new EbpfProxier(kernel, nft, { nodePortAddresses, node: { name: this.o.nodeName, zone: nodeZone }, nodeAddresses: () => readNodeAddresses(this.o.netns) }, log);
      } else this.dataplane = nft;
    }
    // What the kernel accepts decides the ruleset's shape: said once, here. A kernel this mode cannot run on stops
    // the agent now, with the reason in words, rather than failing every sync.
    if (config.mode !== 'ebpf') removeEbpfLeftovers(config.bpfRoot, log);
    if (config.mode !== 'ipvs') await removeIpvsLeftovers(this.o.netns, undefined, log);
    const kernel = await this.dataplane.prepare?.();
    if (this.stopping.signal.aborted) return;
    // conntrack netlink (stale UDP entries): said once if missing, never fatal.
    const ct = await conntrack.check();
    if (ct) log.warn('conntrack netlink does not answer (nf_conntrack_netlink not loaded?): stale UDP conntrack entries will not be deleted when endpoints go', { error: ct });
    else log.detail('conntrack netlink answers (stale UDP entries are deleted)');
    if (kernel) {
      const missing = kernel.constructs.filter((c) => !c.supported).map((c) => c.id);
      log.info('nf_tables: ruleset shape chosen for this kernel', { kernel: kernel.release, shape: kernel.shape, missing });
    }
    // Events, as kube-proxy posts them: "Starting" on this Node now, a Warning on each object skipped (events.ts).
    this.events = new EventRecorder(this.o.api, { node: this.o.nodeName, log });
    this.events.starting();
    // healthCheckNodePorts listen in this process's network namespace (the host's, in a DaemonSet), as kube-proxy's.
    this.serviceHealth = new ServiceHealthServers(this.health, this.o.nodeName, log);
    const loop = new SyncLoop({
      dataplane: this.dataplane, clock: this.o.clock ?? realClock, log, metrics: this.metrics, health: this.health,
      minSyncPeriodMs: config.minSyncPeriodMs, syncPeriodMs: config.syncPeriodMs, nodeName: this.o.nodeName, serviceHealth: this.serviceHealth,
      onProblems: (problems) => problems.forEach((p) => this.events?.problem(p)),
    });
    this.loop = loop;
    this.watch('/api/v1/services', 'services', { labelSelector: PROXY_LABEL_SELECTOR }, {
      listPage: (items, first) => loop.onServicesPage(items as KubeService[], first),
      listDone: () => loop.onServicesListDone(),
      event: (type, obj) => loop.onService(type, obj as KubeService),
    });
    this.watch('/apis/discovery.k8s.io/v1/endpointslices', 'endpointslices', { labelSelector: PROXY_LABEL_SELECTOR }, {
      listPage: (items, first) => loop.onSlicesPage(items as KubeEndpointSlice[], first),
      listDone: () => loop.onSlicesListDone(),
      event: (type, obj) => loop.onSlice(type, obj as KubeEndpointSlice),
    });
  }

  /**
   * ServiceCIDR objects (networking.k8s.io/v1, Kubernetes 1.33+): their spec.cidrs, with --service-cidr, are the
   * ranges whose unallocated addresses are dropped (kube-proxy's ServiceCIDRConfig: the union of every object's
   * cidrs, also of one being deleted until it is gone). Resolves once the first list is in, or when it cannot come
   * (a server without the resource, RBAC without it: said once, and --service-cidr alone is used; a failing API
   * server: the other watches say so, and a later list applies them). Changes afterwards resync.
   */
  private watchServiceCIDRs(): Promise<void> {
    let known!: () => void;
    const p = new Promise<void>((r) => (known = r));
    const byName = this.serviceCIDRObjects;
    let fresh: Map<string, string[]> | undefined;
    const apply = () => {
      known();
      const cidrs = this.serviceCIDRs();
      if (!this.dataplane?.setServiceCIDRs || cidrs.join() === this.appliedServiceCIDRs.join()) return;
      this.o.log.info('Service CIDRs changed: full resync', { before: this.appliedServiceCIDRs, after: cidrs });
      this.dataplane.setServiceCIDRs(cidrs);
      this.appliedServiceCIDRs = cidrs;
      this.loop?.resync();
    };
    const cidrsOf = (o: WatchObject) => {
      const spec = o.spec as { cidrs?: unknown } | undefined;
      return Array.isArray(spec?.cidrs) ? spec.cidrs.filter((c): c is string => typeof c === 'string' && parseCIDR(c) !== undefined) : [];
    };
    this.watch('/apis/networking.k8s.io/v1/servicecidrs', 'servicecidrs', {}, {
      listPage: (items, first) => {
        if (first) fresh = new Map();
        for (const o of items) fresh!.set(String(o.metadata?.name), cidrsOf(o));
      },
      listDone: () => {
        byName.clear();
        for (const [k, v] of fresh ?? []) byName.set(k, v);
        fresh = undefined;
        apply();
      },
      event: (type, o) => {
        if (type === 'DELETED') byName.delete(String(o.metadata?.name));
        else byName.set(String(o.metadata?.name), cidrsOf(o));
        apply();
      },
      failing: () => known(),
      unavailable: (code, message) => {
        this.o.log[code === 403 ? 'warn' : 'info'](code === 403
          ? 'not allowed to list ServiceCIDRs (add networking.k8s.io servicecidrs get/list/watch to svcplane\'s ClusterRole, deploy/kubernetes/rbac.yaml, and restart): unallocated ClusterIPs are dropped only within --service-cidr'
          : 'this API server has no ServiceCIDR objects (networking.k8s.io/v1, Kubernetes 1.33+): unallocated ClusterIPs are dropped only within --service-cidr',
          { serviceCIDRs: this.o.config.serviceCIDRs, error: message });
        known();
        return true;
      },
    });
    return p;
  }

  /**
   * This node's primary IPs, one per family, primary family first: the Node's, with bindAddress (when given) in
   * place of its family's and first (kube-proxy's detectNodeIPs).
   */
  private primaryIPs(): string[] {
    const fromNode = this.node?.primaryIPs ?? [];
    const o = this.o.config.nodeIPOverride;
    if (!o) return fromNode;
    return [o, ...fromNode.filter((ip) => ip.includes(':') !== o.includes(':'))];
  }

  /** --service-cidr and every ServiceCIDR object's ranges, canonical, sorted, once each. */
  private serviceCIDRs(): string[] {
    const all = new Set<string>();
    for (const c of [...this.o.config.serviceCIDRs, ...[...this.serviceCIDRObjects.values()].flat()]) {
      const p = parseCIDR(c);
      if (p) all.add(cidrToString(p));
    }
    return [...all].sort();
  }

  /** Resolves true when `p` does, false as soon as stop() is called. */
  private unlessStopped(p: Promise<unknown>): Promise<boolean> {
    const signal = this.stopping.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onStop = () => resolve(false);
      signal.addEventListener('abort', onStop, { once: true });
      p.then(() => {
        signal.removeEventListener('abort', onStop);
        resolve(true);
      });
    });
  }

  /**
   * Waits for this Node to have what `purpose` needs (its addresses for nodePortAddresses "primary", its podCIDRs for
   * detectLocalMode NodeCIDR), bounded: a warning every NODE_WAIT_LOG_MS saying what is missing, and after
   * nodeAddressWaitMs an error (the agent exits 1 and the kubelet restarts it) rather than an agent that is up,
   * healthy by its probes, and programs nothing. False if stopped meanwhile.
   */
  private async waitForNode(test: (n: NodeInfo) => boolean, purpose: string, lacking: string): Promise<boolean> {
    const limit = this.o.nodeAddressWaitMs ?? NODE_ADDRESS_WAIT_MS;
    let got = false;
    const nodeReady = this.node && test(this.node) ? Promise.resolve() : new Promise<void>((resolve) => this.nodeWaiters.push({ test, resolve }));
    void nodeReady.then(() => (got = true));
    const start = Date.now();
    const ready = this.unlessStopped(nodeReady);
    for (;;) {
      const left = limit - (Date.now() - start);
      const tick = new Promise<void>((r) => setTimeout(r, Math.max(0, Math.min(NODE_WAIT_LOG_MS, left))).unref());
      await Promise.race([ready, tick]);
      if (this.stopping.signal.aborted) return false;
      if (got) return true;
      const what = this.node ? lacking : 'this Node is not in the API (or the API server is not reachable)';
      if (Date.now() - start >= limit) {
        throw new Error(`${purpose}: ${what} after ${Math.round(limit / 1000)} s (node ${this.o.nodeName}); exiting so the kubelet restarts svcplane`);
      }
      this.o.log.warn(`still waiting for this Node (${purpose})`, { node: this.o.nodeName, reason: what, waitedSeconds: Math.round((Date.now() - start) / 1000), limitSeconds: Math.round(limit / 1000) });
    }
  }

  private watch(path: string, resource: string, sel: { fieldSelector?: string; labelSelector?: string }, h: Pick<ReflectorHandlers, 'listPage' | 'listDone' | 'event' | 'unavailable'> & { failing?(error: string): void }): void {
    const r = new Reflector(this.o.api, { path, resource, ...sel, backoff: this.o.backoff }, {
      ...h,
      failing: (error) => {
        h.failing?.(error);
        this.health.watchFailing(resource, error);
      },
      listDone: () => {
        this.health.watchListed(resource);
        h.listDone();
      },
      restarted: (reason) => this.metrics.watchRestarts.inc({ resource, reason }),
      recovered: () => this.health.watchRecovered(resource),
    }, this.o.log);
    this.reflectors.push(r);
    r.start();
  }

  private onNode(obj: WatchObject | undefined): void {
    const prev = this.node;
    this.node = obj ? nodeInfoOf(obj) : undefined;
    this.health.setNode(this.node);
    if (!this.node) {
      this.o.log.warn('this Node is not in the API (or was deleted): /healthz reports 503', { node: this.o.nodeName });
      return;
    }
    const node = this.node;
    this.nodeWaiters = this.nodeWaiters.filter((w) => !(w.test(node) && (w.resolve(), true)));
    if (prev && prev.zone !== this.node.zone && this.dataplane?.setNodeZone) {
      // kube-proxy resyncs on a zone change (topology hints are read against it): so does svcplane.
      this.o.log.info('this Node\'s zone changed: full resync', { before: prev.zone, after: this.node.zone });
      this.dataplane.setNodeZone(this.node.zone);
      this.loop?.resync();
    }
    if (prev && prev.podCIDRs.length && prev.podCIDRs.join() !== this.node.podCIDRs.join() && this.o.config.localDetect.mode === 'NodeCIDR') {
      // kube-proxy exits when the podCIDRs it detects local traffic by change; svcplane says so and keeps serving.
      this.o.log.warn('this Node\'s podCIDRs changed; restart svcplane to tell pods by them (detectLocalMode NodeCIDR)', { before: prev.podCIDRs, after: this.node.podCIDRs });
    }
    if (prev && prev.primaryIPs.join() !== this.node.primaryIPs.join() && this.o.config.nodePortAddresses[0] === 'primary') {
      // kube-proxy exits on a node IP change so it restarts with the new ones; svcplane says so and keeps serving.
      this.o.log.warn('this Node\'s primary addresses changed; restart svcplane to move NodePorts to them', { before: prev.primaryIPs, after: this.node.primaryIPs });
    }
  }

  /** Stops watching and serving (and a start() still waiting); the dataplane stays as programmed. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.reflectors.map((r) => r.stop()));
    await this.loop?.stop();
    await this.serviceHealth?.close();
    await this.events?.close();
    await Promise.all(this.servers.map((s) => s.close()));
    this.dataplane?.close();
  }
}
