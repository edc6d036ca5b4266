// Traffic policies, termination and topology in the nftables dataplane, with real traffic: the sandbox's
// client is off-cluster, be0 is a pod of this node (node-a, zone z1), be1 and be2 pods of other nodes as far as
// the EndpointSlices say (test/helpers/policy-manifests.ts). Programmed with the real CLI, cross-checked with nft.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { chiSquareSurvival, countsFor, runClient } from '../../scripts/lib/traffic';
import { execOk, svcplane } from '../helpers/cli';
import { NODE, POLICY_IPS, POLICY_NODEPORTS, ZONE, policyManifests } from '../helpers/policy-manifests';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables policies');
const BE = ['be0', 'be1', 'be2'];

describe.runIf(haveRoot)('nftables dataplane: traffic policies, termination, topology (real traffic)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-policy-'));
  const tcp = (ns: string, addr: string, port = 80, count = 30, timeoutMs = 2000) => runClient(sb, ns, { proto: 'tcp', addr, port, count, concurrency: 1, timeoutMs });
  const nft = (...args: string[]) => execOk(sb, sb.nodeNs, ['nft', ...args]);

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    const m = policyManifests(sb);
    fs.writeFileSync(path.join(dir, 'policy.yaml'), m.yaml);
    const r = await svcplane(['sync', '--once', '--manifests', dir, '--node-name', NODE, '--node-zone', ZONE, '--cluster-cidr', sb.podCIDR.v4, '--output', 'json'], { netns: sb.nodeNs });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { servicePorts: number }).servicePorts).toBe(m.servicePorts);
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('externalTrafficPolicy Local: clients from outside reach this node\'s endpoint only, with their source kept', async () => {
    for (const [addr, port] of [[sb.nodeIPs.v4, POLICY_NODEPORTS.etpLocal], [POLICY_IPS.etpLocal, 80]] as const) {
      const r = await tcp(sb.clientNs, addr, port);
      expect(r.errors, `${addr}:${port}`).toEqual({});
      expect(countsFor(r, BE)).toEqual([30, 0, 0]);
      expect(r.sources).toEqual({ [sb.clientIP.v4]: 30 });
    }
    // Its ClusterIP keeps the Cluster policy: every endpoint, off-cluster clients masqueraded.
    const c = await tcp(sb.clientNs, '198.18.100.70', 80, 60);
    expect(c.errors).toEqual({});
    expect(countsFor(c, BE).every((n) => n > 0)).toBe(true);
    expect(Object.keys(c.sources)).toEqual([sb.podGateway.v4]);
  });

  it('externalTrafficPolicy Local: this node\'s pods and the node itself short-circuit to every endpoint', async () => {
    const pod = await tcp(sb.backends[0].ns, POLICY_IPS.etpLocal, 80, 60);
    expect(pod.errors).toEqual({});
    const [self, b1, b2] = countsFor(pod, BE);
    expect(b1 > 0 && b2 > 0 && self > 0).toBe(true);
    // Pods keep their source (no masquerade), except an endpoint reaching itself (hairpin).
    expect(pod.sources[sb.backends[0].v4] ?? 0).toBe(b1 + b2);
    const node = await tcp(sb.nodeNs, POLICY_IPS.etpLocal, 80, 30);
    expect(node.errors).toEqual({});
    expect(countsFor(node, BE).filter((n) => n > 0).length).toBeGreaterThan(1);
  });

  it('externalTrafficPolicy Local without endpoints here: dropped from outside (not refused), served to pods', async () => {
    for (const [addr, port] of [[sb.nodeIPs.v4, POLICY_NODEPORTS.etpNone], [POLICY_IPS.etpNone, 80]] as const) {
      const r = await tcp(sb.clientNs, addr, port, 2, 1500);
      expect(r.ok, `${addr}:${port}`).toBe(0);
      expect(r.errors).toEqual({ ETIMEDOUT: 2 });
    }
    const pod = await tcp(sb.backends[0].ns, POLICY_IPS.etpNone, 80, 30);
    expect(pod.errors).toEqual({});
    expect(countsFor(pod, BE)[0]).toBe(0);
    expect(await nft('list', 'set', 'ip', 'svcplane', 'drop-external')).toContain(`${POLICY_IPS.etpNone} . tcp . 80`);
    expect(await nft('list', 'set', 'ip', 'svcplane', 'drop-nodeports')).toContain(`tcp . ${POLICY_NODEPORTS.etpNone}`);
  });

  it('internalTrafficPolicy Local: the ClusterIP reaches this node\'s endpoints only; none here is a drop', async () => {
    const r = await tcp(sb.clientNs, POLICY_IPS.itpLocal, 80, 60);
    expect(r.errors).toEqual({});
    const [b0, b1, b2] = countsFor(r, BE);
    expect(b2).toBe(0);
    expect(b0 > 0 && b1 > 0).toBe(true);
    const none = await tcp(sb.clientNs, POLICY_IPS.itpNone, 80, 2, 1500);
    expect(none.errors).toEqual({ ETIMEDOUT: 2 });
    expect(await nft('list', 'set', 'ip', 'svcplane', 'drop-services')).toContain(`${POLICY_IPS.itpNone} . tcp . 80`);
  });

  it('terminating endpoints: ready ones first; when none is ready, the serving-terminating ones take the traffic', async () => {
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.terminating), BE)).toEqual([30, 0, 0]);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.terminatingOnly), BE)).toEqual([0, 30, 0]);
  });

  it('topology: zone hints for this node\'s zone narrow the endpoints; a ready endpoint without hints turns them off; node hints win', async () => {
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.zoned), BE)).toEqual([30, 0, 0]);
    const partial = await tcp(sb.clientNs, POLICY_IPS.zonedPartial, 80, 60);
    expect(countsFor(partial, BE).every((n) => n > 0)).toBe(true);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.sameNode), BE)).toEqual([0, 30, 0]);
  });

  it('endpoint weights: 600 connections split 2:1:0 (chi-square), the weight-0 endpoint never chosen', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: POLICY_IPS.weighted, port: 80, count: 600 });
    expect(r.errors).toEqual({});
    const [a, b, c] = countsFor(r, BE);
    expect(c).toBe(0);
    const n = a + b;
    const x2 = (a - (2 * n) / 3) ** 2 / ((2 * n) / 3) + (b - n / 3) ** 2 / (n / 3);
    expect(chiSquareSurvival(x2, 1), `${a}/${b}`).toBeGreaterThan(0.001);
    const st = JSON.parse((await svcplane(['status', '--output', 'json'], { netns: sb.nodeNs })).stdout) as { rows: Array<{ address: string; endpoints: Array<{ address: string; weight?: number }> }> };
    expect(st.rows.find((x) => x.address === POLICY_IPS.weighted)?.endpoints.map((e) => [e.address, e.weight])).toEqual([[sb.backends[0].v4, 2], [sb.backends[1].v4, 1]]);
  });

  it('loadBalancerSourceRanges: only those sources reach the LoadBalancer IP; its ClusterIP and NodePort stay open', async () => {
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.fwAllow, 80, 5), BE)).toEqual([5, 0, 0]);
    expect((await tcp(sb.clientNs, POLICY_IPS.fwDeny, 80, 2, 1500)).errors).toEqual({ ETIMEDOUT: 2 });
    expect(countsFor(await tcp(sb.clientNs, '198.18.100.91', 80, 5), BE)).toEqual([5, 0, 0]);
    expect(countsFor(await tcp(sb.clientNs, sb.nodeIPs.v4, POLICY_NODEPORTS.fwDeny, 5), BE)).toEqual([5, 0, 0]);
    expect(countsFor(await tcp(sb.clientNs, POLICY_IPS.fwOpen, 80, 5), BE)).toEqual([5, 0, 0]);
    // A pod (another source network) is held to the ranges too.
    expect((await tcp(sb.backends[1].ns, POLICY_IPS.fwAllow, 80, 2, 1500)).errors).toEqual({ ETIMEDOUT: 2 });
    const allow = await nft('list', 'set', 'ip', 'svcplane', 'firewall-allow');
    expect(allow).toContain(`${POLICY_IPS.fwAllow} . tcp . 80 . ${sb.clientCIDR.v4}`);
    expect(allow).not.toContain(POLICY_IPS.fwOpen);
  });

  it('a second sync of the same manifests changes nothing (range elements, local views and drops read back as built)', async () => {
    const r = await svcplane(['sync', '--once', '--manifests', dir, '--node-name', NODE, '--node-zone', ZONE, '--cluster-cidr', sb.podCIDR.v4, '--output', 'json'], { netns: sb.nodeNs });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { operations: number }).operations).toBe(0);
  });

  it('status shows the Local policy, the drops and the narrowed endpoints as the kernel holds them', async () => {
    const r = await svcplane(['status', '--output', 'json'], { netns: sb.nodeNs });
    expect(r.code).toBe(0);
    const rows = (JSON.parse(r.stdout) as { rows: Array<{ address: string; port: number; kind: string; endpoints: Array<{ address: string }>; policy?: string; drop?: boolean }> }).rows;
    const ext = rows.find((x) => x.address === POLICY_IPS.etpLocal && x.kind === 'External')!;
    expect(ext.policy).toBe('Local');
    expect(ext.endpoints.map((e) => e.address)).toEqual([sb.backends[0].v4]);
    expect(rows.find((x) => x.address === POLICY_IPS.itpNone)?.drop).toBe(true);
    expect(rows.find((x) => x.address === POLICY_IPS.zoned)?.endpoints.map((e) => e.address)).toEqual([sb.backends[0].v4]);
  });

  describe('svcplane explain (read from the kernel by a fresh process; checked against the traffic)', () => {
    interface Explained { kind: string; service?: string; verdict: string; endpoints: Array<{ address: string; share?: number }>; why: string[]; masquerade?: boolean }
    const explain = async (proto: string, target: string, from?: string): Promise<Explained> => {
      const r = await svcplane(['explain', proto, target, ...(from ? ['--from', from] : []), '--output', 'json'], { netns: sb.nodeNs });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Explained;
    };
    const reached = (r: Awaited<ReturnType<typeof tcp>>) => countsFor(r, BE).flatMap((n, i) => (n > 0 ? [i] : []));
    const addrs = (e: Explained) => e.endpoints.map((x) => x.address).sort();
    const be = (...i: number[]) => i.map((k) => sb.backends[k].v4).sort();

    it('externalTrafficPolicy Local: the external address from outside names this node\'s endpoint; from a pod, every one', async () => {
      const out = await explain('TCP', `${POLICY_IPS.etpLocal}:80`, sb.clientIP.v4);
      expect(out).toMatchObject({ kind: 'External', service: 'policy/etp-local:http', verdict: 'forwarded' });
      expect(addrs(out)).toEqual(be(0));
      expect(out.why.join(' | ')).toContain('externalTrafficPolicy Local');
      expect(out.masquerade).toBeFalsy();
      const r = await tcp(sb.clientNs, POLICY_IPS.etpLocal, 80, 20);
      expect(reached(r).map((i) => sb.backends[i].v4)).toEqual(addrs(out));
      const pod = await explain('TCP', `${POLICY_IPS.etpLocal}:80`, sb.backends[1].v4);
      expect(addrs(pod)).toEqual(be(0, 1, 2));
      const np = await explain('TCP', `${sb.nodeIPs.v4}:${POLICY_NODEPORTS.etpLocal}`, sb.clientIP.v4);
      expect(np).toMatchObject({ kind: 'NodePort', service: 'policy/etp-local:http', verdict: 'forwarded' });
      expect(addrs(np)).toEqual(be(0));
    });

    it('drops, topology and termination are told with their reason', async () => {
      const none = await explain('TCP', `${POLICY_IPS.etpNone}:80`, sb.clientIP.v4);
      expect(none.verdict).toBe('dropped');
      expect(none.why.join(' | ')).toContain('none of the endpoints');
      expect((await explain('TCP', `${POLICY_IPS.itpNone}:80`)).verdict).toBe('dropped');
      const zoned = await explain('TCP', `${POLICY_IPS.zoned}:80`, sb.clientIP.v4);
      expect(addrs(zoned)).toEqual(be(0));
      expect(zoned.why).toContain(`topology: zone ${ZONE}`);
      expect(zoned.masquerade).toBe(true); // off-cluster client to a ClusterIP
      const term = await explain('TCP', `${POLICY_IPS.terminatingOnly}:80`);
      expect(addrs(term)).toEqual(be(1));
      expect(term.why).toContain('none ready: serving-terminating');
      const r = await tcp(sb.clientNs, POLICY_IPS.terminatingOnly, 80, 10);
      expect(reached(r)).toEqual([1]);
      const w = await explain('TCP', `${POLICY_IPS.weighted}:80`);
      expect(Object.fromEntries(w.endpoints.map((x) => [x.address, x.share]))).toEqual({ [sb.backends[0].v4]: 2 / 3, [sb.backends[1].v4]: 1 / 3 });
      expect(w.why).toContain('weighted');
    });

    it('loadBalancerSourceRanges, unused ports and foreign addresses', async () => {
      const deny = await explain('TCP', `${POLICY_IPS.fwDeny}:80`, sb.clientIP.v4);
      expect(deny.verdict).toBe('dropped');
      expect(deny.why[0]).toContain('203.0.113.0/24');
      expect((await explain('TCP', `${POLICY_IPS.fwAllow}:80`, sb.clientIP.v4)).verdict).toBe('forwarded');
      expect(await explain('TCP', `${POLICY_IPS.itpLocal}:81`)).toMatchObject({ kind: 'unused ClusterIP port', verdict: 'rejected' });
      expect(await explain('UDP', '198.18.250.1:53')).toMatchObject({ kind: 'none', verdict: 'not a Service' });
      const text = await svcplane(['explain', 'tcp', `${POLICY_IPS.zoned}:80`], { netns: sb.nodeNs });
      expect(text.stdout).toMatch(new RegExp(`TCP ${POLICY_IPS.zoned}:80: forwarded\\n  matches    ClusterIP of Service policy/zoned:http`));
      const bad = await svcplane(['explain', 'TCP', 'nowhere:80'], { netns: sb.nodeNs });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('is not <address>:<port>');
    });
  });
});
