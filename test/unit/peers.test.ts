// The benchmark's peer inputs: kube-proxy-shaped nft / iptables-restore generators (pure checks), and, as
// root, loading them for real with nft -f, iptables-legacy-restore and iptables-nft-restore in a fresh netns.

import * as fs from 'node:fs';
import { describe, it, expect } from 'vitest';
import { sha256Base32 } from '../../src/bench/peers/hash';
import {
  iptablesEndpointChain,
  iptablesServiceChain,
  KUBE_PROXY_IPTABLES_RESTORE_FLAGS,
  kubeProxyIptablesRestore,
} from '../../src/bench/peers/kubeproxy-iptables';
import {
  goMarkString,
  kubeProxyNftablesRuleset,
  nftEndpointChainBase,
  nftServiceChainBase,
} from '../../src/bench/peers/kubeproxy-nftables';
import { execInNetns, runPeerInNetns } from '../../src/bench/peers/exec';
import { loadPeer } from '../../src/bench/peers/load';
import { inFreshNetns } from '../../src/bench/node';
import { BenchService, makeServices, MAX_SERVICES, POD_CIDR, TargetServiceSpec } from '../../src/bench/shape';

const TARGET: TargetServiceSpec = { clusterIP: '198.19.0.10', port: 80, endpoints: [{ ip: '198.18.0.2', port: 8080 }] };

const lines = (text: string): string[] => text.split('\n');
const count = (text: string, re: RegExp): number => lines(text).filter((l) => re.test(l)).length;

describe('makeServices', () => {
  it('is deterministic, with distinct ClusterIPs and the target last', () => {
    const a = makeServices(500, 3, { target: TARGET });
    const b = makeServices(500, 3, { target: TARGET });
    expect(a).toEqual(b);
    expect(a).toHaveLength(500);
    expect(new Set(a.map((s) => s.clusterIP)).size).toBe(500);
    const last = a[a.length - 1] as BenchService;
    expect(last.clusterIP).toBe(TARGET.clusterIP);
    expect(last.endpoints).toEqual(TARGET.endpoints);
    expect(a.slice(0, -1).every((s) => s.endpoints.length === 3 && s.protocol === 'TCP')).toBe(true);
  });

  it('keeps endpoint IPs distinct up to the pool size, then reuses them', () => {
    const small = makeServices(10000, 2);
    expect(new Set(small.flatMap((s) => s.endpoints.map((e) => e.ip))).size).toBe(20000);
    const big = makeServices(5000, 50);
    const ips = big.flatMap((s) => s.endpoints.map((e) => e.ip));
    expect(ips).toHaveLength(250000);
    expect(new Set(ips).size).toBe(32512);
    // but within one Service they are distinct
    expect(big.every((s) => new Set(s.endpoints.map((e) => e.ip)).size === 50)).toBe(true);
  });

  it('fits 44k Services and refuses more than the address plan holds', () => {
    const s = makeServices(44000, 1);
    expect(new Set(s.map((x) => x.clusterIP)).size).toBe(44000);
    expect(() => makeServices(MAX_SERVICES + 1, 1)).toThrow();
  });

  it('allocates NodePorts inside the range only', () => {
    const s = makeServices(3000, 1, { withNodePorts: true });
    const np = s.filter((x) => x.nodePort !== undefined).map((x) => x.nodePort as number);
    expect(np).toHaveLength(2768);
    expect(Math.min(...np)).toBe(30000);
    expect(Math.max(...np)).toBe(32767);
    expect(makeServices(3, 1).every((x) => x.nodePort === undefined)).toBe(true);
  });
});

