// Plan bookkeeping: what each Service port wants of IPVS (desired.ts plans one), which Service port holds each
// virtual service when several want it, and how many want each address bound. Kept as syncs go, so a partial
// sync re-plans only the Service ports that changed and never scans them all.
import type { ModelProblem, ServicePort, ServicePortKey } from '../../model/types';
import { claimConflictProblem, claimPrecedence } from '../../model/precedence';
import { type DesiredService, type IpvsConfig, type ServicePortPlan, planServicePort } from './desired';
import * as ipvs from '../../netlink/ipvs';

export class IpvsPlans {
  /** The Service ports planned, by key. */
  servicePorts = new Map<ServicePortKey, ServicePort>();
  /** Desired virtual services by vsKey, and which Service port holds each (the first in claim precedence). */
  readonly desired = new Map<string, DesiredService>();
  private readonly plans = new Map<ServicePortKey, ServicePortPlan>();
  /** Service ports wanting each virtual service, in arrival order (the first holds it; the next takes over). */
  private readonly wanters = new Map<string, ServicePortKey | ServicePortKey[]>();
  /** How many Service ports want each address bound. */
  readonly addrUsers = new Map<string, number>();

  /** `options()` is read at each plan: the node's addresses come from the last kernel read. */
  constructor(private readonly options: () => IpvsConfig) {}

  get(key: ServicePortKey): ServicePortPlan | undefined {
    return this.plans.get(key);
  }

  /** Every Service port's plan, by key. */
  entries(): IterableIterator<[ServicePortKey, ServicePortPlan]> {
    return this.plans.entries();
  }

  /** Plans every Service port afresh (a full sync, a dry run). */
  replaceAll(servicePorts: Map<ServicePortKey, ServicePort>): ModelProblem[] {
    this.servicePorts = new Map(servicePorts);
    this.plans.clear();
    this.desired.clear();
    this.wanters.clear();
    this.addrUsers.clear();
    const problems: ModelProblem[] = [];
    for (const [key, sp] of servicePorts) this.add(key, sp, problems);
    return problems;
  }

  add(key: ServicePortKey, sp: ServicePort, problems: ModelProblem[]): void {
    const plan = planServicePort(sp, this.options());
    if (plan.schedulerProblem) problems.push({ object: `Service ${key}`, message: plan.schedulerProblem });
    this.plans.set(key, plan);
    for (const a of plan.addresses) this.addrUsers.set(a, (this.addrUsers.get(a) ?? 0) + 1);
    for (const [k, d] of plan.services) {
      // One wanter (the usual case) is kept as the key itself: no array per virtual service.
      const list = this.wanters.get(k);
      if (list === undefined) this.wanters.set(k, key);
      else if (typeof list === 'string') this.wanters.set(k, [list, key]);
      else list.push(key);
      const holder = this.desired.get(k);
      if (holder && holder.owner !== key) {
        // The one first in claim precedence keeps the virtual service, whichever arrived first (model/precedence.ts).
        const held = this.servicePorts.get(holder.owner);
        const newcomerWins = !held || claimPrecedence(sp, held) < 0;
        const [loser, winner] = newcomerWins ? [holder.owner, key] : [key, holder.owner];
        problems.push(claimConflictProblem(ipvs.serviceKeyString(d.vs), loser, winner));
        if (!newcomerWins) continue;
      }
      this.desired.set(k, d);
    }
  }

  /** Drops a Service port's plan; a virtual service it held goes to the next Service port wanting it, if any. */
  remove(key: ServicePortKey): void {
    const plan = this.plans.get(key);
    if (!plan) return;
    for (const a of plan.addresses) {
      const n = (this.addrUsers.get(a) ?? 1) - 1;
      if (n > 0) this.addrUsers.set(a, n);
      else this.addrUsers.delete(a);
    }
    for (const k of plan.services.keys()) {
      const had = this.wanters.get(k);
      const list = (had === undefined ? [] : typeof had === 'string' ? [had] : had).filter((w) => w !== key);
      if (list.length > 1) this.wanters.set(k, list);
      else if (list.length === 1) this.wanters.set(k, list[0]);
      else this.wanters.delete(k);
      if (this.desired.get(k)?.owner !== key) continue;
      const next = list.reduce<ServicePortKey | undefined>((best, w) => (best === undefined || claimPrecedence(this.servicePorts.get(w) ?? { key: w }, this.servicePorts.get(best) ?? { key: best }) < 0 ? w : best), undefined);
      if (next === undefined) this.desired.delete(k);
      else this.desired.set(k, this.plans.get(next)!.services.get(k)!);
    }
    this.plans.delete(key);
  }
}
