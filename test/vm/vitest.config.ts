import { defineConfig } from 'vitest/config';

// The kernel matrix, on the host: test/vm/kernels.test.ts boots each Debian kernel under qemu and runs the guest
// suites there (test/vm/vitest.guest.config.ts). One guest at a time: each takes both CPUs.
export default defineConfig({
  test: {
    include: ['test/vm/*.test.ts'],
    testTimeout: 60 * 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    reporters: ['default'],
  },
});
