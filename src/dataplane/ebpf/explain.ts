// explain in the ebpf mode: the nftables explanation (traffic from other machines) with, beside it, what the socket
// hooks do with a connection that starts on this node, read from the maps (one read for all flows).
import type { Explanation, ExplainedEndpoint, FlowQuery } from '../explain';
import { readImage } from './converge';
import { slotKey } from './image';
import { FLAG } from './layout';
import type { EbpfKernel } from './kernel';

export async function explainSocket(kernel: EbpfKernel, flows: FlowQuery[], nft: Explanation[]): Promise<Explanation[]> {
  const img = await readImage(kernel);
  return nft.map((e, i) => {
    const q = flows[i];
    if (q.protocol === 'SCTP') return { ...e, socket: { verdict: 'left to nftables', endpoints: [], why: 'the socket hooks translate TCP and UDP only' } };
    const entry = img.services.get(`${q.protocol}|${q.address}|${q.port}`);
    if (!entry) {
      const why = e.verdict === 'not a Service' ? 'not a Service frontend' : 'not in the socket LB maps (a Local policy with no endpoint here, loadBalancerSourceRanges, or too many slots): the table below decides';
      return { ...e, socket: { verdict: 'left to nftables', endpoints: [], why } };
    }
    const { value } = entry;
    if (value.count === 0) return { ...e, socket: { verdict: 'refused', endpoints: [], why: 'no endpoints: connect() and sendmsg() fail with ECONNREFUSED' } };
    const slots = new Map<string, ExplainedEndpoint>();
    for (let s = 1; s <= value.count; s++) {
      const b = img.backends.get(img.slots.get(slotKey(value.set, s)) ?? -1);
      if (!b) continue;
      const k = `${b.address}|${b.port}`;
      const ep = slots.get(k) ?? { address: b.address, port: b.port, share: 0 };
      ep.share = (ep.share ?? 0) + 1 / value.count;
      slots.set(k, ep);
    }
    const why = [`${value.count} slot(s), picked at random per TCP connection, per socket for UDP`];
    if (value.flags & FLAG.affinity) why.push(`sessionAffinity: a client network namespace stays on its endpoint for ${value.affinitySeconds} s after its last connection`);
    if (value.flags & FLAG.external) why.push('an external address: node-local clients get the cluster-wide endpoints, as kube-proxy gives them');
    return { ...e, socket: { verdict: 'translated', endpoints: [...slots.values()], why: why.join('; ') } };
  });
}
