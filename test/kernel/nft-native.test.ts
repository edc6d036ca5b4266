// The addon against the real kernel: a batch goes in whole, reads back identical, and a rejected batch
// changes nothing (checked with `nft -j list table` as an independent reader).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import {
  NFPROTO_IPV4, NF_INET_PRE_ROUTING, NFT_DATA_VERDICT, NFT_GOTO, NFT_META_L4PROTO, NFT_NAT_DNAT,
  NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG_1, NFT_REG_2, NFT_SET_MAP,
  NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED, concatType,
} from '../../src/dataplane/nftables/netlink/constants';
import { RuleBuilder, be16 } from '../../src/dataplane/nftables/netlink/expr';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import { inNetns, makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nft-native');
const T = 'svctest';

function vmapKey(ip: number[], proto: number, port: number): Buffer {
  return Buffer.from([...ip, proto, 0, 0, 0, port >> 8, port & 255, 0, 0]);
}

function buildTx(services: number): NftTransaction {
  const tx = new NftTransaction();
  tx.addTable(NFPROTO_IPV4, T);
  tx.addChain(NFPROTO_IPV4, T, { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 } });
  tx.addChain(NFPROTO_IPV4, T, { name: 'services' });
  tx.addSet(NFPROTO_IPV4, T, { name: 'service-ips', flags: NFT_SET_MAP, keyType: concatType(7, 12, 13), keyLen: 12, dataType: NFT_DATA_VERDICT });
  const elems = [];
  for (let i = 0; i < services; i++) {
    const chain = `svc-${i}`;
    tx.addChain(NFPROTO_IPV4, T, { name: chain });
    const dnat = new RuleBuilder()
      .immediateData(NFT_REG_1, Buffer.from([198, 18, 2, 11]))
      .immediateData(NFT_REG_2, be16(8080))
      .nat(NFT_NAT_DNAT, NFPROTO_IPV4, NFT_REG_1, NFT_REG_2, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED)
      .body();
    tx.addRule(NFPROTO_IPV4, T, chain, dnat);
    elems.push({ key: vmapKey([198, 18, 100 + (i >> 8), i & 255], 6, 80), verdict: NFT_GOTO, chain });
  }
  tx.addElements(NFPROTO_IPV4, T, 'service-ips', elems);
  tx.addRule(NFPROTO_IPV4, T, 'nat-prerouting', new RuleBuilder().verdict({ kind: 'jump', chain: 'services' }).body());
  tx.addRule(NFPROTO_IPV4, T, 'services', new RuleBuilder()
    .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, 16, 4)
    .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + 1)
    .payload(NFT_REG32_00 + 2, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
    .lookup('service-ips', NFT_REG32_00, 0)
    .body());
  return tx;
}

describe.runIf(haveRoot)('addon: nftables batches on the real kernel', () => {
  let ns: ReturnType<typeof makeNetns>;
  let client: NetlinkNftClient;
  beforeAll(() => {
    ns = makeNetns('nat');
    client = new NetlinkNftClient({ netns: ns.path });
  });
  afterAll(() => {
    client?.close();
    ns?.remove();
  });

  it('commits a batch that nft reads back, and dumps it identical to what was built', async () => {
    const tx = buildTx(300);
    const res = await client.run(tx);
    expect(res.operations).toBe(tx.size);
    const listed = inNetns(ns.name, ['nft', 'list', 'table', 'ip', T]);
    expect(listed).toContain('chain svc-299');
    expect(listed).toMatch(/ip daddr \. meta l4proto \. th dport vmap @service-ips/);
    expect(listed).toMatch(/dnat to 198\.18\.2\.11:8080/);
    const state = await client.dumpTable(NFPROTO_IPV4, T);
    expect(state?.chains.size).toBe(302);
    expect(state?.elements.get('service-ips')?.size).toBe(300);
    // The dumped rule, canonicalised, is byte-identical to the one built.
    const built = buildTx(1);
    void built;
    const svc0 = state?.chains.get('svc-0')?.rules[0];
    const expected = new RuleBuilder()
      .immediateData(NFT_REG_1, Buffer.from([198, 18, 2, 11]))
      .immediateData(NFT_REG_2, be16(8080))
      .nat(NFT_NAT_DNAT, NFPROTO_IPV4, NFT_REG_1, NFT_REG_2, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED)
      .body();
    expect(svc0?.equals(expected)).toBe(true);
    const lookupRule = state?.chains.get('services')?.rules[0];
    expect(lookupRule?.equals(new RuleBuilder()
      .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, 16, 4)
      .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + 1)
      .payload(NFT_REG32_00 + 2, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
      .lookup('service-ips', NFT_REG32_00, 0)
      .body())).toBe(true);
  });

  it('a rejected batch changes nothing and names the operation at fault', async () => {
    const before = inNetns(ns.name, ['nft', '-j', 'list', 'table', 'ip', T]);
    const tx = new NftTransaction();
    tx.addChain(NFPROTO_IPV4, T, { name: 'new-chain-that-must-not-appear' });
    tx.flushChain(NFPROTO_IPV4, T, 'svc-1');
    tx.owner = 'Service default/broken:http';
    tx.addRule(NFPROTO_IPV4, T, 'no-such-chain', new RuleBuilder().verdict({ kind: 'accept' }).body());
    tx.owner = undefined;
    tx.addChain(NFPROTO_IPV4, T, { name: 'another' });
    await expect(client.run(tx)).rejects.toMatchObject({
      code: 'ENOENT',
      operationIndex: 2,
      owner: 'Service default/broken:http',
      message: expect.stringContaining('no-such-chain'),
    });
    const after = inNetns(ns.name, ['nft', '-j', 'list', 'table', 'ip', T]);
    expect(after).toBe(before);
  });

  it('dump of a missing table is undefined', async () => {
    expect(await client.dumpTable(NFPROTO_IPV4, 'does-not-exist')).toBeUndefined();
  });
});
