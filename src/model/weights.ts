// Endpoint weights (pure): the Service annotation svcplane.io/endpoint-weights, e.g.
//   svcplane.io/endpoint-weights: "node/big-node-1=4, zone/eu-west-1a=2, 10.1.2.3=0"
// Each entry is SELECTOR=WEIGHT; a selector is an endpoint address, `node/<nodeName>` or `zone/<zone>`; the most
// specific entry that matches an endpoint wins (address, then node, then zone); endpoints no entry matches weigh 1.
// WEIGHT is an integer 0..100; 0 sends an endpoint no new connections (IPVS weight 0), as draining does.
//
// Why a Service annotation: EndpointSlice endpoints carry no annotations, and a Pod annotation would cost a watch
// of every Pod in the cluster (tens of thousands of objects, and their churn, on every node) to learn a few numbers;
// the Service is already watched, its owner is the one who knows how its endpoints should share the load, and node
// or zone selectors describe the usual reason for unequal weights (unequal machines) without naming Pods, whose
// names and addresses change on every rollout.
import type { Endpoint } from './types';

export const ENDPOINT_WEIGHTS_ANNOTATION = 'svcplane.io/endpoint-weights';
export const MAX_ENDPOINT_WEIGHT = 100;

export interface EndpointWeights {
  addresses: ReadonlyMap<string, number>;
  nodes: ReadonlyMap<string, number>;
  zones: ReadonlyMap<string, number>;
}

/** Parses the annotation; entries that do not parse are skipped and reported (the rest apply). */
export function parseEndpointWeights(text: string, canonicalIP: (s: string) => string | undefined): { weights?: EndpointWeights; problems: string[] } {
  const addresses = new Map<string, number>();
  const nodes = new Map<string, number>();
  const zones = new Map<string, number>();
  const problems: string[] = [];
  for (const raw of text.split(/[,\s]+/)) {
    if (raw === '') continue;
    const eq = raw.lastIndexOf('=');
    const sel = eq > 0 ? raw.slice(0, eq) : '';
    const w = eq > 0 ? raw.slice(eq + 1) : '';
    if (!sel || !/^\d{1,3}$/.test(w) || Number(w) > MAX_ENDPOINT_WEIGHT) {
      problems.push(`${ENDPOINT_WEIGHTS_ANNOTATION}: entry ${JSON.stringify(raw)} is not SELECTOR=WEIGHT with WEIGHT in 0..${MAX_ENDPOINT_WEIGHT}; ignored`);
      continue;
    }
    const weight = Number(w);
    if (sel.startsWith('node/') && sel.length > 5) nodes.set(sel.slice(5), weight);
    else if (sel.startsWith('zone/') && sel.length > 5) zones.set(sel.slice(5), weight);
    else {
      const ip = canonicalIP(sel);
      if (ip === undefined) {
        problems.push(`${ENDPOINT_WEIGHTS_ANNOTATION}: selector ${JSON.stringify(sel)} is not an IP address, node/NAME or zone/NAME; ignored`);
        continue;
      }
      addresses.set(ip, weight);
    }
  }
  if (addresses.size + nodes.size + zones.size === 0) return { problems };
  return { weights: { addresses, nodes, zones }, problems };
}

/** An endpoint's weight under `weights` (1 without any). */
export function endpointWeight(weights: EndpointWeights | undefined, e: Pick<Endpoint, 'address' | 'nodeName' | 'zone'>): number {
  if (!weights) return 1;
  return weights.addresses.get(e.address) ?? (e.nodeName !== undefined ? weights.nodes.get(e.nodeName) : undefined) ??
    (e.zone !== undefined ? weights.zones.get(e.zone) : undefined) ?? 1;
}
