// The dataplane a bench mode programs into the bench's node, with its netlink traffic counted (messages, and the
// last batch kept for the kernel floor). The same classes `svcplane run` uses, configured as a node of the bench's
// cluster (BENCH_NODE, POD_CIDR).
import type { CommitResult } from '../native';
import { EbpfProxier } from '../dataplane/ebpf/proxier';
import { LibbpfKernel, defaultObjectPath } from '../dataplane/ebpf/kernel';
import { type ApplyResult, IpvsClient, OpBatch, type Operation } from '../dataplane/ipvs/client';
import { type IpvsProxierConfig, defaultIpvsConfig } from '../dataplane/ipvs/config';
import { IpvsProxier } from '../dataplane/ipvs/proxier';
import { NetlinkNftClient } from '../dataplane/nftables/client';
import type { KernelSupport } from '../dataplane/nftables/kernel';
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

/** One write the IPVS mode sent (IPVS over generic netlink, or rtnetlink), as sent: the IPVS floor replays them. */
export interface IpvsWrite {
  bus: 'generic' | 'route';
  ops: Operation[] | OpBatch;
}

/** IpvsClient that counts the writes it sends and can keep them (the IPVS floor's input); reads are not kept. */
export class RecordingIpvsClient extends IpvsClient {
  keepWrites = false;
  writes: IpvsWrite[] = [];

  /** Netlink messages written (one per operation), as MeteredNftClient counts its own. */
  messages = 0;

  override async applyIpvs(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    this.keep('generic', ops);
    return this.count(await super.applyIpvs(ops));
  }

  override async applyRoute(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    this.keep('route', ops);
    return this.count(await super.applyRoute(ops));
  }

  private count(r: ApplyResult): ApplyResult {
    this.messages += r.operations;
    return r;
  }

  /** The writes kept so far, and stop keeping them. */
  takeWrites(): IpvsWrite[] {
    const w = this.writes;
    this.writes = [];
    this.keepWrites = false;
    return w;
  }

  private keep(bus: IpvsWrite['bus'], ops: Operation[] | OpBatch): void {
    // A batch is not written to after it is sent: keeping it (not a copy) is enough.
    if (this.keepWrites && (ops instanceof OpBatch ? ops.size : ops.length)) this.writes.push({ bus, ops });
  }
}

/** The ipvs mode's link for Service addresses (its default). */
export const IPVS_LINK = defaultIpvsConfig().interfaceName;

export interface BenchDataplane {
  dataplane: Dataplane;
  nft: MeteredNftClient;
  /** The ipvs mode's IPVS and rtnetlink client (its floor). */
  ipvs?: RecordingIpvsClient;
  /** The ebpf mode's maps (its socket-LB floor). */
  ebpf?: LibbpfKernel;
}

/** What a repository benchmark varies: the nftables shape pinned (kernels before 6.5's), IPVS's bind mode. */
export interface BenchDataplaneOverrides {
  kernel?: KernelSupport;
  bindMode?: IpvsProxierConfig['bindMode'];
}

/** Netlink messages the dataplane has written so far: its nftables batches', and the ipvs mode's IPVS and rtnetlink ones. */
export function netlinkMessagesOf(bench: BenchDataplane): number {
  return bench.nft.messages + (bench.ipvs?.messages ?? 0);
}

export function openBenchDataplane(mode: BenchMode, node: BenchNode, overrides: BenchDataplaneOverrides = {}): BenchDataplane {
  const netns = node.netns;
  const nft = new MeteredNftClient({ netns });
  const config = defaultConfig({ clusterCIDRs: [POD_CIDR], nodeName: BENCH_NODE, ...(overrides.kernel ? { kernel: overrides.kernel } : {}) });
  if (mode === 'ipvs') {
    const ipvs = new RecordingIpvsClient({ netns });
    const dataplane = new IpvsProxier(ipvs, nft, defaultIpvsConfig({ clusterCIDRs: [POD_CIDR], nodeName: BENCH_NODE, ...(overrides.bindMode ? { bindMode: overrides.bindMode } : {}) }));
    return { dataplane, nft, ipvs };
  }
  const nftables = new NftablesProxier(nft, config);
  if (mode === 'nftables') return { dataplane: nftables, nft };
  const place = node.ebpfPlace();
  const kernel = new LibbpfKernel({ object: defaultObjectPath(), root: place.bpfRoot, cgroup: place.cgroup });
  const dataplane = new EbpfProxier(kernel, nftables, { nodePortAddresses: [], node: { name: BENCH_NODE }, nodeAddresses: () => readNodeAddresses(netns) });
  return { dataplane, nft, ebpf: kernel };
}
