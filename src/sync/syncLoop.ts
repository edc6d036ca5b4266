// The agent's sync loop: cluster events -> ClusterState + ChangeTracker -> (bounded-frequency runner) -> one
// dataplane transaction per sync. kube-proxy's proxier life cycle (pkg/proxy/nftables/proxier.go):
// * nothing is programmed until both Services and EndpointSlices have been listed once (no half-empty ruleset
//   after a restart: the first sync is full and adopts what the kernel holds);
// * a partial sync carries only the changed Service ports; a full one the whole desired state, at least every
//   syncPeriod (which also repairs anything changed behind svcplane's back);
// * a failed sync is retried with exponential backoff (1 s doubling, capped at syncPeriod) and the next sync is
//   full (the dataplane forces it: its trackers were already consumed);
// * metrics and health are recorded in `finally`, whatever happened.
import type { Dataplane, SyncResult } from '../dataplane/types';
import { unhonouredFeatures } from '../dataplane/limits';
import type { Logger } from '../log';
import type { KubeEndpointSlice, KubeService, ModelProblem, ServiceKey, ServicePort, ServicePortKey } from '../model/types';
import type { ProxyHealth } from '../server/health';
import type { ProxyMetrics } from '../server/metrics';
import type { ServiceHealthServers } from '../server/serviceHealth';
import type { Clock, Timer } from './clock';
import { ClusterState, type SliceChange } from './clusterState';
import { IdleHeapRelease } from './memory';
import { BoundedFrequencyRunner } from './runner';
import { ChangeTracker } from './tracker';

