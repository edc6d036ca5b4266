// Prometheus metrics: kube-proxy's names, help, types and buckets where the meaning is the same
// (pkg/proxy/metrics/metrics.go), so existing dashboards and alerts work; svcplane_* for what kube-proxy has no
// word for. One registry per agent (not prom-client's global one), so tests can run several agents in a process.
//
// kube-proxy 1.33+ adds an ip_family label to the sync metrics because it runs one proxier per family. svcplane
// programs both families in one atomic transaction, so there is one sync, and the label would only double-count.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** prometheus.ExponentialBuckets(0.001, 2, 15): 1 ms .. 16.4 s. */
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);

/** MergeBuckets(0, Linear(0.25,0.25,2), Linear(1,1,59), Linear(60,5,12), Linear(120,30,7)): 0 .. 300 s. */
const PROGRAMMING_BUCKETS = [
  0, 0.25, 0.5,
  ...Array.from({ length: 59 }, (_, i) => 1 + i),
  ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i),
  ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i),
];

/** Transaction sizes: 1 .. ~1M operations. */
const OPERATION_BUCKETS = Array.from({ length: 11 }, (_, i) => 4 ** i);

/** prom-client default metrics that are gauges named *_total: not exported. */
const PROMTOOL_NONCONFORMING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * kube-proxy's own names that `promtool check metrics` objects to, kept so dashboards and alerts written for
 * kube-proxy work unchanged (README lists them).
 */
