// IPVS and the Service-address interface over the addon's NetlinkTransceiver: many requests per round trip, every
// reply matched by sequence number (native side), each refusal mapped back to the command and object at fault
// with its errno kept numeric.
import { native } from '../../native';
import type { NetlinkRequestResult } from '../../native';
import { familyIdOf, getFamilyRequest } from '../../netlink/genl';
import * as rtnl from '../../netlink/rtnl';
import * as ipvs from './netlink';

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
    if (r.errno) throw new IpvsOperationError(`resolve the IPVS netlink family: ${r.code}${r.errno === 2 ? ' (this kernel has no IPVS: load the ip_vs module)' : ''}`, r.errno, r.code ?? '', 'resolve family', []);
    const id = r.replies.map(familyIdOf).find((x) => x !== undefined);
    if (id === undefined) throw new Error('resolve the IPVS netlink family: no family id in the reply');
    this.family = id;
    return id;
  }

  async listServices(): Promise<ipvs.VirtualServiceState[]> {
    const r = await this.one(this.genl, { request: ipvs.dumpServicesRequest(await this.familyId()), describe: 'list virtual services' });
    return r.replies.map(ipvs.decodeService).filter((x): x is ipvs.VirtualServiceState => !!x);
  }

  /** Real servers of many services in one round trip. */
  async listDests(services: ipvs.VirtualServiceKey[]): Promise<ipvs.RealServerState[][]> {
    if (services.length === 0) return [];
    const fam = await this.familyId();
    const res = await this.genl.transact(services.map((s) => ipvs.dumpDestsRequest(fam, s)));
    return res.results.map((r, i) => {
      if (r.errno) throw this.error([{ operation: `list real servers of ${ipvs.serviceKeyString(services[i])}`, errno: r.errno, code: r.code ?? '', kernelMessage: r.kernelMessage }]);
      return r.replies.map(ipvs.decodeDest).filter((x): x is ipvs.RealServerState => !!x);
    });
  }

  /** Sends IPVS operations, pipelined. Failures are returned (each naming its operation), not thrown. */
  async applyIpvs(ops: Operation[]): Promise<ApplyResult> {
    return this.apply(this.genl, ops);
  }

  async applyRoute(ops: Operation[]): Promise<ApplyResult> {
    return this.apply(this.route, ops);
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

  error(failures: IpvsFailure[]): IpvsOperationError {
    const f = failures[0];
    const more = failures.length > 1 ? ` [+${failures.length - 1} more]` : '';
    return new IpvsOperationError(`${f.operation}: ${f.code} (errno ${f.errno})${f.kernelMessage ? ` - kernel says: ${f.kernelMessage}` : ''}${more}`, f.errno, f.code, f.operation, failures);
  }
}
