// Hand edits with `nft` to svcplane's tables, each followed by a full sync (`sync --once`, a fresh process that
// knows only the manifests and what it reads from the kernel): the tables afterwards must be exactly what they
// were before the edit, as `nft -j list table` shows them (rule and object handles aside; sets, chains and set
// elements compared in a canonical order, since a re-created object lists last and a re-filled hash set lists in
// another order). The edits touch chains, rules, maps, sets and elements, the table's flags and base chains' hooks
// and policies, in both families. A foreign table at the same hooks must come through every sync untouched.
// README's Reliability figure (repairs exact / tried) is this suite's count.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { runClient } from '../../scripts/lib/traffic';
import { REPO, svcplane } from '../helpers/cli';
import { canonicalTable } from '../helpers/nft-canonical';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables hand edits');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

interface HandEdit {
  what: string;
  /** nft commands, one batch (nft -f); `handle(family, chain, index)` finds a rule's handle first. */
  commands: (handle: (family: string, chain: string, index: number) => Promise<number>) => Promise<string[]>;
}

const T4 = 'ip svcplane';
const T6 = 'ip6 svcplane';
const edits: HandEdit[] = [
  { what: 'delete one rule of a regular chain', commands: async (h) => [`delete rule ${T4} services handle ${await h('ip', 'services', 6)}`] },
  { what: 'replace a rule with another', commands: async (h) => [`replace rule ${T4} masquerading handle ${await h('ip', 'masquerading', 0)} meta mark 0x1 accept`] },
  { what: 'insert a rogue rule at the head of a regular chain', commands: async () => [`insert rule ${T4} services ip daddr 198.18.100.10 tcp dport 80 drop`] },
  { what: 'append a rogue rule to a base chain', commands: async () => [`add rule ${T4} filter-forward drop`] },
  { what: 'flush a regular chain', commands: async () => [`flush chain ${T4} pick-ips`] },
  { what: 'flush a base chain', commands: async () => [`flush chain ${T6} nat-prerouting`] },
  { what: 'delete a base chain', commands: async () => [`delete chain ${T4} nat-output`] },
  { what: 'rename a chain other chains jump to', commands: async () => [`rename chain ${T4} masquerading masq2`] },
  { what: 'add a rogue regular chain', commands: async () => [`add chain ${T4} rogue`, `add rule ${T4} rogue drop`] },
  { what: 'add a rogue base chain (input, policy drop)', commands: async () => [`add chain ${T4} rogue-base { type filter hook input priority 0; policy drop; }`] },
  { what: 'set a base chain\'s policy to drop', commands: async () => [`add chain ${T4} filter-prerouting { type filter hook prerouting priority -110; policy drop; }`] },
  { what: 'move a base chain to another priority', commands: async () => [`delete chain ${T4} nat-prerouting`, `add chain ${T4} nat-prerouting { type nat hook prerouting priority 0; }`, `add rule ${T4} nat-prerouting jump services`] },
  { what: 'move a base chain to another hook', commands: async () => [`delete chain ${T4} filter-output`, `add chain ${T4} filter-output { type filter hook input priority -110; }`, `add rule ${T4} filter-output ct state new jump endpoints-check`] },
  { what: 'make the table dormant', commands: async () => [`add table ${T4} { flags dormant; }`] },
  { what: 'flush a map', commands: async () => [`flush map ${T4} service-endpoints`] },
  { what: 'flush a set', commands: async () => [`flush set ${T4} cluster-ips`] },
  { what: 'delete a map element', commands: async () => [`delete element ${T4} service-ips { 198.18.100.10 . tcp . 80 }`] },
  { what: 'delete an IPv6 map element', commands: async () => [`delete element ${T6} service-ips { fd00:100::10 . tcp . 80 }`] },
  { what: 'change a map element\'s data (an endpoint)', commands: async () => [`delete element ${T4} service-endpoints { 198.18.100.10 . tcp . 80 . 0x0 }`, `add element ${T4} service-endpoints { 198.18.100.10 . tcp . 80 . 0x0 : 198.18.2.13 . 9999 }`] },
  { what: 'change an element\'s comment', commands: async () => [`delete element ${T4} service-ips { 198.18.100.11 . tcp . 8000 }`, `add element ${T4} service-ips { 198.18.100.11 . tcp . 8000 comment "hand-made" : 0x2 }`] },
  { what: 'add a rogue map element', commands: async () => [`add element ${T4} service-ips { 198.18.100.99 . tcp . 80 : 0x1 }`] },
  { what: 'add a rogue set element', commands: async () => [`add element ${T4} cluster-ips { 198.18.100.99 }`, `add element ${T4} no-endpoint-services { 198.18.100.10 . tcp . 80 }`] },
  { what: 'delete a set (its rules flushed first)', commands: async () => [`flush chain ${T4} services`, `delete set ${T4} external-ips`] },
  { what: 'delete a map (its rules flushed first)', commands: async () => [`flush chain ${T4} pick-ips`, `delete map ${T4} service-endpoints`] },
  { what: 're-create a set with another spec (a size)', commands: async () => [`flush chain ${T4} services`, `delete set ${T4} external-ips`, `add set ${T4} external-ips { type ipv4_addr . inet_proto . inet_service; size 16; }`] },
  { what: 'flush the whole table', commands: async () => [`flush table ${T4}`] },
  { what: 'delete the IPv4 table', commands: async () => [`delete table ${T4}`] },
  { what: 'delete both tables', commands: async () => [`delete table ${T4}`, `delete table ${T6}`] },
];

