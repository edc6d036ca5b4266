// What this kernel's nf_tables accepts and the ruleset shape svcplane picks for it (src/dataplane/nftables/
// kernel.ts), on whichever kernel runs the suite: this machine's, and Debian's 6.1 (and 6.12) in the qemu guest
// (test/vm/kernels.test.ts runs this file there). 6.1 lacks map-membership (Linux 6.5), so there the fallback is
// the shape in use and the native shape must be refused with the reason in words; on newer kernels both shapes work
// and a change of shape (a kernel upgrade) is an ordinary full sync.
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { FULL_SUPPORT, type KernelSupport, PROBE_TABLE, probeKernel } from '../../src/dataplane/nftables/kernel';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { CHAINS, SETS } from '../../src/dataplane/nftables/rules/names';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { LOOKUP, NFPROTO_IPV4 } from '../../src/dataplane/nftables/netlink/constants';
import { parseRuleBody } from '../../src/dataplane/nftables/netlink/expr';
import { attrString } from '../../src/native/recordStream';
import { buildProxyModel } from '../../src/model/build';
import { loadManifests } from '../../src/source/manifests';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../scripts/lib/traffic';
import { REPO, execOk, svcplaneOk } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nf_tables constructs');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');
const BE = ['be0', 'be1', 'be2'];

// The kernel's history (kernel.ts): a lookup without a destination register on a map came with 6.5; the other
// constructs date from 5.4-5.9, older than any kernel this suite boots.
const [major, minor] = os.release().split('.').map(Number);
const hasMapMembership = major > 6 || (major === 6 && minor >= 5);

/** Whether the services chain tests map membership by loading the value (the fallback) or not (native). */
function membershipShape(rules: Buffer[]): 'loads-value' | 'native' {
  const lookups = rules.flatMap((r) => parseRuleBody(r)).filter((e) => attrString(e, 0) === 'lookup' && attrString(e, LOOKUP.SET) === SETS.serviceIPs);
  expect(lookups.length).toBeGreaterThan(0);
  return lookups.every((e) => e.has(LOOKUP.DREG)) ? 'loads-value' : 'native';
}

