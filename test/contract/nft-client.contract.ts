// The behaviour every NftClient must have, as one vitest suite: test/unit/nft-fake.contract.test.ts runs it against
// FakeNftClient and test/kernel/nft-kernel.contract.test.ts against NetlinkNftClient on the real kernel, so the fake
// the unit tests rely on cannot drift from the kernel. Where they disagree the kernel is right.
//
// Dumps are compared as formatTable() text: sorted, complete (set specs, every element's key and data, every
// rule's expressions and attributes), and readable in a failure's diff.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NftTransactionError, type NftClient } from '../../src/dataplane/nftables/client';
import { NFT_VERDICT_DATA_LEN, formatTable } from '../../src/dataplane/nftables/fake';
import {
  IPPROTO, NFPROTO_IPV4, NFPROTO_IPV6, NF_ACCEPT, NF_DROP, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NFT_TABLE_F_DORMANT, NFT_DATA_VERDICT, NFT_GOTO,
  NFT_META_L4PROTO, NFT_NAT_DNAT, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_REG32_00, NFT_REG_1,
  NFT_REG_2, NFT_SET_MAP, NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE,
  TYPE_IP6ADDR, TYPE_IPADDR, concatType, type NfFamily,
} from '../../src/dataplane/nftables/netlink/constants';
import { RuleBuilder, be16, hostU32 } from '../../src/dataplane/nftables/netlink/expr';
import type { ChainState, ElementState, SetSpec, TableState } from '../../src/dataplane/nftables/objects';
import { elementKey, emptyTable } from '../../src/dataplane/nftables/objects';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import type { Endpoint, ServicePort } from '../../src/model/types';

export interface ContractSubject {
  client: NftClient;
  /** Releases the client and whatever it runs in (a network namespace). */
  done(): void;
}

const T = 'svctest';
const V4 = NFPROTO_IPV4;
const V6 = NFPROTO_IPV6;

// ---- a small table, built as the ruleset builds its own: base chain -> services -> vmap -> svc- chains ---------

function ip4(...b: number[]): Buffer {
  return Buffer.from(b);
}

/** ip daddr . meta l4proto . th dport, as the kernel lays it out in a concatenation's 32-bit registers. */
function vmapKey(addr: Buffer, proto: number, port: number): Buffer {
  const k = Buffer.alloc(addr.length + 8);
  addr.copy(k, 0);
  k[addr.length] = proto;
  k.writeUInt16BE(port, addr.length + 4);
  return k;
}

function dnat(fam: NfFamily, addr: Buffer, port: number, ofN?: number): Buffer {
  const r = new RuleBuilder();
  if (ofN !== undefined) r.numgenRandom(NFT_REG_1, ofN).cmp(NFT_REG_1, 'eq', hostU32(0));
  return r.immediateData(NFT_REG_1, addr).immediateData(NFT_REG_2, be16(port))
    .nat(NFT_NAT_DNAT, fam, NFT_REG_1, NFT_REG_2, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED).body();
}

function jump(chain: string): Buffer {
  return new RuleBuilder().verdict({ kind: 'jump', chain }).body();
}

function vmapDispatch(addrLen: number, daddrOffset: number, set: string): Buffer {
  return new RuleBuilder()
    .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, daddrOffset, addrLen)
    .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + addrLen / 4)
    .payload(NFT_REG32_00 + addrLen / 4 + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
    .lookup(set, NFT_REG32_00, 0)
    .body();
}

function addrLookup(addrLen: number, daddrOffset: number, set: string): Buffer {
  return new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, daddrOffset, addrLen).lookup(set, NFT_REG_1)
    .verdict({ kind: 'accept' }).body();
}

function goto(chain: string): Pick<ElementState, 'verdict' | 'chain'> {
  return { verdict: NFT_GOTO, chain };
}

function put(t: TableState, set: string, e: ElementState): void {
  t.elements.get(set)!.set(elementKey(e), e);
}

function addChain(t: TableState, c: ChainState): void {
  t.chains.set(c.name, c);
}

function addSet(t: TableState, s: SetSpec): void {
  t.sets.set(s.name, s);
  t.elements.set(s.name, new Map());
}

