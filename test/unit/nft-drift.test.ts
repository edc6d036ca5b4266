// svcplane's table changed in what decides whether its rules see packets (diff.ts, drift.ts, explain-hooks.ts),
// against FakeNftClient (held to the kernel by test/contract): a dormant table, a base chain with policy drop, a
// base chain moved to another hook or priority. A full sync must repair each exactly, in one transaction, and say
// what it repaired; status and explain must say what the kernel does meanwhile.
import { describe, expect, it } from 'vitest';
import { explainNftables } from '../../src/dataplane/nftables/explain';
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import { driftWarnings, ownTableWarnings, tableDrift } from '../../src/dataplane/nftables/drift';
import type { ForeignChain } from '../../src/dataplane/nftables/foreign';
import {
  NF_DROP, NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_PRE_ROUTING, NFPROTO_IPV4, NFPROTO_IPV6, NFT_TABLE_F_DORMANT,
} from '../../src/dataplane/nftables/netlink/constants';
import { RuleBuilder } from '../../src/dataplane/nftables/netlink/expr';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { CHAINS, TABLE_NAME } from '../../src/dataplane/nftables/rules/names';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import type { Endpoint, ServicePort } from '../../src/model/types';

const V4 = NFPROTO_IPV4;
const cfg = () => defaultConfig({ clusterCIDRs: ['10.1.0.0/16', 'fd01::/64'] });
const NODE = ['192.0.2.1'];
const OUTSIDE = '203.0.113.7';

function ep(address: string): Endpoint {
  return { address, family: 4, port: 8080, ready: true, serving: true, terminating: false };
}

function web(): ServicePort {
  const endpoints = [ep('10.1.0.1'), ep('10.1.0.2')];
  return {
    key: 'default/web:http', namespace: 'default', name: 'web', portName: 'http', protocol: 'TCP', port: 80, nodePort: 0,
    clusterIPs: ['198.18.100.10'], externalIPs: [], loadBalancerIPs: [], externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
    sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [], endpoints, allEndpoints: endpoints,
  };
}

/** A fake holding svcplane's tables for one Service, the proxier that programmed them, and the dump to return to. */
async function programmed() {
  const fake = new FakeNftClient();
  const proxier = new NftablesProxier(fake, cfg());
  const sp = web();
  await proxier.syncFull(new Map([[sp.key, sp]]));
  return { fake, proxier, sp, good: fake.dump() };
}

/** A hand edit, as `nft` would send it (one batch). */
async function edit(fake: FakeNftClient, build: (tx: NftTransaction) => void): Promise<void> {
  const tx = new NftTransaction();
  build(tx);
  await fake.run(tx);
}

const natPrerouting = { name: CHAINS.natPrerouting, base: { type: 'nat' as const, hook: NF_INET_PRE_ROUTING, priority: -100 } };
const filterForward = { name: CHAINS.filterForward, base: { type: 'filter' as const, hook: NF_INET_FORWARD, priority: -110 } };

