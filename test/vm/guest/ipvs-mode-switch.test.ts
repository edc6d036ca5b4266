// Switching a node from the IPVS mode to the nftables or the ebpf mode (guest kernel: IPVS): the new mode's start
// removes what the IPVS mode left, its virtual services and svcplane0, whose local routes would otherwise keep every
// ClusterIP local to the node and in IPVS's hands. Checked with ipvsadm and ip, and with traffic through the new mode.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../../scripts/lib/sandbox';
import { sandboxCgroup } from '../../../scripts/lib/sandbox-cgroup';
import { countsFor, runClient } from '../../../scripts/lib/traffic';
import { REPO, execOk, svcplane } from '../../helpers/cli';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const EXAMPLES = path.join(REPO, 'deploy', 'examples');
const BE = ['be0', 'be1', 'be2'];

describe.runIf(inGuest)('switching from the IPVS mode removes its virtual services and svcplane0 (guest kernel)', () => {
  let sb: Sandbox;
  let cgroup: string;
  let removeCgroup: (() => void) | undefined;
  let bpfRoot: string;
  const sync = async (mode: string, ...extra: string[]) => {
    const r = await svcplane(['sync', '--once', '--mode', mode, '--manifests', EXAMPLES, '--cluster-cidr', sb.podCIDR.v4, '--netns', sb.nodeNsPath, ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return r.stderr;
  };
  const ipvsLeft = async () => ({
    services: (await execOk(sb, sb.nodeNs, ['ipvsadm', '-Ln'])).split('\n').filter((l) => /^(TCP|UDP|SCTP)\s/.test(l)),
    link: (await sb.exec(sb.nodeNs, ['ip', 'link', 'show', 'svcplane0'])).code === 0,
  });

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    ({ cgroup, bpfRoot, remove: removeCgroup } = sandboxCgroup(sb.prefix));
  });
  afterAll(async () => {
    if (sb && bpfRoot && fs.existsSync(bpfRoot)) await svcplane(['cleanup', '--mode', 'ebpf', '--netns', sb.nodeNsPath, '--bpf-root', bpfRoot, '--cgroup-root', cgroup]);
    await sb?.destroy();
    removeCgroup?.();
  });

  it('ipvs -> nftables: nothing of IPVS stays; the ClusterIP is served by the table', async () => {
    await sync('ipvs');
    const before = await ipvsLeft();
    expect(before.services.length).toBeGreaterThan(0);
    expect(before.link).toBe(true);
    expect(await sync('nftables')).toContain('IPVS mode\'s virtual services, its table and svcplane0 removed');
    expect(await ipvsLeft()).toEqual({ services: [], link: false });
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 30, concurrency: 1 });
    expect(r.errors).toEqual({});
    expect(countsFor(r, BE).every((n) => n > 0)).toBe(true);
    // A second start finds nothing to remove and says nothing about it.
    expect(await sync('nftables')).not.toContain('IPVS mode');
  });

  it('ipvs -> ebpf: the same, and the socket translates in the cgroup', async () => {
    await sync('ipvs');
    expect((await ipvsLeft()).link).toBe(true);
    expect(await sync('ebpf', '--cgroup-root', cgroup, '--bpf-root', bpfRoot)).toContain('svcplane0 removed');
    expect(await ipvsLeft()).toEqual({ services: [], link: false });
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 30, concurrency: 1, cgroup });
    expect(r.errors).toEqual({});
    // Translated at the socket: the backends see the client itself.
    expect(Object.keys(r.sources)).toEqual([sb.clientIP.v4]);
  });
});