type Json = Record<string, unknown>;

describe.runIf(haveRoot)('nftables: hand edits are repaired exactly by the next full sync', () => {
  let sb: Sandbox;
  let clusterCIDR: string;
  const exec = async (argv: string[], input?: string) => sb.exec(sb.nodeNs, argv, input === undefined ? {} : { input });
  const nftJson = async (what: string) => {
    const r = await exec(['nft', '-j', 'list', ...what.split(' ')]);
    return r.code === 0 ? r.stdout : '<missing>';
  };
  const snapshot = async () => ({ v4: await nftJson(`table ${T4}`), v6: await nftJson(`table ${T6}`) });
  const canonical = (s: { v4: string; v6: string }) => ({ v4: s.v4 === '<missing>' ? s.v4 : canonicalTable(s.v4), v6: s.v6 === '<missing>' ? s.v6 : canonicalTable(s.v6) });
  const sync = async () => {
    const r = await svcplane(['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', clusterCIDR, '--output', 'json'], { netns: sb.nodeNs });
    if (r.code !== 0) throw new Error(`sync failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as { operations: number };
  };
  const handle = async (family: string, chain: string, index: number) => {
    const rules = (JSON.parse(await nftJson(`chain ${family} svcplane ${chain}`)) as { nftables: Json[] }).nftables.filter((o) => 'rule' in o);
    return (rules[index].rule as { handle: number }).handle;
  };

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    clusterCIDR = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    await sync();
    // A foreign table at svcplane's hooks, before its chains: never to be touched.
    const foreign = ['add table inet foreign', 'add chain inet foreign pre { type nat hook prerouting priority -150; }',
      'add rule inet foreign pre ip daddr 203.0.113.1 tcp dport 80 dnat ip to 198.18.2.11:8080',
      'add chain inet foreign early-forward { type filter hook forward priority -200; }', 'add rule inet foreign early-forward ip daddr 203.0.113.1 drop'];
    const r = await exec(['nft', '-f', '-'], foreign.join('\n') + '\n');
    if (r.code !== 0) throw new Error(r.stderr);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it(`repairs every one of ${edits.length} hand edits exactly; the foreign table comes through untouched`, async () => {
    const good = await snapshot();
    const goodCanonical = canonical(good);
    const foreign = await nftJson('table inet foreign');
    const inexact: string[] = [];
    for (const e of edits) {
      const r = await exec(['nft', '-f', '-'], (await e.commands(handle)).join('\n') + '\n');
      if (r.code !== 0) throw new Error(`${e.what}: nft refused the edit: ${r.stderr}`);
      // The edit must have changed something, or this case proves nothing.
      expect(canonical(await snapshot()), e.what).not.toEqual(goodCanonical);
      await sync();
      const after = canonical(await snapshot());
      if (after.v4 !== goodCanonical.v4 || after.v6 !== goodCanonical.v6) {
        inexact.push(e.what);
        // Back to the reference state for the next edit: delete svcplane's tables and program them afresh.
        await exec(['nft', '-f', '-'], `delete table ${T4}\ndelete table ${T6}\n`);
        await sync();
      }
      expect(await nftJson('table inet foreign'), e.what).toBe(foreign);
    }
    const exact = edits.length - inexact.length;
    console.log(`hand edits repaired exactly by the next full sync: ${exact} / ${edits.length}${inexact.length ? ` (not: ${inexact.join('; ')})` : ''}`);
    expect(inexact).toEqual([]);

    // And the repaired tables work: a second sync changes nothing, a Service answers.
    expect((await sync()).operations).toBe(0);
    const traffic = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 20 });
    expect(traffic.ok).toBe(20);
  });
});
