// IPVS mode with real traffic, inside the qemu guest (a Debian kernel with IPVS): the sandbox of network namespaces
// (client -> node -> 3 backend pods), `svcplane sync --once --mode ipvs` programming the node, TCP and UDP through
// ClusterIP and NodePort, cross-checked with ipvsadm -Ln as an independent reader.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../../scripts/lib/sandbox';
import { countsFor, runClient, startHold } from '../../../scripts/lib/traffic';
import { REPO, execOk, svcplane, svcplaneOk } from '../../helpers/cli';
import { endpointSlice } from '../../helpers/web-manifest';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

describe.runIf(inGuest)('IPVS dataplane, real traffic (guest kernel)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ipvs-'));
  const ipvsadm = () => execOk(sb, sb.nodeNs, ['ipvsadm', '-Ln']);
  const sync = async (manifests = EXAMPLES, extra: string[] = []) => {
    return JSON.parse(await svcplaneOk(['sync', '--once', '--mode', 'ipvs', '--manifests', manifests, '--output', 'json', '--netns', sb.nodeNsPath, ...extra])) as { operations: number; servicePorts: number };
  };

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    const s = await sync();
    expect(s.servicePorts).toBe(4);
    expect(s.operations).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('programs virtual services that ipvsadm sees, with every endpoint as a masquerading real server', async () => {
    const out = await ipvsadm();
    expect(out).toMatch(/TCP {2}198\.18\.100\.10:80 rr/);
    expect(out).toMatch(/UDP {2}198\.18\.100\.10:53 rr/);
    expect(out).toMatch(/TCP {2}\[fd00:100::10\]:80 rr/);
    for (const be of ['198.18.2.11', '198.18.2.12', '198.18.2.13']) expect(out).toContain(`-> ${be}:8080`);
    expect(out).toMatch(/Masq/);
    // NodePort: a virtual service on the node's address.
    expect(out).toContain(`TCP  ${sb.nodeIPs.v4}:30080 rr`);
  });

  it('rr spreads TCP connections to the ClusterIP evenly; UDP and the NodePort answer too', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 90, concurrency: 1 });
    expect(r.errors).toEqual({});
    expect(countsFor(r, ['be0', 'be1', 'be2'])).toEqual([30, 30, 30]);
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.10', port: 53, count: 30 });
    expect(udp.errors).toEqual({});
    const np = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 30, concurrency: 1 });
    expect(np.errors).toEqual({});
    expect(countsFor(np, ['be0', 'be1', 'be2'])).toEqual([10, 10, 10]);
  });

  it('a restart (a second sync) changes nothing: ipvsadm and nft identical, an open connection kept', async () => {
    const before = await ipvsadm();
    const nftBefore = (await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])).stdout;
    expect(nftBefore).toContain('"svcplane"');
    // Open before the sync and kept until after it, however long the sync takes; 10 s per answer, as a loaded TCG
    // guest can be slow to answer (a broken connection fails at once, or at the latest then).
    const hold = startHold(sb, sb.clientNs, { addr: '198.18.100.10', port: 80, holdMs: 600_000, intervalMs: 100, timeoutMs: 10_000 });
    let held;
    try {
      await hold.established(60_000);
      expect((await sync()).operations).toBe(0);
    } finally {
      held = await hold.stop();
    }
    expect(held.stoppedBy).toBe('eof');
    expect(held.errors).toEqual({});
    expect(held.switched).toBe(0);
    // At least the exchange stop() begins, after the sync.
    expect(held.replies).toBeGreaterThan(0);
    // Counters aside (the held connection), the table is the same.
    // Connection counters may move (earlier tests' connections age out); ipvsadm pads them to a fixed width, so the
    // padding after them changes with their digits and goes too.
    const strip = (t: string) => t.replace(/(Masq\s+\d+)\s+\d+\s+\d+[ \t]*$/gm, '$1');
    expect(strip(await ipvsadm())).toBe(strip(before));
    expect((await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])).stdout).toBe(nftBefore);
  });

  it('sh keeps a client on one endpoint; sessionAffinity ClientIP is persistence with its timeout', async () => {
    const m = path.join(dir, 'sticky');
    fs.mkdirSync(m, { recursive: true });
    const svc = (name: string, ip: string, extra: string) => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo${extra.startsWith('annotations') ? `, ${extra}` : ''}}
spec:
  clusterIP: ${ip}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
${extra.startsWith('annotations') ? '' : extra}
---
${endpointSlice(name, 'demo', sb.backends.map((b) => b.v4))}`;
    fs.writeFileSync(path.join(m, 'sticky.yaml'), [
      svc('hashed', '198.18.100.31', `annotations: {svcplane.io/ipvs-scheduler: sh}`),
      svc('sticky', '198.18.100.30', '  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}'),
    ].join('---\n'));
    expect((await sync(m)).servicePorts).toBe(2);
    const out = await ipvsadm();
    expect(out).toContain('TCP  198.18.100.31:80 sh');
    expect(out).toMatch(/TCP {2}198\.18\.100\.30:80 rr.*persistent 30/);
    for (const ip of ['198.18.100.31', '198.18.100.30']) {
      const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: ip, port: 80, count: 30, concurrency: 1 });
      expect(r.errors).toEqual({});
      expect(countsFor(r, ['be0', 'be1', 'be2']).filter((n) => n > 0)).toEqual([30]);
    }
    await sync(); // back to the examples (removes both)
  });

  it('graceful termination: a removed endpoint drains (weight 0), its open connection keeps working, then it goes', async () => {
    // Six held connections: rr gives every backend two, whatever its position. They are open before the sync and
    // stay open until the checks below are done, however long those take; 10 s per answer (see the restart test).
    // They end with a reset: IPVS counts a connection closed with FINs for 2 min (TIME_WAIT, a timeout ipvsadm
    // cannot set), one closed with a reset for 10 s (CLOSE); svcplane waits for the count either way.
    const hold = startHold(sb, sb.clientNs, { addr: '198.18.100.10', port: 80, holdMs: 600_000, count: 6, intervalMs: 100, timeoutMs: 10_000, closeWith: 'rst' });
    const m = path.join(dir, 'm1');
    let held;
    try {
      await hold.established(60_000);
      // Drop be2 (198.18.2.13) from the manifests.
      fs.mkdirSync(m, { recursive: true });
      fs.writeFileSync(path.join(m, 'web.yaml'), fs.readFileSync(path.join(EXAMPLES, 'web.yaml'), 'utf8').replace(/ {2}- addresses: \[198\.18\.2\.13\]\n.*\n.*\n/, ''));
      await sync(m);
      const out = await ipvsadm();
      // Weight 0, and its held connections still counted (IPVS may count them active or inactive).
      const drained = /-> 198\.18\.2\.13:8080\s+Masq\s+0\s+(\d+)\s+(\d+)/.exec(out.slice(out.indexOf('TCP  198.18.100.10:80')));
      expect(drained, out).not.toBeNull();
      expect(Number(drained![1]) + Number(drained![2]), out).toBeGreaterThan(0);
      // New connections avoid it.
      const fresh = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 30, concurrency: 1 });
      expect(fresh.errors).toEqual({});
      expect(countsFor(fresh, ['be0', 'be1', 'be2'])[2]).toBe(0);
    } finally {
      held = await hold.stop();
    }
    expect(held.stoppedBy).toBe('eof');
    expect(held.errors).toEqual({});
    expect(held.switched).toBe(0);
    expect(countsFor(held, ['be0', 'be1', 'be2'])).toEqual([2, 2, 2]);
    // Held at weight 0 while IPVS counts its connections (above); once IPVS has forgotten them (CLOSE's 10 s after
    // the resets), the next sync deletes it. The counts are polled with ipvsadm (at most 5 min: a sync per
    // poll would be a node process every 2 s in the emulated guest).
    // (Every virtual service it is a real server of: the ClusterIP's and the NodePort's.)
    const counted = (out: string) =>
      [...out.matchAll(/-> 198\.18\.2\.13:8080\s+Masq\s+0\s+(\d+)\s+(\d+)/g)].reduce((n, rs) => n + Number(rs[1]) + Number(rs[2]), 0);
    for (const deadline = Date.now() + 300_000; counted(await ipvsadm()) > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 1000));
    expect(counted(await ipvsadm())).toBe(0);
    await sync(m);
    expect(await ipvsadm()).not.toContain('198.18.2.13:8080');
  }, 600_000);

  it('status reads the virtual services back like ipvsadm -Ln; cleanup removes them and svcplane0', async () => {
    const st = await svcplane(['status', '--mode', 'ipvs', '--netns', sb.nodeNsPath]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain('TCP  198.18.100.10:80 rr');
    expect(st.stdout).toMatch(/-> 198\.18\.2\.11:8080\s+Masq\s+1/);
    expect((await svcplane(['cleanup', '--mode', 'ipvs', '--netns', sb.nodeNsPath])).code).toBe(0);
    expect(await ipvsadm()).not.toContain('198.18.100.10');
    const links = await sb.exec(sb.nodeNs, ['ip', 'link', 'show']);
    expect(links.stdout).not.toContain('svcplane0');
    expect((await sb.exec(sb.nodeNs, ['nft', 'list', 'tables'])).stdout).not.toContain('svcplane');
  });
});
