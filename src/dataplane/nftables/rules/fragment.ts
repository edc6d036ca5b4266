// What one Service port adds to the nftables mode's table of one family (pure): elements only, grouped into claims
// (the address:port or NodePort it owns) and shared elements (wanted by several ports), plus the ids of pick rules
// it needs beyond the static ones. The proxier (proxier.ts) diffs fragments, ledger.ts settles who owns a claim.
// A few helpers here serve the IPVS mode's table too (ofFamily, needsHairpin).
import { ipToBytes } from '../../../model/ip';
import { choiceReasons, chooseEndpoints } from '../../../model/topology';
import type { Endpoint, IPFamily, ServicePort } from '../../../model/types';
import { emptyUnweightedLists, weightedSlots } from '../../../model/weights';
import { IPPROTO, type NfFamily } from '../netlink/constants';
import { MAX_COMMENT_BYTES } from '../netlink/udata';
import type { ElementState } from '../objects';
import type { NftablesConfig } from './config';
import { firewallElements, firewallRanges } from './firewall';
import { PROTO_NUMBER, addrProtoPortKey, endpointData, pairBytes, protoPortKey, slotKeys } from './keys';
import { FAMILIES, SETS, STATIC_PICK_COUNTS } from './names';
import { MAX_AFFINITY_COUNT, PICK, type PickKind, affinityData, affinityRuleId, countData, pickRuleId } from './picks';

/** An element with the set it goes in (one object per element: a 250k-endpoint sync makes 500k of them). */
export interface FragmentElement extends ElementState {
  set: string;
}

/**
 * One address:port/protocol (or NodePort/protocol) a Service port claims, with every element it programs for it
 * (the count or no-endpoint entry and the endpoint slots). Claims are the unit of ownership: one Service port
 * holds an address:port, a second one claiming it is a conflict (see ledger.ts).
 */
export interface Claim {
  /** "<address>|<proto>|<port>" or "nodeport|<proto>|<port>" */
  id: string;
  elements: FragmentElement[];
}

/** An element several Service ports may want (a ClusterIP in cluster-ips, a hairpin pair). */
export interface SharedElement extends FragmentElement {
  /** "<set>|<address>" */
  id: string;
}

/** What one Service port contributes to one family's table. */
export interface Fragment {
  claims: Claim[];
  shared: SharedElement[];
  /** Pick rules it needs beyond the static ones (pickRuleId): a rule stays while any Service port needs it. */
  picks: string[];
}

/** "198.18.0.1:80/TCP", "NodePort 30080/TCP": a claim id for people. */
export function describeClaim(id: string): string {
  const [addr, proto, port] = id.split('|');
  const name = PROTO_NAME[Number(proto)] ?? proto;
  if (addr === 'nodeport') return `NodePort ${port}/${name}`;
  return addr.includes(':') ? `[${addr}]:${port}/${name}` : `${addr}:${port}/${name}`;
}

const PROTO_NAME: Record<number, string> = Object.fromEntries(Object.entries(IPPROTO).map(([k, v]) => [v, k]));

/** The element a shared id ("<set>|<address>", as fragmentFor makes them) stands for. */
export function sharedElementOf(id: string): FragmentElement {
  const bar = id.indexOf('|');
  const set = id.slice(0, bar);
  const ip = id.slice(bar + 1);
  return { set, key: set === SETS.hairpin ? pairBytes(ip) : ipToBytes(ip) };
}

/** The addresses of one family, each once, without those in `exclude`. */
export function ofFamily(ips: string[], family: IPFamily, exclude: readonly string[] = []): string[] {
  return [...new Set(ips.filter((ip) => (ip.includes(':') ? 6 : 4) === family && !exclude.includes(ip)))];
}

