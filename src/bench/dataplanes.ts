// The dataplane a bench mode programs into the bench's node, with its netlink traffic counted (messages, and the
// last batch kept for the kernel floor). The same classes `svcplane run` uses, configured as a node of the bench's
// cluster (BENCH_NODE, POD_CIDR).
import type { CommitResult } from '../native';
import { EbpfProxier } from '../dataplane/ebpf/proxier';
import { LibbpfKernel, defaultObjectPath } from '../dataplane/ebpf/kernel';
import { IpvsClient } from '../dataplane/ipvs/client';
import { defaultIpvsConfig } from '../dataplane/ipvs/config';
import { IpvsProxier } from '../dataplane/ipvs/proxier';
import { NetlinkNftClient } from '../dataplane/nftables/client';
import { NftablesProxier } from '../dataplane/nftables/proxier';
import { defaultConfig } from '../dataplane/nftables/rules/config';
import type { NftTransaction } from '../dataplane/nftables/transaction';
import { readNodeAddresses } from '../dataplane/nodeAddresses';
import type { Dataplane } from '../dataplane/types';
import { BENCH_NODE } from './model';
import type { BenchNode } from './node';
import type { BenchMode } from './options';
import { POD_CIDR } from './shape';

/** NetlinkNftClient that counts the netlink messages it sends and can keep the last batch (the kernel floor's input). */
export class MeteredNftClient extends NetlinkNftClient {
  messages = 0;
  keepBatch = false;
  lastBatch: Buffer | undefined;

  override async run(tx: NftTransaction): Promise<CommitResult> {
    const r = await super.run(tx);
    this.messages += r.messages;
    if (this.keepBatch) this.lastBatch = Buffer.from(tx.records());
    return r;
  }
}

export interface BenchDataplane {
  dataplane: Dataplane;
  nft: MeteredNftClient;
  /** The ebpf mode's maps (its socket-LB floor). */
  ebpf?: LibbpfKernel;
}

export function openBenchDataplane(mode: BenchMode, node: BenchNode): BenchDataplane {
  const netns = node.netns;
  const nft = new MeteredNftClient({ netns });
  const config = defaultConfig({ clusterCIDRs: [POD_CIDR], nodeName: BENCH_NODE });
  if (mode === 'ipvs') {
    const dataplane = new IpvsProxier(new IpvsClient({ netns }), nft, defaultIpvsConfig({ clusterCIDRs: [POD_CIDR], nodeName: BENCH_NODE }));
    return { dataplane, nft };
  }
  const nftables = new NftablesProxier(nft, config);
  if (mode === 'nftables') return { dataplane: nftables, nft };
  const place = node.ebpfPlace();
  const kernel = new LibbpfKernel({ object: defaultObjectPath(), root: place.bpfRoot, cgroup: place.cgroup });
  const dataplane = new EbpfProxier(kernel, nftables, { nodePortAddresses: [], node: { name: BENCH_NODE }, nodeAddresses: () => readNodeAddresses(netns) });
  return { dataplane, nft, ebpf: kernel };
}
