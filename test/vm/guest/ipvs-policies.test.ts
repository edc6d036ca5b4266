// Traffic policies, termination and topology in the IPVS dataplane, with real traffic in the guest: the
// same Services as the nftables kernel test (test/helpers/policy-manifests.ts), cross-checked with ipvsadm and nft.
// Where IPVS cannot do what the nftables mode does (one virtual service per address: it cannot send this node's
// pods elsewhere than clients from outside), the test says so.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../../scripts/lib/traffic';
import { execOk, svcplane } from '../../helpers/cli';
import { NODE, POLICY_IPS, POLICY_NODEPORTS, ZONE, policyManifests } from '../../helpers/policy-manifests';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const BE = ['be0', 'be1', 'be2'];

describe.runIf(inGuest)('IPVS dataplane: traffic policies, termination, topology (guest kernel)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ipvs-policy-'));
  const tcp = (ns: string, addr: string, port = 80, count = 30, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr, port, count, concurrency: 1, timeoutMs });
  const run = (ns: string, argv: string[]) => execOk(sb, ns, argv);
  const realServers = async (vip: string, port: number) => [...(await run(sb.nodeNs, ['ipvsadm', '-Ln', '-t', `${vip}:${port}`])).matchAll(/-> ([\d.]+):8080/g)].map((m) => m[1]);

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    const m = policyManifests(sb);
    fs.writeFileSync(path.join(dir, 'policy.yaml'), m.yaml);
    const r = await svcplane(['sync', '--once', '--mode', 'ipvs', '--manifests', dir, '--node-name', NODE, '--node-zone', ZONE, '--cluster-cidr', sb.podCIDR.v4,
      '--output', 'json', '--netns', sb.nodeNsPath]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { servicePorts: number }).servicePorts).toBe(m.servicePorts);
  });
  afterAll(async () => {
    if (sb) await svcplane(['cleanup', '--mode', 'ipvs', '--netns', sb.nodeNsPath]);
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('externalTrafficPolicy Local: external virtual services hold this node\'s endpoint; clients keep their source', async () => {
    const [b0] = sb.backends.map((b) => b.v4);
    expect(await realServers(POLICY_IPS.etpLocal, 80)).toEqual([b0]);
    expect(await realServers(sb.nodeIPs.v4, POLICY_NODEPORTS.etpLocal)).toEqual([b0]);
    expect((await realServers('198.18.100.70', 80)).sort()).toEqual(sb.backends.map((b) => b.v4).sort());
    for (const [addr, port] of [[sb.nodeIPs.v4, POLICY_NODEPORTS.etpLocal], [POLICY_IPS.etpLocal, 80]] as const) {
      const r = await tcp(sb.clientNs, addr, port);
      expect(r.errors, `${addr}:${port}`).toEqual({});
      expect(countsFor(r, BE)).toEqual([30, 0, 0]);
      expect(r.sources).toEqual({ [sb.clientIP.v4]: 30 });
    }
    // The ClusterIP keeps the Cluster policy (rr: 10 each), off-cluster clients masqueraded.
    const c = await tcp(sb.clientNs, '198.18.100.70');
    expect(countsFor(c, BE)).toEqual([10, 10, 10]);
    expect(Object.keys(c.sources)).toEqual([sb.podGateway.v4]);
  });

  it('externalTrafficPolicy Local without endpoints here: dropped from outside, while this node\'s pods reach the others', async () => {
    expect((await realServers(POLICY_IPS.etpNone, 80)).sort()).toEqual([sb.backends[1].v4, sb.backends[2].v4].sort());
    for (const [addr, port] of [[sb.nodeIPs.v4, POLICY_NODEPORTS.etpNone], [POLICY_IPS.etpNone, 80]] as const) {
      const r = await tcp(sb.clientNs, addr, port, 2, 1500);
      expect(r.errors, `${addr}:${port}`).toEqual({ ETIMEDOUT: 2 });
    }
    const pod = await tcp(sb.backends[0].ns, POLICY_IPS.etpNone, 80, 20);
    expect(pod.errors).toEqual({});
    expect(countsFor(pod, BE)).toEqual([0, 10, 10]);
    expect(await run(sb.nodeNs, ['nft', 'list', 'set', 'ip', 'svcplane', 'drop-external'])).toContain(`${POLICY_IPS.etpNone} . tcp . 80`);
  });

  it('internalTrafficPolicy Local: the ClusterIP holds this node\'s endpoints only; none here is a drop', async () => {
    expect((await realServers(POLICY_IPS.itpLocal, 80)).sort()).toEqual([sb.backends[0].v4, sb.backends[1].v4].sort());
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.itpLocal, 80, 20), BE)).toEqual([10, 10, 0]);
    const none = await tcp(sb.clientNs, POLICY_IPS.itpNone, 80, 2, 1500);
    expect(none.errors).toEqual({ ETIMEDOUT: 2 });
  });

  it('terminating endpoints and topology hints choose the real servers', async () => {
    const [b0, b1] = sb.backends.map((b) => b.v4);
    expect(await realServers(POLICY_IPS.terminating, 80)).toEqual([b0]);
    expect(await realServers(POLICY_IPS.terminatingOnly, 80)).toEqual([b1]);
    expect(await realServers(POLICY_IPS.zoned, 80)).toEqual([b0]);
    expect((await realServers(POLICY_IPS.zonedPartial, 80)).length).toBe(3);
    expect(await realServers(POLICY_IPS.sameNode, 80)).toEqual([b1]);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.terminatingOnly, 80, 10), BE)).toEqual([0, 10, 0]);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.zoned, 80, 10), BE)).toEqual([10, 0, 0]);
  });

  it('loadBalancerSourceRanges: only those sources reach the LoadBalancer IP (checked before IPVS); ClusterIP and NodePort open', async () => {
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.fwAllow, 80, 5), BE)).toEqual([5, 0, 0]);
    expect((await tcp(sb.clientNs, POLICY_IPS.fwDeny, 80, 2, 1500)).errors).toEqual({ ETIMEDOUT: 2 });
    expect(countsFor(await tcp(sb.clientNs, '198.18.100.91', 80, 5), BE)).toEqual([5, 0, 0]);
    expect(countsFor(await tcp(sb.clientNs, sb.nodeIPs.v4, POLICY_NODEPORTS.fwDeny, 5), BE)).toEqual([5, 0, 0]);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.fwOpen, 80, 5), BE)).toEqual([5, 0, 0]);
  });

  it('a second sync changes nothing (ipvsadm and nft identical)', async () => {
    const before = [await run(sb.nodeNs, ['ipvsadm', '-Ln']), await run(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])];
    const r = await svcplane(['sync', '--once', '--mode', 'ipvs', '--manifests', dir, '--node-name', NODE, '--node-zone', ZONE, '--cluster-cidr', sb.podCIDR.v4,
      '--output', 'json', '--netns', sb.nodeNsPath]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { operations: number }).operations).toBe(0);
    // Connection counters may move (earlier tests' connections age out); ipvsadm pads them to a fixed width, so the
    // padding after them changes with their digits and goes too.
    const strip = (t: string) => t.replace(/(Masq\s+\d+)\s+\d+\s+\d+[ \t]*$/gm, '$1');
    expect(strip(await run(sb.nodeNs, ['ipvsadm', '-Ln']))).toBe(strip(before[0]));
    expect(await run(sb.nodeNs, ['nft', '-j', 'list', 'ruleset'])).toBe(before[1]);
  });

  it('explain reads the virtual service, its real servers and the reasons back from the kernel (a fresh process)', async () => {
    interface Explained { kind: string; service?: string; verdict: string; scheduler?: string; endpoints: Array<{ address: string }>; why: string[]; masquerade?: boolean }
    const explain = async (proto: string, target: string, from?: string): Promise<Explained> => {
      const r = await svcplane(['explain', '--mode', 'ipvs', proto, target, ...(from ? ['--from', from] : []), '--output', 'json', '--netns', sb.nodeNsPath]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Explained;
    };
    const addrs = (e: Explained) => e.endpoints.map((x) => x.address).sort();
    const be = (...i: number[]) => i.map((k) => sb.backends[k].v4).sort();
    const ext = await explain('TCP', `${POLICY_IPS.etpLocal}:80`, sb.clientIP.v4);
    expect(ext).toMatchObject({ kind: 'External', service: 'policy/etp-local:http', verdict: 'forwarded', scheduler: 'rr' });
    expect(addrs(ext)).toEqual(be(0));
    expect(ext.why.join(' | ')).toContain('externalTrafficPolicy Local');
    // The explained real servers are the ones traffic reaches (ipvsadm agrees).
    expect(addrs(ext)).toEqual((await realServers(POLICY_IPS.etpLocal, 80)).sort());
    const np = await explain('TCP', `${sb.nodeIPs.v4}:${POLICY_NODEPORTS.etpLocal}`, sb.clientIP.v4);
    expect(np).toMatchObject({ kind: 'NodePort', service: 'policy/etp-local:http', verdict: 'forwarded' });
    const none = await explain('TCP', `${POLICY_IPS.etpNone}:80`, sb.clientIP.v4);
    expect(none.verdict).toBe('dropped');
    expect(none.why).toContain('no endpoint here: every endpoint, for pods only');
    expect((await explain('TCP', `${POLICY_IPS.etpNone}:80`, sb.backends[0].v4)).verdict).toBe('forwarded');
    expect((await explain('TCP', `${POLICY_IPS.itpNone}:80`)).verdict).toBe('dropped');
    const zoned = await explain('TCP', `${POLICY_IPS.zoned}:80`, sb.clientIP.v4);
    expect(zoned).toMatchObject({ kind: 'ClusterIP', service: 'policy/zoned:http', masquerade: true });
    expect(zoned.why).toContain(`topology: zone ${ZONE}`);
    const term = await explain('TCP', `${POLICY_IPS.terminatingOnly}:80`);
    expect(addrs(term)).toEqual(be(1));
    expect(term.why).toContain('none ready: serving-terminating');
    expect((await explain('TCP', `${POLICY_IPS.fwDeny}:80`, sb.clientIP.v4)).verdict).toBe('dropped');
    expect(await explain('TCP', `${POLICY_IPS.itpLocal}:81`)).toMatchObject({ kind: 'unused ClusterIP port', verdict: 'rejected' });
    expect((await explain('UDP', '198.18.250.1:53')).verdict).toBe('not a Service');
    // status names the Services from the kernel too.
    const st = JSON.parse((await svcplane(['status', '--mode', 'ipvs', '--output', 'json', '--netns', sb.nodeNsPath])).stdout) as { rows: Array<{ address: string; port: number; service: string; kind: string; policy?: string }> };
    expect(st.rows.find((r) => r.address === POLICY_IPS.etpLocal)).toMatchObject({ service: 'policy/etp-local:http', kind: 'External', policy: 'Local' });
    expect(st.rows.find((r) => r.address === sb.nodeIPs.v4 && r.port === POLICY_NODEPORTS.etpLocal)).toMatchObject({ service: 'policy/etp-local:http', kind: 'NodePort' });
  });
});
