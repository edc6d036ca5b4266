// Changes as a rolling deployment makes them, for the churn phase. A Deployment's rollout replaces its pods one by
// one: a new pod's endpoint appears (ready), an old one turns terminating (ready false, serving until it stops),
// then goes. So endpoint changes come in thirds (added, terminating, removed), each rollout step on one Service;
// and now and then a whole Service goes or comes back (an app deleted, redeployed): 2% of changes. Deterministic
// (a seeded generator), so two runs make the same changes.
import type { Endpoint, ServicePort, ServicePortKey } from '../model/types';
import { benchNodeOf } from './model';
import { intToIpv4, ipv4ToInt } from './shape';

export type ChangeKind = 'endpoint added' | 'endpoint terminating' | 'endpoint removed' | 'Service removed' | 'Service added';
export const CHANGE_KINDS: readonly ChangeKind[] = ['endpoint added', 'endpoint terminating', 'endpoint removed', 'Service removed', 'Service added'];
/** Percent of changes that remove or re-add a whole Service. */
const SERVICE_CHANGE_PERCENT = 2;
/** New pods' addresses: the filler endpoint pool (shape.ts), taken round by round. */
const POOL_START = ipv4ToInt('198.18.1.0');
const POOL_SIZE = 32_512;

export interface Change {
  kind: ChangeKind;
  key: ServicePortKey;
  /** The Service port after the change; undefined: removed. */
  servicePort: ServicePort | undefined;
}

export class RollingChurn {
  private readonly current: Map<ServicePortKey, ServicePort>;
  private readonly keys: ServicePortKey[];
  /** Per Service port: the next rollout step (0 add, 1 terminate the oldest, 2 remove it). */
  private readonly step = new Map<ServicePortKey, number>();
  private readonly removed: ServicePort[] = [];
  private seed = 12345;
  private nextPod = 0;

  constructor(model: Map<ServicePortKey, ServicePort>) {
    this.current = new Map(model);
    this.keys = [...model.keys()];
  }

  /** mulberry32: an LCG's low bits (what `% n` keeps) repeat with short periods and skewed the 2% to 4%. */
  private random(n: number): number {
    this.seed = (this.seed + 0x6d2b79f5) | 0;
    let t = Math.imul(this.seed ^ (this.seed >>> 15), 1 | this.seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n | 0;
  }

  next(): Change {
    // Service changes alternate: one goes, then comes back, so the cluster keeps its size.
    if (this.random(100) < SERVICE_CHANGE_PERCENT) {
      const back = this.removed.pop();
      if (back) {
        this.current.set(back.key, back);
        return { kind: 'Service added', key: back.key, servicePort: back };
      }
      const key = this.pickPresent();
      if (key !== undefined && this.current.size > 1) {
        this.removed.push(this.current.get(key)!);
        this.current.delete(key);
        return { kind: 'Service removed', key, servicePort: undefined };
      }
    }
    const key = this.pickPresent()!;
    const sp = this.current.get(key)!;
    const step = this.step.get(key) ?? 0;
    this.step.set(key, (step + 1) % 3);
    let endpoints: Endpoint[];
    let kind: ChangeKind;
    if (step === 0) {
      const address = intToIpv4(POOL_START + (this.nextPod++ % POOL_SIZE));
      endpoints = [...sp.endpoints, { address, family: 4, port: sp.endpoints[0]?.port ?? 8080, ready: true, serving: true, terminating: false, nodeName: benchNodeOf(address) }];
      kind = 'endpoint added';
    } else if (step === 1) {
      endpoints = sp.endpoints.map((e, i) => (i === 0 ? { ...e, ready: false, terminating: true } : e));
      kind = 'endpoint terminating';
    } else {
      endpoints = sp.endpoints.slice(1);
      kind = 'endpoint removed';
    }
    const next: ServicePort = { ...sp, endpoints, allEndpoints: endpoints };
    this.current.set(key, next);
    return { kind, key, servicePort: next };
  }

  private pickPresent(): ServicePortKey | undefined {
    for (let tries = 0; tries < 64; tries++) {
      const key = this.keys[this.random(this.keys.length)];
      if (this.current.has(key)) return key;
    }
    return [...this.current.keys()][0];
  }
}
