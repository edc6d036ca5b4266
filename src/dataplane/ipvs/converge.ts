// What turns the kernel's IPVS state into the desired one, as batches of netlink operations: svcplane0 bindings
// (bind, unbind) and IPVS (services, real servers, deletions). Built here, applied by IpvsProxier in an order that
// never leaves a virtual service without its address or a real server without its service.
import type { StaleFlow } from '../conntrack';
import * as rtnl from '../../netlink/rtnl';
import { OpBatch } from './client';
import type { DesiredService } from './desired';
import type { Drainer } from './drain';
import { EADDRNOTAVAIL, EEXIST, ENOENT, ESRCH } from './errno';
import * as ipvs from '../../netlink/ipvs';
import type { ProgrammedIpvs, ProgrammedService } from './programmed';

/** A converge's IPVS operations, as OpBatch codes (described only when the kernel refuses one). */
const IPVS_OP = { addService: 0, updateService: 1, addServer: 2, setWeight: 3, deleteServer: 4, drainServer: 5, deleteService: 6 } as const;
/** Its svcplane0 binding operations. */
const BINDING_OP = { bind: 0, unbind: 1, removeOld: 2 } as const;
const BINDING_VERB = ['bind', 'unbind', 'remove old binding'];

/**
 * Bindings to add (with removals of the other bindMode's, which must go first) and to remove, for the addresses
 * in `touchedAddrs` (grown here by what the leftovers touch). `wanted`: addresses some Service port wants bound.
 */
export function bindingBatches(
  kernel: ProgrammedIpvs, wanted: ReadonlyMap<string, number>, touchedAddrs: Set<string>, iface: string, bindMode: 'route' | 'address',
): { bind: OpBatch; unbind: OpBatch } {
  const route = bindMode === 'route';
  const describeBinding = (code: number, a?: string) => `${BINDING_VERB[code]} ${a} ${code === BINDING_OP.bind ? 'on' : 'from'} ${iface}`;
  const bind = new OpBatch(describeBinding);
  const unbind = new OpBatch(describeBinding);
  // Bindings of the other kind (left by a run in the other bindMode) go first: an address's own local route
  // would make adding ours for the same address fail with EEXIST.
  let v4AddressGone = false;
  for (const a of kernel.leftoverBindings) {
    (route ? rtnl.writeDelAddr : rtnl.writeDelLocalRoute)(bind.w, kernel.linkIndex, a);
    bind.op(BINDING_OP.removeOld, [ESRCH, ENOENT, EADDRNOTAVAIL], a);
    kernel.bound.delete(a);
    touchedAddrs.add(a);
    if (route && !a.includes(':')) v4AddressGone = true;
  }
  kernel.leftoverBindings = [];
  // When a link's last IPv4 address goes, the kernel deletes every IPv4 route through it (fib_inetaddr_event:
  // fib_disable_ip), svcplane's local routes included: an address added to svcplane0 by hand, removed here, took
  // every IPv4 Service address with it (seen on 6.1; the next full sync found them missing). So in route mode,
  // once an IPv4 address is deleted, svcplane's IPv4 routes are added again after it in the same batch (EEXIST,
  // where another address kept them, is no failure).
  if (v4AddressGone) {
    for (const a of [...kernel.bound]) {
      if (a.includes(':') || !wanted.has(a)) continue; // unwanted ones are still deleted (ENOENT tolerated)
      kernel.bound.delete(a);
      touchedAddrs.add(a);
    }
  }
  for (const a of touchedAddrs) {
    const want = wanted.has(a);
    const have = kernel.bound.has(a);
    if (want && !have) {
      (route ? rtnl.writeNewLocalRoute : rtnl.writeNewAddr)(bind.w, kernel.linkIndex, a);
      bind.op(BINDING_OP.bind, [EEXIST], a);
    }
    if (!want && have) {
      (route ? rtnl.writeDelLocalRoute : rtnl.writeDelAddr)(unbind.w, kernel.linkIndex, a);
      unbind.op(BINDING_OP.unbind, [ESRCH, ENOENT, EADDRNOTAVAIL], a);
    }
  }
  return { bind, unbind };
}

/**
 * One batch in three passes, so its order is: services, then real servers, then deletions of services. Operations
 * carry a code and the virtual service key (and real server key): descriptions are built only for refusals.
 * `programmed` is updated as operations are queued (a refusal makes the next sync re-read it); real servers no
 * longer wanted are drained (TCP/SCTP) or deleted with their UDP flows noted in `staleFlows`.
 */
