// The IPVS mode in the DaemonSet's container view, in the guest (Debian's kernel, with IPVS): nobody holding only
// CAP_NET_ADMIN, /proc/sys read-only as container runtimes mount it (test/helpers/container-view.ts). With IPVS's
// sysctls already as it needs them (set on the node), it programs as usual, writing none; with an optional one
// unset, it programs and warns naming the sysctl and what goes wrong without it; with net.ipv4.vs.conntrack unset
// (masquerade cannot work), it exits 1 naming it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { svcplane } from '../../helpers/cli';
import { asNobody } from '../../helpers/container-view';
import { makeNetns } from '../../helpers/root';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const run = promisify(execFile);

describe.runIf(inGuest)('IPVS mode in the DaemonSet\'s container view (guest kernel)', () => {
  let ns: ReturnType<typeof makeNetns>;
  let mnt = '';
  const sysctl = (kv: string) => run('ip', ['netns', 'exec', ns.name, 'sysctl', '-q', '-w', kv]);
  beforeAll(async () => {
    ns = makeNetns('ipvsview');
    mnt = fs.mkdtempSync('/tmp/svcplane-ipvsview-');
    fs.chmodSync(mnt, 0o755);
    for (const kv of ['net.ipv4.vs.conntrack=1', 'net.ipv4.vs.expire_nodest_conn=1', 'net.ipv4.vs.expire_quiescent_template=1', 'net.ipv4.ip_forward=1']) await sysctl(kv);
  });
  afterAll(async () => {
    if (ns) await svcplane(['cleanup', '--mode', 'ipvs'], { netns: ns.name });
    ns?.remove();
    if (mnt) fs.rmdirSync(mnt);
  });

  it('programs with only CAP_NET_ADMIN and /proc/sys read-only; a sysctl it cannot set is named, with what it means', async () => {
    const sync = () => asNobody(ns.name, mnt, ['net_admin'], ['sync', '--once', '--mode', 'ipvs', '--manifests', path.join(mnt, 'deploy', 'examples'), '--output', 'json', '--log-format', 'json'], { readOnlyProcSys: true });
    const lines = (stderr: string) => stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const ok = await sync();
    expect(ok.code, ok.stderr).toBe(0);
    expect(lines(ok.stderr).filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
    expect((JSON.parse(ok.stdout) as { servicePorts: number }).servicePorts).toBe(4);

    await sysctl('net.ipv4.vs.expire_nodest_conn=0');
    const warned = await sync();
    expect(warned.code).toBe(0);
    const line = lines(warned.stderr).find((l) => l.msg === 'sysctl not set');
    expect(line).toMatchObject({ level: 'warn', name: 'net.ipv4.vs.expire_nodest_conn', value: '1' });
    expect(String(line?.error)).toMatch(/Read-only file system|EROFS/);
    expect(line?.without).toContain('connections to a deleted real server hang');

    await sysctl('net.ipv4.vs.conntrack=0');
    const refused = await sync();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('sysctl net.ipv4.vs.conntrack=1');
    expect(refused.stderr).toContain('(IPVS mode needs it for masquerade)');
  });
});
