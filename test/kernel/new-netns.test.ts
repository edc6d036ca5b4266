// newNetns(): the throwaway node of `svcplane bench` (issue 16). A namespace held by one descriptor: svcplane
// programs it like any other (by /proc/PID/fd/N), the host's own namespace never sees it, and it goes with its
// process however that ends (SIGKILL included), leaving no mount or descriptor behind.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { REPO } from '../helpers/cli';
import { requireRoot } from '../helpers/root';
import { portsOf, servicePort } from '../helpers/service-port';

const haveRoot = requireRoot('newNetns');

/** Every place a process or mount could still hold the namespace with inode `ino`. */
function holdersOf(ino: string): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const links = (dir: string) => {
      try {
        return fs.readdirSync(dir).map((f) => `${dir}/${f}`);
      } catch {
        return [];
      }
    };
    for (const l of [`/proc/${pid}/ns/net`, ...links(`/proc/${pid}/fd`)]) {
      try {
        if (fs.readlinkSync(l) === ino) out.push(l);
      } catch {
        /* gone meanwhile */
      }
    }
  }
  const nsfsMounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(ino));
  return [...out, ...nsfsMounts];
}

describe.runIf(haveRoot)('newNetns: a network namespace held by one descriptor', () => {
  it('is a namespace of its own that svcplane programs by /proc/PID/fd/N', async () => {
    const fd = native().newNetns();
    try {
      const netns = `/proc/${process.pid}/fd/${fd}`;
      expect(fs.readlinkSync(netns)).toMatch(/^net:\[\d+\]$/);
      expect(fs.readlinkSync(netns)).not.toBe(fs.readlinkSync('/proc/self/ns/net'));
      const p = new NftablesProxier(new NetlinkNftClient({ netns }), defaultConfig({ nodeName: 'bench' }));
      try {
        await p.syncFull(portsOf(servicePort('web')));
        const st = await p.status();
        expect(st.rows.map((r) => `${r.protocol} ${r.address}:${r.port}`)).toEqual(['TCP 198.18.100.10:80']);
      } finally {
        p.close();
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  it('goes with its process, SIGKILL included: nothing holds it afterwards', async () => {
    const script = `const fd = require(${JSON.stringify(`${REPO}/dist/src/native`)}).native().newNetns();
      process.stdout.write(require('fs').readlinkSync('/proc/self/fd/' + fd) + '\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ino = await new Promise<string>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
      child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    expect(holdersOf(ino).length).toBeGreaterThan(0);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(holdersOf(ino)).toEqual([]);
  });
});
