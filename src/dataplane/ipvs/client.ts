// IPVS and the Service-address interface over the addon's NetlinkTransceiver: many requests per round trip, every
// reply matched by sequence number (native side), each refusal mapped back to the command and object at fault
// with its errno kept numeric.
import { native } from '../../native';
import type { NetlinkRequestResult, PackedTransactResult } from '../../native';
import { familyIdOf, getFamilyRequest } from '../../netlink/genl';
import * as ipvs from '../../netlink/ipvs';
import { NetlinkWriter, splitMessages } from '../../netlink/message';
import * as rtnl from '../../netlink/rtnl';

export class IpvsOperationError extends Error {
  constructor(message: string, readonly errno: number, readonly code: string, readonly operation: string, readonly failures: IpvsFailure[]) {
    super(message);
  }
}

export interface IpvsFailure {
  operation: string;
  errno: number;
  code: string;
  kernelMessage?: string;
}

/** One request and what it does, for error messages ("add real server 10.0.0.1:80 to TCP 198.18.100.10:80"). */
export interface Operation {
  request: Buffer;
  describe: string;
  /** errnos that mean "already so" for this operation (e.g. ENOENT on a delete): not failures. */
  tolerate?: number[];
}

/**
 * Many operations as one buffer of netlink messages (write each into `w`, then call op() with what it does):
 * descriptions may be functions, built only when the kernel refuses that operation.
 */
export class OpBatch {
  readonly w = new NetlinkWriter();
  // Per operation, in parallel arrays of what already exists (no closure or string per operation): a code and up
  // to two strings, turned into a description by `describer` only when the kernel refuses that operation.
  private readonly codes: number[] = [];
  private readonly args1: Array<string | undefined> = [];
  private readonly args2: Array<string | undefined> = [];
  private readonly tolerates: Array<readonly number[] | undefined> = [];

  /** describer(code, a, b): what operation `code` on a and b does, for error messages. */
  constructor(private readonly describer: (code: number, a?: string, b?: string) => string = (_c, a) => a ?? '') {}

  /** Records the message just written; `what` is a description, or a code for the describer. */
  op(what: string | number, tolerate?: readonly number[], a?: string, b?: string): void {
    if (this.w.count !== this.codes.length + 1) throw new Error('OpBatch: write exactly one message per op()');
    if (typeof what === 'string') {
      this.codes.push(-1);
      this.args1.push(what);
    } else {
      this.codes.push(what);
      this.args1.push(a);
    }
    this.args2.push(b);
    this.tolerates.push(tolerate);
  }

  get size(): number {
    return this.codes.length;
  }

  describe(i: number): string {
    const c = this.codes[i];
    return c < 0 ? this.args1[i]! : this.describer(c, this.args1[i], this.args2[i]);
  }

  tolerated(i: number, errno: number): boolean {
    return this.tolerates[i]?.includes(errno) ?? false;
  }
}

export interface ApplyResult {
  operations: number;
  sends: number;
  bytes: number;
  kernelMicros: number;
  failures: IpvsFailure[];
}

export class IpvsClient {
  private readonly genl: InstanceType<ReturnType<typeof native>['NetlinkTransceiver']>;
  private readonly route: InstanceType<ReturnType<typeof native>['NetlinkTransceiver']>;
  private family: number | undefined;
  private readonly netns: string | undefined;

  constructor(opts: { netns?: string } = {}) {
    this.netns = opts.netns;
    const T = native().NetlinkTransceiver;
    this.genl = new T({ bus: 'generic', ...(opts.netns ? { netns: opts.netns } : {}) });
    this.route = new T({ bus: 'route', ...(opts.netns ? { netns: opts.netns } : {}) });
  }

  /** The IPVS generic netlink family id; ENOENT means the kernel has no IPVS (module ip_vs not loaded). */
  async familyId(): Promise<number> {
    if (this.family !== undefined) return this.family;
    const r = (await this.genl.transact([getFamilyRequest(ipvs.IPVS_GENL_NAME)])).results[0];
    if (r.errno === 2) {
      throw new IpvsOperationError('this kernel has no IPVS: its generic netlink family "IPVS" is missing (CONFIG_IP_VS off, or the ip_vs ' +
        'module not loaded: modprobe ip_vs on the node, as kube-proxy\'s IPVS mode also needs); nothing was changed. ' +
        'Or run the nftables mode', r.errno, r.code ?? '', 'resolve family', []);
    }
    if (r.errno) throw new IpvsOperationError(`resolve the IPVS netlink family: ${r.code}`, r.errno, r.code ?? '', 'resolve family', []);
    const id = r.replies.map(familyIdOf).find((x) => x !== undefined);
    if (id === undefined) throw new Error('resolve the IPVS netlink family: no family id in the reply');
    this.family = id;
    return id;
  }

  async listServices(): Promise<ipvs.VirtualServiceState[]> {
    const res = await this.genl.transactPacked(ipvs.dumpServicesRequest(await this.familyId()));
    const f = res.failures[0];
    if (f) throw this.error([{ operation: 'list virtual services', errno: f.errno, code: f.code, kernelMessage: f.kernelMessage }]);
    return (res.replies[0] ? splitMessages(res.replies[0].data) : []).map(ipvs.decodeService).filter((x): x is ipvs.VirtualServiceState => !!x);
  }