describe('full sync repairs what decides whether svcplane\'s rules see packets', () => {
  it('wakes a dormant table, first in its one transaction, and says so', async () => {
    const { fake, proxier, sp, good } = await programmed();
    await edit(fake, (tx) => tx.updateTable(V4, TABLE_NAME, NFT_TABLE_F_DORMANT));
    expect(fake.dump()).not.toBe(good);
    const res = await proxier.syncFull(new Map([[sp.key, sp]]));
    expect(res.summary).toEqual({ 'update table': 1 });
    expect(res.warnings).toEqual(['table ip svcplane: the table was dormant: woken']);
    expect(fake.dump()).toBe(good);
    expect((await proxier.syncFull(new Map([[sp.key, sp]]))).operations).toBe(0);
  });

  it('sets a base chain\'s policy back to accept in place (no rule or element touched)', async () => {
    const { fake, proxier, sp, good } = await programmed();
    await edit(fake, (tx) => tx.addChain(V4, TABLE_NAME, { ...filterForward, policy: NF_DROP }));
    const res = await proxier.syncFull(new Map([[sp.key, sp]]));
    expect(res.summary).toEqual({ 'update chain': 1 });
    expect(res.warnings).toEqual(['table ip svcplane: chain filter-forward had policy drop: set back to accept']);
    expect(fake.dump()).toBe(good);
  });

  it('re-creates a base chain moved to another hook, or another priority, with its rules, without rebuilding the table', async () => {
    for (const moved of [{ ...natPrerouting.base, hook: NF_INET_LOCAL_IN }, { ...natPrerouting.base, priority: 50 }]) {
      const { fake, proxier, sp, good } = await programmed();
      const rules = (await fake.dumpTable(V4, TABLE_NAME))!.chains.get(CHAINS.natPrerouting)!.rules;
      await edit(fake, (tx) => {
        tx.deleteChain(V4, TABLE_NAME, CHAINS.natPrerouting);
        tx.addChain(V4, TABLE_NAME, { name: CHAINS.natPrerouting, base: moved });
        for (const r of rules) tx.addRule(V4, TABLE_NAME, CHAINS.natPrerouting, r);
      });
      const res = await proxier.syncFull(new Map([[sp.key, sp]]));
      expect(res.summary).toEqual({ 'delete chain': 1, 'add chain': 1, 'add rule': rules.length });
      expect(res.warnings?.[0]).toMatch(/chain nat-prerouting was type nat hook (input|prerouting) priority (-100|50): re-created as type nat hook prerouting priority -100/);
      expect(fake.dump()).toBe(good);
    }
  });

  it('all at once (dormant, a policy, a moved chain, in both families) in one transaction', async () => {
    const { fake, proxier, sp, good } = await programmed();
    await edit(fake, (tx) => {
      tx.updateTable(V4, TABLE_NAME, NFT_TABLE_F_DORMANT);
      tx.updateTable(NFPROTO_IPV6, TABLE_NAME, NFT_TABLE_F_DORMANT);
      tx.addChain(NFPROTO_IPV6, TABLE_NAME, { ...filterForward, policy: NF_DROP });
      tx.deleteChain(V4, TABLE_NAME, CHAINS.natPrerouting);
    });
    const commits = fake.commits;
    const res = await proxier.syncFull(new Map([[sp.key, sp]]));
    expect(fake.commits).toBe(commits + 1);
    expect(res.warnings).toEqual([
      'table ip svcplane: the table was dormant: woken',
      'table ip svcplane: chain nat-prerouting (type nat hook prerouting priority -100) was missing: re-created',
      'table ip6 svcplane: the table was dormant: woken',
      'table ip6 svcplane: chain filter-forward had policy drop: set back to accept',
    ]);
    expect(fake.dump()).toBe(good);
  });

  it('a rogue rule in a base chain is flushed and the chain refilled', async () => {
    const { fake, proxier, sp, good } = await programmed();
    await edit(fake, (tx) => tx.addRule(V4, TABLE_NAME, CHAINS.filterForward, new RuleBuilder().verdict({ kind: 'drop' }).body()));
    await proxier.syncFull(new Map([[sp.key, sp]]));
    expect(fake.dump()).toBe(good);
  });
});

describe('drift.ts: what status says about svcplane\'s own tables', () => {
  it('is silent about a table as svcplane programs it', async () => {
    const { fake } = await programmed();
    const tables = [(await fake.dumpTable(V4, TABLE_NAME))!, (await fake.dumpTable(NFPROTO_IPV6, TABLE_NAME))!];
    expect(ownTableWarnings(tables, TABLE_NAME)).toEqual([]);
  });

  it('names a dormant table, a policy drop, a missing and a moved chain, and a family\'s missing table', async () => {
    const { fake } = await programmed();
    await edit(fake, (tx) => {
      tx.updateTable(V4, TABLE_NAME, NFT_TABLE_F_DORMANT);
      tx.addChain(V4, TABLE_NAME, { ...filterForward, policy: NF_DROP });
      tx.deleteChain(V4, TABLE_NAME, CHAINS.natOutput);
      tx.deleteChain(V4, TABLE_NAME, CHAINS.natPrerouting);
      tx.addChain(V4, TABLE_NAME, { name: CHAINS.natPrerouting, base: { ...natPrerouting.base, hook: NF_INET_LOCAL_IN } });
    });
    const t = (await fake.dumpTable(V4, TABLE_NAME))!;
    const d = tableDrift(t);
    expect(d.dormant).toBe(true);
    expect(d.chains.map((c) => `${c.chain} ${c.problem}`).sort()).toEqual(['filter-forward policy', 'nat-output missing', 'nat-prerouting moved']);
    const text = driftWarnings(d).join('\n');
    expect(text).toMatch(/table ip svcplane is dormant/);
    expect(text).toMatch(/chain filter-forward \(type filter hook forward priority -110\) has policy drop: every packet it sees is dropped/);
    expect(text).toMatch(/chain nat-output \(type nat hook output priority -100\) is missing/);
    expect(text).toMatch(/chain nat-prerouting is type nat hook input priority -100, not type nat hook prerouting priority -100/);
    expect(ownTableWarnings([t], TABLE_NAME).pop()).toMatch(/table ip6 svcplane is missing/);
  });
});

