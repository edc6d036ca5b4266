// Folds cluster events into the set of changed Service ports (kube-proxy's ServiceChangeTracker and
// EndpointsChangeTracker in one). Events only mark Services dirty; collect() rebuilds each dirty Service's ports
// from ClusterState and compares them with what the last collect handed out, so an add followed by its delete,
// or a change and its undo, is no change at all. Pure: no clock, no I/O.
import { isDeepStrictEqual } from 'node:util';
import type { ModelProblem, ServiceKey, ServicePort, ServicePortKey } from '../model/types';
import type { ClusterState } from './clusterState';

export interface PendingChanges {
  /** Changed Service ports: the new state, or undefined when the port is gone. */
  changes: Map<ServicePortKey, ServicePort | undefined>;
  /** Services whose rebuild reported problems, with the problems (to log once per change). */
  problems: ModelProblem[];
  /** Wall-clock ms of the EndpointSlice changes this sync carries (network programming latency). */
  triggerTimes: number[];
  /** How many Services were looked at (dirty), whether or not their ports changed. */
  servicesExamined: number;
}

export class ChangeTracker {
  private readonly dirty = new Set<ServiceKey>();
  private readonly triggers = new Map<ServiceKey, number[]>();
  /** Each Service's ports as of the last collect: the desired state the dataplane is driven to. */
  private readonly current = new Map<ServiceKey, ServicePort[]>();

  /**
   * @param startedAt wall-clock ms: trigger times before it belong to changes made before this agent ran (every
   *   slice of a cluster carries one), and would make the first sync look minutes slow. kube-proxy drops them too.
   */
  constructor(private readonly startedAt: number) {}

  serviceChanged(keys: Iterable<ServiceKey>): void {
    for (const k of keys) {
      this.dirty.add(k);
    }
  }

  endpointsChanged(keys: Iterable<ServiceKey>, triggerTime?: number): void {
    for (const k of keys) {
      this.dirty.add(k);
      if (triggerTime !== undefined && triggerTime > this.startedAt) {
        const list = this.triggers.get(k);
        if (list) list.push(triggerTime);
        else this.triggers.set(k, [triggerTime]);
      }
    }
  }

  /** Services marked since the last collect (kubeproxy_sync_proxy_rules_*_changes_pending). */
  get pendingCount(): number {
    return this.dirty.size;
  }

  /** Rebuilds the dirty Services and returns what changed; the tracker's view moves to the new state. */
  collect(state: ClusterState): PendingChanges {
    const changes = new Map<ServicePortKey, ServicePort | undefined>();
    const problems: ModelProblem[] = [];
    const triggerTimes: number[] = [];
    const examined = this.dirty.size;
    for (const key of this.dirty) {
      const before = this.current.get(key) ?? [];
      const now = state.servicePorts(key);
      problems.push(...now.problems);
      const after = new Map(now.ports.map((p) => [p.key, p]));
      for (const p of before) if (!after.has(p.key)) changes.set(p.key, undefined);
      const beforeByKey = new Map(before.map((p) => [p.key, p]));
      for (const [k, p] of after) {
        const old = beforeByKey.get(k);
        if (!old || !sameServicePort(old, p)) changes.set(k, p);
      }
      if (now.ports.length) this.current.set(key, now.ports);
      else this.current.delete(key);
      const t = this.triggers.get(key);
      if (t) triggerTimes.push(...t);
    }
    this.dirty.clear();
    this.triggers.clear();
    return { changes, problems, triggerTimes, servicesExamined: examined };
  }

  /** Every Service port the tracker holds, in key order: the full sync's desired state. */
  all(): Map<ServicePortKey, ServicePort> {
    const ports: ServicePort[] = [];
    for (const list of this.current.values()) ports.push(...list);
    ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return new Map(ports.map((p) => [p.key, p]));
  }

  get servicePortCount(): number {
    let n = 0;
    for (const list of this.current.values()) n += list.length;
    return n;
  }
}

/**
 * Structural equality of two Service ports, Maps included (the endpoint weights are Maps: JSON.stringify wrote
 * them as `{}`, so a change of weights alone went unseen until the next full sync).
 */
export function sameServicePort(a: ServicePort, b: ServicePort): boolean {
  return isDeepStrictEqual(a, b);
}