/**
 * Whether an endpoint needs a hairpin pair: only a pod on this node can reach itself through this node's rules
 * (a pod elsewhere is proxied by its own node), so with the node's name known, endpoints of other nodes are left
 * out: a 250k-endpoint cluster then needs ~100 pairs per node, not 250k. Endpoints without a nodeName (external
 * backends in hand-made EndpointSlices) are kept.
 */
export function needsHairpin(nodeName: string | undefined, endpointNode: string | undefined): boolean {
  return !nodeName || !endpointNode || endpointNode === nodeName;
}

/**
 * The fragment of one Service port for one family, or undefined when the Service has no address of that
 * family (a single-stack Service only lives in its own family's table, NodePorts included).
 */
export function fragmentFor(sp: ServicePort, ipFamily: IPFamily, cfg: NftablesConfig): Fragment | undefined {
  const clusterIPs = ofFamily(sp.clusterIPs, ipFamily);
  if (clusterIPs.length === 0) return undefined;
  // An external address equal to a ClusterIP adds nothing: the ClusterIP's claim already serves it.
  const externalIPs = ofFamily([...sp.externalIPs, ...sp.loadBalancerIPs], ipFamily, clusterIPs);
  const proto = PROTO_NUMBER[sp.protocol];
  const choice = chooseEndpoints(sp, ipFamily, { name: cfg.nodeName, zone: cfg.nodeZone });
  const frag: Fragment = { claims: [], shared: [], picks: [] };
  const comment = sp.key;
  // Ids are kept in the ledgers between syncs: flat strings (join), not cons strings.
  const claimId = (ip: string) => [ip, proto, sp.port].join('|');
  const nodePortId = ['nodeport', proto, sp.nodePort].join('|');
  for (const ip of clusterIPs) frag.shared.push({ id: [SETS.clusterIPs, ip].join('|'), set: SETS.clusterIPs, key: ipToBytes(ip) });
  const hairpins = new Set<string>();
  const affinity = sp.sessionAffinity.type === 'ClientIP' ? Math.min(Math.max(1, sp.sessionAffinity.timeoutSeconds), 86400) : 0;
  const pick = (kind: PickKind, n: number) => {
    const id = pickRuleId(kind, n);
    if (n > STATIC_PICK_COUNTS && !frag.picks.includes(id)) frag.picks.push(id);
  };
  /** count + slot elements of `endpoints` under `key`, in the count map and slot map of `kind`. */
  const node = { name: cfg.nodeName, zone: cfg.nodeZone };
  /** The count element's comment: the Service port, and why its endpoints are these (explain and status read it). */
  const why = (view: 'cluster' | 'local') => {
    const r = choiceReasons(choice, view, node);
    if (sp.endpointWeights) r.push('weighted');
    return commentWithReasons(comment, r);
  };
  const slotsOf = (kind: PickKind, key: Buffer, endpoints: Endpoint[], out: FragmentElement[]) => {
    const k = PICK[kind];
    const bySlot = weightedSlots(endpoints, sp.endpointWeights);
    const n = bySlot.length;
    const sticky = affinity > 0 && n <= MAX_AFFINITY_COUNT;
    const view = kind === 'local-ip' || kind === 'local-nodeport' || (kind === 'ip' && endpoints === choice.local && choice.local !== choice.cluster) ? 'local' : 'cluster';
    out.push({ set: k.counts, key, data: sticky ? affinityData(n, affinity) : countData(n), comment: why(view) });
    const slots = slotKeys(key, n);
    for (let i = 0; i < n; i++) out.push({ set: k.slots, key: slots[i], data: endpointData(bySlot[i].address, bySlot[i].port) });
    for (const ep of endpoints) {
      if (!hairpins.has(ep.address) && needsHairpin(cfg.nodeName, ep.nodeName)) {
        hairpins.add(ep.address);
        frag.shared.push({ id: [SETS.hairpin, ep.address].join('|'), set: SETS.hairpin, key: pairBytes(ep.address) });
      }
    }
    if (sticky) {
      const id = affinityRuleId(kind, affinity, n);
      if (!frag.picks.includes(id)) frag.picks.push(id);
    } else pick(kind, n);
  };

  // Endpoint weights (svcplane.io/endpoint-weights): an endpoint of weight w holds w slots (weights divided by their
  // greatest common divisor, and scaled down past a bound: model/weights.ts), so numgen picks it with probability
  // w / total. All weights 0: nothing to pick.
  emptyUnweightedLists(choice, sp.endpointWeights);
  for (const ip of clusterIPs) {
    const key = addrProtoPortKey(ip, proto, sp.port);
    const elements: FragmentElement[] = [];
    if (choice.internal.length) slotsOf('ip', key, choice.internal, elements);
    else elements.push({ set: choice.hasAny ? SETS.dropServices : SETS.noEndpointServices, key, comment });
    frag.claims.push({ id: claimId(ip), elements });
  }
  const local = choice.externalLocal;
  for (const ip of externalIPs) {
    const key = addrProtoPortKey(ip, proto, sp.port);
    const elements: FragmentElement[] = [];
    if (sp.loadBalancerIPs.includes(ip)) elements.push(...firewallElements(key, firewallRanges(sp, ipFamily, cfg.nodeIPs), ipFamily));
    if (!choice.hasAny) elements.push({ set: SETS.noEndpointServices, key, comment });
    else {
      // All endpoints: externalTrafficPolicy Cluster, or this node's pods and the node itself under Local.
      slotsOf('ip', key, choice.cluster, elements);
      if (!local) elements.push({ set: SETS.externalIPs, key });
      else {
        elements.push({ set: SETS.localPolicyIPs, key });
        if (choice.local.length) slotsOf('local-ip', key, choice.local, elements);
        else elements.push({ set: SETS.dropExternal, key, comment });
      }
    }
    frag.claims.push({ id: claimId(ip), elements });
  }
  if (sp.nodePort) {
    const key = protoPortKey(proto, sp.nodePort);
    const elements: FragmentElement[] = [];
    if (!choice.hasAny) elements.push({ set: SETS.noEndpointNodePorts, key, comment });
    else {
      slotsOf('nodeport', key, choice.cluster, elements);
      if (!local) elements.push({ set: SETS.masqNodePorts, key });
      else {
        elements.push({ set: SETS.localPolicyNodePorts, key });
        if (choice.local.length) slotsOf('local-nodeport', key, choice.local, elements);
        else elements.push({ set: SETS.dropNodePorts, key, comment });
      }
    }
    frag.claims.push({ id: nodePortId, elements });
  }
  return frag;
}