describe.runIf(haveRoot)(`nf_tables constructs on this kernel (${os.release()}): probe and ruleset shapes`, () => {
  let sb: Sandbox;
  let client: NetlinkNftClient;
  const nft = (...args: string[]) => execOk(sb, sb.nodeNs, ['nft', ...args]);
  // Each proxier owns (and closes) its own socket.
  const proxier = (kernel?: KernelSupport) => new NftablesProxier(new NetlinkNftClient({ netns: sb.nodeNsPath }), defaultConfig({ clusterCIDRs: [sb.podCIDR.v4, sb.podCIDR.v6], kernel }));
  const model = async () => {
    const loaded = await loadManifests(EXAMPLES);
    return buildProxyModel(loaded.services, loaded.slices).servicePorts;
  };
  const traffic = async () => {
    const tcp = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 60 });
    expect(tcp.errors).toEqual({});
    expect(countsFor(tcp, BE).every((n) => n > 5), `ClusterIP: ${countsFor(tcp, BE)}`).toBe(true);
    const np = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 30 });
    expect(np.errors).toEqual({});
    expect(np.ok).toBe(30);
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.10', port: 53, count: 30 });
    expect(udp.errors).toEqual({});
    expect(udp.ok).toBe(30);
  };

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    client = new NetlinkNftClient({ netns: sb.nodeNsPath });
  });
  afterAll(async () => {
    client?.close();
    await sb?.destroy();
  });

  it('the probe finds what the kernel history says this kernel has, and commits nothing', async () => {
    const sock = new (native().NftSocket)({ netns: sb.nodeNsPath });
    try {
      const generation = await sock.generation();
      const k = await probeKernel(client);
      expect(k.missing).toEqual(hasMapMembership ? [] : ['map-membership']);
      // Never committed: the ruleset generation did not move and the probe's table never existed.
      expect(await sock.generation()).toBe(generation);
      expect(await nft('list', 'tables')).not.toContain(PROBE_TABLE);
    } finally {
      sock.close();
    }
  });

  it('the CLI programs the shape this kernel allows and says which (sync summary, status)', async () => {
    const text = await svcplaneOk(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', `${sb.podCIDR.v4},${sb.podCIDR.v6}`], { netns: sb.nodeNs });
    expect(text).toContain(`nf_tables on ${os.release()}: `);
    expect(text).toContain(hasMapMembership ? 'every construct native' : 'no map-membership (Linux 6.5)');
    const st = JSON.parse(await svcplaneOk(['status', '--output', 'json'], { netns: sb.nodeNs })) as { kernel: { constructs: Array<{ id: string; supported: boolean }> } };
    expect(st.kernel.constructs.find((c) => c.id === 'map-membership')?.supported).toBe(hasMapMembership);
    const t = await client.dumpTable(NFPROTO_IPV4, 'svcplane');
    expect(membershipShape(t!.chains.get(CHAINS.services)!.rules)).toBe(hasMapMembership ? 'native' : 'loads-value');
    await traffic();
  });

  it('the fallback shape (membership tests that load the value) carries real traffic and reads back unchanged', async () => {
    const p = proxier({ release: os.release(), missing: ['map-membership'] });
    try {
      await p.syncFull(await model());
      const t = await client.dumpTable(NFPROTO_IPV4, 'svcplane');
      expect(membershipShape(t!.chains.get(CHAINS.services)!.rules)).toBe('loads-value');
      await traffic();
      // A restart on this kernel changes nothing: the dumped rules compare byte for byte with the built ones.
      expect((await p.syncFull(await model())).operations).toBe(0);
    } finally {
      p.close();
    }
  });

  it.runIf(hasMapMembership)('kernels from 6.5: moving to the native shape (a kernel upgrade) is one full sync, traffic flows', async () => {
    const p = proxier(FULL_SUPPORT);
    try {
      const r = await p.syncFull(await model());
      expect(r.operations).toBeGreaterThan(0);
      const t = await client.dumpTable(NFPROTO_IPV4, 'svcplane');
      expect(membershipShape(t!.chains.get(CHAINS.services)!.rules)).toBe('native');
      await traffic();
    } finally {
      p.close();
    }
  });

  it.runIf(!hasMapMembership)('kernels before 6.5: the native shape is refused whole, with the missing construct in words', async () => {
    const before = await nft('-j', 'list', 'table', 'ip', 'svcplane');
    const p = proxier(FULL_SUPPORT);
    try {
      const err = await p.syncFull(await model()).then(() => undefined, (e: Error) => e);
      expect(err?.message).toMatch(/add rule ip svcplane services \(operation #\d+\), expression #\d+ \(lookup\): Invalid argument \(EINVAL\)/);
      expect(err?.message).toContain('this kernel\'s nft_lookup cannot test whether a key is in a map without loading the value it maps to');
      expect(err?.message).toContain('that needs Linux 6.5');
      expect(await nft('-j', 'list', 'table', 'ip', 'svcplane')).toBe(before);
    } finally {
      p.close();
    }
    await traffic();
  });

  it('the longest legal names (63 + 63 + 63) are kept whole by the kernel: status names every Service exactly', async () => {
    const ns = `n${'s'.repeat(62)}`;
    const names = ['a', 'b'].map((c) => `${c}${'x'.repeat(62)}`);
    const portName = `p${'q'.repeat(62)}`;
    const services = names.map((name, i) => ({
      metadata: { name, namespace: ns, annotations: { 'svcplane.io/endpoint-weights': 'zone/z=2' } },
      spec: { type: 'NodePort', clusterIP: `198.18.120.${i + 1}`, externalTrafficPolicy: 'Local', ports: [{ name: portName, port: 80, nodePort: 31000 + i }] },
    }));
    const slices = names.map((name) => ({
      metadata: { name: `${name.slice(0, 50)}-s`, namespace: ns, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4', ports: [{ name: portName, port: 8080 }],
      endpoints: [{ addresses: [sb.backends[0].v4], nodeName: 'elsewhere', zone: 'z' }],
    }));
    const m = buildProxyModel(services, slices).servicePorts;
    const p = proxier();
    try {
      await p.syncFull(m);
      const rows = (await p.status()).rows.filter((r) => r.address.startsWith('198.18.120.'));
      expect(rows.map((r) => r.service).sort()).toEqual([...m.keys()].sort());
      expect([...m.keys()][0].length).toBe(191);
    } finally {
      await p.cleanup();
      p.close();
    }
  });
});
