// The ebpf mode with real traffic: the shipped example manifests programmed with the real CLI (`--mode ebpf`), the
// socket hooks attached to a cgroup of the test's own (every process of this machine is in the cgroup v2 root: the
// hooks must not touch them), and clients started inside that cgroup in the client namespace. What shows that the
// socket resolved the Service, not the nftables table: the backend sees the client's own address (the table would
// masquerade it: the client is outside the cluster CIDR), and the node holds no conntrack entry for the ClusterIP.
// A client outside the cgroup is the "from another machine" case: the nftables half serves it, masqueraded.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { sandboxCgroup } from '../../scripts/lib/sandbox-cgroup';
import { chiSquareUniform, countsFor, runClient, startHold } from '../../scripts/lib/traffic';
import { native } from '../../src/native';
import { REPO, svcplane } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('ebpf socket LB');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

/** One UDP exchange on an unconnected socket (sendto/recvfrom): the reply's source as the application sees it. */
const UDP_FROM = `
const dgram = require('dgram');
const [addr, port] = [process.argv[1], Number(process.argv[2])];
const s = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
const t = setTimeout(() => { console.log(JSON.stringify({ error: 'ETIMEDOUT' })); process.exit(0); }, 5000);
s.on('message', (m, r) => { clearTimeout(t); console.log(JSON.stringify({ from: r.address + ':' + r.port, reply: String(m).trim() })); s.close(); });
s.on('error', (e) => { clearTimeout(t); console.log(JSON.stringify({ error: e.code })); process.exit(0); });
// Node reports a send error only to a callback (no 'error' event for it).
s.send('ping\\n', port, addr, (e) => { if (e) { clearTimeout(t); console.log(JSON.stringify({ error: e.code })); process.exit(0); } });
`;

/** A TCP connection's getpeername() and its greeting. */
const TCP_PEER = `
const net = require('net');
const s = net.connect(Number(process.argv[2]), process.argv[1]);
s.setEncoding('utf8');
s.on('connect', () => { s.once('data', (d) => { console.log(JSON.stringify({ peer: s.remoteAddress + ':' + s.remotePort, reply: d.trim() })); s.destroy(); }); });
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));
s.setTimeout(3000, () => { console.log(JSON.stringify({ error: 'ETIMEDOUT' })); s.destroy(); });
`;

