// Stale UDP conntrack: a DNS-like client keeps one socket, so one conntrack entry, DNATed to one endpoint.
// When that endpoint goes away (its server stopped, its address taken out of the EndpointSlice), svcplane deletes
// exactly the entries pointing at it (a kernel-filtered dump, then deletes: src/dataplane/conntrack.ts), and the
// client's next request goes to a live endpoint instead of into a black hole. `conntrack -L` is the independent reader.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { startUdpLoop } from '../../scripts/lib/traffic';
import { REPO, svcplane, svcplaneOk } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('stale UDP conntrack');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

describe.runIf(haveRoot)('stale UDP conntrack entries are deleted when their endpoint goes away', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ct-'));
  const sync = async (manifests: string) => {
    return JSON.parse(await svcplaneOk(['sync', '--once', '--manifests', manifests, '--cluster-cidr', sb.podCIDR.v4, '--output', 'json'], { netns: sb.nodeNs })) as { operations: number; conntrackDeleted?: { 4: number; 6: number } };
  };
  const udpEntries = async () => (await sb.exec(sb.nodeNs, ['conntrack', '-L', '-p', 'udp', '--orig-dst', '198.18.100.10', '--orig-port-dst', '53'])).stdout;

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    await sync(EXAMPLES);
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a DNS-like UDP client switches to a live endpoint at once; only the dead endpoint\'s entries go', async () => {
    // The client runs until stopped, so nothing below depends on how long a sync takes on a loaded machine. 5 s per
    // request (a resolver's usual timeout): a slow answer is not a lost one.
    const loop = startUdpLoop(sb, sb.clientNs, { addr: '198.18.100.10', port: 53, loopMs: 600_000, intervalMs: 100, timeoutMs: 5000 });
    let i = -1;
    try {
      // Which endpoint the client's entry points at (the reply source), read with conntrack(8) once it exists.
      let before = '';
      let dead = '';
      for (const deadline = Date.now() + 60_000; !dead && Date.now() < deadline; ) {
        before = await udpEntries();
        dead = /src=(198\.18\.2\.1[123]) dst=\S+ sport=8080/.exec(before)?.[1] ?? '';
        if (!dead) await loop.waitFor((t) => t.length > 0, 60_000, 'a first answer');
      }
      expect(dead, before).not.toBe('');
      i = sb.backends.findIndex((b) => b.v4 === dead);
      const name = sb.backends[i].name;
      const live = (x: string) => x !== name && sb.backends.some((b) => b.name === x);
      await loop.waitFor((t) => t.includes(name), 60_000, `an answer from ${name}`);
      await sb.stopBackend(i);
      fs.writeFileSync(path.join(dir, 'web.yaml'), fs.readFileSync(path.join(EXAMPLES, 'web.yaml'), 'utf8').replace(new RegExp(` {2}- addresses: \\[${dead.replace(/\./g, '\\.')}\\]\\n.*\\n.*\\n`), ''));
      for (const f of ['api.yaml', 'empty.json']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
      const out = await svcplane(['sync', '--once', '--manifests', dir, '--cluster-cidr', sb.podCIDR.v4, '--output', 'json'], { netns: sb.nodeNs });
      const atSync = loop.timeline.length;
      expect(out.code, out.stderr).toBe(0);
      const res = JSON.parse(out.stdout) as { conntrackDeleted?: { 4: number; 6: number } };
      expect(res.conntrackDeleted?.[4]).toBeGreaterThanOrEqual(1);
      expect(await udpEntries()).not.toContain(`src=${dead} `);
      await loop.waitFor((t) => t.length >= atSync + 11, 60_000, '11 answers after the sync');
      const r = await loop.stop();
      expect(r.stoppedBy).toBe('eof');
      // Before the sync: the dead endpoint, then only what its stopped server causes (port unreachable, or a request
      // lost meanwhile). The request in flight when the sync returned may still be one of those; every later one is
      // answered by a live endpoint, from the same socket: a stale entry would keep it on the dead one for good.
      const afterDead = r.timeline.slice(r.timeline.lastIndexOf(name) + 1);
      const firstLive = afterDead.findIndex(live);
      expect(afterDead.slice(0, firstLive).every((x) => x === 'ECONNREFUSED' || x === 'ETIMEDOUT'), r.timeline.join(' ')).toBe(true);
      const later = r.timeline.slice(atSync + 1);
      expect(later.length).toBeGreaterThanOrEqual(10);
      expect(later.every(live), r.timeline.join(' ')).toBe(true);
    } finally {
      await loop.stop().catch(() => undefined);
      if (i >= 0) await sb.restartBackend(i);
    }
  });
});
