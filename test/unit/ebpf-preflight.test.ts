// The ebpf mode's checks before it changes anything, on the inputs they read (mountinfo, CapEff, errors).
import { describe, expect, it } from 'vitest';
import { cgroup2MountOf } from '../../src/dataplane/ebpf/cgroup';
import { effectiveCapabilities, explainLoadFailure, missingCapabilities, needsNoRetvalObject } from '../../src/dataplane/ebpf/preflight';

describe('ebpf preflight', () => {
  it('finds the cgroup v2 mount in mountinfo (hybrid and unified hosts), or none', () => {
    const hybrid = '25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
    expect(cgroup2MountOf(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2MountOf('35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n')).toBe('/sys/fs/cgroup');
    expect(cgroup2MountOf('35 24 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n')).toBeUndefined();
  });

  it('names the missing capabilities', () => {
    const caps = (...bits: number[]) => bits.reduce((a, b) => a | (1n << BigInt(b)), 0n);
    expect(missingCapabilities(caps(12, 39))).toBeUndefined();
    expect(missingCapabilities(caps(21))).toBeUndefined();
    expect(missingCapabilities(caps(12))).toMatch(/needs CAP_BPF \(or CAP_SYS_ADMIN\) to load .*; this process lacks it/);
    expect(missingCapabilities(caps())).toMatch(/CAP_BPF \(or CAP_SYS_ADMIN\) and CAP_NET_ADMIN/);
    expect(effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n')).toBe(0x1ffffffffffn);
  });

  it('tells a verifier refusal, bpffs and an old kernel from other errors', () => {
    expect(explainLoadFailure(Object.assign(new Error('load BPF object x: Permission denied; verifier/libbpf: R0 invalid'), { code: 'EACCES' }))?.message).toMatch(/kernel refused/);
    expect(explainLoadFailure(new Error('mount bpffs on /sys/fs/bpf: Operation not permitted'))?.message).toMatch(/^bpffs is not available/);
    expect(explainLoadFailure(new Error('something else'))).toBeUndefined();
    expect(needsNoRetvalObject(new Error('load BPF object: Invalid argument; verifier/libbpf: unknown func bpf_set_retval#187'))).toBe(true);
  });
});
