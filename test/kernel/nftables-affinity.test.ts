// sessionAffinity ClientIP in the nftables dataplane, with real traffic: a client lands on one endpoint for as
// long as it keeps coming back within the timeout, other clients spread, the kernel forgets a client after the
// timeout, and the remembered clients are the kernel's own (a second sync leaves them alone). nft reads it all.
//
// Timing: stickiness and "a second sync leaves them alone" use a Service with a 1 h timeout, so no remembered
// client can expire while the test runs, however slow the machine (a TCG guest, a loaded host). Only "the kernel
// forgets" uses a Service with a short timeout, and it polls for that with a generous bound.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { countsFor, runClient } from '../../scripts/lib/traffic';
import { svcplane, svcplaneOk } from '../helpers/cli';
import { requireRoot } from '../helpers/root';
import { endpointSlice } from '../helpers/web-manifest';

const haveRoot = requireRoot('nftables affinity');
const BE = ['be0', 'be1', 'be2'];
const VIP = '198.18.100.40';
const STICKY_S = 3600;
const SHORT_VIP = '198.18.100.41';
const SHORT_S = 5;
const SOURCES = Array.from({ length: 8 }, (_, i) => `198.18.1.${20 + i}`);
/** How long the kernel may take to drop an expired element (its garbage collection runs in the background). */
const FORGET_BOUND_MS = 60_000;

/** nft's durations ("1h", "59m58s996ms", "4s20ms") in ms. */
function durationMs(s: string): number {
  const units: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  let ms = 0;
  for (const [, n, u] of s.matchAll(/(\d+)(ms|d|h|m|s)/g)) ms += Number(n) * units[u];
  return ms;
}

/** The elements `nft list set` shows, by key (everything before " timeout"/" expires"): timeout and expiry in ms. */
function elements(listing: string): Map<string, { timeoutMs?: number; expiresMs?: number }> {
  const body = /elements = \{([^}]*)\}/.exec(listing)?.[1] ?? '';
  const out = new Map<string, { timeoutMs?: number; expiresMs?: number }>();
  for (const raw of body.split(',')) {
    const e = raw.replace(/\s+/g, ' ').trim();
    if (!e) continue;
    const key = e.replace(/ (timeout|expires) .*$/, '');
    const t = / timeout (\S+)/.exec(e)?.[1];
    const x = / expires (\S+)/.exec(e)?.[1];
    out.set(key, { timeoutMs: t === undefined ? undefined : durationMs(t), expiresMs: x === undefined ? undefined : durationMs(x) });
  }
  return out;
}

describe.runIf(haveRoot)('nftables dataplane: sessionAffinity ClientIP (real traffic)', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-aff-'));
  const sync = async () => {
    return JSON.parse(await svcplaneOk(['sync', '--once', '--manifests', dir, '--output', 'json'], { netns: sb.nodeNs })) as { operations: number };
  };
  const nft = async (...args: string[]) => (await sb.exec(sb.nodeNs, ['nft', ...args])).stdout;
  const affinity = async () => elements(await nft('list', 'set', 'ip', 'svcplane', 'affinity'));
  const service = (name: string, ip: string, seconds: number, nodePort?: number) => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo}
spec:
  type: ${nodePort ? 'NodePort' : 'ClusterIP'}
  clusterIP: ${ip}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: ${seconds}}}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080${nodePort ? `, nodePort: ${nodePort}` : ''}}]
