import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, hostPort, type Sandbox } from '../../scripts/lib/sandbox';
import { runClient, runHold } from '../../scripts/lib/traffic';

const isRoot = process.getuid?.() === 0;
const inCI = process.env.CI === 'true';
const skipReason = isRoot ? '' : 'kernel tests need root (network namespaces); skipping test/kernel/sandbox.test.ts';
if (!isRoot && !inCI) console.warn(skipReason);

function netnsList(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

describe('environment', () => {
  it.runIf(!isRoot && inCI)('runs as root in CI', () => {
    expect.fail('CI=true but not root: kernel tests cannot run (network namespaces need root)');
  });
});

describe.skipIf(!isRoot)('sandbox', () => {
  let sb: Sandbox | undefined;
  afterAll(async () => {
    await sb?.destroy();
  });

  it('builds the topology and returns with every backend answering', { timeout: 60_000 }, async () => {
    sb = await createSandbox({ backends: 3 });
    expect(sb.backends.map((b) => b.name)).toEqual(['be0', 'be1', 'be2']);
    expect(sb.backends.map((b) => b.v4)).toEqual(['198.18.2.11', '198.18.2.12', '198.18.2.13']);
    expect(sb.backends.map((b) => b.v6)).toEqual(['fd00:2::11', 'fd00:2::12', 'fd00:2::13']);
    expect(sb.nodeNsPath).toBe(`/run/netns/${sb.nodeNs}`);
    const names = netnsList();
    for (const ns of [sb.clientNs, sb.nodeNs, sb.sinkNs, ...sb.backendNs]) expect(names).toContain(ns);
    const links = await sb.exec(sb.nodeNs, ['ip', '-br', 'link']);
    expect(links.code).toBe(0);
    for (const l of [sb.nodeIfaces.toClient, sb.nodeIfaces.bridge, sb.nodeIfaces.sink, ...sb.nodeIfaces.backends]) {
      expect(links.stdout).toMatch(new RegExp(`^${l}(@\\S+)?\\s+UP`, 'm'));
    }
    const fwd = await sb.exec(sb.nodeNs, ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);
    expect(fwd.stdout.split('\n').filter(Boolean)).toEqual(['1', '1']);
  });

  for (const proto of ['tcp', 'udp'] as const) {
    for (const fam of ['v4', 'v6'] as const) {
      it(`client reaches every backend directly over ${proto.toUpperCase()}/${fam} (routed, no NAT)`, async () => {
        if (!sb) throw new Error('no sandbox');
        for (const b of sb.backends) {
          const r = await runClient(sb, sb.clientNs, { proto, addr: b[fam], port: 8080, count: 5 });
          expect(r.errors).toEqual({});
          expect(r.ok).toBe(5);
          expect(r.counts).toEqual({ [b.name]: 5 });
          // no NAT: the backend sees the client's own address
          expect(r.sources).toEqual({ [sb.clientIP[fam]]: 5 });
        }
      });
    }
  }

  it('reports refusals and timeouts as error codes', async () => {
    if (!sb) throw new Error('no sandbox');
    const b = sb.backends[0]!;
    // nothing listens on 8081: TCP RST, UDP ICMP port unreachable
    const tcp = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: b.v4, port: 8081, count: 3 });
    expect(tcp).toMatchObject({ ok: 0, errors: { ECONNREFUSED: 3 } });
    expect(tcp.firstErrorMs).not.toBeNull();
    const udp = await runClient(sb, sb.clientNs, { proto: 'udp', addr: b.v6, port: 8081, count: 3 });
    expect(udp).toMatchObject({ ok: 0, errors: { ECONNREFUSED: 3 } });
    // the service range is routed by the node into the silent sink: no answer at all
    const svc = sb.serviceIP(1);
    for (const addr of [svc.v4, svc.v6]) {
      const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr, port: 80, count: 2, timeoutMs: 300 });
      expect(r).toMatchObject({ ok: 0, errors: { ETIMEDOUT: 2 } });
    }
  });

  it('routes the service range through the node\'s forward hook (a reject rule there answers)', async () => {
    if (!sb) throw new Error('no sandbox');
    const ruleset = [
      'table inet svp_sandbox_test {',
      '  chain fwd_reject {',
      '    type filter hook forward priority filter; policy accept;',
      `    ip daddr ${sb.serviceCIDR.v4} reject`,
      `    ip6 daddr ${sb.serviceCIDR.v6} reject`,
      '  }',
      '}',
      '',
    ].join('\n');
    const add = await sb.exec(sb.nodeNs, ['nft', '-f', '-'], { input: ruleset });
    expect(add.stderr).toBe('');
    try {
      const svc = sb.serviceIP(7);
      for (const addr of [svc.v4, svc.v6]) {
        for (const proto of ['tcp', 'udp'] as const) {
          // TCP + ICMP may need the SYN retransmission (~1 s), see client.js
          const r = await runClient(sb, sb.clientNs, { proto, addr, port: 80, count: 10, timeoutMs: 2500 });
          expect(r, `${proto} ${addr}`).toMatchObject({ ok: 0, errors: { ECONNREFUSED: 10 } });
        }
      }
    } finally {
      await sb.exec(sb.nodeNs, ['nft', 'delete', 'table', 'inet', 'svp_sandbox_test']);
    }
  });

  it('backends reach each other across the bridge', async () => {
    if (!sb) throw new Error('no sandbox');
    const [b0, b1] = [sb.backends[0]!, sb.backends[1]!];
    for (const fam of ['v4', 'v6'] as const) {
      const r = await runClient(sb, b0.ns, { proto: 'tcp', addr: b1[fam], port: 8080, count: 2 });
      expect(r).toMatchObject({ ok: 2, counts: { be1: 2 }, sources: { [b0[fam]]: 2 } });
    }
  });

  it('holds connections open (HOLD mode)', async () => {
    if (!sb) throw new Error('no sandbox');
    const b = sb.backends[1]!;
    const r = await runHold(sb, sb.clientNs, { addr: b.v6, port: 8080, count: 2, holdMs: 400, intervalMs: 50 });
    expect(r.errors).toEqual({});
    expect(r.ok).toBe(2);
    expect(r.counts).toEqual({ be1: 2 });
    expect(r.switched).toBe(0);
    expect(r.replies).toBeGreaterThanOrEqual(8);
  });

  it('stops and restarts a backend', async () => {
    if (!sb) throw new Error('no sandbox');
    const b = sb.backends[2]!;
    await sb.stopBackend(2);
    const down = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: b.v4, port: 8080 });
    expect(down.errors).toEqual({ ECONNREFUSED: 1 });
    await sb.restartBackend(2);
    const up = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: b.v4, port: 8080 });
    expect(up.counts).toEqual({ be2: 1 });
    expect(hostPort(b.v6, 8080)).toBe('[fd00:2::13]:8080');
  });

  it('destroy removes every namespace and process, and is idempotent', { timeout: 30_000 }, async () => {
    if (!sb) throw new Error('no sandbox');
    const mine = [sb.clientNs, sb.nodeNs, sb.sinkNs, ...sb.backendNs];
    const pids = sb.backends.map((b) => b.server.pid);
    await Promise.all([sb.destroy(), sb.destroy()]);
    await sb.destroy();
    const left = netnsList().filter((n) => mine.includes(n));
    expect(left).toEqual([]);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    await expect(sb.exec(sb.nodeNs, ['true'])).rejects.toThrow(/destroyed/);
  });
});
