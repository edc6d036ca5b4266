import { defineConfig } from 'vitest/config';
import { IPVS_SUITES, NFTABLES_KERNEL_SUITES } from './suites';

// What runs inside the qemu guest (scripts/lib/vm.ts), started by test/vm/kernels.test.ts: the IPVS suites and the
// nftables kernel suites (test/vm/suites.ts). Two files at a time, as on the host (every file has its own
// namespaces): one file alone left the guest's second vCPU mostly idle (host load ~1.3 over a 21-minute run) while
// its tests waited on timeouts, connections and process starts.
export default defineConfig({
  test: {
    include: [IPVS_SUITES, ...NFTABLES_KERNEL_SUITES],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['verbose'],
  },
});
