// packet-path.ts: svcplane's tables (programmed by the proxier into FakeNftClient, dumped back) run on the first
// packet of a new connection. The order of the checks, the NodePort addresses, the Local-policy short-circuit, the
// masquerade marks and hairpin come out of the rules themselves; test/kernel/explain-agrees.test.ts holds the same
// answers to real connections.
import { describe, expect, it } from 'vitest';
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import { NFPROTO_IPV4, NFPROTO_IPV6, NFT_TABLE_F_DORMANT } from '../../src/dataplane/nftables/netlink/constants';
import { type NewConnection, type PathOutcome, walkNewConnection } from '../../src/dataplane/nftables/packet-path';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { TABLE_NAME } from '../../src/dataplane/nftables/rules/names';
import { type NftablesConfig, defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import type { Endpoint, ServicePort } from '../../src/model/types';

const NODE = ['198.18.1.1', '198.18.2.1', 'fd00:1::1'];
const env = { isLocal: (a: string) => NODE.includes(a) };
const OUTSIDE = '198.18.1.2';
const POD = '198.18.2.13';
const TCP = 6;

function ep(address: string, nodeName = 'node-a'): Endpoint {
  return { address, family: address.includes(':') ? 6 : 4, port: 8080, ready: true, serving: true, terminating: false, nodeName };
}

function port(name: string, over: Partial<ServicePort>): ServicePort {
  const endpoints = over.endpoints ?? [];
  return {
    key: `t/${name}:p`, namespace: 't', name, portName: 'p', protocol: 'TCP', port: 80, nodePort: 0, clusterIPs: [], externalIPs: [],
    loadBalancerIPs: [], externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', sessionAffinity: { type: 'None' },
    healthCheckNodePort: 0, loadBalancerSourceRanges: [], allEndpoints: endpoints, ...over, endpoints,
  };
}

async function tables(ports: ServicePort[], cfg: Partial<NftablesConfig> = {}) {
  const fake = new FakeNftClient();
  await new NftablesProxier(fake, defaultConfig({ clusterCIDRs: ['198.18.2.0/24'], nodeName: 'node-a', ...cfg })).syncFull(new Map(ports.map((p) => [p.key, p])));
  return { fake, v4: (await fake.dumpTable(NFPROTO_IPV4, TABLE_NAME))!, v6: (await fake.dumpTable(NFPROTO_IPV6, TABLE_NAME))! };
}

const to = (daddr: string, dport: number, saddr: string): NewConnection => ({ saddr, daddr, dport, protocol: TCP });
/** Endpoint -> share, and the fates, of a walk. */
function summary(outcomes: PathOutcome[]) {
  const shares: Record<string, number> = {};
  for (const o of outcomes) if (o.endpoint) shares[o.endpoint.address] = (shares[o.endpoint.address] ?? 0) + o.probability;
  return { fates: [...new Set(outcomes.map((o) => o.fate))], shares, masquerade: [...new Set(outcomes.map((o) => o.masquerade))] };
}

describe('packet-path: svcplane\'s rules run on a new connection', () => {
  const web = port('web', { clusterIPs: ['198.18.100.10', 'fd00:100::10'], nodePort: 30080, endpoints: [ep('198.18.2.11'), ep('198.18.2.12'), ep('fd00:2::11')] });

  it('a ClusterIP: every endpoint at 1/N; masqueraded from outside the cluster CIDRs, not from a pod; IPv6 alike', async () => {
    const { v4, v6 } = await tables([web]);
    expect(summary(walkNewConnection(v4, to('198.18.100.10', 80, OUTSIDE), env))).toEqual({ fates: ['dnat'], shares: { '198.18.2.11': 0.5, '198.18.2.12': 0.5 }, masquerade: [true] });
    expect(summary(walkNewConnection(v4, to('198.18.100.10', 80, POD), env)).masquerade).toEqual([false]);
    expect(summary(walkNewConnection(v6, to('fd00:100::10', 80, 'fd00:1::2'), env))).toEqual({ fates: ['dnat'], shares: { 'fd00:2::11': 1 }, masquerade: [false] });
    // An unused port of the ClusterIP: not DNATed, refused in forward.
    expect(summary(walkNewConnection(v4, to('198.18.100.10', 81, OUTSIDE), env)).fates).toEqual(['rejected']);
    // Not a Service address: untouched.
    expect(summary(walkNewConnection(v4, to('198.18.100.99', 80, OUTSIDE), env)).fates).toEqual(['untouched']);
  });

  it('a pod reaching itself through its Service is masqueraded (hairpin), whatever the flow', async () => {
    const { v4 } = await tables([web]);
    const self = walkNewConnection(v4, to('198.18.100.10', 80, '198.18.2.11'), env);
    expect(self.find((o) => o.endpoint?.address === '198.18.2.11')?.masquerade).toBe(true);
    expect(self.find((o) => o.endpoint?.address === '198.18.2.12')?.masquerade).toBe(false);
  });

  it('NodePorts only on the node\'s addresses inside nodePortAddresses; without it, on every one', async () => {
    const scoped = await tables([web], { nodePortAddresses: ['198.18.1.0/24'] });
    expect(summary(walkNewConnection(scoped.v4, to('198.18.1.1', 30080, OUTSIDE), env)).fates).toEqual(['dnat']);
    expect(summary(walkNewConnection(scoped.v4, to('198.18.2.1', 30080, OUTSIDE), env)).fates).toEqual(['untouched']);
    const every = await tables([web]);
    expect(summary(walkNewConnection(every.v4, to('198.18.2.1', 30080, OUTSIDE), env)).fates).toEqual(['dnat']);
    // An address in the CIDR that is not the node's is no NodePort.
    expect(summary(walkNewConnection(scoped.v4, to('198.18.1.9', 30080, OUTSIDE), env)).fates).toEqual(['untouched']);
  });

  it('an external IP that is a node address, without endpoints: refused, before any NodePort is looked at', async () => {
    const { v4 } = await tables([port('ext', { clusterIPs: ['198.18.100.20'], externalIPs: ['198.18.1.1'] })]);
    const [o] = walkNewConnection(v4, to('198.18.1.1', 80, OUTSIDE), env);
    expect(o.fate).toBe('rejected');
    expect(o.matched.flatMap((m) => m.found.map((f) => f.set))).toContain('no-endpoint-services');
  });

  it('loadBalancerSourceRanges drop a source outside them before a Service without endpoints would refuse it', async () => {
    const { v4 } = await tables([port('fw', { clusterIPs: ['198.18.100.30'], loadBalancerIPs: ['198.18.100.31'], loadBalancerSourceRanges: ['203.0.113.0/24'] })]);
    const [o] = walkNewConnection(v4, to('198.18.100.31', 80, OUTSIDE), env);
    expect(o.fate).toBe('dropped');
    expect(o.matched.at(-1)).toMatchObject({ chain: 'endpoints-check', action: 'drop', found: [{ set: 'firewall-ips' }] });
    // (A source inside the ranges is not tried here: FakeNftClient's dump leaves out range ends; the kernel test does.)
  });

  it('externalTrafficPolicy Local under masquerade-all: outside, this node\'s endpoint with the source kept; a pod and the node, every one', async () => {
    const local = port('local', { clusterIPs: ['198.18.100.40'], externalIPs: ['198.18.100.41'], externalTrafficPolicy: 'Local', endpoints: [ep('198.18.2.11'), ep('198.18.2.12', 'node-b')] });
    const { v4 } = await tables([local], { masqueradeAll: true });
    expect(summary(walkNewConnection(v4, to('198.18.100.41', 80, OUTSIDE), env))).toEqual({ fates: ['dnat'], shares: { '198.18.2.11': 1 }, masquerade: [false] });
    expect(summary(walkNewConnection(v4, to('198.18.100.41', 80, POD), env))).toEqual({ fates: ['dnat'], shares: { '198.18.2.11': 0.5, '198.18.2.12': 0.5 }, masquerade: [false] });
    expect(summary(walkNewConnection(v4, to('198.18.100.41', 80, '198.18.1.1'), env)).masquerade).toEqual([true]);
  });

  it('a dormant table sees nothing (unless asked to ignore the flag)', async () => {
    const { fake } = await tables([web]);
    const tx = new NftTransaction();
    tx.updateTable(NFPROTO_IPV4, TABLE_NAME, NFT_TABLE_F_DORMANT);
    await fake.run(tx);
    const t = (await fake.dumpTable(NFPROTO_IPV4, TABLE_NAME))!;
    expect(summary(walkNewConnection(t, to('198.18.100.10', 80, OUTSIDE), env)).fates).toEqual(['untouched']);
    expect(summary(walkNewConnection(t, to('198.18.100.10', 80, OUTSIDE), env, { ignoreDormant: true })).fates).toEqual(['dnat']);
  });
});
