// Checks before the IPVS mode changes anything.
import { IpvsOperationError, OpBatch } from './client';
import { EEXIST, ENOENT, ESRCH } from './errno';
import type { IpvsKernel } from './ipvsKernel';
import * as ipvs from '../../netlink/ipvs';

/** Where the scheduler check's dummy virtual service goes (TEST-NET-3, RFC 5737: never a node's traffic). */
export const SCHEDULER_PROBE = { address: '203.0.113.253', port: 20000 };

/**
 * The default scheduler, checked as kube-proxy checks it (CanUseIPVSProxier): a dummy virtual service with it,
 * added and deleted at once. The kernel loads ip_vs_<scheduler> on demand; where it cannot (not built, no
 * /lib/modules in the container), every sync would fail on every Service. The dummy is at a TEST-NET-3 address no
 * packet of this node goes to; one already there (EEXIST) is left alone and the check skipped.
 */
export async function checkScheduler(kernel: IpvsKernel, scheduler: string): Promise<void> {
  const fam = await kernel.familyId();
  const vs: ipvs.VirtualService = { family: 4, protocol: 'TCP', address: SCHEDULER_PROBE.address, port: SCHEDULER_PROBE.port, scheduler, flags: 0, timeout: 0, netmask: 0xffffffff };
  const add = new OpBatch();
  ipvs.writeNewService(add.w, fam, vs);
  add.op(`add the dummy virtual service ${ipvs.serviceKeyString(vs)} (scheduler check)`);
  const r = await kernel.applyIpvs(add);
  const f = r.failures[0];
  if (f?.errno === EEXIST) return; // someone else's: not ours to delete
  if (f) {
    const what = f.errno === ENOENT ? `the module ip_vs_${scheduler} is not built for this kernel or cannot be loaded` : f.code;
    throw new IpvsOperationError(`IPVS scheduler "${scheduler}" is not available in this kernel (${what}); nothing was changed. ` +
      'Load the module on the node, or choose another with --ipvs-scheduler (rr needs ip_vs_rr)', f.errno, f.code, 'check scheduler', r.failures);
  }
  const del = new OpBatch();
  ipvs.writeDelService(del.w, fam, vs);
  del.op(`delete the dummy virtual service ${ipvs.serviceKeyString(vs)} (scheduler check)`, [ESRCH]);
  const d = await kernel.applyIpvs(del);
  if (d.failures.length) throw kernel.error(d.failures);
}
