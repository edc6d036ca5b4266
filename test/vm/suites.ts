// Which suites run on each kernel of the matrix. The host runs everything under test/ on this machine's kernel; in
// the qemu guest (Debian's kernels: test/vm/kernels.test.ts) run the IPVS suites, which need a kernel with IPVS,
// and the nftables kernel suites, so the nftables mode is proven on the kernels production nodes run too.
export const IPVS_SUITES = 'test/vm/guest/**/*.test.ts';
export const NFTABLES_KERNEL_SUITES = [
  'test/kernel/nftables-traffic.test.ts',
  'test/kernel/nftables-policies.test.ts',
  'test/kernel/nftables-affinity.test.ts',
  'test/kernel/nftables-node-features.test.ts',
  'test/kernel/conntrack.test.ts',
  'test/kernel/nftables-cli.test.ts',
  'test/kernel/nftables-kernel.test.ts',
];
