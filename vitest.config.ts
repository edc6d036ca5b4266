import { defineConfig } from 'vitest/config';

// Kernel tests build network namespaces and send real traffic: generous timeouts, and at most two test files at
// once on these 2-core machines.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/vm/guest runs inside the qemu guest (test/vm/ipvs.test.ts boots it), not here.
    exclude: ['**/node_modules/**', 'test/vm/guest/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
