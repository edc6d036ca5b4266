// The EbpfKernel contract (test/contract/ebpf-kernel.contract.ts) against the in-memory fake the ebpf unit tests use.
import { FakeEbpfKernel } from '../../src/dataplane/ebpf/fake';
import { ebpfKernelContract } from '../contract/ebpf-kernel.contract';

ebpfKernelContract('FakeEbpfKernel', async () => {
  const store = {};
  const kernel = new FakeEbpfKernel(store);
  return { kernel, reopen: () => new FakeEbpfKernel(store), done: () => kernel.close() };
});
