// Another writer's table at svcplane's hooks, with real traffic in the sandbox (scripts/lib/sandbox.ts): a nat
// chain that DNATs a Service address at priority -150, before svcplane's DNAT at -100, takes the Service's
// connections. svcplane must leave it alone (byte-for-byte, over several syncs), and say so: `status` and
// `explain` (text and JSON) name it, and every full sync logs one warning while it is there, none after it is
// gone. Chains that run after svcplane's, or whose rules cannot take a packet, are not reported.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../scripts/lib/traffic';
import { REPO, execOk, svcplane } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables foreign tables');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');
const WEB = { addr: '198.18.100.10', port: 80 };
const FOREIGN_WARNING = 'foreign rules at svcplane\'s hooks may take Service traffic';

interface LogLine {
  level: string;
  msg: string;
  chains?: string[];
}

describe.runIf(haveRoot)('nftables: a foreign table at svcplane\'s hooks', () => {
  let sb: Sandbox;
  let clusterCIDR: string;
  const nft = (command: string) => execOk(sb, sb.nodeNs, ['nft', command]);
  const nftJson = (command: string) => execOk(sb, sb.nodeNs, ['nft', '-j', command]);
  const sync = async () => {
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json', '--log-format', 'json'], { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    const logs = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
    return { ...(JSON.parse(r.stdout) as { operations: number; warnings?: string[] }), logs };
  };
  const cli = async (args: string[]) => {
    const r = await svcplane(args, { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const explainArgs = ['explain', 'TCP', `${WEB.addr}:${WEB.port}`, '--from', '198.18.1.2'];

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    clusterCIDR = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    expect((await sync()).logs).toEqual([]);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('a foreign DNAT before svcplane\'s wins; status, explain and each sync say so; the foreign table is never touched', async () => {
    // Before: svcplane spreads the Service over its three endpoints.
    const before = await runClient(sb, sb.clientNs, { proto: 'tcp', ...WEB, count: 30 });
    expect(before.ok).toBe(30);
    expect(countsFor(before, ['be0', 'be1', 'be2']).filter((n) => n > 0).length).toBeGreaterThan(1);

    // The foreign DNAT sits in a regular chain the base chain jumps to (svcplane follows jumps).
    await nft('add table ip foreign');
    await nft('add chain ip foreign pre { type nat hook prerouting priority -150; }');
    await nft('add chain ip foreign steer');
    await nft(`add rule ip foreign pre ip daddr ${sb.serviceCIDR.v4} jump steer`);
    await nft(`add rule ip foreign steer tcp dport 80 dnat to ${sb.backends[2].v4}:8080`);
    // Not reported: a chain after svcplane's (priority 0) and one before it whose rules cannot take a packet.
    await nft('add table inet quiet');
    await nft('add chain inet quiet late { type filter hook forward priority 0; }');
    await nft('add rule inet quiet late meta mark 0x2 drop');
    await nft('add chain inet quiet early { type filter hook prerouting priority -300; }');
    await nft('add rule inet quiet early meta mark 0x1 accept');
    const foreign = await nftJson('list table ip foreign');
    const quiet = await nftJson('list table inet quiet');

    // The foreign rule takes every connection: all go to the one backend it names.
    const taken = await runClient(sb, sb.clientNs, { proto: 'tcp', ...WEB, count: 30 });
    expect(taken.ok).toBe(30);
    expect(countsFor(taken, ['be0', 'be1', 'be2'])).toEqual([0, 0, 30]);

    // status: text and JSON.
    const st = JSON.parse(await cli(['status', '--output', 'json'])) as { warnings?: string[]; foreign?: Array<{ family: string; table: string; chain: string; hook: string; priority: number; can: string[] }> };
    expect(st.foreign).toEqual([expect.objectContaining({ family: 'ip', table: 'foreign', chain: 'pre', hook: 'prerouting', priority: -150, can: ['dnat'] })]);
    expect(st.warnings).toHaveLength(1);
    expect(st.warnings![0]).toMatch(/^a foreign rule at the same hook may take Service traffic before svcplane: table ip foreign chain pre/);
    expect(await cli(['status'])).toMatch(/\nwarning: a foreign rule at the same hook may take Service traffic before svcplane: table ip foreign chain pre/);

    // explain: text and JSON, for a flow that passes that hook; not for an IPv6 flow (an ip table sees none).
    const ex = JSON.parse(await cli([...explainArgs, '--output', 'json'])) as { verdict: string; warnings?: string[] };
    expect(ex.warnings?.join('\n')).toMatch(/table ip foreign chain pre .*can dnat/);
    expect(await cli(explainArgs)).toMatch(/\n {2}warning {4}a foreign rule at the same hook may take Service traffic/);
    const v6 = JSON.parse(await cli(['explain', 'TCP', '[fd00:100::10]:80', '--from', sb.clientIP.v6, '--output', 'json'])) as { warnings?: string[] };
    expect(v6.warnings).toBeUndefined();

    // Each full sync: nothing to change in svcplane's tables, exactly one warning naming the chain, the foreign
    // tables byte-for-byte as they were (handles included).
    for (let i = 0; i < 3; i++) {
      const s = await sync();
      expect(s.operations).toBe(0);
      expect(s.logs.map((l) => l.msg)).toEqual([FOREIGN_WARNING]);
      expect(s.logs[0].level).toBe('warn');
      expect(s.logs[0].chains).toHaveLength(1);
      expect(s.logs[0].chains![0]).toMatch(/table ip foreign chain pre/);
      expect(s.warnings).toEqual(s.logs[0].chains);
      expect(await nftJson('list table ip foreign')).toBe(foreign);
      expect(await nftJson('list table inet quiet')).toBe(quiet);
    }

    // Gone: no warning, no status line, and svcplane's own DNAT spreads the connections again.
    await nft('delete table ip foreign');
    expect((await sync()).logs).toEqual([]);
    expect((JSON.parse(await cli(['status', '--output', 'json'])) as { warnings?: string[] }).warnings).toBeUndefined();
    const after = await runClient(sb, sb.clientNs, { proto: 'tcp', ...WEB, count: 30 });
    expect(after.ok).toBe(30);
    expect(countsFor(after, ['be0', 'be1', 'be2']).filter((n) => n > 0).length).toBeGreaterThan(1);
    expect(await nftJson('list table inet quiet')).toBe(quiet);
  });
});
