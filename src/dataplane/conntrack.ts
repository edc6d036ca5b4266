// Stale UDP conntrack entries: a UDP "connection" through a Service is a conntrack entry that keeps its DNAT to
// the endpoint first chosen for as long as the client keeps sending (DNS clients reuse a socket), so when that
// endpoint goes away, the client's packets keep going to it and are lost. Like kube-proxy, svcplane deletes the
// entries that point at an endpoint no longer serving the Service port (UDP only: TCP and SCTP end their own
// connections). Unlike kube-proxy (which dumps the whole table and matches in userspace), each deletion is
// preceded by a dump the kernel filters (CTA_FILTER: original destination and protocol, reply source = the old
// endpoint), so svcplane reads only the entries it deletes, whatever the size of the table.
import { native } from '../native';
import { type CtEntry, IPPROTO_UDP, decodeEntry, writeDelete, writeDump, writeFilteredDump, writeStatsRequest } from '../netlink/ctnetlink';
import { NetlinkWriter, splitMessages } from '../netlink/message';

/** UDP flows to delete: sent to dst:dport (a Service address, or any address for a NodePort), answered by the endpoint. */
export interface StaleFlow {
  family: 4 | 6;
  /** The Service address the client sent to; undefined for a NodePort (any node address). */
  dst?: string;
  dport: number;
  endpoint: string;
  endpointPort: number;
}

export interface ConntrackCleanup {
  /** Entries deleted, by family. */
  deleted: { 4: number; 6: number };
  /** Exchanges the kernel refused (reported, never fatal: the dataplane itself is programmed). */
  errors: string[];
}

const ENOENT = 2;

export class ConntrackCleaner {
  private readonly sock: InstanceType<ReturnType<typeof native>['NetlinkTransceiver']>;

  constructor(opts: { netns?: string } = {}) {
    this.sock = new (native().NetlinkTransceiver)({ bus: 'netfilter', ...(opts.netns ? { netns: opts.netns } : {}) });
  }

  /**
   * Whether ctnetlink answers (preflight): undefined if so, else why not. Not fatal: without it the dataplane is
   * programmed as usual and only stale UDP entries stay (kube-proxy without the conntrack tool is the same).
   */
  async check(): Promise<string | undefined> {
    const w = new NetlinkWriter();
    writeStatsRequest(w);
    try {
      const r = await this.sock.transactPacked(w.finish());
      const f = r.failures[0];
      return f ? `${f.code}${f.kernelMessage ? ` (${f.kernelMessage})` : ''}` : undefined;
    } catch (e) {
      return (e as Error).message;
    }
  }

  async deleteStale(flows: StaleFlow[]): Promise<ConntrackCleanup> {
    const out: ConntrackCleanup = { deleted: { 4: 0, 6: 0 }, errors: [] };
    if (flows.length === 0) return out;
    // One kernel-filtered dump per flow (they go one after another in one exchange), then every match deleted.
    const dumps = new NetlinkWriter();
    for (const f of flows) {
      writeFilteredDump(dumps, {
        family: f.family,
        orig: { dst: f.dst, proto: IPPROTO_UDP, dport: f.dport },
        reply: { src: f.endpoint, proto: IPPROTO_UDP, sport: f.endpointPort },
      });
    }
    const res = await this.sock.transactPacked(dumps.finish());
    for (const e of res.failures) out.errors.push(`dump conntrack entries of ${describe(flows[e.index])}: ${e.code}`);
    const entries: CtEntry[] = [];
    for (const r of res.replies) for (const m of splitMessages(r.data)) {
      const e = decodeEntry(m);
      if (e && e.orig.proto === IPPROTO_UDP) entries.push(e);
    }
    return this.deleteEntries(entries, out);
  }

  /**
   * Deletes the entries to these Service addresses that were never DNATed (reply source = original destination):
   * made while svcplane's table did not see the traffic (dormant, its NAT base chains missing), where the node
   * routed the packets on as they were. Such an entry keeps its flow un-NATed for as long as it lives (a SYN_SENT
   * one two minutes), so a client retrying from the same port, or retransmitting its SYN, is refused by the
   * unallocated-port check even after the table is repaired. One dump per family, matched here (as kube-proxy
   * matches its conntrack cleanups); only after such a repair, which is rare. TCP, UDP and SCTP alike.
   */
  async deleteUnNatted(addresses: Iterable<string>): Promise<ConntrackCleanup> {
    const out: ConntrackCleanup = { deleted: { 4: 0, 6: 0 }, errors: [] };
    const wanted = new Set(addresses);
    if (wanted.size === 0) return out;
    const w = new NetlinkWriter();
    const families = [...new Set([...wanted].map((a) => (a.includes(':') ? 6 : 4)))] as Array<4 | 6>;
    for (const f of families) writeDump(w, f);
    const res = await this.sock.transactPacked(w.finish());
    for (const e of res.failures) out.errors.push(`dump the IPv${families[e.index]} conntrack table: ${e.code}`);
    const entries: CtEntry[] = [];
    for (const r of res.replies) for (const m of splitMessages(r.data)) {
      const e = decodeEntry(m);
      if (e?.orig.dst !== undefined && wanted.has(e.orig.dst) && e.reply.src === e.orig.dst) entries.push(e);
    }
    return this.deleteEntries(entries, out);
  }

  private async deleteEntries(entries: CtEntry[], out: ConntrackCleanup): Promise<ConntrackCleanup> {
    if (entries.length === 0) return out;
    const dels = new NetlinkWriter();
    for (const e of entries) writeDelete(dels, e);
    const d = await this.sock.transactPacked(dels.finish(), { ackLastOnly: true });
    const failed = new Set<number>();
    for (const f of d.failures) {
      failed.add(f.index);
      // Gone meanwhile (expired, or deleted by someone else): what we wanted.
      if (f.errno !== ENOENT) out.errors.push(`delete conntrack entry ${entries[f.index].orig.src}:${entries[f.index].orig.sport} -> ${entries[f.index].orig.dst}:${entries[f.index].orig.dport}: ${f.code}`);
    }
    entries.forEach((e, i) => {
      if (!failed.has(i)) out.deleted[e.family]++;
    });
    return out;
  }

  close(): void {
    this.sock.close();
  }
}

function describe(f: StaleFlow): string {
  return `UDP ${f.dst ?? '*'}:${f.dport} answered by ${f.endpoint}:${f.endpointPort}`;
}

/** What a dataplane needs of ConntrackCleaner (tests give their own). */
export type StaleFlowCleaner = Pick<ConntrackCleaner, 'deleteStale' | 'deleteUnNatted' | 'close'>;
