// Preflight: IPVS mode on a kernel without IPVS (this machine's: no IP_VS) refuses in one line, naming what is
// missing, before changing anything: not ip_forward, not the nftables table beside IPVS, not svcplane0.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, svcplane } from '../helpers/cli';
import { inNetns, makeNetns, requireRoot } from '../helpers/root';

// /proc/net/ip_vs exists while the kernel has IPVS (built in or loaded); the qemu guests' kernels do, this one not.
const noIpvs = !fs.existsSync('/proc/net/ip_vs');

describe.runIf(requireRoot('IPVS preflight') && noIpvs)('IPVS mode on a kernel without IPVS', () => {
  let ns: ReturnType<typeof makeNetns>;
  beforeAll(() => {
    ns = makeNetns('pf');
    inNetns(ns.name, ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  });
  afterAll(() => ns?.remove());

  it('is refused in one line naming what is missing, and nothing is changed (ip_forward, nftables, links)', async () => {
    const r = await svcplane(['sync', '--once', '--mode', 'ipvs', '--manifests', `${REPO}/deploy/examples`], { netns: ns.name });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^svcplane sync: this kernel has no IPVS: .*ip_vs.*nothing was changed/);
    expect(inNetns(ns.name, ['sysctl', '-n', 'net.ipv4.ip_forward']).trim()).toBe('0');
    expect(inNetns(ns.name, ['nft', 'list', 'tables']).trim()).toBe('');
    expect(inNetns(ns.name, ['ip', '-o', 'link']).trim().split('\n').map((l) => l.split(': ')[1])).toEqual(['lo']);
  });
});