export const KUBE_PROXY_NONCONFORMING = ['kubeproxy_sync_proxy_rules_no_local_endpoints_total'];

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly syncDuration: Histogram;
  readonly fullSyncDuration: Histogram;
  readonly partialSyncDuration: Histogram;
  readonly lastSyncTimestamp: Gauge;
  readonly lastQueuedTimestamp: Gauge;
  readonly programmingDuration: Histogram;
  readonly endpointChangesPending: Gauge;
  readonly endpointChangesTotal: Counter;
  readonly serviceChangesPending: Gauge;
  readonly serviceChangesTotal: Counter;
  readonly noLocalEndpoints: Gauge<'traffic_policy'>;
  readonly healthzTotal: Counter<'code'>;
  readonly livezTotal: Counter<'code'>;
  readonly syncFailures: Counter<'mode'>;
  readonly conntrackDeleted: Counter<'ip_family'>;
  readonly nftablesSyncFailures: Counter;
  readonly transactionOperations: Histogram<'kind'>;
  readonly transactionBytes: Histogram;
  readonly kernelApplyDuration: Histogram<'kind'>;
  readonly programmedServicePorts: Gauge<'mode'>;
  readonly problemsTotal: Counter;
  readonly watchRestarts: Counter<'resource' | 'reason'>;
  readonly restRequests: Counter<'code' | 'host' | 'method'>;
  readonly restRequestDuration: Histogram<'host' | 'verb'>;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const r = [this.registry];
    // kube-proxy's metrics are all ALPHA stability, which component-base renders as a "[ALPHA] " help prefix.
    const a = (help: string) => `[ALPHA] ${help}`;
    this.syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: a('SyncProxyRules latency in seconds'), buckets: SYNC_BUCKETS, registers: r });
    this.fullSyncDuration = new Histogram({ name: 'kubeproxy_sync_full_proxy_rules_duration_seconds', help: a('SyncProxyRules latency in seconds for full resyncs'), buckets: SYNC_BUCKETS, registers: r });
    this.partialSyncDuration = new Histogram({ name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds', help: a('SyncProxyRules latency in seconds for partial resyncs'), buckets: SYNC_BUCKETS, registers: r });
    this.lastSyncTimestamp = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: a('The last time proxy rules were successfully synced'), registers: r });
    this.lastQueuedTimestamp = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: a('The last time a sync of proxy rules was queued'), registers: r });
    this.programmingDuration = new Histogram({ name: 'kubeproxy_network_programming_duration_seconds', help: a('In Cluster Network Programming Latency in seconds'), buckets: PROGRAMMING_BUCKETS, registers: r });
    this.endpointChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: a('Pending proxy rules Endpoint changes'), registers: r });
    this.endpointChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: a('Cumulative proxy rules Endpoint changes'), registers: r });
    this.serviceChangesPending = new Gauge({ name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: a('Pending proxy rules Service changes'), registers: r });
    this.serviceChangesTotal = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: a('Cumulative proxy rules Service changes'), registers: r });
    this.noLocalEndpoints = new Gauge({ name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total', help: a('Number of services with a Local traffic policy and no endpoints'), labelNames: ['traffic_policy'], registers: r });
    this.healthzTotal = new Counter({ name: 'kubeproxy_proxy_healthz_total', help: a('Cumulative proxy healthz HTTP status'), labelNames: ['code'], registers: r });
    this.livezTotal = new Counter({ name: 'kubeproxy_proxy_livez_total', help: a('Cumulative proxy livez HTTP status'), labelNames: ['code'], registers: r });
    this.nftablesSyncFailures = new Counter({ name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total', help: a('Cumulative proxy nftables sync failures'), registers: r });

    this.conntrackDeleted = new Counter({ name: 'kubeproxy_conntrack_reconciler_deleted_entries_total', help: a('Cumulative conntrack flows deleted by conntrack reconciler'), labelNames: ['ip_family'], registers: r });
    this.syncFailures = new Counter({ name: 'svcplane_sync_failures_total', help: 'Syncs the kernel refused (or that failed otherwise), by dataplane mode', labelNames: ['mode'], registers: r });
    this.transactionOperations = new Histogram({ name: 'svcplane_sync_transaction_operations', help: 'Kernel operations per sync transaction (0: nothing differed, nothing sent)', labelNames: ['kind'], buckets: [0, ...OPERATION_BUCKETS], registers: r });
    this.transactionBytes = new Histogram({ name: 'svcplane_sync_transaction_bytes', help: 'Netlink bytes per sync transaction', buckets: Array.from({ length: 12 }, (_, i) => 256 * 4 ** i), registers: r });
    this.kernelApplyDuration = new Histogram({ name: 'svcplane_sync_kernel_apply_duration_seconds', help: 'Time the kernel took to apply one sync transaction (send to last ack)', labelNames: ['kind'], buckets: SYNC_BUCKETS, registers: r });
    this.programmedServicePorts = new Gauge({ name: 'svcplane_programmed_service_ports', help: 'Service ports programmed by the last successful sync, by dataplane mode', labelNames: ['mode'], registers: r });
    this.problemsTotal = new Counter({ name: 'svcplane_object_problems_total', help: 'Problems found in Services and EndpointSlices (each object skipped or partly skipped, and logged)', registers: r });
    this.watchRestarts = new Counter({ name: 'svcplane_watch_restarts_total', help: 'Watches restarted, by resource and reason (closed: ended after a healthy run; short: closed at once with nothing; expired: 410, relisted; error: any failure, backed off)', labelNames: ['resource', 'reason'], registers: r });
    // client-go's REST client metrics (component-base restclient, rest/request.go), as kube-proxy exports them: the
    // kubernetes-mixin proxy dashboard charts them.
    this.restRequests = new Counter({ name: 'rest_client_requests_total', help: a('Number of HTTP requests, partitioned by status code, method, and host.'), labelNames: ['code', 'host', 'method'], registers: r });
    this.restRequestDuration = new Histogram({ name: 'rest_client_request_duration_seconds', help: a('Request latency in seconds. Broken down by verb, and host.'), labelNames: ['host', 'verb'], buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60], registers: r });
    this.noLocalEndpoints.set({ traffic_policy: 'internal' }, 0);
    this.noLocalEndpoints.set({ traffic_policy: 'external' }, 0);
    if (opts.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client's gauges named *_total break Prometheus' naming rules (`promtool check metrics`); the per-type
      // gauges beside them (nodejs_active_handles{type}...) hold the same counts.
      for (const name of PROMTOOL_NONCONFORMING_DEFAULTS) this.registry.removeSingleMetric(name);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
