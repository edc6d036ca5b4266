// What a virtual service is, read from the nftables table beside IPVS (pure): which Service port owns it, what
// kind of address it answers on, and why its real servers are these (the element comments filter.ts writes).
// `status` and `explain` use it, so a fresh process names Services from the kernel, not from memory.
import { ipToBytes } from '../../model/ip';
import { IPPROTO } from '../nftables/netlink/constants';
import type { ElementState, TableState } from '../nftables/objects';
import { addrProtoPortKey, protoPortKey } from '../nftables/rules/keys';
import { splitComment } from '../nftables/status';
import { IPVS_SETS } from './filter';

export interface VirtualServiceDescription {
  kind: 'ClusterIP' | 'External' | 'NodePort';
  /** "namespace/name:port"; '' when the table does not say (a table from before comments, or none). */
  service: string;
  why: string[];
  policy?: 'Local';
  reject: boolean;
  /** Dropped for clients from outside (eTP Local, none here) or for everyone (iTP Local, none here). */
  drop: boolean;
  /** Keys into the table, for callers that look further (explain: the firewall). */
  addressKey: Buffer;
  nodePortKey: Buffer;
}

const PROTO: Record<string, number> = IPPROTO;

function element(t: TableState | undefined, set: string, key: Buffer): ElementState | undefined {
  return t?.elements.get(set)?.get(key.toString('latin1'));
}

export function describeVirtualService(t: TableState | undefined, protocol: string, address: string, port: number): VirtualServiceDescription {
  const proto = PROTO[protocol] ?? 0;
  const addressKey = addrProtoPortKey(address, proto, port);
  const nodePortKey = protoPortKey(proto, port);
  const onAddress = element(t, IPVS_SETS.serviceIPs, addressKey);
  // Without a table (or before it is programmed) a virtual service on a Service address still reads as one.
  if (onAddress || !t) {
    const cluster = !!element(t, IPVS_SETS.clusterIPs, ipToBytes(address));
    const local = !!element(t, IPVS_SETS.localPolicyIPs, addressKey);
    const c = splitComment(onAddress?.comment);
    return {
      kind: cluster ? 'ClusterIP' : 'External', service: c.service ?? '', why: c.why, ...(local ? { policy: 'Local' as const } : {}),
      reject: !!element(t, IPVS_SETS.noEndpointServices, addressKey),
      drop: !!(element(t, IPVS_SETS.dropServices, addressKey) || element(t, IPVS_SETS.dropExternal, addressKey)),
      addressKey, nodePortKey,
    };
  }
  const local = element(t, IPVS_SETS.localPolicyNodePorts, nodePortKey);
  const c = splitComment((local ?? element(t, IPVS_SETS.masqNodePorts, nodePortKey))?.comment);
  return {
    kind: 'NodePort', service: c.service ?? '', why: c.why, ...(local ? { policy: 'Local' as const } : {}),
    reject: !!element(t, IPVS_SETS.noEndpointNodePorts, nodePortKey),
    drop: !!element(t, IPVS_SETS.dropNodePorts, nodePortKey),
    addressKey, nodePortKey,
  };
}
