// The nftables table beside IPVS (src/dataplane/ipvs/filter.ts, nftables.ts), run against FakeNftClient (held to
// the kernel's rules by test/contract): the skeleton is accepted, elements follow the Service ports, shared
// elements are reference-counted, partial syncs send only what changed, a refused batch leaves the counts as they were.
import { describe, expect, it } from 'vitest';
import { FakeNftClient, formatRule, formatTable } from '../../src/dataplane/nftables/fake';
import { NFPROTO_IPV4, NFPROTO_IPV6, type NfFamily } from '../../src/dataplane/nftables/netlink/constants';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { IPVS_CHAINS, IPVS_SETS, elementsOf } from '../../src/dataplane/ipvs/filter';
import { masqueradeSettings, serviceCIDRsOf } from '../../src/dataplane/nftables/readback';
import { IpvsNftables } from '../../src/dataplane/ipvs/nftables';
import { bytesToIp } from '../../src/model/ip';
import { ep, portsOf, servicePort } from '../helpers/service-port';

const sp = servicePort;
const ports = portsOf;
const cfg = defaultConfig({ clusterCIDRs: ['198.18.2.0/24'], nodeName: 'node-a' });
const always = () => true;

/** set -> element keys, readable ("198.18.100.10 tcp 80"). */
async function contents(fake: FakeNftClient, nf: NfFamily = NFPROTO_IPV4): Promise<Record<string, string[]>> {
  const t = await fake.dumpTable(nf, cfg.tableName);
  const out: Record<string, string[]> = {};
  const alen = nf === NFPROTO_IPV4 ? 4 : 16;
  for (const [set, m] of t?.elements ?? []) {
    out[set] = [...m.values()].map((e) => {
      const k = e.key;
      if (k.length === alen + 8) return `${bytesToIp(k.subarray(0, alen))} ${k[alen]} ${k.readUInt16BE(alen + 4)}`;
      if (k.length === 8) return `${k[0]} ${k.readUInt16BE(4)}`;
      if (k.length === 2 * alen) return `${bytesToIp(k.subarray(0, alen))}>${bytesToIp(k.subarray(alen))}`;
      return bytesToIp(k);
    }).sort();
  }
  return out;
}