  /** Sends IPVS operations, pipelined. Failures are returned (each naming its operation), not thrown. */
  async applyIpvs(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    return ops instanceof OpBatch ? this.applyBatch(this.genl, ops) : this.apply(this.genl, ops);
  }

  async applyRoute(ops: Operation[] | OpBatch): Promise<ApplyResult> {
    return ops instanceof OpBatch ? this.applyBatch(this.route, ops) : this.apply(this.route, ops);
  }

  /** Every route of the namespace (svcplane's Service-address routes are picked out by the caller). */
  async allRoutes(): Promise<rtnl.RouteInfo[]> {
    const r = await this.one(this.route, { request: rtnl.dumpRoutesRequest(), describe: 'list routes' });
    return r.replies.map(rtnl.decodeRoute).filter((x): x is rtnl.RouteInfo => !!x);
  }

  /** Real servers of many services in one round trip. */
  async listDests(services: ipvs.VirtualServiceKey[]): Promise<ipvs.RealServerState[][]> {
    if (services.length === 0) return [];
    const fam = await this.familyId();
    const w = new NetlinkWriter();
    for (const s of services) ipvs.writeDumpDests(w, fam, s);
    const res: PackedTransactResult = await this.genl.transactPacked(w.finish());
    if (res.failures.length) {
      const f = res.failures[0];
      throw this.error([{ operation: `list real servers of ${ipvs.serviceKeyString(services[f.index])}`, errno: f.errno, code: f.code, kernelMessage: f.kernelMessage }]);
    }
    const out: ipvs.RealServerState[][] = services.map(() => []);
    for (const r of res.replies) out[r.index] = splitMessages(r.data).map(ipvs.decodeDest).filter((x): x is ipvs.RealServerState => !!x);
    return out;
  }

  async link(name: string): Promise<rtnl.LinkInfo | undefined> {
    const r = (await this.route.transact([rtnl.getLinkRequest(name)])).results[0];
    if (r.errno === 19 /* ENODEV */) return undefined;
    if (r.errno) throw this.error([{ operation: `look up link ${name}`, errno: r.errno, code: r.code ?? '', kernelMessage: r.kernelMessage }]);
    return r.replies.map(rtnl.decodeLink).find((l) => l !== undefined);
  }

  /** Every address of every link in the namespace. */
  async allAddresses(): Promise<rtnl.AddrInfo[]> {
    const r = await this.one(this.route, { request: rtnl.dumpAddrsRequest(), describe: 'list addresses' });
    return r.replies.map(rtnl.decodeAddr).filter((a): a is rtnl.AddrInfo => !!a);
  }

  /** Reads (no value) or writes a net.* sysctl in this client's network namespace. */
  async sysctl(name: string, value?: string): Promise<string | undefined> {
    return native().netSysctl(name, this.netns, value);
  }

  close(): void {
    this.genl.close();
    this.route.close();
  }

  private async one(sock: typeof this.genl, op: Operation): Promise<NetlinkRequestResult> {
    const r = (await sock.transact([op.request])).results[0];
    if (r.errno) throw this.error([{ operation: op.describe, errno: r.errno, code: r.code ?? '', kernelMessage: r.kernelMessage }]);
    return r;
  }

  private async apply(sock: typeof this.genl, ops: Operation[]): Promise<ApplyResult> {
    if (ops.length === 0) return { operations: 0, sends: 0, bytes: 0, kernelMicros: 0, failures: [] };
    const res = await sock.transact(ops.map((o) => o.request));
    const failures: IpvsFailure[] = [];
    res.results.forEach((r, i) => {
      if (r.errno && !ops[i].tolerate?.includes(r.errno)) failures.push({ operation: ops[i].describe, errno: r.errno, code: r.code ?? '', kernelMessage: r.kernelMessage });
    });
    return { operations: ops.length, sends: res.sends, bytes: res.bytes, kernelMicros: res.kernelMicros, failures };
  }

  private async applyBatch(sock: typeof this.genl, batch: OpBatch): Promise<ApplyResult> {
    if (batch.size === 0) return { operations: 0, sends: 0, bytes: 0, kernelMicros: 0, failures: [] };
    // Operations never answer with data: ask for one ack per page (refusals are reported whatever the flags).
    const res = await sock.transactPacked(batch.w.finish(), { ackLastOnly: true });
    const failures: IpvsFailure[] = [];
    for (const f of res.failures) {
      if (!batch.tolerated(f.index, f.errno)) failures.push({ operation: batch.describe(f.index), errno: f.errno, code: f.code, kernelMessage: f.kernelMessage });
    }
    return { operations: batch.size, sends: res.sends, bytes: res.bytes, kernelMicros: res.kernelMicros, failures };
  }

  error(failures: IpvsFailure[]): IpvsOperationError {
    return ipvsError(failures);
  }
}

/** The error for refused operations: the first named with the kernel's words, and how many more there were. */
export function ipvsError(failures: IpvsFailure[]): IpvsOperationError {
  const f = failures[0];
  const more = failures.length > 1 ? ` [+${failures.length - 1} more]` : '';
  return new IpvsOperationError(`${f.operation}: ${f.code} (errno ${f.errno})${f.kernelMessage ? ` - kernel says: ${f.kernelMessage}` : ''}${more}`, f.errno, f.code, f.operation, failures);
}