describe('explain: the maps\' verdict checked against the hooks', () => {
  const flow = { protocol: 'TCP' as const, address: '198.18.100.10', port: 80 };
  async function tampered(build: (tx: NftTransaction) => void) {
    const { fake } = await programmed();
    await edit(fake, build);
    return (await fake.dumpTable(V4, TABLE_NAME))!;
  }

  it('forwarded as programmed, with no warning', async () => {
    const { fake } = await programmed();
    const e = explainNftables(await fake.dumpTable(V4, TABLE_NAME), { ...flow, from: OUTSIDE }, NODE);
    expect(e.verdict).toBe('forwarded');
    expect(e.warnings).toBeUndefined();
  });

  it('a dormant table: not handled by svcplane at all', async () => {
    const t = await tampered((tx) => tx.updateTable(V4, TABLE_NAME, NFT_TABLE_F_DORMANT));
    const e = explainNftables(t, { ...flow, from: OUTSIDE }, NODE);
    expect(e.verdict).toBe('not a Service');
    expect(e.service).toBe('default/web:http');
    expect(e.why.join('\n')).toMatch(/dormant/);
  });

  it('policy drop on a filter chain the flow passes drops it; on one it does not pass, it does not', async () => {
    const t = await tampered((tx) => tx.addChain(V4, TABLE_NAME, { ...filterForward, policy: NF_DROP }));
    const off = explainNftables(t, { ...flow, from: OUTSIDE }, NODE);
    expect(off.verdict).toBe('dropped');
    expect(off.warnings?.join('\n')).toMatch(/filter-forward .*policy drop/);
    // From the node itself the flow goes output -> postrouting: filter-forward never sees it.
    const fromNode = explainNftables(t, { ...flow, from: NODE[0] }, NODE);
    expect(fromNode.verdict).toBe('forwarded');
  });

  it('policy drop on the DNAT chain leaves a DNATed flow forwarded (the DNAT accepts it), but says so', async () => {
    const t = await tampered((tx) => tx.addChain(V4, TABLE_NAME, { ...natPrerouting, policy: NF_DROP }));
    const e = explainNftables(t, { ...flow, from: OUTSIDE }, NODE);
    expect(e.verdict).toBe('forwarded');
    expect(e.warnings?.join('\n')).toMatch(/nat-prerouting .*policy drop: every new connection it sees that no rule NATs is dropped/);
  });

  it('the DNAT chain gone: not DNATed, so refused in forward as a ClusterIP no rule sent anywhere (as the kernel does)', async () => {
    const t = await tampered((tx) => tx.deleteChain(V4, TABLE_NAME, CHAINS.natPrerouting));
    const e = explainNftables(t, { ...flow, from: OUTSIDE }, NODE);
    expect(e).toMatchObject({ verdict: 'rejected', kind: 'ClusterIP', service: 'default/web:http' });
    expect(e.why.join('\n')).toMatch(/nat-prerouting is not at its hook/);
  });

  it('names foreign chains at the hooks the flow passes, of its family only; the verdict stays (they "may" take it)', async () => {
    const { fake } = await programmed();
    const foreign = (hook: string, ipFamilies: Array<4 | 6>): ForeignChain => ({
      family: 'ip', table: 'other', chain: hook, type: 'nat', hook, priority: -150, before: { chain: 'x', priority: -100 }, can: ['dnat'], ipFamilies,
    });
    const chains = [foreign('prerouting', [4]), foreign('output', [4]), foreign('forward', [6])];
    const e = explainNftables(await fake.dumpTable(V4, TABLE_NAME), { ...flow, from: OUTSIDE }, NODE, chains);
    expect(e.verdict).toBe('forwarded');
    expect(e.warnings).toHaveLength(1);
    expect(e.warnings![0]).toMatch(/a foreign rule at the same hook may take Service traffic before svcplane: table ip other chain prerouting/);
  });
});
