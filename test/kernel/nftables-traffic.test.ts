// The nftables dataplane with real traffic: a client namespace -> the node namespace svcplane programs -> three
// backend "pod" namespaces (scripts/lib/sandbox.ts). Programs the shipped example manifests with the real CLI,
// then checks what users care about with real TCP and UDP connections, and cross-checks with nft itself.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import { NFPROTO_IPV4 } from '../../src/dataplane/nftables/netlink/constants';
import { RuleBuilder } from '../../src/dataplane/nftables/netlink/expr';
import { buildProxyModel } from '../../src/model/build';
import { loadManifests } from '../../src/source/manifests';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { chiSquareUniform, countsFor, runClient, startHold } from '../../scripts/lib/traffic';
import { REPO, execOk, svcplane } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables traffic');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

describe.runIf(haveRoot)('nftables dataplane, real traffic', () => {
  let sb: Sandbox;
  let clusterCIDR: string;
  const nft = (...args: string[]) => execOk(sb, sb.nodeNs, ['nft', ...args]);

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    clusterCIDR = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json'], { netns: sb.nodeNs });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { operations: number; servicePorts: number };
    expect(summary.servicePorts).toBe(4);
    expect(summary.operations).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('spreads 600 TCP connections to a ClusterIP uniformly over the 3 ready endpoints (chi-square)', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 600 });
    expect(r.errors).toEqual({});
    expect(r.ok).toBe(600);
    const counts = countsFor(r, ['be0', 'be1', 'be2']);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(600);
    const chi = chiSquareUniform(counts);
    expect(chi.pValue).toBeGreaterThan(0.001);
    // The client is outside the cluster CIDR: masqueraded, so backends see the node, not the client.
    expect(Object.keys(r.sources)).toEqual([sb.podGateway.v4]);
  });

  it('answers UDP on the ClusterIP from every ready endpoint', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.10', port: 53, count: 150 });
    expect(r.errors).toEqual({});
    expect(r.ok).toBe(150);
    expect(countsFor(r, ['be0', 'be1', 'be2']).every((n) => n > 10)).toBe(true);
  });

  it('serves the NodePort on the node address over TCP and UDP', async () => {
    const tcp = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 90 });
    expect(tcp.errors).toEqual({});
    expect(countsFor(tcp, ['be0', 'be1', 'be2']).every((n) => n > 5)).toBe(true);
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: sb.nodeIPs.v4, port: 30053, count: 60 });
    expect(udp.errors).toEqual({});
    expect(udp.ok).toBe(60);
    const v6 = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v6, port: 30080, count: 30 });
    expect(v6.errors).toEqual({});
    expect(v6.ok).toBe(30);
  });

  it('sends nothing to a not-ready endpoint', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.11', port: 8000, count: 200 });
    expect(r.errors).toEqual({});
    expect(r.counts.be2 ?? 0).toBe(0);
    expect(countsFor(r, ['be0', 'be1']).every((n) => n > 40)).toBe(true);
  });

  it('refuses a Service without endpoints at once (TCP reset, ICMP unreachable), never times out', async () => {
    const tcp = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.12', port: 80, count: 5, timeoutMs: 3000 });
    expect(tcp.ok).toBe(0);
    expect(tcp.errors).toEqual({ ECONNREFUSED: 5 });
    expect(tcp.elapsedMs).toBeLessThan(2000);
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.12', port: 80, count: 3, timeoutMs: 3000 });
    expect(udp.errors).toEqual({ ECONNREFUSED: 3 });
  });

  it('rejects a ClusterIP port no Service uses instead of forwarding it', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 81, count: 3, timeoutMs: 3000 });
    expect(r.ok).toBe(0);
    expect(r.errors).toEqual({ ECONNREFUSED: 3 });
  });

  it('reaches the IPv6 ClusterIP (TCP and UDP)', async () => {
    const tcp = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: 'fd00:100::10', port: 80, count: 90 });
    expect(tcp.errors).toEqual({});
    expect(countsFor(tcp, ['be0', 'be1', 'be2']).every((n) => n > 5)).toBe(true);
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: 'fd00:100::10', port: 53, count: 30 });
    expect(udp.errors).toEqual({});
  });

  it('hairpin: an endpoint reaching itself through its Service gets an answer', async () => {
    const r = await runClient(sb, sb.backends[0].ns, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 60 });
    expect(r.errors).toEqual({});
    expect(r.counts.be0 ?? 0).toBeGreaterThan(0);
  });

  it('status reads the programmed Services back from the kernel', async () => {
    const r = await svcplane(['status', '--output', 'json'], { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    const st = JSON.parse(r.stdout) as { rows: Array<{ address: string; port: number; protocol: string; endpoints: unknown[]; reject: boolean; service: string }> };
    const web = st.rows.find((x) => x.address === '198.18.100.10' && x.port === 80);
    expect(web?.service).toBe('demo/web:http');
    expect(web?.endpoints).toHaveLength(3);
    expect(st.rows.find((x) => x.address === '198.18.100.12')?.reject).toBe(true);
    const text = (await svcplane(['status'], { netns: sb.nodeNs })).stdout;
    expect(text).toContain('TCP  198.18.100.10:80');
    expect(text).toContain('  -> 198.18.2.11:8080');
  });

  it('a restart with the same manifests changes nothing, and an open connection survives it', async () => {
    const before = await nft('-j', 'list', 'ruleset');
    // Held from before the restart until after it, however long the restart takes on a loaded machine.
    const hold = startHold(sb, sb.clientNs, { addr: '198.18.100.10', port: 80, holdMs: 600_000, intervalMs: 100 });
    try {
      await hold.established(60_000);
      const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json'], { netns: sb.nodeNs });
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { operations: number }).operations).toBe(0);
      expect(await nft('-j', 'list', 'ruleset')).toBe(before);
    } finally {
      const held = await hold.stop();
      expect(held.stoppedBy).toBe('eof');
      expect(held.errors).toEqual({});
      expect(held.replies).toBeGreaterThan(1);
      expect(held.switched).toBe(0);
    }
  });

  it('removing an endpoint takes effect through an incremental sync of only that Service', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-incr-'));
    try {
      const loaded = await loadManifests(EXAMPLES);
      const model = buildProxyModel(loaded.services, loaded.slices);
      const client = new NetlinkNftClient({ netns: sb.nodeNsPath });
      const proxier = new NftablesProxier(client, defaultConfig({ clusterCIDRs: clusterCIDR.split(',') }));
      try {
        const first = await proxier.syncFull(model.servicePorts);
        expect(first.operations).toBe(0); // adopted what the CLI programmed
        const web = model.servicePorts.get('demo/web:http')!;
        const kept = web.endpoints.filter((e) => e.address !== '198.18.2.13');
        const without = { ...web, endpoints: kept, allEndpoints: kept };
        const res = await proxier.syncPartial(new Map([[web.key, without]]));
        expect(res.full).toBe(false);
        // Element changes of this Service port only (its endpoint count and slots, ClusterIP and NodePort), no
        // rule or chain: a handful of operations, whatever the cluster size (bench/ measures the time at 1k..30k).
        expect(res.operations).toBeLessThanOrEqual(20);
        expect(Object.keys(res.summary).sort()).toEqual(['add elements', 'delete elements']);
        const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 120 });
        expect(r.errors).toEqual({});
        expect(r.counts.be2 ?? 0).toBe(0);
        expect(countsFor(r, ['be0', 'be1']).every((n) => n > 20)).toBe(true);
        // Put it back for the other tests (and check a partial add works too).
        const back = await proxier.syncPartial(new Map([[web.key, web]]));
        expect(back.full).toBe(false);
      } finally {
        proxier.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a batch the kernel rejects leaves the ruleset byte-for-byte intact and forces a full sync next', async () => {
    const loaded = await loadManifests(EXAMPLES);
    const model = buildProxyModel(loaded.services, loaded.slices);
    // The real client, with one operation the kernel must refuse appended to every transaction it runs.
    class PoisonedClient extends NetlinkNftClient {
      poison = false;
      override run(tx: NftTransaction) {
        if (this.poison) {
          tx.owner = 'Service demo/poison:http';
          tx.addRule(NFPROTO_IPV4, 'svcplane', 'no-such-chain', new RuleBuilder().verdict({ kind: 'accept' }).body());
        }
        return super.run(tx);
      }
    }
    const client = new PoisonedClient({ netns: sb.nodeNsPath });
    const proxier = new NftablesProxier(client, defaultConfig({ clusterCIDRs: clusterCIDR.split(',') }));
    try {
      await proxier.syncFull(model.servicePorts);
      client.poison = true;
      const before = await nft('-j', 'list', 'table', 'ip', 'svcplane');
      const web = model.servicePorts.get('demo/web:http')!;
      const changed = { ...web, endpoints: web.endpoints.slice(0, 1), allEndpoints: web.endpoints.slice(0, 1) };
      await expect(proxier.syncPartial(new Map([[web.key, changed]]))).rejects.toThrow(/Service demo\/poison:http.*no-such-chain.*ENOENT/);
      expect(await nft('-j', 'list', 'table', 'ip', 'svcplane')).toBe(before);
      expect(proxier.fullSyncPending).toBe(true);
      client.poison = false;
      const next = await proxier.syncPartial(new Map([[web.key, web]]));
      expect(next.full).toBe(true);
    } finally {
      proxier.close();
    }
  });

  it('cleanup removes every svcplane object and leaves a foreign table untouched', async () => {
    await nft('add', 'table', 'ip', 'foreign');
    await nft('add', 'chain', 'ip', 'foreign', 'c', '{', 'type', 'nat', 'hook', 'prerouting', 'priority', '-100', ';', '}');
    await nft('add', 'rule', 'ip', 'foreign', 'c', 'tcp', 'dport', '9', 'counter');
    const foreign = await nft('list', 'table', 'ip', 'foreign');
    const r = await svcplane(['cleanup'], { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    const tables = await nft('list', 'tables');
    expect(tables).not.toContain('svcplane');
    expect(tables).toContain('table ip foreign');
    expect(await nft('list', 'table', 'ip', 'foreign')).toBe(foreign);
    // And traffic to the Service no longer gets DNATed.
    const after = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 2, timeoutMs: 500 });
    expect(after.ok).toBe(0);
    expect((await svcplane(['cleanup'], { netns: sb.nodeNs })).stdout).toContain('nothing to remove');
  });
});
