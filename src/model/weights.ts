// Endpoint weights (pure): the Service annotation svcplane.io/endpoint-weights, e.g.
//   svcplane.io/endpoint-weights: "node/big-node-1=4, zone/eu-west-1a=2, 10.1.2.3=0"
// Each entry is SELECTOR=WEIGHT; a selector is an endpoint address, `node/<nodeName>` or `zone/<zone>`; the most
// specific entry that matches an endpoint wins (address, then node, then zone); endpoints no entry matches weigh 1.
// WEIGHT is an integer 0..100; 0 sends an endpoint no new connections (IPVS weight 0), as draining does.
//
// The nftables dataplane picks an endpoint by slot (numgen mod N), so an endpoint of weight w holds w slots: weights
// amplify the elements programmed. Bounded here: the slots of one Service port's endpoints never exceed
// maxWeightedSlots(n) = max(1024, 2 x n) for n endpoints; weights that need more are scaled down (each weighted
// endpoint keeps at least one slot, ratios become approximate) and the Service is reported. IPVS takes the weights
// as they are (a weight per real server, nothing amplified).
//
// Why a Service annotation: EndpointSlice endpoints carry no annotations, and a Pod annotation would cost a watch
// of every Pod in the cluster (tens of thousands of objects, and their churn, on every node) to learn a few numbers;
// the Service is already watched, its owner is the one who knows how its endpoints should share the load, and node
// or zone selectors describe the usual reason for unequal weights (unequal machines) without naming Pods, whose
// names and addresses change on every rollout.
import type { EndpointChoice } from './topology';
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

/** The most slots one Service port's `n` endpoints may hold: a 100:1 ratio among ten endpoints fits exactly. */
export function maxWeightedSlots(n: number): number {
  return Math.max(1024, 2 * n);
}

/**
 * Slots per endpoint for these weights: divided by their greatest common divisor, then, when the total passes
 * maxWeightedSlots, scaled down (every endpoint of weight > 0 keeps one slot and shares the rest of the budget in
 * proportion to its weight above 1). `wanted` is the total before scaling.
 */
export function slotCounts(weights: readonly number[]): { counts: number[]; wanted: number; scaled: boolean } {
  const g = weights.reduce((a, b) => gcd(a, b), 0);
  if (g === 0) return { counts: weights.map(() => 0), wanted: 0, scaled: false };
  const counts = weights.map((w) => w / g);
  const wanted = counts.reduce((a, b) => a + b, 0);
  const live = counts.filter((c) => c > 0).length;
  const cap = maxWeightedSlots(live);
  if (wanted <= cap) return { counts, wanted, scaled: false };
  const extra = wanted - live;
  const budget = cap - live;
  const scaled = counts.map((c) => (c === 0 ? 0 : 1 + Math.floor(((c - 1) * budget) / extra)));
  const g2 = scaled.reduce((a, b) => gcd(a, b), 0);
  return { counts: scaled.map((c) => c / g2), wanted, scaled: true };
}

/** The endpoints slot by slot: each repeated by its slot count (slotCounts). */
export function weightedSlots(endpoints: readonly Endpoint[], weights: EndpointWeights | undefined): Endpoint[] {
  if (!weights) return endpoints as Endpoint[];
  const { counts } = slotCounts(endpoints.map((e) => endpointWeight(weights, e)));
  const out: Endpoint[] = [];
  endpoints.forEach((e, i) => {
    for (let k = 0; k < counts[i]; k++) out.push(e);
  });
  return out;
}

/**
 * A topology choice as slots see it: each of its lists whose endpoints all weigh 0 holds no slot, so it is emptied
 * (in place: the nftables dataplane tells the lists apart by identity); with no cluster or local endpoint left, the
 * Service port has nothing to pick (hasAny false: it is programmed as having no endpoints).
 */
export function emptyUnweightedLists(choice: EndpointChoice, weights: EndpointWeights | undefined): void {
  if (!weights) return;
  for (const list of [choice.cluster, choice.local, choice.internal, choice.external]) {
    if (list.length && weightedSlots(list, weights).length === 0) list.length = 0;
  }
  if (choice.cluster.length === 0 && choice.local.length === 0) choice.hasAny = false;
}

/** Why a Service port's weights were scaled down (the nftables dataplane's slot bound), or undefined. */
export function weightScaling(endpoints: readonly Endpoint[], weights: EndpointWeights | undefined): string | undefined {
  if (!weights) return undefined;
  const r = slotCounts(endpoints.map((e) => endpointWeight(weights, e)));
  if (!r.scaled) return undefined;
  const got = r.counts.reduce((a, b) => a + b, 0);
  return `${ENDPOINT_WEIGHTS_ANNOTATION}: ${endpoints.length} endpoints would need ${r.wanted} slots; scaled down to ${got} (at most max(1024, 2 x endpoints) per port), so the ratios are approximate (IPVS mode uses them as they are)`;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** An endpoint's weight under `weights` (1 without any). */
export function endpointWeight(weights: EndpointWeights | undefined, e: Pick<Endpoint, 'address' | 'nodeName' | 'zone'>): number {
  if (!weights) return 1;
  return weights.addresses.get(e.address) ?? (e.nodeName !== undefined ? weights.nodes.get(e.nodeName) : undefined) ??
    (e.zone !== undefined ? weights.zones.get(e.zone) : undefined) ?? 1;
}