describe.runIf(haveRoot)('ebpf mode: socket-level load balancing, real traffic', () => {
  let sb: Sandbox;
  let cgroup: string;
  let removeCgroup: (() => void) | undefined;
  let bpfRoot: string;
  let clusterCIDR: string;
  const ebpfFlags = () => ['--mode', 'ebpf', '--netns', sb.nodeNsPath, '--cgroup-root', cgroup, '--bpf-root', bpfRoot];
  const inCgroup = async (script: string, ...args: string[]) => {
    const r = await sb.exec(sb.clientNs, [process.execPath, '-e', script, ...args], { cgroup, timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, string | number>;
  };
  const conntrackTo = async (addr: string) => (await sb.exec(sb.nodeNs, ['conntrack', '-L', '--orig-dst', addr])).stdout.split('\n').filter((l) => l.includes(addr));

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    clusterCIDR = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    ({ cgroup, bpfRoot, remove: removeCgroup } = sandboxCgroup(sb.prefix));
    // The CLI opens its sockets in the node namespace itself (--netns): `ip netns exec` would hide /sys/fs/bpf and the cgroup.
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json', ...ebpfFlags()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { operations: number; summary: Record<string, number> };
    expect(summary.summary['bpf map writes']).toBeGreaterThan(0);
  });
  afterAll(async () => {
    if (sb && bpfRoot && fs.existsSync(bpfRoot)) await svcplane(['cleanup', ...ebpfFlags()]);
    await sb?.destroy();
    removeCgroup?.();
  });

  it('spreads 600 TCP connections from the cgroup over the 3 ready endpoints, unNATed (the backend sees the client)', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 600, cgroup });
    expect(r.errors).toEqual({});
    expect(r.ok).toBe(600);
    expect(chiSquareUniform(countsFor(r, ['be0', 'be1', 'be2'])).pValue).toBeGreaterThan(0.001);
    expect(Object.keys(r.sources)).toEqual([sb.clientIP.v4]);
  });

  it('leaves no conntrack entry for the ClusterIP (the node sees a plain client-to-pod flow); the nftables path does', async () => {
    await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 20, cgroup });
    expect(await conntrackTo('198.18.100.10')).toEqual([]);
    const toPods = (await sb.exec(sb.nodeNs, ['conntrack', '-L', '--orig-src', sb.clientIP.v4])).stdout;
    expect(sb.backends.some((b) => toPods.includes(`dst=${b.v4}`))).toBe(true);
    // A client outside the cgroup (as traffic from another machine) goes through the table: DNAT, one entry each.
    const off = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 5 });
    expect(off.ok).toBe(5);
    expect(Object.keys(off.sources)).toEqual([sb.podGateway.v4]);
    expect((await conntrackTo('198.18.100.10')).length).toBeGreaterThan(0);
  });

  it('shows the ClusterIP as the peer of a TCP socket (getpeername) and as the source of UDP replies (recvmsg)', async () => {
    const tcp = await inCgroup(TCP_PEER, '198.18.100.10', '80');
    expect(tcp.peer).toBe('198.18.100.10:80');
    expect(String(tcp.reply)).toMatch(/^be[012] /);
    const udp = await inCgroup(UDP_FROM, '198.18.100.10', '53');
    expect(udp.from).toBe('198.18.100.10:53');
    expect(String(udp.reply)).toMatch(/^be[012] /);
  });

  it('serves the IPv6 ClusterIP and answers UDP over IPv6', async () => {
    const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: 'fd00:100::10', port: 80, count: 60, cgroup });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.sources)).toEqual([sb.clientIP.v6]);
    const udp = await inCgroup(UDP_FROM, 'fd00:100::10', '53');
    expect(udp.from).toBe('fd00:100::10:53');
  });

  it('refuses a Service port without endpoints at once with ECONNREFUSED', async () => {
    const r = await inCgroup(TCP_PEER, '198.18.100.12', '80');
    expect(r.error).toBe('ECONNREFUSED');
    // Refused by connect() itself: no SYN reached the node (the table's reject would have made an entry).
    expect(await conntrackTo('198.18.100.12')).toEqual([]);
  });

  it('explain says what the socket does with a connection from this node, beside the table\'s path', async () => {
    const r = await svcplane(['explain', '--mode', 'ebpf', '--netns', sb.nodeNsPath, '--bpf-root', bpfRoot, '--output', 'json', 'TCP', '198.18.100.10:80']);
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout) as { verdict: string; socket: { verdict: string; endpoints: Array<{ address: string }> } };
    expect(e.verdict).toBe('forwarded');
    expect(e.socket.verdict).toBe('translated');
    expect(e.socket.endpoints.map((p) => p.address).sort()).toEqual(sb.backends.map((b) => b.v4).sort());
    const refused = await svcplane(['explain', '--mode', 'ebpf', '--netns', sb.nodeNsPath, '--bpf-root', bpfRoot, 'TCP', '198.18.100.12:80']);
    expect(refused.stdout).toContain('on node    refused at connect()');
  });

  it('refuses a --cgroup-root that is not a cgroup v2 directory: exit 2, nothing pinned', async () => {
    const other = `${bpfRoot}-x`;
    const r = await svcplane(['sync', '--once', '--mode', 'ebpf', '--manifests', EXAMPLES, '--netns', sb.nodeNsPath, '--cgroup-root', os.tmpdir(), '--bpf-root', other]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a cgroup v2 directory');
    expect(fs.existsSync(other)).toBe(false);
  });

  it('status reads the socket LB back from the kernel', async () => {
    const r = await svcplane(['status', '--output', 'json', ...ebpfFlags()]);
    expect(r.code).toBe(0);
    const st = JSON.parse(r.stdout) as { mode: string; socketLB: { links: number; frontends: number }; rows: Array<{ address: string; port: number; socket?: string }> };
    expect(st.mode).toBe('ebpf');
    expect(st.socketLB.links).toBe(8);
    expect(st.socketLB.frontends).toBeGreaterThanOrEqual(5);
    expect(st.rows.find((x) => x.address === '198.18.100.10' && x.port === 80)?.socket).toBe('translated');
    expect(st.rows.find((x) => x.address === '198.18.100.12' && x.port === 80)?.socket).toBe('refused');
    const text = await svcplane(['status', ...ebpfFlags()]);
    expect(text.stdout).toMatch(/socket LB: 8 links, \d+ frontends in the maps/);
  });

  it('NodePort: from the cgroup on a node address, translated at the socket; from the client namespace, by the table', async () => {
    const local = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 30, cgroup });
    expect(local.errors).toEqual({});
    expect(Object.keys(local.sources)).toEqual([sb.clientIP.v4]);
    const off = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 30 });
    expect(off.errors).toEqual({});
    expect(off.ok).toBe(30);
  });

  it('an endpoint change leaves open connections alone; new ones go to the endpoint left, none refused meanwhile', async () => {
    const hold = startHold(sb, sb.clientNs, { addr: '198.18.100.10', port: 80, count: 6, holdMs: 120_000, cgroup });
    await hold.established(30_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svp-ebpf-'));
    try {
      for (const f of fs.readdirSync(EXAMPLES)) fs.copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
      const web = fs.readFileSync(path.join(dir, 'web.yaml'), 'utf8');
      const onlyBe0 = web.replace(/(addresses: \[198\.18\.2\.1[23]\]\n\s+conditions: )\{[^}]*\}/g, '$1{ ready: false, serving: false, terminating: false }');
      expect(onlyBe0).not.toBe(web);
      fs.writeFileSync(path.join(dir, 'web.yaml'), onlyBe0);
      // Connections made all through the change: each gets an endpoint (the old set or the new), never a refusal.
      const during = runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 400, concurrency: 4, cgroup });
      const r = await svcplane(['sync', '--once', '--manifests', dir, '--cluster-cidr', clusterCIDR, ...ebpfFlags()]);
      expect(r.code).toBe(0);
      expect((await during).errors).toEqual({});
      const after = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 60, cgroup });
      expect(after.counts).toEqual({ be0: 60 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const held = await hold.stop();
    expect(held.errors).toEqual({});
    expect(held.replies).toBeGreaterThan(0);
    await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, ...ebpfFlags()]);
  });

  it('a restart (every `sync --once` is one) adopts the links and maps: same links, nothing rewritten, a held connection goes on', async () => {
    const linkIds = () => native().ebpfPinnedLinks(path.join(bpfRoot, 'links')).map((l) => l.linkId).sort();
    const before = linkIds();
    expect(before).toHaveLength(8);
    const hold = startHold(sb, sb.clientNs, { addr: '198.18.100.10', port: 80, count: 1, holdMs: 120_000, cgroup });
    await hold.established(30_000);
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json', ...ebpfFlags()]);
    expect(r.code).toBe(0);
    const summary = (JSON.parse(r.stdout) as { summary: Record<string, number> }).summary;
    expect(summary['bpf map writes']).toBeUndefined();
    expect(summary['bpf map deletes']).toBeUndefined();
    expect(linkIds()).toEqual(before);
    const fresh = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 30, cgroup });
    expect(Object.keys(fresh.sources)).toEqual([sb.clientIP.v4]);
    const held = await hold.stop();
    expect(held.errors).toEqual({});
    expect(held.replies).toBeGreaterThan(0);
  });

  it('sessionAffinity ClientIP keeps a client on one endpoint until the timeout; Local policies; weights; UDP refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svp-ebpf-'));
    const svc = (name: string, ip: string, spec: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo${name === 'weighted' ? `, annotations: { svcplane.io/endpoint-weights: "${sb.backends[0].v4}=0, ${sb.backends[1].v4}=3" }` : ''} }
