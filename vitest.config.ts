import { defineConfig } from 'vitest/config';

// The host suites: unit, contract, kernel (network namespaces, real traffic on this machine's kernel), e2e. Kernel
// tests build network namespaces and send real traffic: generous timeouts, and at most two test files at once on
// these 2-core machines. The kernel matrix (test/vm: Debian's kernels under qemu) runs after them, from its own
// config (scripts/test.sh), so the emulated guest never competes with real-traffic tests for the two CPUs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/vm/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
