// sessionAffinity ClientIP in the nftables dataplane, with real traffic: a client lands on one endpoint for as
// long as it keeps coming back within the timeout, other clients spread, the kernel forgets a client after the
// timeout, and the remembered clients are the kernel's own (a second sync leaves them alone). nft reads it all.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../scripts/lib/traffic';
import { svcplane, svcplaneOk } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables affinity');
const BE = ['be0', 'be1', 'be2'];
const VIP = '198.18.100.40';
const SOURCES = Array.from({ length: 8 }, (_, i) => `198.18.1.${20 + i}`);

describe.runIf(haveRoot)('nftables dataplane: sessionAffinity ClientIP (real traffic)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-aff-'));
  const sync = () => {
    return JSON.parse(svcplaneOk(['sync', '--once', '--manifests', dir, '--output', 'json'], { netns: sb.nodeNs })) as { operations: number };
  };
  const nft = async (...args: string[]) => (await sb.exec(sb.nodeNs, ['nft', ...args])).stdout;

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    // More client addresses, so "other clients" exist.
    for (const a of SOURCES) await sb.exec(sb.clientNs, ['ip', 'addr', 'add', `${a}/24`, 'dev', 'eth0']);
    fs.writeFileSync(path.join(dir, 'sticky.yaml'), `apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: demo}
spec:
  type: NodePort
  clusterIP: ${VIP}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 3}}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30140}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sticky-1, namespace: demo, labels: {kubernetes.io/service-name: sticky}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
${sb.backends.map((b) => `  - addresses: [${b.v4}]`).join('\n')}
`);
    sync();
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('each client stays on one endpoint (ClusterIP and NodePort); different clients spread', async () => {
    const chosen = new Set<number>();
    let first = -1;
    for (const bind of SOURCES) {
      const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: VIP, port: 80, count: 10, concurrency: 1, bind });
      expect(r.errors).toEqual({});
      const counts = countsFor(r, BE);
      expect(counts.filter((n) => n > 0), `${bind}: ${counts}`).toEqual([10]);
      chosen.add(counts.findIndex((n) => n > 0));
      if (bind === SOURCES[0]) first = counts.findIndex((n) => n > 0);
    }
    expect(chosen.size).toBeGreaterThan(1);
    const np = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30140, count: 10, concurrency: 1, bind: SOURCES[0] });
    expect(countsFor(np, BE).filter((n) => n > 0)).toEqual([10]);
    // The kernel remembers the clients, with their timeout; nft lists the rules and the set.
    const set = await nft('list', 'set', 'ip', 'svcplane', 'affinity');
    expect(set).toContain(`${SOURCES[0]} . ${VIP} . tcp . 80`);
    expect(set).toMatch(/expires/);
    const rules = await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset']);
    expect(rules.code, rules.stderr).toBe(0);
    // explain reads the remembered entry back from the kernel: the endpoint this client was sent to.
    const e = svcplane(['explain', 'TCP', `${VIP}:80`, '--from', SOURCES[0], '--output', 'json'], { netns: sb.nodeNs });
    expect(e.code, e.stderr).toBe(0);
    const why = (JSON.parse(e.stdout) as { why: string[] }).why.join(' | ');
    expect(why).toContain('sessionAffinity ClientIP, 3 s');
    expect(why).toContain(`${SOURCES[0]} is remembered on slot`);
    expect(why).toContain(`(${sb.backends[first].v4}:`);
  });

  it('a second sync leaves the remembered clients alone; the kernel forgets them after the timeout', async () => {
    expect(sync().operations).toBe(0);
    expect(await nft('list', 'set', 'ip', 'svcplane', 'affinity')).toContain(SOURCES[0]);
    await new Promise((r) => setTimeout(r, 4500));
    expect(await nft('list', 'set', 'ip', 'svcplane', 'affinity')).not.toContain(SOURCES[0]);
  });

  it('status shows the affinity timeout', () => {
    const st = JSON.parse(svcplane(['status', '--output', 'json'], { netns: sb.nodeNs }).stdout) as { rows: Array<{ address: string; persistentSeconds?: number }> };
    expect(st.rows.find((r) => r.address === VIP)?.persistentSeconds).toBe(3);
  });
});