/** nft's mark datatype: how `nft list` prints a data map's u32 values (the kernel does not interpret it). */
const TYPE_MARK = 19;

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** ip daddr . meta l4proto . th dport map @counts == 2 goto svc-b: a data-map lookup into a register, compared. */
function countDispatch(): Buffer {
  return new RuleBuilder()
    .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, 16, 4)
    .metaGet(NFT_META_L4PROTO, NFT_REG32_00 + 1)
    .payload(NFT_REG32_00 + 2, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
    .lookup('counts', NFT_REG32_00, NFT_REG_1)
    .cmp(NFT_REG_1, 'eq', u32be(2))
    .verdict({ kind: 'goto', chain: 'svc-b' })
    .body();
}

const SVC_A = ip4(198, 18, 100, 1);
const SVC_B = ip4(198, 18, 100, 2);
const EP1 = ip4(10, 1, 0, 1);
const EP2 = ip4(10, 1, 0, 2);
const EP3 = ip4(10, 1, 0, 3);

function sampleV4(): TableState {
  const t = emptyTable(V4, T);
  addSet(t, { name: 'service-ips', flags: NFT_SET_MAP, keyType: concatType(TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE), keyLen: 12, dataType: NFT_DATA_VERDICT });
  addSet(t, { name: 'cluster-ips', flags: 0, keyType: TYPE_IPADDR, keyLen: 4 });
  addSet(t, { name: 'hairpin', flags: 0, keyType: concatType(TYPE_IPADDR, TYPE_IPADDR), keyLen: 8 });
  addSet(t, { name: 'unused', flags: 0, keyType: TYPE_IPADDR, keyLen: 4 });
  addSet(t, { name: 'counts', flags: NFT_SET_MAP, keyType: concatType(TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE), keyLen: 12, dataType: TYPE_MARK, dataLen: 4 });
  addChain(t, { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 }, rules: [jump('services')] });
  addChain(t, { name: 'nat-postrouting', base: { type: 'nat', hook: NF_INET_POST_ROUTING, priority: 100 }, rules: [] });
  addChain(t, { name: 'services', rules: [vmapDispatch(4, 16, 'service-ips'), addrLookup(4, 16, 'cluster-ips')] });
  addChain(t, { name: 'svc-a', rules: [dnat(V4, EP1, 8080)] });
  addChain(t, { name: 'svc-b', rules: [dnat(V4, EP2, 8080, 2), dnat(V4, EP3, 8080)] });
  addChain(t, { name: 'empty', rules: [] });
  addChain(t, { name: 'dispatch', rules: [countDispatch()] });
  put(t, 'service-ips', { key: vmapKey(SVC_A, IPPROTO.TCP, 80), ...goto('svc-a') });
  put(t, 'service-ips', { key: vmapKey(SVC_B, IPPROTO.TCP, 80), ...goto('svc-b') });
  put(t, 'service-ips', { key: vmapKey(SVC_B, IPPROTO.UDP, 53), ...goto('svc-b') });
  put(t, 'cluster-ips', { key: SVC_A });
  put(t, 'cluster-ips', { key: SVC_B });
  for (const ep of [EP1, EP2, EP3]) put(t, 'hairpin', { key: Buffer.concat([ep, ep]) });
  put(t, 'counts', { key: vmapKey(SVC_A, IPPROTO.TCP, 80), data: u32be(1), comment: 'default/a:http' });
  put(t, 'counts', { key: vmapKey(SVC_B, IPPROTO.TCP, 80), data: u32be(2), comment: 'default/b:http' });
  return t;
}

function sampleV6(): TableState {
  const t = emptyTable(V6, T);
  const svc = Buffer.from('fd000000000000000000000000000001', 'hex');
  const ep = Buffer.from('fd010000000000000000000000000001', 'hex');
  addSet(t, { name: 'service-ips', flags: NFT_SET_MAP, keyType: concatType(TYPE_IP6ADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE), keyLen: 24, dataType: NFT_DATA_VERDICT });
  addChain(t, { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 }, rules: [jump('services')] });
  addChain(t, { name: 'services', rules: [vmapDispatch(16, 24, 'service-ips')] });
  addChain(t, { name: 'svc-v6', rules: [dnat(V6, ep, 8443)] });
  put(t, 'service-ips', { key: vmapKey(svc, IPPROTO.TCP, 443), ...goto('svc-v6') });
  return t;
}

/** Queues a whole table, objects before the rules and elements that name them. */
function queueTable(tx: NftTransaction, t: TableState): void {
  tx.addTable(t.family, t.name);
  for (const s of t.sets.values()) tx.addSet(t.family, t.name, s);
  for (const c of t.chains.values()) tx.addChain(t.family, t.name, c);
  for (const [set, elems] of t.elements) if (elems.size) tx.addElements(t.family, t.name, set, [...elems.values()]);
  for (const c of t.chains.values()) for (const r of c.rules) tx.addRule(t.family, t.name, c.name, r);
}