spec: { type: ClusterIP, clusterIP: ${ip}, ports: [{ name: http, protocol: TCP, port: 80, targetPort: 8080 }]${spec} }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-x, namespace: demo, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: http, protocol: TCP, port: 8080 }]
endpoints:
${sb.backends.map((b, i) => `  - { addresses: [${b.v4}], conditions: { ready: true }, nodeName: ${name === 'local-none' || i > 0 ? 'node-b' : 'node-a'} }`).join('\n')}
`;
    try {
      fs.writeFileSync(path.join(dir, 'svc.yaml'), [
        svc('sticky', '198.18.100.20', ', sessionAffinity: ClientIP, sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } }'),
        svc('local', '198.18.100.21', ', internalTrafficPolicy: Local'),
        svc('local-none', '198.18.100.22', ', internalTrafficPolicy: Local'),
        svc('weighted', '198.18.100.23', ''),
        'apiVersion: v1\nkind: Service\nmetadata: { name: udp-none, namespace: demo }\nspec: { type: ClusterIP, clusterIP: 198.18.100.24, ports: [{ name: dns, protocol: UDP, port: 53 }] }\n',
      ].join('---\n'));
      const r = await svcplane(['sync', '--once', '--manifests', dir, '--node-name', 'node-a', '--cluster-cidr', clusterCIDR, ...ebpfFlags()]);
      expect(r.stderr).toBe('');
      const sticky = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.20', port: 80, count: 40, cgroup });
      expect(Object.values(sticky.counts)).toEqual([40]);
      // The remembered endpoint is forgotten 2 s after the last connection: some later connection goes elsewhere.
      const first = Object.keys(sticky.counts)[0];
      let moved = false;
      for (let i = 0; i < 30 && !moved; i++) {
        await new Promise((res) => setTimeout(res, 2500));
        const again = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.20', port: 80, count: 1, cgroup });
        moved = Object.keys(again.counts)[0] !== first;
      }
      expect(moved).toBe(true);
      const local = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.21', port: 80, count: 30, cgroup });
      expect(local.counts).toEqual({ be0: 30 });
      // No endpoint on this node under a Local policy: not in the maps, so the table decides: dropped, not refused.
      const none = await inCgroup(TCP_PEER, '198.18.100.22', '80');
      expect(none.error).toBe('ETIMEDOUT');
      // UDP without endpoints: sendto() itself fails (kube-proxy's reject would only reach a connected socket, later).
      expect((await inCgroup(UDP_FROM, '198.18.100.24', '53')).error).toBe('ECONNREFUSED');
      const weighted = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.23', port: 80, count: 400, cgroup });
      expect(weighted.counts.be0).toBeUndefined();
      expect(weighted.counts.be1).toBeGreaterThan(weighted.counts.be2 * 1.8);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, ...ebpfFlags()]);
    }
  });

  it('switching to the nftables mode removes the socket LB (the table, shared, stays); switching back restores it', async () => {
    const flags = ['--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--netns', sb.nodeNsPath, '--bpf-root', bpfRoot, '--cgroup-root', cgroup];
    const r = await svcplane(['sync', '--once', '--mode', 'nftables', ...flags]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('socket LB removed');
    expect(fs.existsSync(bpfRoot)).toBe(false);
    const nated = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 10, cgroup });
    expect(Object.keys(nated.sources)).toEqual([sb.podGateway.v4]);
    expect((await svcplane(['sync', '--once', '--mode', 'ebpf', ...flags])).code).toBe(0);
    const direct = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 10, cgroup });
    expect(Object.keys(direct.sources)).toEqual([sb.clientIP.v4]);
  });

  // Last: it takes everything away.
  it('cleanup --mode ebpf detaches the links and unpins the maps it made, and removes the table', async () => {
    const r = await svcplane(['cleanup', '--output', 'json', ...ebpfFlags()]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'ebpf', removed: true });
    expect(fs.existsSync(bpfRoot)).toBe(false);
    expect((await sb.exec(sb.nodeNs, ['nft', 'list', 'tables'])).stdout).not.toContain('svcplane');
    // Nothing of svcplane's acts on the cgroup's sockets any more: the connection now goes untranslated, and the
    // node (with no table) routes the Service range to its sink, where nothing answers.
    const after = await inCgroup(TCP_PEER, '198.18.100.12', '80');
    expect(after.error).not.toBe('ECONNREFUSED');
  });
});