describe('kube-proxy chain-name hashing', () => {
  // Vectors from kube-proxy's own unit tests.
  const svc1: BenchService = {
    namespace: 'ns1', name: 'svc1', clusterIP: '172.30.0.41', port: 80, protocol: 'TCP',
    endpoints: [{ ip: '10.180.0.1', port: 80 }],
  };
  it('matches iptables mode', () => {
    expect(iptablesServiceChain('KUBE-SVC-', svc1)).toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(iptablesEndpointChain(svc1, { ip: '10.180.0.1', port: 80 })).toBe('KUBE-SEP-SXIVWICOYRO3J4NJ');
  });
  it('matches nftables mode', () => {
    expect(nftServiceChainBase(svc1)).toBe('ULMVA6XW-ns1/svc1/tcp/p80');
    expect(nftEndpointChainBase(svc1, { ip: '10.180.0.1', port: 80 })).toBe('5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
    expect(sha256Base32('', 16)).toBe('4OYMIQUY7QOBJGX3');
  });
  it('formats the masquerade mark as Go %#08x', () => {
    expect(goMarkString(14)).toBe('0x00004000');
  });
});

describe('kubeProxyNftablesRuleset', () => {
  const N = 20;
  const E = 3;
  const svcs = makeServices(N, E, { withNodePorts: true, target: { ...TARGET, nodePort: 31000 } });
  const text = kubeProxyNftablesRuleset(svcs);

  it('sets up the table, base chains, sets and maps as kube-proxy does', () => {
    const l = lines(text);
    expect(l[0]).toBe('add table ip kube-proxy { comment "rules for kube-proxy" ; }');
    for (const bc of [
      'filter-prerouting { type filter hook prerouting priority -110 ; }',
      'filter-input { type filter hook input priority -110 ; }',
      'filter-forward { type filter hook forward priority -110 ; }',
      'filter-output { type filter hook output priority -110 ; }',
      'filter-output-post-dnat { type filter hook output priority -90 ; }',
      'nat-prerouting { type nat hook prerouting priority -100 ; }',
      'nat-output { type nat hook output priority -100 ; }',
      'nat-postrouting { type nat hook postrouting priority 100 ; }',
    ]) {
      expect(l).toContain(`add chain ip kube-proxy ${bc}`);
    }
    expect(l).toContain('add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }');
    expect(l).toContain('add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }');
    expect(l).toContain('add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips');
    expect(l).toContain(
      'add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports',
    );
    expect(l).toContain('add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services');
    expect(l).toContain('add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00004000');
    expect(l).toContain('add rule ip kube-proxy masquerading masquerade fully-random');
    expect(l).toContain('add rule ip kube-proxy nat-prerouting jump services');
    expect(l).toContain('add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check');
  });

  it('writes one service chain, E endpoint chains and one external chain per NodePort Service', () => {
    expect(count(text, /^add chain ip kube-proxy service-[A-Z2-7]{8}-/)).toBe(N);
    expect(count(text, /^add chain ip kube-proxy endpoint-[A-Z2-7]{8}-/)).toBe((N - 1) * E + 1);
    expect(count(text, /^add chain ip kube-proxy external-/)).toBe(N);
    expect(count(text, /^add rule ip kube-proxy service-\S+ numgen random mod \d+ vmap \{/)).toBe(N);
    expect(count(text, /^add rule ip kube-proxy service-\S+ ip daddr \S+ tcp dport 80 ip saddr != 198\.18\.0\.0\/17 jump mark-for-masquerade$/)).toBe(N);
    expect(count(text, /^add rule ip kube-proxy endpoint-\S+ ip saddr \S+ jump mark-for-masquerade$/)).toBe((N - 1) * E + 1);
    expect(count(text, /^add rule ip kube-proxy endpoint-\S+ meta l4proto tcp dnat to [\d.]+:\d+$/)).toBe((N - 1) * E + 1);
    expect(count(text, /^add element ip kube-proxy cluster-ips \{ [\d.]+ \}$/)).toBe(N);
    expect(count(text, /^add element ip kube-proxy service-ips \{ [\d.]+ \. tcp \. 80 : goto service-/)).toBe(N);
    expect(count(text, /^add element ip kube-proxy service-nodeports \{ tcp \. \d+ : goto external-/)).toBe(N);
  });

  it('writes the target Service exactly', () => {
    const target = svcs[svcs.length - 1] as BenchService;
    const sc = `service-${nftServiceChainBase(target)}`;
    const ec = `endpoint-${nftEndpointChainBase(target, { ip: '198.18.0.2', port: 8080 })}`;
    const l = lines(text);
    expect(sc).toMatch(/^service-[A-Z2-7]{8}-bench-target\/target\/tcp\/p80$/);
    expect(l).toContain(`add element ip kube-proxy service-ips { 198.19.0.10 . tcp . 80 : goto ${sc} }`);
    expect(l).toContain(`add rule ip kube-proxy ${sc} numgen random mod 1 vmap { 0 : goto ${ec} }`);
    expect(l).toContain(`add rule ip kube-proxy ${ec} ip saddr 198.18.0.2 jump mark-for-masquerade`);
    expect(l).toContain(`add rule ip kube-proxy ${ec} meta l4proto tcp dnat to 198.18.0.2:8080`);
  });

  it('sends Services without endpoints to reject-chain', () => {
    const t = kubeProxyNftablesRuleset([{ namespace: 'a', name: 'b', clusterIP: '198.19.1.1', port: 53, protocol: 'UDP', endpoints: [], nodePort: 30053 }]);
    expect(lines(t)).toContain('add element ip kube-proxy no-endpoint-services { 198.19.1.1 . udp . 53 comment "a/b:p53" : goto reject-chain }');
    expect(lines(t)).toContain('add element ip kube-proxy no-endpoint-nodeports { udp . 30053 comment "a/b:p53" : goto reject-chain }');
    expect(count(t, /^add chain ip kube-proxy (service|endpoint|external)-[A-Z2-7]{8}-/)).toBe(0);
  });
});

describe('kubeProxyIptablesRestore', () => {
  const N = 20;
  const E = 3;
  const svcs = makeServices(N, E, { withNodePorts: true, target: TARGET });
  const text = kubeProxyIptablesRestore(svcs);

  it('has the filter and nat sections with kube-proxy top-level chains', () => {
    const l = lines(text);
    expect(l[0]).toBe('*filter');
    expect(l.filter((x) => x === 'COMMIT')).toHaveLength(2);
    expect(l.indexOf('*nat')).toBeGreaterThan(l.indexOf('COMMIT'));
    for (const c of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL']) {
      expect(l.slice(0, l.indexOf('*nat'))).toContain(`:${c} - [0:0]`);
    }
    for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) {
      expect(l.slice(l.indexOf('*nat'))).toContain(`:${c} - [0:0]`);
    }
    expect(l).toContain('-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000');
    expect(l).toContain('-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN');
    expect(l).toContain('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT');
  });

  it('writes SVC / SEP / EXT chains and rules per Service', () => {
    const eps = (N - 1) * E + 1;
    expect(count(text, /^:KUBE-SVC-[A-Z2-7]{16} - \[0:0\]$/)).toBe(N);
    expect(count(text, /^:KUBE-SEP-[A-Z2-7]{16} - \[0:0\]$/)).toBe(eps);
    expect(count(text, /^:KUBE-EXT-[A-Z2-7]{16} - \[0:0\]$/)).toBe(N - 1); // the target has no NodePort here
    expect(count(text, /^-A KUBE-SERVICES -m comment --comment "\S+ cluster IP" -m tcp -p tcp -d [\d.]+ --dport 80 -j KUBE-SVC-/)).toBe(N);
    expect(count(text, /^-A KUBE-SVC-\S+ .* ! -s 198\.18\.0\.0\/17 -j KUBE-MARK-MASQ$/)).toBe(N);
    expect(count(text, /^-A KUBE-SVC-\S+ .*-j KUBE-SEP-/)).toBe(eps);
    expect(count(text, /-m statistic --mode random --probability 0\.3333333333 -j KUBE-SEP-/)).toBe(N - 1);
    expect(count(text, /-m statistic --mode random --probability 0\.5000000000 -j KUBE-SEP-/)).toBe(N - 1);
    expect(count(text, /^-A KUBE-SEP-\S+ .*-s [\d.]+ -j KUBE-MARK-MASQ$/)).toBe(eps);
    expect(count(text, /^-A KUBE-SEP-\S+ .*-m tcp -p tcp -j DNAT --to-destination [\d.]+:\d+$/)).toBe(eps);
    expect(count(text, /^-A KUBE-NODEPORTS -m comment --comment \S+ -m tcp -p tcp --dport \d+ -j KUBE-EXT-/)).toBe(N - 1);
    // small cluster: per-endpoint comments are kept
    expect(text).toContain(' -> 198.18.0.2:8080" -j KUBE-SEP-');
  });

  it('puts the target last in KUBE-SERVICES, before only the NodePort tail rule', () => {
    const ks = lines(text).filter((x) => x.startsWith('-A KUBE-SERVICES '));
    expect(ks[ks.length - 1]).toContain('-j KUBE-NODEPORTS');
    expect(ks[ks.length - 1]).toContain('NOTE: this must be the last rule in this chain');
    expect(ks[ks.length - 2]).toContain('-d 198.19.0.10 --dport 80');
    expect(ks[ks.length - 2]).toContain('bench-target/target:p80 cluster IP');
  });

  it('drops per-endpoint comments in large-cluster mode (> 1000 endpoints)', () => {
    const big = kubeProxyIptablesRestore(makeServices(600, 2));
    expect(big).not.toMatch(/ -> /);
    expect(big).toMatch(/^-A KUBE-SEP-[A-Z2-7]{16} -s [\d.]+ -j KUBE-MARK-MASQ$/m);
    expect(count(big, /^-A KUBE-SERVICES -m comment --comment "\S+ cluster IP"/)).toBe(600);
  });

  it('rejects Services without endpoints in the filter table', () => {
    const t = kubeProxyIptablesRestore([{ namespace: 'a', name: 'b', clusterIP: '198.19.1.1', port: 80, protocol: 'TCP', endpoints: [] }]);
    expect(lines(t)).toContain('-A KUBE-SERVICES -m comment --comment "a/b:p80 has no endpoints" -m tcp -p tcp -d 198.19.1.1 --dport 80 -j REJECT');
    expect(t).not.toMatch(/KUBE-SVC-/);
  });
});

// ---- Loading for real. Needs root (network namespaces, netfilter).
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const inCI = process.env.CI === 'true';
if (!isRoot) {
  console.warn(`peers.test: skipping the real-load tests: not root (uid ${process.getuid?.() ?? '?'})${inCI ? ' — FAILING because CI=true' : ''}`);
}

describe('peers load for real in a fresh netns (root)', () => {
  if (!isRoot) {
    if (inCI) {
      it('needs root in CI', () => {
        throw new Error('peers.test: the real-load tests need root, and CI=true');
      });
    } else {
      it.skip('needs root', () => undefined);
    }
    return;
  }

  const svcs = makeServices(50, 2, { withNodePorts: true, target: TARGET });
  /** Whether this process still holds the namespace whose inode is `ino` (inFreshNetns must let it go). */
  const held = (ino: number): boolean => fs.readdirSync('/proc/self/fd').some((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === `net:[${ino}]`;
    } catch {
      return false;
    }
  });

  it('nft -f loads the kube-proxy nftables ruleset (and re-syncs it)', async () => {
    let ino = 0;
    await inFreshNetns(async (ns) => {
      ino = fs.statSync(ns).ino;
      const r = await loadPeer('nft -f', svcs, { netns: ns, timeoutMs: 120000 });
      expect(r.error).toBeUndefined();
      expect(r.seconds).toBeGreaterThan(0);
      const again = await runPeerInNetns(ns, ['nft', '-f', '-'], kubeProxyNftablesRuleset(svcs, { firstSync: false }), 120000);
      expect(again.error).toBeUndefined();
      const ruleset = await execInNetns(ns, ['nft', 'list', 'ruleset']);
      const target = svcs[svcs.length - 1] as BenchService;
      expect(ruleset).toContain('table ip kube-proxy {');
      expect(ruleset).toContain(`chain service-${nftServiceChainBase(target)} {`);
      expect(ruleset.match(/^\tchain service-[A-Z2-7]{8}-/gm)).toHaveLength(50);
      expect(ruleset.match(/^\tchain endpoint-[A-Z2-7]{8}-/gm)).toHaveLength(49 * 2 + 1);
      expect(ruleset).toContain(`ip saddr != ${POD_CIDR} jump mark-for-masquerade`);
      expect(ruleset).toContain('dnat to 198.18.0.2:8080');
    });
    expect(ino).toBeGreaterThan(0);
    expect(held(ino)).toBe(false);
  }, 60000);

  for (const tool of ['iptables-legacy-restore', 'iptables-nft-restore'] as const) {
    it(`${tool} loads the kube-proxy iptables rules (jump rules first)`, async () => {
      let ino = 0;
      await inFreshNetns(async (ns) => {
        ino = fs.statSync(ns).ino;
        const r = await loadPeer(tool, svcs, { netns: ns, timeoutMs: 120000 });
        expect(r.error).toBeUndefined();
        expect(r.seconds).toBeGreaterThan(0);
        // and once more, as a re-sync
        const again = await runPeerInNetns(ns, [tool, ...KUBE_PROXY_IPTABLES_RESTORE_FLAGS], kubeProxyIptablesRestore(svcs), 120000);
        expect(again.error).toBeUndefined();
        const saved = await execInNetns(ns, [tool === 'iptables-legacy-restore' ? 'iptables-legacy-save' : 'iptables-nft-save']);
        const target = svcs[svcs.length - 1] as BenchService;
        expect(saved).toContain(`:${iptablesServiceChain('KUBE-SVC-', target)} - [0:0]`);
        expect(saved.match(/^:KUBE-SVC-[A-Z2-7]{16} /gm)).toHaveLength(50);
        expect(saved.match(/^:KUBE-SEP-[A-Z2-7]{16} /gm)).toHaveLength(49 * 2 + 1);
        expect(saved).toMatch(/^-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES$/m);
        expect(saved).toContain('--to-destination 198.18.0.2:8080');
      });
      expect(held(ino)).toBe(false);
    }, 60000);
  }

  it('runPeerInNetns stops a peer that overruns its time limit, and reports a failing one', async () => {
    await inFreshNetns(async (ns) => {
      const r = await runPeerInNetns(ns, ['sh', '-c', 'sleep 30'], '', 300);
      expect(r.timedOut).toBe(true);
      expect(r.seconds).toBeNull();
      const bad = await runPeerInNetns(ns, ['nft', '-f', '-'], 'add table ip x\nadd chain ip x c { nonsense }\n', 10000);
      expect(bad.seconds).toBeNull();
      expect(bad.error).toMatch(/^exit 1: .*nonsense/);
      const missing = await runPeerInNetns(ns, ['no-such-peer-tool'], '', 10000);
      expect(missing.error).toBe('no-such-peer-tool is not installed');
      await expect(execInNetns(ns, ['sh', '-c', 'echo out; echo why >&2; exit 3'])).rejects.toThrow(/why/);
    });
  }, 20000);

  it('inFreshNetns lets the namespace go when fn throws', async () => {
    let ino = 0;
    await expect(
      inFreshNetns(async (ns) => {
        ino = fs.statSync(ns).ino;
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(ino).toBeGreaterThan(0);
    expect(held(ino)).toBe(false);
  });
});