/** What a dump must show for `t`: as built, with the data length the kernel gives verdict maps. */
function expected(t: TableState): string {
  const sets = new Map<string, SetSpec>();
  for (const [n, s] of t.sets) sets.set(n, s.dataType === NFT_DATA_VERDICT ? { ...s, dataLen: NFT_VERDICT_DATA_LEN } : s);
  return formatTable({ ...t, sets });
}

// ---- Service ports for the proxier check ---------------------------------------------------------------------

function endpoint(address: string, port: number): Endpoint {
  return { address, family: address.includes(':') ? 6 : 4, port, ready: true, serving: true, terminating: false };
}

function servicePort(name: string, clusterIPs: string[], eps: Endpoint[], more: Partial<ServicePort> = {}): ServicePort {
  return {
    key: `default/${name}:http`, namespace: 'default', name, portName: 'http', protocol: 'TCP', port: 80, nodePort: 0,
    clusterIPs, externalIPs: [], loadBalancerIPs: [], externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
    sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [], endpoints: eps, allEndpoints: eps,
    ...more,
  };
}

export function nftClientContract(name: string, make: () => Promise<ContractSubject>): void {
  describe(`NftClient contract: ${name}`, () => {
    let subject: ContractSubject | undefined;
    let client: NftClient;

    beforeEach(async () => {
      subject = await make();
      client = subject.client;
    });
    afterEach(() => {
      subject?.done();
      subject = undefined;
    });

    const text = async (fam: NfFamily = V4, table = T) => {
      const t = await client.dumpTable(fam, table);
      return t ? formatTable(t) : '<no table>';
    };
    const run = (build: (tx: NftTransaction) => void) => {
      const tx = new NftTransaction();
      build(tx);
      return client.run(tx);
    };
    const load = async (...tables: TableState[]) => {
      const res = await run((tx) => tables.forEach((t) => queueTable(tx, t)));
      expect(res.operations).toBeGreaterThan(0);
    };
    /** Runs a batch that must be refused with `code` at `index`, and checks it changed nothing. */
    const refused = async (code: string, index: number, build: (tx: NftTransaction) => void) => {
      const before = [await text(V4), await text(V6)];
      const err = await run(build).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(NftTransactionError);
      expect(err).toMatchObject({ code, operationIndex: index });
      expect([await text(V4), await text(V6)]).toEqual(before);
      return err as NftTransactionError;
    };

    it('creates a table with sets, chains, rules and elements and dumps it back equal', async () => {
      expect(await client.dumpTable(V4, T)).toBeUndefined();
      const v4 = sampleV4();
      const v6 = sampleV6();
      const tx = new NftTransaction();
      queueTable(tx, v4);
      queueTable(tx, v6);
      const res = await client.run(tx);
      expect(res.operations).toBe(tx.size);
      expect(await text(V4)).toBe(expected(v4));
      expect(await text(V6)).toBe(expected(v6));
      // Byte-for-byte, as the diff compares them.
      const got = (await client.dumpTable(V4, T))!;
      for (const [n, c] of v4.chains) {
        expect(got.chains.get(n)?.rules.map((r) => r.toString('hex'))).toEqual(c.rules.map((r) => r.toString('hex')));
        expect(got.chains.get(n)?.base).toEqual(c.base);
      }
      expect(got.elements.get('unused')?.size).toBe(0);
      expect(got.sets.get('service-ips')).toMatchObject({ flags: NFT_SET_MAP, keyLen: 12, dataType: NFT_DATA_VERDICT });
      expect(await client.dumpTable(V4, 'no-such-table')).toBeUndefined();
    });

    it('an empty transaction sends nothing', async () => {
      expect((await client.run(new NftTransaction())).operations).toBe(0);
      expect(await client.dumpTable(V4, T)).toBeUndefined();
    });

    it('shows partial updates in its dumps: elements added and deleted, a chain flushed and refilled, chains added and deleted', async () => {
      const t = sampleV4();
      await load(t);
      const EP4 = ip4(10, 1, 0, 4);
      const SVC_C = ip4(198, 18, 100, 3);
      await run((tx) => {
        // svc-a goes: its element first, then the chain (its rule goes with it).
        tx.deleteElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80) }]);
        tx.deleteElements(V4, T, 'cluster-ips', [{ key: SVC_A }]);
        tx.deleteChain(V4, T, 'svc-a');
        // svc-b loses an endpoint: flush and refill.
        tx.flushChain(V4, T, 'svc-b');
        tx.addRule(V4, T, 'svc-b', dnat(V4, EP2, 8080));
        tx.deleteElements(V4, T, 'hairpin', [{ key: Buffer.concat([EP3, EP3]) }]);
        // svc-c arrives.
        tx.addChain(V4, T, { name: 'svc-c' });
        tx.addRule(V4, T, 'svc-c', dnat(V4, EP4, 9090));
        tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_C, IPPROTO.TCP, 80), ...goto('svc-c') }]);
        tx.addElements(V4, T, 'cluster-ips', [{ key: SVC_C }]);
        tx.addElements(V4, T, 'hairpin', [{ key: Buffer.concat([EP4, EP4]) }]);
        tx.deleteChain(V4, T, 'empty');
      });
      t.elements.get('service-ips')!.delete(elementKey({ key: vmapKey(SVC_A, IPPROTO.TCP, 80) }));
      t.elements.get('cluster-ips')!.delete(elementKey({ key: SVC_A }));
      t.chains.delete('svc-a');
      t.chains.get('svc-b')!.rules = [dnat(V4, EP2, 8080)];
      t.elements.get('hairpin')!.delete(elementKey({ key: Buffer.concat([EP3, EP3]) }));
      addChain(t, { name: 'svc-c', rules: [dnat(V4, EP4, 9090)] });
      put(t, 'service-ips', { key: vmapKey(SVC_C, IPPROTO.TCP, 80), ...goto('svc-c') });
      put(t, 'cluster-ips', { key: SVC_C });
      put(t, 'hairpin', { key: Buffer.concat([EP4, EP4]) });
      t.chains.delete('empty');
      expect(await text()).toBe(expected(t));

      // Flushing a set, then refilling part of it.
      await run((tx) => {
        tx.flushSet(V4, T, 'hairpin');
        tx.addElements(V4, T, 'hairpin', [{ key: Buffer.concat([EP1, EP1]) }]);
      });
      t.elements.set('hairpin', new Map());
      put(t, 'hairpin', { key: Buffer.concat([EP1, EP1]) });
      expect(await text()).toBe(expected(t));

      // Rules are appended in order.
      await run((tx) => {
        tx.addRule(V4, T, 'nat-postrouting', new RuleBuilder().verdict({ kind: 'accept' }).body());
        tx.addRule(V4, T, 'nat-postrouting', new RuleBuilder().verdict({ kind: 'return' }).body());
      });
      t.chains.get('nat-postrouting')!.rules.push(new RuleBuilder().verdict({ kind: 'accept' }).body());
      t.chains.get('nat-postrouting')!.rules.push(new RuleBuilder().verdict({ kind: 'return' }).body());
      expect(await text()).toBe(expected(t));
    });

    it('rejects a batch whose third operation fails (rule into a missing chain) with ENOENT at index 2, and changes nothing', async () => {
      await load(sampleV4(), sampleV6());
      const err = await refused('ENOENT', 2, (tx) => {
        tx.addChain(V4, T, { name: 'new-chain-that-must-not-appear' });
        tx.flushChain(V4, T, 'svc-b');
        tx.owner = 'Service default/broken:http';
        tx.addRule(V4, T, 'no-such-chain', new RuleBuilder().verdict({ kind: 'accept' }).body());
        tx.owner = undefined;
        tx.addElements(V4, T, 'cluster-ips', [{ key: ip4(198, 18, 100, 9) }]);
        tx.deleteTable(V6, T);
      });
      expect(err.errno).toBe(2);
      expect(err.owner).toBe('Service default/broken:http');
      expect(err.message).toContain('no-such-chain');
      expect(err.message).toContain('Service default/broken:http');
    });

    it('refuses to delete a chain a verdict-map element points to (EBUSY), and changes nothing', async () => {
      await load(sampleV4());
      await refused('EBUSY', 0, (tx) => tx.deleteChain(V4, T, 'svc-a'));
      // Its rules are not what keeps it: flushing them first does not help.
      await refused('EBUSY', 1, (tx) => {
        tx.flushChain(V4, T, 'svc-a');
        tx.deleteChain(V4, T, 'svc-a');
      });
      // Deleting the element first, in the same batch, does.
      await run((tx) => {
        tx.deleteElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80) }]);
        tx.deleteChain(V4, T, 'svc-a');
      });
      expect((await client.dumpTable(V4, T))?.chains.has('svc-a')).toBe(false);
      // Same for a whole flushed set (and the rule that also goes to svc-b).
      await refused('EBUSY', 1, (tx) => {
        tx.flushSet(V4, T, 'service-ips');
        tx.deleteChain(V4, T, 'svc-b');
      });
      await run((tx) => {
        tx.flushSet(V4, T, 'service-ips');
        tx.flushChain(V4, T, 'dispatch');
        tx.deleteChain(V4, T, 'svc-b');
      });
      expect((await client.dumpTable(V4, T))?.chains.has('svc-b')).toBe(false);
    });

    it('refuses to delete a chain a rule jumps to (EBUSY) until that rule is gone', async () => {
      await load(sampleV4());
      await refused('EBUSY', 0, (tx) => tx.deleteChain(V4, T, 'services'));
      await run((tx) => {
        tx.flushChain(V4, T, 'nat-prerouting');
        tx.deleteChain(V4, T, 'services');
      });
      const got = (await client.dumpTable(V4, T))!;
      expect(got.chains.has('services')).toBe(false);
      expect(got.chains.get('nat-prerouting')?.rules).toEqual([]);
    });

    it('deletes a chain that still has rules when nothing refers to it (its rules go with it)', async () => {
      await load(sampleV4());
      await run((tx) => {
        tx.addChain(V4, T, { name: 'lonely' });
        tx.addRule(V4, T, 'lonely', jump('svc-a'));
        tx.addRule(V4, T, 'lonely', new RuleBuilder().verdict({ kind: 'drop' }).body());
      });
      await run((tx) => tx.deleteChain(V4, T, 'lonely'));
      expect(await text()).toBe(expected(sampleV4()));
      // ... and the references its rules held are released: svc-a is only held by its element now.
      await run((tx) => {
        tx.deleteElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80) }]);
        tx.deleteChain(V4, T, 'svc-a');
      });
    });

    it('refuses to delete a set a lookup uses (EBUSY) until the rule is gone', async () => {
      await load(sampleV4());
      await refused('EBUSY', 0, (tx) => tx.deleteSet(V4, T, 'cluster-ips'));
      await run((tx) => tx.deleteSet(V4, T, 'unused'));
      await run((tx) => {
        tx.flushChain(V4, T, 'services');
        tx.deleteSet(V4, T, 'cluster-ips');
      });
      const got = (await client.dumpTable(V4, T))!;
      expect(got.sets.has('cluster-ips')).toBe(false);
      expect(got.sets.has('unused')).toBe(false);
      expect(got.elements.has('cluster-ips')).toBe(false);
    });

    it('adds an element that exists with the same data (no NLM_F_EXCL); other data or NLM_F_EXCL is EEXIST', async () => {
      const t = sampleV4();
      await load(t);
      const res = await run((tx) => {
        tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80), ...goto('svc-a') }]);
        tx.addElements(V4, T, 'cluster-ips', [{ key: SVC_A }, { key: SVC_A }]);
      });
      expect(res.operations).toBe(2);
      expect(await text()).toBe(expected(t));
      await refused('EEXIST', 1, (tx) => {
        tx.addElements(V4, T, 'cluster-ips', [{ key: ip4(198, 18, 100, 77) }]);
        tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80), ...goto('svc-b') }]);
      });
      await refused('EEXIST', 0, (tx) => tx.createElements(V4, T, 'cluster-ips', [{ key: SVC_A }]));
      await run((tx) => tx.createElements(V4, T, 'cluster-ips', [{ key: ip4(198, 18, 100, 78) }]));
      put(t, 'cluster-ips', { key: ip4(198, 18, 100, 78) });
      expect(await text()).toBe(expected(t));
      // A comment is not part of the comparison: the element keeps its first one.
      await run((tx) => tx.addElements(V4, T, 'counts', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80), data: u32be(1), comment: 'someone/else:http' }]));
      await run((tx) => tx.addElements(V4, T, 'counts', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80), data: u32be(1) }]));
      expect(await text()).toBe(expected(t));
      expect((await client.dumpTable(V4, T))?.elements.get('counts')?.get(elementKey({ key: vmapKey(SVC_A, IPPROTO.TCP, 80) }))?.comment).toBe('default/a:http');
      await refused('EEXIST', 0, (tx) => tx.addElements(V4, T, 'counts', [{ key: vmapKey(SVC_A, IPPROTO.TCP, 80), data: u32be(7) }]));
    });

    it('refuses what does not exist (ENOENT): elements, chains, sets, tables, jump and lookup targets', async () => {
      await load(sampleV4());
      await refused('ENOENT', 0, (tx) => tx.deleteElements(V4, T, 'cluster-ips', [{ key: ip4(1, 2, 3, 4) }]));
      await refused('ENOENT', 1, (tx) => {
        tx.deleteElements(V4, T, 'cluster-ips', [{ key: SVC_A }]);
        tx.deleteElements(V4, T, 'cluster-ips', [{ key: SVC_A }]);
      });
      await refused('ENOENT', 0, (tx) => tx.deleteChain(V4, T, 'no-such-chain'));
      await refused('ENOENT', 0, (tx) => tx.flushChain(V4, T, 'no-such-chain'));
      await refused('ENOENT', 0, (tx) => tx.deleteSet(V4, T, 'no-such-set'));
      await refused('ENOENT', 0, (tx) => tx.flushSet(V4, T, 'no-such-set'));
      await refused('ENOENT', 0, (tx) => tx.addElements(V4, T, 'no-such-set', [{ key: ip4(1, 2, 3, 4) }]));
      await refused('ENOENT', 0, (tx) => tx.deleteTable(V4, 'no-such-table'));
      await refused('ENOENT', 0, (tx) => tx.addChain(V4, 'no-such-table', { name: 'x' }));
      await refused('ENOENT', 0, (tx) => tx.addRule(V4, T, 'svc-a', jump('no-such-chain')));
      await refused('ENOENT', 0, (tx) => tx.addRule(V4, T, 'svc-a', addrLookup(4, 16, 'no-such-set')));
      await refused('ENOENT', 0, (tx) => tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.UDP, 1), ...goto('no-such-chain') }]));
      // Gone earlier in the same batch is gone.
      await refused('ENOENT', 2, (tx) => {
        tx.addChain(V4, T, { name: 'brief' });
        tx.deleteChain(V4, T, 'brief');
        tx.addRule(V4, T, 'svc-a', jump('brief'));
      });
    });

    it('refuses malformed objects: wrong key length, a verdict in a plain set, a jump to a base chain', async () => {
      await load(sampleV4());
      await refused('EINVAL', 0, (tx) => tx.addElements(V4, T, 'cluster-ips', [{ key: Buffer.from([1, 2, 3]) }]));
      await refused('EINVAL', 0, (tx) => tx.addElements(V4, T, 'cluster-ips', [{ key: ip4(1, 2, 3, 4), ...goto('svc-a') }]));
      await refused('EINVAL', 0, (tx) => tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.UDP, 1) }]));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addRule(V4, T, 'svc-a', jump('nat-prerouting')));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addElements(V4, T, 'service-ips', [{ key: vmapKey(SVC_A, IPPROTO.UDP, 1), ...goto('nat-prerouting') }]));
      await refused('EINVAL', 0, (tx) => tx.addElements(V4, T, 'counts', [{ key: vmapKey(SVC_A, IPPROTO.UDP, 1), data: Buffer.from([0, 1]) }]));
      await refused('EINVAL', 0, (tx) => tx.addElements(V4, T, 'counts', [{ key: vmapKey(SVC_A, IPPROTO.UDP, 1), ...goto('svc-a') }]));
      // A lookup with a destination register needs a map.
      await refused('EINVAL', 0, (tx) => tx.addRule(V4, T, 'svc-a', new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 16, 4).lookup('cluster-ips', NFT_REG_1, NFT_REG_2).body()));
    });

    it('refuses a rule that reads a register nothing in the rule wrote (ENODATA), word by word', async () => {
      await load(sampleV4());
      // A 4-byte address in a 16-byte register, looked up as 16 bytes.
      await refused('ENODATA', 0, (tx) => tx.addRule(V4, T, 'svc-a', new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 16, 4).lookup('hairpin', NFT_REG_1).body()));
      // Registers do not carry over from one rule to the next.
      await refused('ENODATA', 1, (tx) => {
        tx.addRule(V4, T, 'svc-a', new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 16, 4).body());
        tx.addRule(V4, T, 'svc-a', new RuleBuilder().cmp(NFT_REG_1, 'eq', hostU32(1)).body());
      });
      // The port of a DNAT from the word after a 4-byte map value that was never stored.
      await refused('ENODATA', 0, (tx) => tx.addRule(V4, T, 'svc-a', new RuleBuilder()
        .payload(NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, 16, 4).metaGet(NFT_META_L4PROTO, NFT_REG32_00 + 1)
        .payload(NFT_REG32_00 + 2, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).lookup('counts', NFT_REG32_00, NFT_REG32_00 + 8)
        .nat(NFT_NAT_DNAT, V4, NFT_REG32_00 + 8, NFT_REG32_00 + 9, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED).body()));
      // Tracking is per 32-bit word: a 2-byte port compared as 4 bytes is fine.
      await run((tx) => tx.addRule(V4, T, 'svc-a', new RuleBuilder().payload(NFT_REG32_00, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).cmp(NFT_REG32_00, 'eq', hostU32(80)).body()));
    });

    it('re-adds existing tables, chains and sets without error (NLM_F_CREATE); incompatible re-definitions are refused', async () => {
      const t = sampleV4();
      await load(t);
      await run((tx) => {
        tx.addTable(V4, T);
        tx.addChain(V4, T, { name: 'svc-a' });
        tx.addChain(V4, T, { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 } });
        tx.addSet(V4, T, t.sets.get('cluster-ips')!);
        tx.addSet(V4, T, t.sets.get('service-ips')!);
      });
      expect(await text()).toBe(expected(t));
      await refused('EEXIST', 0, (tx) => tx.addSet(V4, T, { name: 'cluster-ips', flags: 0, keyType: TYPE_IPADDR, keyLen: 16 }));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addChain(V4, T, { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -50 } }));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addChain(V4, T, { name: 'svc-a', base: { type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -100 } }));
    });

    it('deletes a whole table, which can be rebuilt differently in the same batch', async () => {
      await load(sampleV4(), sampleV6());
      await run((tx) => tx.deleteTable(V6, T));
      expect(await client.dumpTable(V6, T)).toBeUndefined();
      const t = sampleV4();
      t.chains.delete('svc-b');
      t.elements.get('service-ips')!.clear();
      t.chains.get('dispatch')!.rules = [];
      t.sets.set('unused', { name: 'unused', flags: 0, keyType: TYPE_IP6ADDR, keyLen: 16 }); // a changed key type
      put(t, 'unused', { key: Buffer.alloc(16, 1) });
      await run((tx) => {
        tx.deleteTable(V4, T);
        queueTable(tx, t);
      });
      expect(await text()).toBe(expected(t));
    });

    it('a table made dormant dumps back so; an update carrying flags 0 wakes it, one without flags leaves them', async () => {
      const t = sampleV4();
      await load(t);
      expect((await client.dumpTable(V4, T))?.flags).toBe(0);
      await run((tx) => tx.updateTable(V4, T, NFT_TABLE_F_DORMANT));
      expect((await client.dumpTable(V4, T))?.flags).toBe(NFT_TABLE_F_DORMANT);
      expect(await text()).toBe(expected({ ...t, flags: NFT_TABLE_F_DORMANT }));
      await run((tx) => tx.addTable(V4, T));
      expect((await client.dumpTable(V4, T))?.flags).toBe(NFT_TABLE_F_DORMANT);
      await run((tx) => tx.updateTable(V4, T, 0));
      expect(await text()).toBe(expected(t));
    });

    it('a base chain with policy drop dumps back so, and the same chain message with accept sets it back; a regular chain has no policy', async () => {
      const t = sampleV4();
      await load(t);
      const nat = t.chains.get('nat-prerouting')!;
      expect((await client.dumpTable(V4, T))?.chains.get('nat-prerouting')?.policy).toBe(NF_ACCEPT);
      await run((tx) => tx.addChain(V4, T, { ...nat, policy: NF_DROP }));
      expect((await client.dumpTable(V4, T))?.chains.get('nat-prerouting')?.policy).toBe(NF_DROP);
      expect(await text()).toBe(expected({ ...t, chains: new Map([...t.chains, ['nat-prerouting', { ...nat, policy: NF_DROP }]]) }));
      await run((tx) => tx.updateBaseChain(V4, T, nat));
      expect(await text()).toBe(expected(t));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addChain(V4, T, { name: 'svc-a', policy: NF_DROP }));
      await refused('EOPNOTSUPP', 0, (tx) => tx.addChain(V4, T, { name: 'lonely', policy: NF_DROP }));
    });

    it('deletes a base chain and re-creates it at another hook and priority, with its rules, in one batch', async () => {
      const t = sampleV4();
      await load(t);
      const moved: ChainState = { name: 'nat-prerouting', base: { type: 'nat', hook: NF_INET_LOCAL_OUT, priority: -50 }, rules: [jump('services')] };
      await run((tx) => {
        tx.deleteChain(V4, T, 'nat-prerouting');
        tx.addChain(V4, T, moved);
        for (const r of moved.rules) tx.addRule(V4, T, moved.name, r);
      });
      addChain(t, moved);
      expect(await text()).toBe(expected(t));
    });

    // Known bug in NftTransaction (see the report): its element chunking ignores comments, so 600 elements with
    // 127-byte comments overflow the u16 length of one netlink element list. The kernel then commits ~220 of them
    // without an error; the fake refuses the record. Either way this fails until the chunking counts comments.
    it('commits every element of a large batch of elements with long comments', async () => {
      await load(sampleV4());
      const many = Array.from({ length: 600 }, (_, i) => ({
        key: vmapKey(ip4(198, 19, i >> 8, i & 255), IPPROTO.TCP, 80), data: u32be(1), comment: `${i}/`.padEnd(127, 'x'),
      }));
      await run((tx) => tx.addElements(V4, T, 'counts', many));
      expect((await client.dumpTable(V4, T))?.elements.get('counts')?.size).toBe(602);
    });

    it('runs NftablesProxier: a second identical full sync sends nothing; partial syncs and cleanup show in what it reads back', async () => {
      const cfg = defaultConfig({ tableName: 'svcproxy', clusterCIDRs: ['10.1.0.0/16', 'fd01::/64'] });
      const proxier = new NftablesProxier(client, cfg);
      const a = servicePort('a', ['198.18.0.1', 'fd00::1'], [endpoint('10.1.0.1', 8080), endpoint('10.1.0.2', 8080), endpoint('fd01::1', 8080)], { nodePort: 30080 });
      const b = servicePort('b', ['198.18.0.2'], []);
      const first = await proxier.syncFull(new Map([[a.key, a], [b.key, b]]));
      expect(first.operations).toBeGreaterThan(0);
      expect(first.problems).toEqual([]);
      // The kernel's (or the fake's) dump compares equal to what the ruleset builds: nothing left to send.
      expect((await proxier.syncFull(new Map([[a.key, a], [b.key, b]]))).operations).toBe(0);
      const rows = async () => (await proxier.status()).rows
        .map((r) => `${r.kind} ${r.address}:${r.port}/${r.protocol} ${r.reject ? 'reject' : r.endpoints.map((e) => `${e.address}:${e.port}`).sort().join(',')}`)
        .sort();
      expect(await rows()).toEqual([
        'ClusterIP 198.18.0.1:80/TCP 10.1.0.1:8080,10.1.0.2:8080',
        'ClusterIP 198.18.0.2:80/TCP reject',
        'ClusterIP fd00::1:80/TCP fd01::1:8080',
        'NodePort *:30080/TCP 10.1.0.1:8080,10.1.0.2:8080',
        'NodePort *:30080/TCP fd01::1:8080',
      ]);

      const a2 = { ...a, endpoints: a.endpoints.slice(1), allEndpoints: a.endpoints.slice(1) };
      const partial = await proxier.syncPartial(new Map([[a.key, a2]]));
      expect(partial.full).toBe(false);
      expect(partial.operations).toBeGreaterThan(0);
      expect(await rows()).toContain('ClusterIP 198.18.0.1:80/TCP 10.1.0.2:8080');
      // What the partial sync left is exactly what a full sync wants.
      expect((await proxier.syncFull(new Map([[a.key, a2], [b.key, b]]))).operations).toBe(0);

      await proxier.syncPartial(new Map([[a.key, undefined]]));
      expect(await rows()).toEqual(['ClusterIP 198.18.0.2:80/TCP reject']);
      expect((await proxier.syncFull(new Map([[b.key, b]]))).operations).toBe(0);
      expect(await proxier.cleanup()).toBe(true);
      expect(await client.dumpTable(V4, 'svcproxy')).toBeUndefined();
      expect(await client.dumpTable(V6, 'svcproxy')).toBeUndefined();
    });
  });
}
