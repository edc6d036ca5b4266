import { defineConfig } from 'vitest/config';

// The suites that need a kernel with IPVS: run inside the qemu guest (scripts/lib/vm.ts) by test/vm/ipvs.test.ts,
// never directly on this machine (whose kernel has no IPVS). One file at a time: the guest has 2 vCPUs under TCG.
export default defineConfig({
  test: {
    include: ['test/vm/guest/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    reporters: ['verbose'],
  },
});