describe('IPVS mode: the nftables table beside IPVS', () => {
  it('a Service port is elements: its virtual service keys, its bound address, hairpin pairs of this node', () => {
    const p = sp('web', { nodePort: 30080, externalIPs: ['203.0.113.7', '198.18.1.1'], endpoints: [ep('198.18.2.11', 8080, 'node-a'), ep('198.18.2.12', 8080, 'node-b')] });
    // 198.18.1.1 is a node address: not bound on svcplane0, so not filtered either.
    const els = elementsOf(p, 4, cfg, (a) => a !== '198.18.1.1');
    const by = (set: string) => els.filter((e) => e.set === set).map((e) => e.key.toString('hex'));
    expect(by(IPVS_SETS.serviceIPs)).toHaveLength(3);
    expect(by(IPVS_SETS.externalIPs)).toHaveLength(2);
    expect(by(IPVS_SETS.boundAddresses).map((h) => bytesToIp(Buffer.from(h, 'hex')))).toEqual(['198.18.100.10', '203.0.113.7']);
    expect(by(IPVS_SETS.masqNodePorts)).toHaveLength(1);
    expect(by(IPVS_SETS.noEndpointServices)).toHaveLength(0);
    expect(by(IPVS_SETS.hairpin)).toHaveLength(1); // node-a's endpoint only
    // Without endpoints: rejected, in both kinds.
    const empty = elementsOf(sp('none', { nodePort: 30081, endpoints: [] }), 4, cfg, always);
    expect(empty.filter((e) => e.set === IPVS_SETS.noEndpointServices)).toHaveLength(1);
    expect(empty.filter((e) => e.set === IPVS_SETS.noEndpointNodePorts)).toHaveLength(1);
    // An IPv4-only Service adds nothing to the ip6 table.
    expect(elementsOf(p, 6, cfg, always)).toEqual([]);
  });

  it('the skeleton and elements are accepted with the kernel\'s rules; a restart (second full sync) sends nothing', async () => {
    const fake = new FakeNftClient();
    const t = new IpvsNftables(fake, cfg);
    const model = ports(sp('web', { nodePort: 30080 }), sp('dns', { protocol: 'UDP', port: 53, endpoints: [] }), sp('v6', { clusterIPs: ['fd00:100::10'], endpoints: [ep('fd00:2::11')] }));
    const first = await t.full(model, always);
    expect(first.tx.size).toBeGreaterThan(0);
    const c4 = await contents(fake);
    expect(c4[IPVS_SETS.serviceIPs]).toEqual(['198.18.100.10 17 53', '198.18.100.10 6 80']);
    expect(c4[IPVS_SETS.noEndpointServices]).toEqual(['198.18.100.10 17 53']);
    expect(c4[IPVS_SETS.boundAddresses]).toEqual(['198.18.100.10']);
    expect(c4[IPVS_SETS.masqNodePorts]).toEqual(['6 30080']);
    expect((await contents(fake, NFPROTO_IPV6))[IPVS_SETS.boundAddresses]).toEqual(['fd00:100::10']);
    const again = await new IpvsNftables(fake, cfg).full(model, always);
    expect(again.tx.size).toBe(0);
    // Base chains where kube-proxy's IPVS mode hooks in: nat prerouting/output/postrouting and filter input.
    const text = formatTable((await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!);
    expect(text).toMatch(/chain filter-input { type filter hook input priority 0 }/);
    expect(text).toMatch(/chain nat-postrouting { type nat hook postrouting priority 100 }/);
  });

  it('Service CIDRs: filter-forward and filter-output check new connections; ClusterIPs return, the rest of the CIDRs is dropped', async () => {
    const fake = new FakeNftClient();
    const t = new IpvsNftables(fake, { ...cfg });
    const model = ports(sp('web'));
    await t.full(model, always);
    t.setServiceCIDRs(['198.18.100.0/24', 'fd00:100::/64']);
    expect((await t.full(model, always)).tx.size).toBeGreaterThan(0);
    const text = formatTable((await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!);
    expect(text).toMatch(/chain filter-forward { type filter hook forward priority -110 }/);
    const check = (await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!.chains.get(IPVS_CHAINS.clusterIPsCheck)!.rules.map(formatRule);
    expect(check).toEqual([
      'payload(dreg=1 base=nh offset=16 len=4) lookup(sreg=1 set="cluster-ips" flags=0) immediate(dreg=0 verdict=return)',
      'payload(dreg=1 base=nh offset=16 len=4) bitwise(sreg=1 dreg=1 len=4 mask=0xffffff00 xor=0x00000000 op=0) cmp(sreg=1 op=eq data=0xc6126400) immediate(dreg=0 verdict=drop)',
    ]);
    expect((await fake.dumpTable(NFPROTO_IPV6, cfg.tableName))!.chains.get(IPVS_CHAINS.clusterIPsCheck)!.rules).toHaveLength(2);
  });

  it('explain reads the pod interface and the Service CIDRs back from the table (prefix or exact name)', async () => {
    for (const [podInterface, shown] of [[{ name: 'veth', prefix: true }, 'veth*'], [{ name: 'cbr0', prefix: false }, 'cbr0']] as const) {
      const fake = new FakeNftClient();
      await new IpvsNftables(fake, { ...cfg, podInterface, serviceCIDRs: ['198.18.100.0/24', 'fd00:100::/64'] }).full(ports(sp('web')), always);
      const v4 = (await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!;
      expect(masqueradeSettings(v4)).toEqual({ cidrs: [], all: false, podInterface: shown });
      expect(serviceCIDRsOf(v4)).toEqual(['198.18.100.0/24']);
      expect(serviceCIDRsOf((await fake.dumpTable(NFPROTO_IPV6, cfg.tableName))!)).toEqual(['fd00:100::/64']);
    }
  });

  it('shared elements are counted: an address stays bound while any Service port uses it; partial syncs send only changes', async () => {
    const fake = new FakeNftClient();
    const t = new IpvsNftables(fake, cfg);
    const web = sp('web');
    const metrics = sp('metrics', { port: 9090 }); // same ClusterIP, another port
    await t.full(ports(web, metrics), always);
    const rm = await t.partial(new Map([[metrics.key, undefined]]), always);
    expect(rm.tx.summary()).toEqual({ 'delete elements': 1 }); // its service-ips key; the address stays
    expect((await contents(fake))[IPVS_SETS.boundAddresses]).toEqual(['198.18.100.10']);
    const gone = await t.partial(new Map([[web.key, undefined]]), always);
    expect(gone.tx.summary()['delete elements']).toBeGreaterThanOrEqual(3);
    const c = await contents(fake);
    expect(c[IPVS_SETS.boundAddresses]).toEqual([]);
    expect(c[IPVS_SETS.serviceIPs]).toEqual([]);
    expect(c[IPVS_SETS.hairpin]).toEqual([]);
    // Endpoints going to zero: the port moves to the reject set, nothing else changes.
    await t.partial(ports(web), always);
    const drained = await t.partial(ports(sp('web', { endpoints: [] })), always);
    expect(drained.tx.summary()).toEqual({ 'delete elements': 1, 'add elements': 1 });
    expect((await contents(fake))[IPVS_SETS.noEndpointServices]).toEqual(['198.18.100.10 6 80']);
  });

  it('service-ips and NodePort elements carry the Service port and why; a changed reason is replaced, in partial and full syncs', async () => {
    const fake = new FakeNftClient();
    const t = new IpvsNftables(fake, cfg);
    const web = sp('web', { nodePort: 30080 });
    await t.full(ports(web), always);
    const comments = async () => {
      const tb = (await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!;
      return [IPVS_SETS.serviceIPs, IPVS_SETS.masqNodePorts].map((set) => [...tb.elements.get(set)!.values()].map((e) => e.comment));
    };
    expect(await comments()).toEqual([['default/web:http'], ['default/web:http']]);
    // None ready, one serving-terminating: same keys, another reason (the kernel keeps old user data on a re-add,
    // so the element is deleted and added in the same batch).
    const term = sp('web', { nodePort: 30080, endpoints: [ep('198.18.2.11'), ep('198.18.2.12')].map((e) => ({ ...e, ready: false, terminating: true })) });
    const r = await t.partial(ports(term), always);
    expect(r.tx.summary()).toEqual({ 'delete elements': 2, 'add elements': 2 });
    expect(await comments()).toEqual([['default/web:http (none ready: serving-terminating)'], ['default/web:http (none ready: serving-terminating)']]);
    // A fresh process's full sync puts the reason right too (here: back to ready).
    const back = await new IpvsNftables(fake, cfg).full(ports(web), always);
    expect(back.tx.summary()).toEqual({ 'delete elements': 2, 'add elements': 2 });
    expect(await comments()).toEqual([['default/web:http'], ['default/web:http']]);
  });

  it('a refused batch changes nothing and the counts stay as they were', async () => {
    const fake = new FakeNftClient();
    const t = new IpvsNftables(fake, cfg);
    const web = sp('web');
    await t.full(ports(web), always);
    // Someone deletes an element behind svcplane's back: deleting it again is ENOENT, the batch is refused.
    const tbl = (await fake.dumpTable(NFPROTO_IPV4, cfg.tableName))!;
    const addr = [...tbl.elements.get(IPVS_SETS.boundAddresses)!.values()];
    const { NftTransaction } = await import('../../src/dataplane/nftables/transaction');
    const tx = new NftTransaction();
    tx.deleteElements(NFPROTO_IPV4, cfg.tableName, IPVS_SETS.boundAddresses, addr);
    await fake.run(tx);
    await expect(t.partial(new Map([[web.key, undefined]]), always)).rejects.toThrow(/ENOENT|No such file/);
    // The next full sync repairs it; a partial one after it sees the counts it had.
    await t.full(ports(web), always);
    expect((await contents(fake))[IPVS_SETS.boundAddresses]).toEqual(['198.18.100.10']);
    const r = await t.partial(new Map([[web.key, undefined]]), always);
    expect(r.tx.size).toBeGreaterThan(0);
    expect((await contents(fake))[IPVS_SETS.serviceIPs]).toEqual([]);
  });
});
