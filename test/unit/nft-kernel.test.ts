// Kernel constructs (src/dataplane/nftables/kernel.ts) against the fake, which refuses a construct the way kernels
// without it do when told to: the probe, the shape chosen for each kernel, a required construct missing, and a
// refusal in words. The same on real kernels: test/kernel/nftables-kernel.test.ts (this machine, and Debian's 6.1
// in the qemu guest).
import { describe, expect, it } from 'vitest';
import { FakeNftClient, formatRule } from '../../src/dataplane/nftables/fake';
import { CONSTRUCTS, type ConstructId, FULL_SUPPORT, NftKernelError, kernelReport, probeKernel } from '../../src/dataplane/nftables/kernel';
import { NFPROTO_IPV4 } from '../../src/dataplane/nftables/netlink/constants';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { CHAINS } from '../../src/dataplane/nftables/rules/names';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import type { Endpoint, ServicePort } from '../../src/model/types';

function ep(address: string): Endpoint {
  return { address, family: 4, port: 8080, ready: true, serving: true, terminating: false };
}

function servicePort(name: string, clusterIP: string, endpoints: Endpoint[], nodePort = 0): ServicePort {
  return {
    key: `default/${name}:http`, namespace: 'default', name, portName: 'http', protocol: 'TCP', port: 80, nodePort,
    clusterIPs: [clusterIP], externalIPs: [], loadBalancerIPs: [], externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
    sessionAffinity: { type: 'None' }, healthCheckNodePort: 0, loadBalancerSourceRanges: [], endpoints, allEndpoints: endpoints,
  };
}

const model = () => new Map([
  ['default/a:http', servicePort('a', '198.18.0.1', [ep('10.1.0.1'), ep('10.1.0.2')], 30080)],
  ['default/b:http', servicePort('b', '198.18.0.2', [])],
]);

describe('probing nf_tables constructs (fake kernel)', () => {
  it('finds exactly the constructs a kernel lacks, in one batch that commits nothing', async () => {
    for (const lacks of [[], ['map-membership'], CONSTRUCTS.map((c) => c.id)] as ConstructId[][]) {
      const fake = new FakeNftClient({ lacks });
      expect((await probeKernel(fake)).missing).toEqual(lacks);
      expect(fake.dump()).toBe('');
      expect(fake.commits).toBe(0);
    }
  });

  it('says which shape it chose: native, or the fallback with the release that would allow the native one', () => {
    expect(kernelReport(FULL_SUPPORT).shape).toBe('every construct native (the fastest shape)');
    const r = kernelReport({ release: '6.1.0-57-amd64', missing: ['map-membership'] });
    expect(r.shape).toMatch(/^no map-membership \(Linux 6\.5\): the services chain's membership tests .* load the count into a scratch register/);
    expect(r.constructs.find((c) => c.id === 'map-membership')).toMatchObject({ supported: false, since: '6.5' });
  });
});

describe('NftablesProxier on kernels of every construct set (fake kernel)', () => {
  it('without map-membership (Linux < 6.5): membership tests load the count; a second sync sends nothing', async () => {
    const fake = new FakeNftClient({ lacks: ['map-membership'] });
    const p = new NftablesProxier(fake, defaultConfig());
    expect((await p.prepare()).constructs.find((c) => c.id === 'map-membership')?.supported).toBe(false);
    expect((await p.syncFull(model())).operations).toBeGreaterThan(0);
    const services = (await fake.dumpTable(NFPROTO_IPV4, 'svcplane'))!.chains.get(CHAINS.services)!.rules.map(formatRule);
    const toPick = services.filter((r) => r.includes('set="service-ips"') && r.includes('goto'));
    expect(toPick).toHaveLength(1);
    expect(toPick[0]).toMatch(/lookup\(sreg=1 dreg=22 set="service-ips"/);
    expect((await p.syncFull(model())).operations).toBe(0);
  });

  it('with every construct: membership tests load nothing', async () => {
    const fake = new FakeNftClient();
    await new NftablesProxier(fake, defaultConfig()).syncFull(model());
    const services = (await fake.dumpTable(NFPROTO_IPV4, 'svcplane'))!.chains.get(CHAINS.services)!.rules.map(formatRule);
    expect(services.filter((r) => r.includes('set="service-ips"') && r.includes('goto'))[0]).toMatch(/lookup\(sreg=1 set="service-ips"/);
  });

  it('a refused construct is named in words with the release that has it; nothing is applied', async () => {
    const fake = new FakeNftClient({ lacks: ['map-membership'] });
    const p = new NftablesProxier(fake, defaultConfig({ kernel: FULL_SUPPORT }));
    const err = await p.syncFull(model()).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/add rule ip svcplane services \(operation #\d+\), expression #\d+ \(lookup\): Invalid argument \(EINVAL\)/);
    expect(err?.message).toContain('this kernel\'s nft_lookup cannot test whether a key is in a map without loading the value it maps to');
    expect(err?.message).toContain('that needs Linux 6.5 (commit "netfilter: nf_tables: relax set/map validation checks")');
    expect(fake.dump()).toBe('');
  });

  it('a kernel without a required construct: the mode refuses to start, saying what is missing and why it is needed', async () => {
    const p = new NftablesProxier(new FakeNftClient({ lacks: ['reject-prerouting', 'concat-ranges'] }), defaultConfig());
    const err = await p.prepare().then(() => undefined, (e: Error) => e);
    expect(err).toBeInstanceOf(NftKernelError);
    expect((err as NftKernelError).missing).toEqual(['concat-ranges', 'reject-prerouting']);
    expect(err?.message).toContain('svcplane\'s nftables mode cannot run on this kernel');
    expect(err?.message).toContain('this kernel\'s nft_reject cannot reject in a prerouting chain (only in input, forward and output); that needs Linux 5.9');
    expect(err?.message).toContain('svcplane uses it for loadBalancerSourceRanges');
    await expect(p.syncFull(model())).rejects.toThrow(NftKernelError);
  });
});
