// svcplane's own table changed behind its back in ways that change every packet's fate, not one Service's: the
// table set dormant (none of its chains sees a packet) and a base chain given policy drop. With real traffic in
// the sandbox (scripts/lib/sandbox.ts): connections fail after the edit, `status` and `explain` say so (read
// from the kernel), and the next full sync (`sync --once`) repairs it in its one transaction, after which
// connections succeed and status agrees with the kernel again. Connections tried while the table was dormant left
// conntrack entries without DNAT; the repair deletes them (else a retry from the same source port, which the client
// may pick again, would stay un-NATed and be refused: the one failure in ~40 runs this suite used to show).
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { runClient } from '../../scripts/lib/traffic';
import { REPO, execOk, svcplane } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables drift');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');
const WEB = { addr: '198.18.100.10', port: 80 };

interface StatusJson {
  present: boolean;
  warnings?: string[];
  rows: Array<{ address: string; port: number }>;
}
interface ExplainJson {
  verdict: string;
  why: string[];
  warnings?: string[];
}

describe.runIf(haveRoot)('nftables: svcplane\'s table changed behind its back (flags, base chains)', () => {
  let sb: Sandbox;
  let clusterCIDR: string;
  const nft = (command: string) => execOk(sb, sb.nodeNs, ['nft', command]);
  /** A full sync by the CLI: its summary and its log lines (JSON on stderr). */
  const sync = async () => {
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json', '--log-format', 'json'], { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    const logs = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; msg: string; repairs?: string[] });
    return { ...(JSON.parse(r.stdout) as { operations: number; warnings?: string[] }), logs };
  };
  /** The one warning a repairing sync logs, naming what it repaired. */
  const repairLogged = (logs: Awaited<ReturnType<typeof sync>>['logs'], also: string[] = []) => {
    expect(logs.map((l) => l.msg)).toEqual([...also, 'svcplane\'s tables were changed behind its back: repaired']);
    return logs[also.length].repairs!.join('\n');
  };
  const status = async () => JSON.parse((await svcplane(['status', '--output', 'json'], { netns: sb.nodeNs })).stdout) as StatusJson;
  const explain = async () => JSON.parse((await svcplane(['explain', 'TCP', `${WEB.addr}:${WEB.port}`, '--from', sb.clientIP.v4, '--output', 'json'], { netns: sb.nodeNs })).stdout) as ExplainJson;
  /** Connections from the client to the ClusterIP: all succeed (the table works) or none does. */
  const connects = async (count: number) => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', ...WEB, count, timeoutMs: 3000 });
    // Which error a failed connection met goes into the log, so a lone failure can be explained.
    if (r.ok !== 0 && r.ok !== count) console.error(`nftables-drift: ${r.ok}/${count} connected; errors ${JSON.stringify(r.errors)}`);
    return r.ok;
  };

  /** Conntrack entries to the ClusterIP that were never DNATed (the reply comes from the ClusterIP itself). */
  const unNatted = async () => {
    const listed = await execOk(sb, sb.nodeNs, ['conntrack', '-L', '-p', 'tcp', '--orig-dst', WEB.addr, '--reply-src', WEB.addr]);
    return listed.split('\n').filter((l) => l.includes(`dst=${WEB.addr}`)).length;
  };

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    clusterCIDR = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    await sync();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  /** The state every case starts and must end in: traffic flows, status and explain say so, nothing to change. */
  const healthy = async () => {
    expect(await connects(20)).toBe(20);
    expect((await status()).warnings ?? []).toEqual([]);
    expect((await explain()).verdict).toBe('forwarded');
    const s = await sync();
    expect(s.operations).toBe(0);
    expect(s.logs).toEqual([]);
  };

  it('a dormant table: detected by status and explain, woken by the next full sync', async () => {
    await healthy();
    await nft('add table ip svcplane { flags dormant; }');
    expect(await nft('list table ip svcplane')).toContain('flags dormant');
    expect(await connects(3)).toBe(0);
    // The node routed those SYNs on as they were (to the sink): each left a conntrack entry without DNAT, which
    // would keep a retry from the same port un-NATed (and refused) after the repair, had the repair not deleted it.
    expect(await unNatted()).toBeGreaterThan(0);

    const st = await status();
    expect(st.warnings?.join('\n')).toMatch(/dormant/);
    const ex = await explain();
    expect(ex.verdict).not.toBe('forwarded');
    expect([...ex.why, ...(ex.warnings ?? [])].join('\n')).toMatch(/dormant/);

    const repaired = await sync();
    expect(repaired.operations).toBeGreaterThan(0);
    expect(repairLogged(repaired.logs, ['conntrack entries that bypassed svcplane\'s NAT deleted'])).toMatch(/table ip svcplane: the table was dormant: woken/);
    expect(await nft('list table ip svcplane')).not.toContain('dormant');
    expect(await unNatted()).toBe(0);
    await healthy();
  });

  it('policy drop on a base chain: detected by status and explain, reset to accept by the next full sync', async () => {
    await healthy();
    await nft('add chain ip svcplane filter-forward { type filter hook forward priority -110; policy drop; }');
    expect(await nft('list chain ip svcplane filter-forward')).toContain('policy drop');
    expect(await connects(3)).toBe(0);

    expect((await status()).warnings?.join('\n')).toMatch(/filter-forward.*policy drop/);
    const ex = await explain();
    expect(ex.verdict).toBe('dropped');
    expect([...ex.why, ...(ex.warnings ?? [])].join('\n')).toMatch(/filter-forward.*policy drop/);

    const repaired = await sync();
    expect(repaired.operations).toBeGreaterThan(0);
    expect(repairLogged(repaired.logs)).toMatch(/chain filter-forward had policy drop: set back to accept/);
    expect(await nft('list chain ip svcplane filter-forward')).toContain('policy accept');
    await healthy();
  });

  it('policy drop on the prerouting filter chain (sees every packet, replies too) is repaired alike', async () => {
    await healthy();
    await nft('add chain ip svcplane filter-prerouting { type filter hook prerouting priority -110; policy drop; }');
    expect(await connects(3)).toBe(0);
    expect((await explain()).verdict).toBe('dropped');
    const repaired = await sync();
    expect(repaired.operations).toBeGreaterThan(0);
    expect(repairLogged(repaired.logs)).toMatch(/chain filter-prerouting had policy drop/);
    await healthy();
  });
});
