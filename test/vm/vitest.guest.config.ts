import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { EBPF_KERNEL_SUITES, IPVS_SUITES, NFTABLES_KERNEL_SUITES, guestSeconds } from './suites';

/** Longest suites first (suites.ts GUEST_SECONDS): the two forks then end together. */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return [...files].sort((a, b) => guestSeconds(b.moduleId) - guestSeconds(a.moduleId));
  }
}

// What runs inside the qemu guest (scripts/lib/vm.ts), started by test/vm/kernels.test.ts: the IPVS suites and the
// nftables and ebpf kernel suites (test/vm/suites.ts), longest first. Two files at a time, as on the host (every file has its own
// namespaces): one file alone left the guest's second vCPU mostly idle (host load ~1.3 over a 21-minute run) while
// its tests waited on timeouts, connections and process starts.
export default defineConfig({
  test: {
    include: [IPVS_SUITES, ...NFTABLES_KERNEL_SUITES, ...EBPF_KERNEL_SUITES],
    sequence: { sequencer: LongestFirst },
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['verbose'],
  },
});
