// `svcplane explain` must agree with the kernel: what it says a new connection gets
// (forwarded to which endpoints, with or without masquerade; rejected; dropped; not a Service) is checked against
// real connections in the sandbox (scripts/lib/sandbox.ts): first the three cases the issue names, with the CLI
// as a user runs it, then scenarios drawn from a seeded PRNG (test/helpers/explain-scenarios.ts), each flow to
// each address:port of each Service, TCP and UDP, from outside the cluster, from a pod and from the node itself.
// A daemon on the node answers on every Service port and NodePort, so a flow svcplane leaves alone to a node
// address is answered by the node, not refused: "not a Service" and "rejected" look different.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackendServer, type Sandbox, createSandbox, startBackend } from '../../scripts/lib/sandbox';
import { runFlows } from '../../scripts/lib/traffic';
import type { Explanation, FlowQuery } from '../../src/dataplane/explain';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { readNodeAddresses } from '../../src/dataplane/nodeAddresses';
import { svcplane } from '../helpers/cli';
import { type Compared, NODE_DAEMON, compareGroup, describeCompared, flowCases, flowContext, programGroup } from '../helpers/explain-agreement';
import { type ProxyFlags, type ScenarioGroup, type ScenarioSpec, describeFlags, describeScenario, drawGroups, nodeDaemonPorts, scenarioManifest, syncFlags } from '../helpers/explain-scenarios';
import { disagreement, observe } from '../helpers/flow-verdicts';
import { expectedByKubernetes } from '../helpers/service-semantics';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('explain agrees with the kernel');
const SEED = 12;
const PER_GROUP = 12;

/** The nftables dataplane's own explain (as `svcplane explain` runs it), one kernel reading for all the flows. */
async function explainInNode(netns: string, flows: FlowQuery[]): Promise<Explanation[]> {
  const dp = new NftablesProxier(new NetlinkNftClient({ netns }), defaultConfig(), undefined, undefined, () => readNodeAddresses(netns));
  try {
    return await dp.explain(flows);
  } finally {
    dp.close();
  }
}

