// Timed partial syncs of fixed kinds of change (one endpoint added, removed, a Service added), round after round: the
// repository benchmarks' "incremental" figures (svcplane bench's churn phase, churn.ts, is a rolling deployment instead).
import type { ServicePort, ServicePortKey } from '../model/types';
import type { Dataplane } from '../dataplane/types';
import { type BenchDataplaneOverrides, openBenchDataplane } from './dataplanes';
import { inFreshNode } from './node';

/** One kind of change: the Service port to program in round i, made from the round's Service port. */
export interface TimedChange {
  name: string;
  make: (sp: ServicePort, i: number) => ServicePort;
}

/** sp with one more endpoint (an address from 198.18.127.0/24, a new one each round mod 250). */
export function withExtraEndpoint(sp: ServicePort, i: number): ServicePort {
  const more = [...sp.endpoints, { ...sp.endpoints[0], address: `198.18.127.${(i % 250) + 1}` }];
  return { ...sp, endpoints: more, allEndpoints: more };
}

/**
 * `reps` rounds (after `warmup` unrecorded ones: the JIT and the kernel's set memory warm up), each sending every
 * change kind in order as its own partial sync, to a Service port spread over the cluster (so no one chain or set
 * bucket gets all the changes). Returns each kind's samples (µs) and its operations per change.
 */
export async function timeChanges(p: Dataplane, model: Map<ServicePortKey, ServicePort>, kinds: TimedChange[], reps: number, warmup = 10): Promise<{ samples: Record<string, number[]>; operations: Record<string, number> }> {
  const keys = [...model.keys()];
  const samples: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k.name, [] as number[]]));
  const operations: Record<string, number> = {};
  for (let i = 0; i < reps + warmup; i++) {
    const sp = model.get(keys[(i * 7919) % keys.length])!;
    for (const k of kinds) {
      const change = k.make(sp, i);
      const t0 = process.hrtime.bigint();
      const r = await p.syncPartial(new Map([[change.key, change]]));
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (r.full) throw new Error('expected a partial sync');
      operations[k.name] = r.operations;
      if (i >= warmup) samples[k.name].push(us);
    }
  }
  return { samples, operations };
}

/**
 * timeChanges on a node of its own: a new empty namespace holding `model` (one full sync, untimed), then `before`
 * (a benchmark waits for a quiet machine) and the rounds. bench:ipvs adds its pod network's link in `setup`.
 */
export function timeChangesInFreshNode(mode: 'nftables' | 'ipvs', model: Map<ServicePortKey, ServicePort>, kinds: TimedChange[], reps: number, opts: { warmup?: number; overrides?: BenchDataplaneOverrides; setup?: (netns: string) => Promise<unknown>; before?: () => Promise<unknown> } = {}): Promise<{ samples: Record<string, number[]>; operations: Record<string, number> }> {
  return inFreshNode(async (node) => {
    await opts.setup?.(node.netns);
    const { dataplane } = openBenchDataplane(mode, node, opts.overrides);
    try {
      await dataplane.syncFull(model);
      await opts.before?.();
      return await timeChanges(dataplane, model, kinds, reps, opts.warmup);
    } finally {
      dataplane.close();
    }
  });
}