---
${endpointSlice(name, 'demo', sb.backends.map((b) => b.v4))}`;

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    // More client addresses, so "other clients" exist.
    for (const a of SOURCES) await sb.exec(sb.clientNs, ['ip', 'addr', 'add', `${a}/24`, 'dev', 'eth0']);
    fs.writeFileSync(path.join(dir, 'sticky.yaml'), service('sticky', VIP, STICKY_S, 30140));
    await sync();
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
    expect(np.errors).toEqual({});
    expect(countsFor(np, BE).filter((n) => n > 0)).toEqual([10]);
    // The kernel remembers the clients, with their timeout; nft lists the rules and the set.
    const set = await nft('list', 'set', 'ip', 'svcplane', 'affinity');
    expect(set).toContain(`${SOURCES[0]} . ${VIP} . tcp . 80`);
    expect(set).toMatch(/expires/);
    const rules = await sb.exec(sb.nodeNs, ['nft', '-j', 'list', 'ruleset']);
    expect(rules.code, rules.stderr).toBe(0);
    // explain reads the remembered entry back from the kernel: the endpoint this client was sent to.
    const e = await svcplane(['explain', 'TCP', `${VIP}:80`, '--from', SOURCES[0], '--output', 'json'], { netns: sb.nodeNs });
    expect(e.code, e.stderr).toBe(0);
    const why = (JSON.parse(e.stdout) as { why: string[] }).why.join(' | ');
    expect(why).toContain(`sessionAffinity ClientIP, ${STICKY_S} s`);
    expect(why).toContain(`${SOURCES[0]} is remembered on slot`);
    expect(why).toContain(`(${sb.backends[first].v4}:`);
  });

  it('a second sync leaves the remembered clients alone: same elements, their expiry still counting down', async () => {
    const before = await affinity();
    const mine = [...before.keys()].filter((k) => k.includes(` . ${VIP} . tcp . 80`));
    expect(mine.length, [...before.keys()].join('\n')).toBe(SOURCES.length);
    const t0 = performance.now();
    expect((await sync()).operations).toBe(0);
    const after = await affinity();
    const elapsed = performance.now() - t0;
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const k of mine) {
      expect(before.get(k)!.timeoutMs, k).toBe(STICKY_S * 1000);
      const b = before.get(k)!.expiresMs!;
      const a = after.get(k)!.expiresMs!;
      // Not re-armed: a sync that re-added an element (or refreshed its timeout) would have left it at least
      // the full timeout minus the time since the sync began; untouched, it counts down from the client's last
      // connection in the previous test, which is older than that.
      expect(a, k).toBeLessThanOrEqual(b);
      expect(a, k).toBeLessThan(STICKY_S * 1000 - elapsed);
    }
  });

  it('the kernel forgets a client after the timeout, with no sync involved', async () => {
    fs.writeFileSync(path.join(dir, 'short.yaml'), service('short', SHORT_VIP, SHORT_S));
    expect((await sync()).operations).toBeGreaterThan(0);
    const key = `${SOURCES[1]} . ${SHORT_VIP} . tcp . 80 . `;
    const find = async () => [...(await affinity()).entries()].find(([k]) => k.startsWith(key))?.[1];
    // Seen present first: connect, then look. The element lives only SHORT_S after the connection, and on a loaded
    // machine (or the TCG guest) starting nft can take longer than that; each round's connection re-arms it, so a
    // further round retries the look, not the behaviour under test.
    let seen: { timeoutMs?: number; expiresMs?: number } | undefined;
    let lastConnect = 0;
    const deadline = Date.now() + FORGET_BOUND_MS;
    while (!seen && Date.now() < deadline) {
      lastConnect = performance.now();
      const r = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: SHORT_VIP, port: 80, count: 1, bind: SOURCES[1] });
      expect(r.errors).toEqual({});
      seen = await find();
    }
    expect(seen, `${key}... never listed`).toBeDefined();
    expect(seen!.timeoutMs).toBe(SHORT_S * 1000);
    // Then gone, with no sync and no traffic: the kernel's own timeout removed it, and not before it ran out (50 ms:
    // the kernel counts in jiffies).
    let present = true;
    const goneBy = Date.now() + FORGET_BOUND_MS;
    while (present && Date.now() < goneBy) {
      present = (await find()) !== undefined;
      if (present) await new Promise((r) => setTimeout(r, 250));
    }
    expect(present, `${key}... still listed ${FORGET_BOUND_MS} ms later`).toBe(false);
    expect(performance.now() - lastConnect).toBeGreaterThanOrEqual(SHORT_S * 1000 - 50);
    // The clients of the 1 h Service are still remembered: the sync above that added rules left them alone too.
    expect([...(await affinity()).keys()].some((k) => k.startsWith(`${SOURCES[0]} . ${VIP} . tcp . 80 . `))).toBe(true);
  });

  it('status shows the affinity timeout', async () => {
    const st = JSON.parse((await svcplane(['status', '--output', 'json'], { netns: sb.nodeNs })).stdout) as { rows: Array<{ address: string; persistentSeconds?: number }> };
    expect(st.rows.find((r) => r.address === VIP)?.persistentSeconds).toBe(STICKY_S);
    expect(st.rows.find((r) => r.address === SHORT_VIP)?.persistentSeconds).toBe(SHORT_S);
  });
});