describe.runIf(haveRoot)('svcplane explain agrees with the kernel (real connections)', () => {
  let sb: Sandbox;
  let daemon: BackendServer;
  let groups: ScenarioGroup[];

  /** The three cases of the issue: one sync with nodePortAddresses set and --masquerade-all beside --cluster-cidr. */
  const issueFlags: ProxyFlags = { nodePortAddresses: '198.18.1.0/24', clusterCIDR: true, masqueradeAll: true };
  const issueCases = (): ScenarioSpec[] => [
    // An external IP that is the node's address, no endpoints: the kernel refuses the connection.
    { name: 'ext-node-none', type: 'ClusterIP', clusterIP: '198.18.100.250', port: 1001, externalIP: sb.nodeIPs.v4, etp: 'Cluster', itp: 'Cluster', endpoints: [], podClient: 2 },
    // A NodePort: served on 198.18.1.1, not on the pod gateway 198.18.2.1 (outside nodePortAddresses).
    { name: 'np-outside', type: 'NodePort', clusterIP: '198.18.100.251', port: 1002, nodePorts: { TCP: 31002, UDP: 31003 }, etp: 'Cluster', itp: 'Cluster', endpoints: [{ backend: 0, local: true, state: 'ready' }], podClient: 2 },
    // externalTrafficPolicy Local with one endpoint here and one elsewhere: a pod gets both (short-circuit).
    { name: 'etp-local-pod', type: 'LoadBalancer', clusterIP: '198.18.100.252', port: 1004, nodePorts: { TCP: 31004, UDP: 31005 }, lbIP: '198.18.100.253', etp: 'Local', itp: 'Cluster',
      endpoints: [{ backend: 0, local: true, state: 'ready' }, { backend: 1, local: false, state: 'ready' }], podClient: 2 },
  ];

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080], ipv6: false });
    groups = drawGroups(sb, SEED, [
      { clusterCIDR: true, masqueradeAll: false },
      { nodePortAddresses: sb.clientCIDR.v4, clusterCIDR: true, masqueradeAll: true },
      { nodePortAddresses: 'primary', nodeIP: sb.nodeIPs.v4, clusterCIDR: true, masqueradeAll: false },
      { clusterCIDR: false, masqueradeAll: true },
    ], PER_GROUP);
    // UDP bound to each address flows go to, so the node answers from the address it was asked on.
    daemon = await startBackend(sb.nodeNs, NODE_DAEMON, nodeDaemonPorts([...groups, { flags: issueFlags, scenarios: issueCases() }]), 30_000,
      { BACKEND_UDP_ADDRESSES: `${sb.nodeIPs.v4},${sb.podGateway.v4}` });
  });
  afterAll(async () => {
    await daemon?.stop();
    await sb?.destroy();
  });

  describe('the explain cases, with the CLI', () => {
    const explain = async (proto: string, target: string, from: string): Promise<Explanation> => {
      const r = await svcplane(['explain', proto, target, '--from', from, '--output', 'json'], { netns: sb.nodeNs });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Explanation;
    };
    const tcp = async (ns: string, addr: string, port: number, count = 8) =>
      observe((await runFlows(sb, ns, [{ proto: 'tcp', addr, port, count }], { timeoutMs: 2500 }))[0]);

    beforeAll(async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-issue12-'));
      fs.writeFileSync(path.join(dir, 'cases.yaml'), issueCases().map((s) => scenarioManifest(sb, s)).join('---\n'));
      const r = await svcplane(['sync', '--once', '--manifests', dir, ...syncFlags(sb, issueFlags)], { netns: sb.nodeNs });
      fs.rmSync(dir, { recursive: true, force: true });
      expect(r.code, r.stderr).toBe(0);
    });

    it('an external IP that is a node address, without endpoints: rejected, as the kernel refuses it', async () => {
      const e = await explain('TCP', `${sb.nodeIPs.v4}:1001`, sb.clientIP.v4);
      expect(await tcp(sb.clientNs, sb.nodeIPs.v4, 1001, 2)).toEqual({ fate: 'refused' });
      expect(e).toMatchObject({ verdict: 'rejected', kind: 'External', service: 'agree/ext-node-none:tcp' });
    });

    it('a NodePort on a node address outside nodePortAddresses: not a Service (the node itself answers)', async () => {
      const outside = await explain('TCP', `${sb.podGateway.v4}:31002`, sb.clientIP.v4);
      expect(await tcp(sb.clientNs, sb.podGateway.v4, 31002, 2)).toMatchObject({ fate: 'answered', by: [NODE_DAEMON] });
      expect(outside).toMatchObject({ verdict: 'not a Service', kind: 'none' });
      expect(outside.why.join(' | ')).toContain('NodePorts are not served on it');
      // Inside nodePortAddresses it is forwarded.
      expect(await explain('TCP', `${sb.nodeIPs.v4}:31002`, sb.clientIP.v4)).toMatchObject({ verdict: 'forwarded', kind: 'NodePort' });
      expect(await tcp(sb.clientNs, sb.nodeIPs.v4, 31002, 2)).toMatchObject({ fate: 'answered', by: ['be0'] });
    });

    it('externalTrafficPolicy Local under --masquerade-all: a pod reaches every endpoint, as explain lists', async () => {
      const pod = sb.backends[2];
      for (const [addr, port] of [['198.18.100.253', 1004], [sb.nodeIPs.v4, 31004]] as const) {
        const e = await explain('TCP', `${addr}:${port}`, pod.v4);
        expect(e.verdict).toBe('forwarded');
        expect(e.endpoints.map((x) => x.address).sort()).toEqual([sb.backends[0].v4, sb.backends[1].v4]);
        expect(await tcp(pod.ns, addr, port, 16)).toMatchObject({ fate: 'answered', by: ['be0', 'be1'] });
        // From outside the cluster: this node's endpoint only.
        expect((await explain('TCP', `${addr}:${port}`, sb.clientIP.v4)).endpoints.map((x) => x.address)).toEqual([sb.backends[0].v4]);
        expect(await tcp(sb.clientNs, addr, port, 8)).toMatchObject({ fate: 'answered', by: ['be0'] });
      }
    });
  });

  /** Every generated flow with what explain said and what the connections did, and the flags it was synced with. */
  const results: Array<Compared & { flags: ProxyFlags }> = [];

  it(`generated scenarios (seed ${SEED}): explain's verdict, endpoints and masquerade are what real connections get`, async () => {
    const started = performance.now();
    const all: Compared[] = [];
    const lines: string[] = [];
    for (const group of groups) {
      await programGroup(sb, group);
      const flows = await flowCases(sb, group);
      const compared = await compareGroup(sb, flows, (qs) => explainInNode(sb.nodeNsPath, qs));
      all.push(...compared);
      results.push(...compared.map((c) => ({ ...c, flags: group.flags })));
      const bad = compared.filter((c) => c.disagreement);
      lines.push(`${describeFlags(group.flags)}: ${group.scenarios.length} scenarios, ${compared.length} flows, ${compared.length - bad.length} agreed`);
      for (const s of group.scenarios) {
        const mine = bad.filter((c) => c.flow.scenario === s);
        if (mine.length) lines.push(`  ${describeScenario(s)}`, ...mine.map((c) => `    ${describeCompared(c)}`));
      }
    }
    const agreed = all.filter((c) => !c.disagreement).length;
    const tally = (key: (c: Compared) => string) => {
      const m = new Map<string, number>();
      for (const c of all) m.set(key(c), (m.get(key(c)) ?? 0) + 1);
      return [...m].map(([k, n]) => `${k} ${n}`).join(', ');
    };
    const retried = all.filter((c) => c.retried);
    console.log([
      `explain vs the kernel: ${all.length} flows compared, ${agreed} agreed (${((performance.now() - started) / 1000).toFixed(0)} s)`,
      `  explain said: ${tally((c) => c.explanation.verdict)}`,
      `  connections: ${tally((c) => c.observed.fate)}`,
      `  sources: ${tally((c) => c.flow.source)}; source checked against masquerade on ${all.filter((c) => c.explanation.verdict === 'forwarded' && c.observed.fate === 'answered').length} forwarded flows (not where a pod reached itself)`,
      ...retried.map((c) => `  agreed on a second try (first: ${c.retried}): ${describeCompared(c)}`),
      ...lines,
    ].join('\n'));
    expect(all.filter((c) => c.disagreement).map((c) => describeCompared(c))).toEqual([]);
  }, 900_000);

  // explain is read from the kernel's rules: the connections agreeing with it does not say the rules do what
  // Kubernetes asks. The same connections, held to kube-proxy's semantics (test/helpers/service-semantics.ts).
  it('the same connections get what Kubernetes says (kube-proxy\'s semantics, from the scenarios alone)', () => {
    expect(results.length).toBeGreaterThan(0);
    const differ = results.flatMap((c) => {
      const want = expectedByKubernetes(sb, c.flags, c.flow);
      const d = disagreement(want, c.observed, flowContext(sb, c.flow));
      return d ? [`${describeScenario(c.flow.scenario)} [${describeFlags(c.flags)}]\n    ${describeCompared({ ...c, explanation: want, disagreement: d.replace(/^explain says/, 'Kubernetes says') }, 'Kubernetes')}`] : [];
    });
    console.log(`Kubernetes semantics vs the kernel: ${results.length} flows, ${results.length - differ.length} agreed`);
    expect(differ).toEqual([]);
  });
});
