// The IpvsKernel contract (test/contract/ipvs-kernel.contract.ts) against IpvsClient on Debian's kernel in the guest,
// each case in a network namespace of its own: the fake the IPVS unit tests use is held to what this kernel does.
import { IpvsClient } from '../../../src/dataplane/ipvs/client';
import { makeNetns } from '../../helpers/root';
import { ipvsKernelContract } from '../../contract/ipvs-kernel.contract';
import { describe } from 'vitest';

if (process.env.SVCPLANE_IN_GUEST === '1') {
  ipvsKernelContract('IpvsClient (guest kernel)', async () => {
    const ns = makeNetns('ipvscontract');
    const kernel = new IpvsClient({ netns: ns.path });
    return { kernel, done: () => { kernel.close(); ns.remove(); } };
  });
} else {
  describe.skip('IpvsKernel contract: IpvsClient (runs in the test guest only)', () => {});
}
