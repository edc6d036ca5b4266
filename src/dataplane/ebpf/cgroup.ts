// Where the socket-LB programs attach: the cgroup v2 hierarchy's root, from /proc/self/mountinfo (every process of
// the node, its pods included, is below it), unless --cgroup-root names another cgroup v2 directory.
// In a DaemonSet pod, mountinfo shows the pod's own cgroup namespace; deploy/ mounts the host's cgroup2 instead.
import * as fs from 'node:fs';

/** The mount point of the first cgroup2 filesystem in mountinfo text, or undefined. */
export function cgroup2MountOf(mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fsType = line.slice(sep + 3).split(' ')[0];
    if (fsType !== 'cgroup2') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    return mountPoint?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return undefined;
}

/** The cgroup v2 directory to attach to; throws, naming what is missing, when there is none. */
export function cgroupRoot(flag: string | undefined, mountinfoPath = '/proc/self/mountinfo'): string {
  if (flag) {
    if (!fs.existsSync(`${flag}/cgroup.procs`)) throw new Error(`--cgroup-root ${flag}: not a cgroup v2 directory (no cgroup.procs)`);
    return flag;
  }
  const found = cgroup2MountOf(fs.readFileSync(mountinfoPath, 'utf8'));
  if (!found) throw new Error('the ebpf mode needs cgroup v2, and none is mounted (mount -t cgroup2 none /sys/fs/cgroup, or give --cgroup-root)');
  return found;
}
