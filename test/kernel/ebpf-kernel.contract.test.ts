// The EbpfKernel contract (test/contract/ebpf-kernel.contract.ts) against libbpf and this machine's kernel: the real
// object, maps pinned in a bpffs directory of the test's own, links on a cgroup of its own (never the cgroup root,
// which every process of this machine is in).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe } from 'vitest';
import { cgroup2MountOf } from '../../src/dataplane/ebpf/cgroup';
import { LibbpfKernel, defaultObjectPath } from '../../src/dataplane/ebpf/kernel';
import { ebpfKernelContract } from '../contract/ebpf-kernel.contract';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('ebpf kernel contract');
let n = 0;

describe.runIf(haveRoot)('libbpf', () => {
  ebpfKernelContract('LibbpfKernel', async () => {
    const mount = cgroup2MountOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
    if (!mount) throw new Error('no cgroup2 mount on this machine');
    const name = `svpc${process.pid}x${n++}`;
    const cgroup = path.join(mount, name);
    fs.mkdirSync(cgroup);
    const paths = { object: defaultObjectPath(), root: `/sys/fs/bpf/${name}`, cgroup };
    const kernel = new LibbpfKernel(paths);
    return {
      kernel,
      reopen: () => new LibbpfKernel(paths),
      done: () => {
        kernel.close();
        new LibbpfKernel(paths).detach();
        fs.rmdirSync(cgroup);
      },
    };
  });
});
