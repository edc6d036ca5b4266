// deploy/kubernetes/daemonset.yaml grants svcplane CAP_NET_ADMIN and nothing else. This proves it is enough: the
// real CLI, run as an unprivileged user (nobody) holding only CAP_NET_ADMIN (setpriv, ambient), programs, reads back
// and cleans up a namespace; without it, it fails with a message that says what is missing. (How nobody reads the
// CLI from a clone in root's 0700 home: test/helpers/container-view.ts.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asNobody } from '../helpers/container-view';
import { makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('capabilities');

describe.runIf(haveRoot)('svcplane needs CAP_NET_ADMIN and nothing else', () => {
  let ns: ReturnType<typeof makeNetns>;
  let mnt = '';
  let examples = '';
  beforeAll(() => {
    ns = makeNetns('cap');
    // /tmp itself, not os.tmpdir(): TMPDIR may point somewhere nobody cannot reach. mkdtemp makes it 0700.
    mnt = fs.mkdtempSync('/tmp/svcplane-cap-');
    fs.chmodSync(mnt, 0o755);
    examples = path.join(mnt, 'deploy', 'examples');
  });
  afterAll(() => {
    ns?.remove();
    // rmdir, not a recursive rm: should the mount ever be visible here, this fails instead of deleting the clone.
    if (mnt) fs.rmdirSync(mnt);
  });

  it('programs, reads back and cleans up as nobody with only CAP_NET_ADMIN', async () => {
    const sync = await asNobody(ns.name, mnt, ['net_admin'], ['sync', '--once', '--manifests', examples, '--output', 'json']);
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    expect((JSON.parse(sync.stdout) as { servicePorts: number }).servicePorts).toBe(4);
    const tables = execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'tables'], { encoding: 'utf8' });
    expect(tables).toContain('table ip svcplane');
    const status = await asNobody(ns.name, mnt, ['net_admin'], ['status', '--output', 'json']);
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { rows: unknown[] }).rows.length).toBeGreaterThan(0);
    expect((await asNobody(ns.name, mnt, ['net_admin'], ['cleanup'])).code).toBe(0);
    expect(execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'tables'], { encoding: 'utf8' })).not.toContain('svcplane');
  });

  it('in the DaemonSet\'s container view (/proc/sys read-only, only CAP_NET_ADMIN) the nftables mode programs as usual: it writes no sysctl', async () => {
    // The read-only mount is real: a write through it is refused.
    const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c',
      'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && echo 1 > /proc/sys/net/ipv4/ip_forward'], { encoding: 'utf8' });
    expect(probe.status).not.toBe(0);
    expect(probe.stderr).toMatch(/Read-only file system/);
    const sync = await asNobody(ns.name, mnt, ['net_admin'], ['sync', '--once', '--manifests', examples, '--output', 'json'], { readOnlyProcSys: true });
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    expect((JSON.parse(sync.stdout) as { servicePorts: number }).servicePorts).toBe(4);
    expect((await asNobody(ns.name, mnt, ['net_admin'], ['cleanup'], { readOnlyProcSys: true })).code).toBe(0);
  });

  it('--netns without CAP_SYS_ADMIN: says that entering a namespace (setns) needs CAP_SYS_ADMIN', async () => {
    const other = makeNetns('cap2');
    try {
      const r = await asNobody(ns.name, mnt, ['net_admin'], ['sync', '--once', '--manifests', examples, '--netns', `/run/netns/${other.name}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`entering the network namespace /run/netns/${other.name} (setns) needs CAP_SYS_ADMIN`);
      expect(r.stderr).not.toContain('programming the kernel needs CAP_NET_ADMIN');
    } finally {
      other.remove();
    }
  });

  it('ebpf mode without CAP_BPF: exit 2 before any change, naming the capability', async () => {
    const r = await asNobody(ns.name, mnt, ['net_admin'], ['sync', '--once', '--mode', 'ebpf', '--manifests', examples, '--bpf-root', '/sys/fs/bpf/svcplane-cap-test']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the ebpf mode needs CAP_BPF (or CAP_SYS_ADMIN)');
    expect(fs.existsSync('/sys/fs/bpf/svcplane-cap-test')).toBe(false);
    expect(execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'tables'], { encoding: 'utf8' })).not.toContain('svcplane');
  });

  it('without it, refuses with a message naming the capability', async () => {
    const r = await asNobody(ns.name, mnt, [], ['sync', '--once', '--manifests', examples]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Operation not permitted');
    expect(r.stderr).toContain('CAP_NET_ADMIN');
  });
});