export interface SyncLoopOptions {
  dataplane: Dataplane;
  clock: Clock;
  log: Logger;
  metrics: ProxyMetrics;
  health: ProxyHealth;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  /** This node's name: a Local traffic policy Service with endpoints elsewhere only counts for the metric. */
  nodeName?: string;
  /** How often to ask the dataplane whether housekeeping is due (default 5 s). */
  housekeepingCheckMs?: number;
  /** healthCheckNodePort servers, kept in step with the Service ports after each successful sync. */
  serviceHealth?: ServiceHealthServers;
  /** Hands V8's heap back once syncs stop (memory.ts); tests inject one. Default: a real one on the loop's clock. */
  heapRelease?: IdleHeapRelease;
  /** Told of every problem as it is logged (the agent posts Events on the objects named). */
  onProblems?: (problems: ModelProblem[]) => void;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export class SyncLoop {
  readonly state = new ClusterState();
  readonly tracker: ChangeTracker;
  private readonly runner: BoundedFrequencyRunner;
  private servicesSynced = false;
  private slicesSynced = false;
  private started = false;
  private lastFullAt = -Infinity;
  /**
   * A full sync was asked for (start, a failed sync, resync()). Read and cleared at the start of a sync, as
   * kube-proxy's needFullSync is: a request that arrives while a sync is in flight survives it, so the next sync
   * is full (when the flag was cleared at the end, a zone change during a full sync was lost until syncPeriod).
   */
  private fullSyncRequested = true;
  private failures = 0;
  private readonly noLocal = { internal: new Set<ServicePortKey>(), external: new Set<ServicePortKey>() };
  /** Resolves after every sync (tests and benchmarks wait on it). */
  private readonly listeners = new Set<(r: SyncOutcome) => void>();
  syncCount = 0;
  private housekeepingTimer: Timer | undefined;
  private housekeepingPending = false;
  /** After a burst of syncs V8 keeps its grown heap until long after the agent went quiet: memory.ts. */
  readonly heapRelease: IdleHeapRelease;

  constructor(private readonly o: SyncLoopOptions) {
    this.tracker = new ChangeTracker(o.clock.wallNow());
    this.heapRelease = o.heapRelease ?? new IdleHeapRelease({ clock: o.clock, log: o.log });
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      minIntervalMs: o.minSyncPeriodMs,
      maxIntervalMs: o.syncPeriodMs,
      burstRuns: 2, // kube-proxy's burstSyncs
      clock: o.clock,
    });
  }

  // ---- events ------------------------------------------------------------------------------------------------

  onService(type: WatchEventType, svc: KubeService): void {
    if (type === 'DELETED') {
      const key = this.state.deleteService(svc);
      if (key) this.serviceChanged([key]);
      return;
    }
    const r = this.state.upsertService(svc);
    if (r.problem) this.report([r.problem]);
    if (r.key) this.serviceChanged([r.key]);
  }

  onSlice(type: WatchEventType, slice: KubeEndpointSlice): void {
    const r: SliceChange & { problem?: ModelProblem } = type === 'DELETED' ? this.state.deleteSlice(slice) : this.state.upsertSlice(slice);
    if (r.problem) this.report([r.problem]);
    // kube-proxy measures programming latency for slice updates, not deletions.
    if (r.services.length) this.endpointsChanged(r.services, type === 'DELETED' ? undefined : r.triggerTime);
  }

  /** A complete list (start, or relist after 410) in one piece: replaces what was known. */
  onServicesListed(list: KubeService[]): void {
    this.onServicesPage(list, true);
    this.onServicesListDone();
  }

  onSlicesListed(list: KubeEndpointSlice[]): void {
    this.onSlicesPage(list, true);
    this.onSlicesListDone();
  }

  // The same, page by page (what the reflector does): pages upsert, the end deletes what no page held.
  private servicesPresent = new Set<ServiceKey>();
  private slicesPresent = new Set<string>();

  onServicesPage(list: KubeService[], first: boolean): void {
    if (first) this.servicesPresent = new Set();
    const r = this.state.upsertServices(list, this.servicesPresent);
    this.report(r.problems);
    if (r.keys.length) this.serviceChanged(r.keys);
  }

  onServicesListDone(): void {
    const gone = this.state.deleteServicesExcept(this.servicesPresent);
    this.servicesPresent = new Set();
    this.servicesSynced = true;
    if (gone.length) this.serviceChanged(gone);
    this.maybeStart();
  }

  onSlicesPage(list: KubeEndpointSlice[], first: boolean): void {
    if (first) this.slicesPresent = new Set();
    const r = this.state.upsertSlices(list, this.slicesPresent);
    this.report(r.problems);
    if (r.keys.length) this.endpointsChanged(r.keys, undefined);
  }

  onSlicesListDone(): void {
    const gone = this.state.deleteSlicesExcept(this.slicesPresent);
    this.slicesPresent = new Set();
    this.slicesSynced = true;
    if (gone.length) this.endpointsChanged(gone, undefined);
    this.maybeStart();
  }

  private serviceChanged(keys: ServiceKey[]): void {
    this.tracker.serviceChanged(keys);
    this.o.metrics.serviceChangesTotal.inc(keys.length);
    this.o.metrics.serviceChangesPending.set(this.tracker.pendingCount);
    this.queue();
  }

  private endpointsChanged(keys: ServiceKey[], triggerTime: number | undefined): void {
    this.tracker.endpointsChanged(keys, triggerTime);
    this.o.metrics.endpointChangesTotal.inc(keys.length);
    this.o.metrics.endpointChangesPending.set(this.tracker.pendingCount);
    this.queue();
  }

  /** kube-proxy's Sync(): note the queued update (health), then ask the runner. */
  private queue(): void {
    if (!this.started) return;
    this.o.health.queuedUpdate();
    this.o.metrics.lastQueuedTimestamp.set(this.o.clock.wallNow() / 1000);
    this.runner.run();
  }

  private maybeStart(): void {
    if (this.started || !this.servicesSynced || !this.slicesSynced) return;
    this.started = true;
    this.o.log.info('initial lists complete: starting to sync', { services: this.state.serviceCount, endpointSlices: this.state.sliceCount });
    // As kube-proxy's SyncLoop: count as updated once at start, in case no sync ever succeeds.
    this.o.health.updated();
    this.runner.start();
    this.queue();
    this.armHousekeeping();
  }

  // Housekeeping (Dataplane.housekeeping) runs as a sync of its own through the runner, so it never overlaps a
  // sync: IPVS graceful termination then deletes a drained real server within seconds of its last connection
  // ending (kube-proxy checks every minute), whatever syncPeriod is.
  private armHousekeeping(): void {
    const dp = this.o.dataplane;
    if (!dp.housekeeping || !dp.housekeepingDue) return;
    this.housekeepingTimer = this.o.clock.after(this.o.housekeepingCheckMs ?? 5000, () => {
      if (dp.housekeepingDue!()) {
        this.housekeepingPending = true;
        this.runner.run();
      }
      this.armHousekeeping();
    });
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Waits for the next sync to end (whatever its outcome). */
  nextSync(): Promise<SyncOutcome> {
    return new Promise((resolve) => {
      const f = (r: SyncOutcome) => {
        this.listeners.delete(f);
        resolve(r);
      };
      this.listeners.add(f);
    });
  }

  /** Asks for a full sync soon (something every Service port depends on changed, e.g. this node's zone). */
  resync(): void {
    this.fullSyncRequested = true;
    this.queue();
  }

  async stop(): Promise<void> {
    this.housekeepingTimer?.cancel();
    this.housekeepingTimer = undefined;
    await this.runner.stop();
    this.heapRelease.stop();
  }

  // ---- one sync -----------------------------------------------------------------------------------------------

  private async sync(): Promise<void> {
    const t0 = this.o.clock.now();
    this.heapRelease.busy();
    const full = this.fullSyncRequested || t0 - this.lastFullAt >= this.o.syncPeriodMs;
    this.fullSyncRequested = false;
    const outcome: SyncOutcome = { ok: false, full, changes: 0 };
    let result: SyncResult | undefined;
    // Everything inside the try: a throw anywhere (building the changes too) is logged and retried, never
    // swallowed by the runner.
    try {
      const pending = this.tracker.collect(this.state);
      outcome.changes = pending.changes.size;
      this.o.metrics.serviceChangesPending.set(0);
      this.o.metrics.endpointChangesPending.set(0);
      this.report(pending.problems);
      for (const [key, sp] of pending.changes) this.noteLocal(key, sp);
      if (!full && pending.changes.size === 0) {
        if (this.housekeepingPending && this.o.dataplane.housekeeping) {
          this.housekeepingPending = false;
          await this.o.dataplane.housekeeping();
        }
        outcome.ok = true;
        this.o.health.updated();
        return;
      }
      for (const sp of pending.changes.values()) if (sp) for (const f of unhonouredFeatures(sp, this.o.dataplane.mode)) this.o.log.warn(`Service ${sp.key}: ${f}`, { service: sp.key });
      const all = full ? this.tracker.all() : undefined;
      result = all ? await this.o.dataplane.syncFull(all) : await this.o.dataplane.syncPartial(pending.changes);
      outcome.ok = true;
      outcome.full = result.full;
      outcome.result = result;
      if (result.full) this.lastFullAt = t0;
      this.failures = 0;
      if (result.conntrackDeleted) {
        if (result.conntrackDeleted[4]) this.o.metrics.conntrackDeleted.inc({ ip_family: 'IPv4' }, result.conntrackDeleted[4]);
        if (result.conntrackDeleted[6]) this.o.metrics.conntrackDeleted.inc({ ip_family: 'IPv6' }, result.conntrackDeleted[6]);
      }
      // Health check servers follow what was programmed (everything after a full sync: changes consumed by a failed
      // sync are then caught up too).
      if (this.o.serviceHealth) await (result.full ? this.o.serviceHealth.replaceAll(all ?? this.tracker.all()) : this.o.serviceHealth.update(pending.changes));
      this.report(result.problems);
      const now = this.o.clock.wallNow();
      const latencies = pending.triggerTimes.map((t) => Math.max(0, now - t));
      for (const ms of latencies) this.o.metrics.programmingDuration.observe(ms / 1000);
      this.o.health.updated();
      this.o.metrics.lastSyncTimestamp.set(now / 1000);
      this.o.metrics.programmedServicePorts.set({ mode: this.o.dataplane.mode }, this.tracker.servicePortCount);
      // A sync that found nothing to change (the periodic full resync, mostly) is routine: verbosity 2, as kube-proxy.
      const nothing = result.operations === 0 && pending.changes.size === 0;
      (nothing ? this.o.log.detail : this.o.log.info)('synced', {
        full: result.full, servicePorts: this.tracker.servicePortCount, changed: pending.changes.size,
        operations: result.operations, bytes: result.bytes, kernelMs: round(result.kernelMicros / 1000), ms: round(this.o.clock.now() - t0),
        // Network programming latency of the EndpointSlice changes this sync carried (trigger time -> kernel ack).
        ...(latencies.length ? { programmingLatencyMs: latencies.length <= 20 ? latencies : { count: latencies.length, max: Math.max(...latencies) } } : {}),
      });
    } catch (e) {
      const err = e as Error;
      this.failures++;
      const retryMs = Math.min(this.o.syncPeriodMs, 1000 * 2 ** (this.failures - 1));
      outcome.error = err.message;
      this.o.metrics.syncFailures.inc({ mode: this.o.dataplane.mode });
      if (this.o.dataplane.mode === 'nftables') this.o.metrics.nftablesSyncFailures.inc();
      this.o.log.error('sync failed; the next sync is full', { error: err.message, retryInMs: retryMs, failures: this.failures });
      // The dataplane already forces its next sync to be full; make the loop agree so it sends the whole state.
      this.fullSyncRequested = true;
      this.runner.retryAfter(retryMs);
    } finally {
      const secs = (this.o.clock.now() - t0) / 1000;
      if (result) {
        this.o.metrics.syncDuration.observe(secs);
        (result.full ? this.o.metrics.fullSyncDuration : this.o.metrics.partialSyncDuration).observe(secs);
        const kind = result.full ? 'full' : 'partial';
        this.o.metrics.transactionOperations.observe({ kind }, result.operations);
        this.o.metrics.transactionBytes.observe(result.bytes);
        this.o.metrics.kernelApplyDuration.observe({ kind }, result.kernelMicros / 1e6);
      }
      this.o.metrics.noLocalEndpoints.set({ traffic_policy: 'internal' }, this.noLocal.internal.size);
      this.o.metrics.noLocalEndpoints.set({ traffic_policy: 'external' }, this.noLocal.external.size);
      this.syncCount++;
      this.heapRelease.quietFromNow();
      for (const l of [...this.listeners]) l(outcome);
    }
  }

  /** kubeproxy_sync_proxy_rules_no_local_endpoints_total: Local-policy ports with endpoints, none on this node. */
  private noteLocal(key: ServicePortKey, sp: ServicePort | undefined): void {
    const none = (eps: ServicePort['endpoints']) => eps.length > 0 && !eps.some((e) => e.nodeName === this.o.nodeName);
    const external = !!sp && sp.externalTrafficPolicy === 'Local' && (sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0);
    if (sp && sp.internalTrafficPolicy === 'Local' && none(sp.endpoints)) this.noLocal.internal.add(key);
    else this.noLocal.internal.delete(key);
    if (sp && external && none(sp.endpoints)) this.noLocal.external.add(key);
    else this.noLocal.external.delete(key);
  }

  private report(problems: ModelProblem[]): void {
    for (const p of problems) this.o.log.warn(`${p.object}: ${p.message}`, { object: p.object });
    if (problems.length) this.o.metrics.problemsTotal.inc(problems.length);
    if (problems.length) this.o.onProblems?.(problems);
  }
}

export interface SyncOutcome {
  ok: boolean;
  full: boolean;
  changes: number;
  result?: SyncResult;
  error?: string;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
