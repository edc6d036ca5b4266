// What the kernel holds for the IPVS mode, read at a full sync and kept up to date as operations are queued (a
// refusal drops it: the next sync is full and reads it again): svcplane's virtual services and real servers,
// unmarked ones at the same addresses, svcplane0 and what is bound on it, and the node's other addresses.
import * as rtnl from '../../netlink/rtnl';
import type { IpvsProxierConfig } from './config';
import { type DesiredService, OWNED_FLAG, destKey, nodePortAddressesOf, vsKey } from './desired';
import { EEXIST } from './errno';
import type { IpvsKernel } from './ipvsKernel';
import * as ipvs from '../../netlink/ipvs';

export interface ProgrammedService {
  vs: ipvs.VirtualService;
  dests: Map<string, ipvs.RealServer>;
}

export class ProgrammedIpvs {
  /** svcplane's virtual services (its mark set), by vsKey. */
  readonly services = new Map<string, ProgrammedService>();
  /**
   * Virtual services without svcplane's mark, by vsKey, as the last full read found them. Never touched, except one
   * at an address:port a Service wants: see adoptUnmarked().
   */
  private unmarked = new Map<string, ipvs.VirtualServiceState>();
  /** Addresses bound on svcplane0 in this bindMode. */
  bound = new Set<string>();
  /** Bindings of the other bindMode found on svcplane0 (removed by the next converge). */
  leftoverBindings: string[] = [];
  linkIndex = 0;
  /** The node's addresses NodePorts are served on. */
  nodeAddresses: string[] = [];
  /** Addresses of the node's other links: an externalIP or LB IP among them is not bound on svcplane0 (kube-proxy). */
  localAddresses = new Set<string>();

  private constructor() {}

  /**
   * Reads what IPVS, svcplane0 and the node's addresses hold. With `create` (a sync) a missing svcplane0 is made
   * and set up; without (a dry run) nothing is changed, and a missing link holds nothing (`haveLink` false).
   */
  static async read(kernel: IpvsKernel, config: IpvsProxierConfig, create: boolean): Promise<{ programmed: ProgrammedIpvs; haveLink: boolean }> {
    const p = new ProgrammedIpvs();
    const iface = config.interfaceName;
    const [[services, dests], link0] = await Promise.all([
      (async () => {
        const all = await kernel.listServices();
        p.unmarked = new Map(all.filter((s) => !(s.flags & OWNED_FLAG)).map((s) => [vsKey(s), s]));
        const services = all.filter((s) => s.flags & OWNED_FLAG);
        return [services, await kernel.listDests(services)] as const;
      })(),
      kernel.link(iface),
    ]);
    services.forEach((s, i) => {
      p.services.set(vsKey(s), { vs: s, dests: new Map(dests[i].map((d) => [destKey(d), d])) });
    });
    let link = link0;
    if (!link && !create) {
      const all = await kernel.allAddresses();
      p.localAddresses = new Set(all.map((a) => a.address));
      p.nodeAddresses = nodePortAddressesOf(all.map((a) => ({ ...a, link: String(a.index) })), config.nodePortAddresses, iface);
      return { programmed: p, haveLink: false };
    }
    if (!link) {
      const r = await kernel.applyRoute([{ request: rtnl.newDummyLinkRequest(iface), describe: `create dummy link ${iface}`, tolerate: [EEXIST] }]);
      if (r.failures.length) throw kernel.error(r.failures);
      link = await kernel.link(iface);
      if (!link) throw new Error(`link ${iface} was created but cannot be found`);
    } else if (link.kind && link.kind !== 'dummy') {
      throw new Error(`link ${iface} exists and is a ${link.kind}, not svcplane's dummy link; remove or rename it`);
    } else if (!(link.flags & rtnl.IFF_UP) && create) {
      const r = await kernel.applyRoute([{ request: rtnl.setLinkUpRequest(link.index), describe: `set ${iface} up` }]);
      if (r.failures.length) throw kernel.error(r.failures);
    }
    const index = link.index;
    p.linkIndex = index;
    const [all, allRoutes] = await Promise.all([kernel.allAddresses(), kernel.allRoutes()]);
    const onLink = all.filter((a) => a.index === index && a.scope !== 253).map((a) => a.address);
    const routes = allRoutes.filter((r) => rtnl.isServiceRoute(r, index)).map((r) => r.dst);
    const [mine, other] = config.bindMode === 'route' ? [routes, onLink] : [onLink, routes];
    p.bound = new Set(mine);
    p.leftoverBindings = other;
    p.localAddresses = new Set(all.filter((a) => a.index !== index).map((a) => a.address));
    p.nodeAddresses = nodePortAddressesOf(all.map((a) => ({ ...a, link: a.index === index ? iface : String(a.index) })), config.nodePortAddresses, iface);
    return { programmed: p, haveLink: true };
  }

  /**
   * A virtual service without svcplane's mark at an address:port a Service wants is taken as svcplane's, with its
   * real servers, so that converge repairs it like any other (scheduler, flags with the mark, persistence, real
   * servers) instead of failing to add the Service's own with EEXIST at every sync.
   *
   * Why it is svcplane's: `ipvsadm -E` sends every flag with a mask of ~0 (libipvs), so any edit of a virtual
   * service that does not name flag-3 (`-s wlc`, `-p 600`, ...) clears svcplane's mark (seen on 6.1: `-E -s wrr`
   * leaves `-s wrr` with no `-b flag-3`); the kernel keeps what it is sent. The address is the Service's (a
   * ClusterIP, external or LoadBalancer IP, or a node address at its NodePort), and svcplane's promise is that its
   * Services are programmed exactly as the API says (kube-proxy's IPVS mode also takes over whatever sits at a
   * Service's address:port). A virtual service no Service wants stays foreign whatever its address (a port of a
   * ClusterIP no Service uses, a fwmark service): never touched.
   * Returns one sentence per service taken, for the sync's warnings.
   */
  async adoptUnmarked(kernel: IpvsKernel, desired: Map<string, DesiredService>): Promise<string[]> {
    const taken = [...this.unmarked].filter(([k]) => desired.has(k) && !this.services.has(k)).map(([, s]) => s);
    if (taken.length === 0) return [];
    const dests = await kernel.listDests(taken);
    return taken.map((s, i) => {
      const k = vsKey(s);
      this.services.set(k, { vs: s, dests: new Map(dests[i].map((d) => [destKey(d), d])) });
      this.unmarked.delete(k);
      return `virtual service ${ipvs.serviceKeyString(s)} (Service ${desired.get(k)!.owner}) had lost svcplane's mark (flag-3; \`ipvsadm -E\` clears it): taken back and repaired`;
    });
  }
}
