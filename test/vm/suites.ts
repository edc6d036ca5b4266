// Which suites run on each kernel of the matrix. The host runs everything under test/ on this machine's kernel; in
// the qemu guest (Debian's kernels: test/vm/kernels.test.ts) run the IPVS suites, which need a kernel with IPVS,
// and the nftables and ebpf kernel suites, so those modes are proven on the kernels production nodes run too (the
// BPF verifier differs from kernel to kernel).
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
export const EBPF_KERNEL_SUITES = ['test/kernel/ebpf-socket-lb.test.ts', 'test/kernel/ebpf-kernel.contract.test.ts'];

/**
 * Seconds each suite's tests took in the 6.1 guest on a loaded run (2026-12-03, run H: two CPU loops beside it, the
 * CLI in-process), for the order the guest runs them in: longest first, so the two forks finish together instead of
 * one idling while the other runs a long file it took last. Unknown files count as 60 s.
 */
export const GUEST_SECONDS: Record<string, number> = {
  'test/vm/guest/ipvs-hand-edits.test.ts': 366,
  'test/kernel/ebpf-socket-lb.test.ts': 256,
  'test/kernel/nftables-node-features.test.ts': 238,
  'test/kernel/nftables-policies.test.ts': 224,
  'test/vm/guest/ipvs-node-features.test.ts': 178,
  'test/kernel/nftables-traffic.test.ts': 163,
  'test/vm/guest/ipvs-nftables.test.ts': 136,
  'test/vm/guest/ipvs-policies.test.ts': 118,
  'test/vm/guest/ipvs-traffic.test.ts': 94,
  'test/kernel/nftables-kernel.test.ts': 88,
  'test/vm/guest/ipvs-container-view.test.ts': 85,
  'test/kernel/nftables-cli.test.ts': 72,
  'test/kernel/nftables-affinity.test.ts': 66,
  'test/vm/guest/ipvs-scheduler-check.test.ts': 33,
  'test/vm/guest/ipvs-dry-run.test.ts': 22,
  'test/vm/guest/bench-ipvs.test.ts': 20, // measured alone (2026-12-03), not in run H
  'test/kernel/conntrack.test.ts': 21,
  'test/vm/guest/ipvs-kernel.contract.test.ts': 13,
  'test/kernel/ebpf-kernel.contract.test.ts': 3,
};

export function guestSeconds(file: string): number {
  const key = Object.keys(GUEST_SECONDS).find((k) => file.endsWith(`/${k}`) || file === k);
  return key ? GUEST_SECONDS[key] : 60;
}
