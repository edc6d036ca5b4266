// The IpvsKernel contract (test/contract/ipvs-kernel.contract.ts) against the in-memory fake the IPVS unit tests use.
import { FakeIpvsKernel } from '../../src/dataplane/ipvs/fake';
import { ipvsKernelContract } from '../contract/ipvs-kernel.contract';

ipvsKernelContract('FakeIpvsKernel', async () => {
  const kernel = new FakeIpvsKernel();
  return { kernel, done: () => kernel.close() };
});
