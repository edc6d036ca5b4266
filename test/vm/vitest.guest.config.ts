import { defineConfig } from 'vitest/config';
import { IPVS_SUITES, NFTABLES_KERNEL_SUITES } from './suites';

// What runs inside the qemu guest (scripts/lib/vm.ts), started by test/vm/kernels.test.ts: the IPVS suites and the
// nftables kernel suites (test/vm/suites.ts). One file at a time: the guest has 2 vCPUs under TCG.
export default defineConfig({
  test: {
    include: [IPVS_SUITES, ...NFTABLES_KERNEL_SUITES],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    reporters: ['verbose'],
  },
});