/**
 * "ns/name:port (reason; reason)", within the kernel's comment size: the Service port's name always whole (status
 * and explain find the Service by it), then as many reasons as fit, the rest summed up as "+N more".
 */
export function commentWithReasons(service: string, reasons: string[]): string {
  if (reasons.length === 0) return service;
  const full = `${service} (${reasons.join('; ')})`;
  if (Buffer.byteLength(full) <= MAX_COMMENT_BYTES) return full;
  const kept: string[] = [];
  for (const r of reasons) {
    const more = reasons.length - kept.length - 1;
    const candidate = `${service} (${[...kept, r].join('; ')}${more ? `; +${more} more` : ''})`;
    if (Buffer.byteLength(candidate) > MAX_COMMENT_BYTES) break;
    kept.push(r);
  }
  const text = `${service} (${[...kept, `+${reasons.length - kept.length} more`].join('; ')})`;
  return Buffer.byteLength(text) <= MAX_COMMENT_BYTES ? text : service;
}

export function fragmentsOf(sp: ServicePort, cfg: NftablesConfig): Map<NfFamily, Fragment> {
  const out = new Map<NfFamily, Fragment>();
  for (const fam of FAMILIES) {
    const frag = fragmentFor(sp, fam.ip, cfg);
    if (frag) out.set(fam.nf, frag);
  }
  return out;
}
