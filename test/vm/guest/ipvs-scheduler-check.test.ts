// The IPVS scheduler check before anything is changed (kube-proxy's CanUseIPVSProxier does the same): a dummy
// virtual service with the default scheduler, added and deleted. In the guest, on Debian's kernel: with the module
// there the check leaves nothing behind; with it unloaded and the kernel unable to load it (kernel.modprobe pointed
// at /bin/false, as in a container without /lib/modules) svcplane exits 1 naming the scheduler and the module, and
// nothing is changed. The dh scheduler is used by no other guest test.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { svcplane } from '../../helpers/cli';
import { webManifest } from '../../helpers/web-manifest';
import { makeNetns } from '../../helpers/root';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const run = promisify(execFile);

const MANIFEST = webManifest('198.18.100.60', ['198.18.2.11']);

describe.runIf(inGuest)('IPVS scheduler check (guest kernel)', () => {
  let ns: ReturnType<typeof makeNetns>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ipvs-sched-'));
  const inNs = async (argv: string[]) => (await run('ip', ['netns', 'exec', ns.name, ...argv])).stdout;
  beforeAll(() => {
    ns = makeNetns('ipvssched');
    fs.writeFileSync(path.join(dir, 'web.yaml'), MANIFEST);
  });
  afterAll(async () => {
    if (ns) await svcplane(['cleanup', '--mode', 'ipvs'], { netns: ns.name });
    ns?.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('with the scheduler\'s module: the check leaves no dummy behind; without it (and no way to load it): exit 1, named, nothing changed', async () => {
    const sync = () => svcplane(['sync', '--once', '--mode', 'ipvs', '--ipvs-scheduler', 'dh', '--manifests', dir], { netns: ns.name });
    const ok = await sync();
    expect(ok.code, ok.stderr).toBe(0);
    const programmed = await inNs(['ipvsadm', '-Ln']);
    expect(programmed).toMatch(/TCP\s+198\.18\.100\.60:80 dh/);
    expect(programmed).not.toContain('203.0.113.253');
    expect((await svcplane(['cleanup', '--mode', 'ipvs'], { netns: ns.name })).code).toBe(0);

    const modprobe = fs.readFileSync('/proc/sys/kernel/modprobe', 'utf8').trim();
    fs.writeFileSync('/proc/sys/kernel/modprobe', '/bin/false');
    try {
      await run('rmmod', ['ip_vs_dh']);
      const forward = await inNs(['sysctl', '-n', 'net.ipv4.ip_forward']);
      const r = await sync();
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('IPVS scheduler "dh" is not available in this kernel (the module ip_vs_dh is not built for this kernel or cannot be loaded); nothing was changed');
      expect(await inNs(['ipvsadm', '-Ln'])).not.toMatch(/198\.18\.100\.60|203\.0\.113\.253/);
      expect(await inNs(['ip', '-o', 'link'])).not.toContain('svcplane0');
      expect(await inNs(['nft', 'list', 'tables'])).not.toContain('svcplane');
      expect(await inNs(['sysctl', '-n', 'net.ipv4.ip_forward'])).toBe(forward);
    } finally {
      fs.writeFileSync('/proc/sys/kernel/modprobe', modprobe);
    }
  });
});