export function ipvsBatch(
  family: number, touched: Iterable<string>, desired: ReadonlyMap<string, DesiredService>, programmed: Map<string, ProgrammedService>,
  drainer: Drainer, now: number, staleFlows: StaleFlow[],
): OpBatch {
  const name = (k: string) => {
    const want = desired.get(k);
    return want ? `${ipvs.serviceKeyString(want.vs)} (Service ${want.owner})` : k;
  };
  const ops = new OpBatch((code, k, dk) => {
    const rs = dk?.replace('|', ':');
    switch (code) {
      case IPVS_OP.addService: return `add virtual service ${name(k!)}`;
      case IPVS_OP.updateService: return `update virtual service ${name(k!)}`;
      case IPVS_OP.addServer: return `add real server ${rs} to ${name(k!)}`;
      case IPVS_OP.setWeight: return `set the weight of real server ${rs} in ${name(k!)}`;
      case IPVS_OP.deleteServer: return `delete real server ${rs} from ${name(k!)}`;
      case IPVS_OP.drainServer: return `drain real server ${rs} of ${name(k!)} (weight 0)`;
      default: return `delete virtual service ${k}`;
    }
  });
  const keys = [...touched];
  for (const k of keys) {
    const want = desired.get(k);
    if (!want) continue;
    const have = programmed.get(k);
    if (!have) {
      ipvs.writeNewService(ops.w, family, want.vs);
      ops.op(IPVS_OP.addService, undefined, k);
    } else if (!sameService(have.vs, want.vs)) {
      ipvs.writeSetService(ops.w, family, want.vs);
      ops.op(IPVS_OP.updateService, undefined, k);
    }
  }
  const gone: ProgrammedService[] = [];
  for (const k of keys) {
    const want = desired.get(k);
    const have = programmed.get(k);
    if (!want) {
      if (have) gone.push(have);
      programmed.delete(k);
      continue;
    }
    if (!have) {
      // A new virtual service: every real server is new. Its programmed map is the desired one (never mutated:
      // draining entries only ever go into maps built below).
      for (const [dk, d] of want.dests) {
        ipvs.writeNewDest(ops.w, family, want.vs, d);
        ops.op(IPVS_OP.addServer, undefined, k, dk);
      }
      programmed.set(k, { vs: want.vs, dests: want.dests });
      continue;
    }
    const dests = new Map<string, ipvs.RealServer>();
    for (const [dk, d] of want.dests) {
      const cur = have.dests.get(dk);
      drainer.cancel(k, dk);
      if (!cur) {
        ipvs.writeNewDest(ops.w, family, want.vs, d);
        ops.op(IPVS_OP.addServer, undefined, k, dk);
      } else if (!sameDest(cur, d)) {
        ipvs.writeSetDest(ops.w, family, want.vs, d);
        ops.op(IPVS_OP.setWeight, undefined, k, dk);
      }
      dests.set(dk, d);
    }
    for (const [dk, cur] of have.dests) {
      if (want.dests.has(dk)) continue;
      if (want.vs.protocol === 'UDP') {
        ipvs.writeDelDest(ops.w, family, want.vs, cur);
        ops.op(IPVS_OP.deleteServer, [ENOENT], k, dk);
        staleFlows.push({ family: want.vs.family, dst: want.vs.address, dport: want.vs.port, endpoint: cur.address, endpointPort: cur.port });
        continue;
      }
      drainer.start(k, dk, now);
      if (cur.weight !== 0) {
        ipvs.writeSetDest(ops.w, family, want.vs, { ...cur, weight: 0 });
        ops.op(IPVS_OP.drainServer, undefined, k, dk);
      }
      dests.set(dk, { ...cur, weight: 0 });
    }
    programmed.set(k, { vs: want.vs, dests });
  }
  for (const have of gone) {
    ipvs.writeDelService(ops.w, family, have.vs);
    ops.op(IPVS_OP.deleteService, [ESRCH], ipvs.serviceKeyString(have.vs));
  }
  return ops;
}

/**
 * Whether a real server is as wanted: weight, forwarding method and connection thresholds (`ipvsadm -e -x/-y` sets
 * those; a set upper threshold stops new connections to it). SET_DEST sends all four.
 */
export function sameDest(a: ipvs.RealServer, b: ipvs.RealServer): boolean {
  return a.weight === b.weight && a.forward === b.forward && a.upperThreshold === b.upperThreshold && a.lowerThreshold === b.lowerThreshold;
}

export function sameService(a: ipvs.VirtualService, b: ipvs.VirtualService): boolean {
  const flags = (x: number) => x & ~ipvs.SVC_FLAG.HASHED;
  return a.scheduler === b.scheduler && flags(a.flags) === flags(b.flags) && a.timeout === b.timeout && a.netmask === b.netmask;
}
