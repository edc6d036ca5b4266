// /healthz and /livez with kube-proxy's semantics (pkg/proxy/healthcheck/proxy_health.go): the proxy is unhealthy
// when an update has been queued and not synced for healthTimeout (2 x syncPeriod); /healthz is also 503 when this
// node is gone, being deleted, or tainted for deletion by the cluster autoscaler (so load balancers drain it
// first); /livez ignores the node. Body and headers as kube-proxy's. Pure state here; http.ts serves it.
// Beyond kube-proxy: /healthz is also 503 while a watch has been failing for healthTimeout (the agent is blind: it
// cannot see the changes it should apply, so "nothing queued" proves nothing); the body then says which and why.
// /livez stays 200 then: the reflectors retry on their own, and restarting the agent would not reach the server.
import type { Clock } from '../sync/clock';

export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

export interface NodeState {
  exists: boolean;
  deleting: boolean;
  toBeDeletedTaint: boolean;
}

export interface HealthReport {
  code: 200 | 503;
  body: string;
}

export class ProxyHealth {
  private lastUpdated: number | undefined;
  private oldestPendingQueued: number | undefined;
  private node: NodeState | undefined;
  /** Watches in a failure streak: since when (monotonic) and the newest error. */
  private readonly failingWatches = new Map<string, { since: number; error: string }>();
  private readonly listedWatches = new Set<string>();

  constructor(private readonly clock: Clock, private readonly healthTimeoutMs: number) {}

  /** A change arrived that a sync must apply (kube-proxy's QueuedUpdate): only the oldest pending one counts. */
  queuedUpdate(): void {
    if (this.oldestPendingQueued === undefined) this.oldestPendingQueued = this.clock.now();
  }

  /** A sync succeeded (or the loop started): nothing is pending any more. */
  updated(): void {
    this.lastUpdated = this.clock.now();
    this.oldestPendingQueued = undefined;
  }

  setNode(n: NodeState | undefined): void {
    this.node = n;
  }

  /** A watch failed (again): its streak starts now unless it is already running. */
  watchFailing(resource: string, error: string): void {
    const f = this.failingWatches.get(resource);
    this.failingWatches.set(resource, { since: f?.since ?? this.clock.now(), error });
  }

  watchRecovered(resource: string): void {
    this.failingWatches.delete(resource);
  }

  /** A watch delivered its first full list: from now on, a failure streak is blind only after healthTimeout. */
  watchListed(resource: string): void {
    this.listedWatches.add(resource);
  }

  /**
   * Why the agent is blind: a watch failing for healthTimeout, or failing before it ever listed (at start, with the
   * API server unreachable: nothing is known, so there is nothing to wait out); undefined otherwise.
   */
  get blindReason(): string | undefined {
    const now = this.clock.now();
    const blind = [...this.failingWatches].filter(([r, f]) => now - f.since >= this.healthTimeoutMs || !this.listedWatches.has(r));
    if (!blind.length) return undefined;
    return blind.map(([r, f]) => `${r} watch failing for ${Math.round((now - f.since) / 1000)} s${this.listedWatches.has(r) ? '' : ' (nothing listed yet)'}: ${f.error}`).join('; ');
  }

  get healthy(): boolean {
    if (this.oldestPendingQueued === undefined) return true;
    return this.clock.now() - this.oldestPendingQueued < this.healthTimeoutMs;
  }

  get nodeEligible(): boolean {
    return !!this.node && this.node.exists && !this.node.deleting && !this.node.toBeDeletedTaint;
  }

  healthz(): HealthReport {
    return this.report(true);
  }

  livez(): HealthReport {
    return this.report(false);
  }

  private report(withNode: boolean): HealthReport {
    const healthy = this.healthy;
    const blind = withNode ? this.blindReason : undefined;
    const ok = healthy && (!withNode || (this.nodeEligible && !blind));
    const now = this.clock.wallNow();
    const toWall = (mono: number | undefined) => (mono === undefined ? new Date(0) : new Date(now - (this.clock.now() - mono)));
    // kube-proxy reports "now" as lastUpdated while healthy (kept for backward compatibility).
    const lastUpdated = healthy ? new Date(now) : toWall(this.lastUpdated);
    const body: Record<string, unknown> = { lastUpdated: lastUpdated.toISOString(), currentTime: new Date(now).toISOString() };
    if (withNode) body.nodeEligible = this.nodeEligible;
    body.healthy = healthy;
    if (blind) body.reason = blind;
    return { code: ok ? 200 : 503, body: JSON.stringify(body) };
  }
}

/** kube-proxy's healthCheckNodePort body (service_health.go), tab-indented, no trailing newline. */
export function serviceHealthBody(namespace: string, name: string, localEndpoints: number, proxyHealthy: boolean): string {
  return `{\n\t"service": {\n\t\t"namespace": ${JSON.stringify(namespace)},\n\t\t"name": ${JSON.stringify(name)}\n\t},\n\t"localEndpoints": ${localEndpoints},\n\t"serviceProxyHealthy": ${proxyHealthy}\n}`;
}
