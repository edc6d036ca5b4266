// The ebpf mode's place in a sandbox: a cgroup v2 directory and a bpffs root named after the sandbox. Every process
// of the machine is in the cgroup v2 root, so tests and benchmarks attach the socket hooks to a cgroup of their own
// and start their clients in it; pins go under a bpffs directory of their own, so runs never share maps.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2MountOf } from '../../src/dataplane/ebpf/cgroup';

export interface SandboxCgroup {
  /** The cgroup to attach to and to start clients in (made here). */
  cgroup: string;
  /** Where svcplane pins its maps and links (--bpf-root; svcplane makes it). */
  bpfRoot: string;
  /** Removes the cgroup (once its processes are gone: the sandbox's destroy() kills them). */
  remove(): void;
}

export function sandboxCgroup(prefix: string): SandboxCgroup {
  const mount = cgroup2MountOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (!mount) throw new Error('no cgroup v2 mount on this machine');
  const cgroup = path.join(mount, prefix);
  fs.mkdirSync(cgroup, { recursive: true });
  return {
    cgroup,
    bpfRoot: `/sys/fs/bpf/${prefix}`,
    remove: () => {
      if (fs.existsSync(cgroup)) fs.rmdirSync(cgroup);
    },
  };
}
