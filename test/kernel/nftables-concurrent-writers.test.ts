// Another nftables writer committing while svcplane reads and writes: every commit elsewhere
// in the namespace interrupts svcplane's multi-part dumps (NLM_F_DUMP_INTR) and moves the ruleset generation. That
// must delay a sync, never fail it, and never leave the socket out of step with the kernel (a dump abandoned
// half-read used to leave its tail queued, so every later exchange read the previous one's replies: "get ruleset
// generation: Protocol error" until restart).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetlinkNftClient, type NftClient } from '../../src/dataplane/nftables/client';
import { NftablesProxier } from '../../src/dataplane/nftables/proxier';
import { defaultConfig } from '../../src/dataplane/nftables/rules/config';
import { NFPROTO_IPV4, type NfFamily } from '../../src/dataplane/nftables/netlink/constants';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import { decodeTable } from '../../src/dataplane/nftables/state';
import { native } from '../../src/native';
import { createLogger } from '../../src/log';
import type { ServicePort } from '../../src/model/types';
import { toModel } from '../../src/bench/model';
import { makeServices } from '../../src/bench/shape';
import { svcplane } from '../helpers/cli';
import { ForeignWriter } from '../helpers/foreign-writer';
import { inNetns, makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nftables with concurrent writers');
const SERVICES = 400;

/** SERVICES Services with two endpoints each, as one v1 List: a table whose dump takes many netlink reads. */
function writeManifests(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-cw-'));
  const items: unknown[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const name = `s${i}`;
    items.push({
      apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'cw' },
      spec: { type: 'NodePort', clusterIP: `198.18.${100 + (i >> 8)}.${i & 255}`, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30000 + i }] },
    });
    items.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
      metadata: { name: `${name}-1`, namespace: 'cw', labels: { 'kubernetes.io/service-name': name } },
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: [0, 1].map((k) => ({ addresses: [`198.18.${2 + k}.${(i % 250) + 1}`], conditions: { ready: true } })),
    });
  }
  fs.writeFileSync(path.join(dir, 'services.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  return dir;
}

function withoutFirstEndpoint(sp: ServicePort): ServicePort {
  return { ...sp, endpoints: sp.endpoints.slice(1), allEndpoints: sp.allEndpoints.slice(1) };
}

describe.runIf(haveRoot)('nftables: another writer committing while svcplane syncs', () => {
  let ns: ReturnType<typeof makeNetns>;
  let dir: string;
  beforeAll(() => {
    ns = makeNetns('cw');
    dir = writeManifests();
  });
  afterAll(() => {
    ns?.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sync --once succeeds every run while another writer commits as fast as the kernel takes it', async () => {
    const foreign = new ForeignWriter(ns.path, { earlyChains: 3000 });
    await foreign.start();
    const failures: string[] = [];
    const runs = 8;
    try {
      for (let i = 0; i < runs; i++) {
        const r = await svcplane(['sync', '--once', '--manifests', dir, '--netns', ns.path, '--log-format', 'json']);
        if (r.code !== 0) failures.push(`run ${i}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      }
    } finally {
      await foreign.stop();
    }
    console.log(`sync --once x${runs} against ${foreign.rate().toFixed(0)} foreign commits/s (${foreign.commits} commits): ${failures.length} failed`);
    expect(foreign.rate()).toBeGreaterThan(50);
    expect(failures).toEqual([]);
    // What the runs programmed is all there, read by an independent reader.
    const map = inNetns(ns.name, ['nft', 'list', 'map', 'ip', 'svcplane', 'service-ips']);
    expect(map).toContain('198.18.101.143 . tcp . 80');
  });

  it('an agent-style proxier keeps syncing (full and partial) while another writer commits, and every sync lands exactly', async () => {
    // In a fresh namespace, where the other writer's table (with 3000 chains) comes before svcplane's: a chain dump
    // then reaches svcplane's chains only after several parts, where another writer's chain coming or going shifts it.
    const own = makeNetns('cwp');
    const model = toModel(makeServices(SERVICES, 2, { withNodePorts: true }));
    const foreign = new ForeignWriter(own.path, { earlyChains: 3000 });
    await foreign.start();
    const proxier = new NftablesProxier(new NetlinkNftClient({ netns: own.path }), defaultConfig({ clusterCIDRs: ['198.18.0.0/17'] }));
    const failures: string[] = [];
    const keys = [...model.keys()];
    try {
      // Full syncs at 0, 3, ..., 12 (the last leaves the model as it is), partial ones between.
      for (let i = 0; i <= 12; i++) {
        try {
          if (i % 3 === 0) await proxier.syncFull(model);
          else {
            const sp = model.get(keys[i])!;
            await proxier.syncPartial(new Map([[sp.key, i % 2 ? withoutFirstEndpoint(sp) : sp]]));
          }
        } catch (e) {
          failures.push(`sync ${i}: ${(e as Error).message}`);
        }
      }
    } finally {
      await foreign.stop();
    }
    console.log(`proxier: 13 syncs against ${foreign.rate().toFixed(0)} foreign commits/s: ${failures.length} failed`);
    try {
      expect(foreign.rate()).toBeGreaterThan(50);
      expect(failures).toEqual([]);
      // The writer gone, a full sync finds nothing to change: every sync read the table whole and landed exactly.
      expect((await proxier.syncFull(model)).operations).toBe(0);
    } finally {
      proxier.close();
      own.remove();
    }
  });

  it('a full sync refused because another writer changed the table after it was read reads again and succeeds', async () => {
    const model = toModel(makeServices(50, 2));
    const setup = new NftablesProxier(new NetlinkNftClient({ netns: ns.path }), defaultConfig({ clusterCIDRs: ['198.18.0.0/17'] }));
    await setup.syncFull(model);
    setup.close();
    // Between this sync's read of the table and its commit, another writer deletes the table (what a firewall
    // reload's `flush ruleset` does): the commit, a difference from what was read, is refused.
    const real = new NetlinkNftClient({ netns: ns.path });
    const other = new NetlinkNftClient({ netns: ns.path });
    let sabotaged = 0;
    const client: NftClient = {
      run: async (tx) => {
        if (sabotaged === 0 && tx.size > 0) {
          sabotaged++;
          const del = new NftTransaction();
          del.deleteTable(NFPROTO_IPV4, 'svcplane');
          await other.run(del);
        }
        return real.run(tx);
      },
      check: (tx) => real.check(tx),
      dumpTable: (family: NfFamily, table: string) => real.dumpTable(family, table),
      generation: () => real.generation(),
      close: () => real.close(),
    };
    const lines: string[] = [];
    const log = createLogger({ format: 'json', stream: new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(chunk.toString()); done(); } }) });
    const proxier = new NftablesProxier(client, defaultConfig({ clusterCIDRs: ['198.18.0.0/17'] }), log);
    try {
      const changed = new Map(model);
      const [key, sp] = [...changed][3];
      changed.set(key, withoutFirstEndpoint(sp));
      const r = await proxier.syncFull(changed);
      expect(sabotaged).toBe(1);
      expect(r.operations).toBeGreaterThan(0);
      expect(lines.some((l) => l.includes('the ruleset changed while this sync was prepared'))).toBe(true);
      expect((await proxier.syncFull(changed)).operations).toBe(0);
    } finally {
      proxier.close();
      other.close();
    }
  });

  it('a table read while chains ahead of it come and go is read whole (chains the dump skipped are found again)', async () => {
    // 2000 chains of "svcplane's" table, after 3000 of the other writer's, which deletes and re-adds its first
    // chain without pause: chain dump parts after each commit start one chain late, skipping one.
    const own = makeNetns('cwc');
    const foreign = new ForeignWriter(own.path, { earlyChains: 3000, churn: 'front' });
    const sock = new (native().NftSocket)({ netns: own.path });
    try {
      await foreign.start();
      const tx = new NftTransaction();
      tx.addTable(NFPROTO_IPV4, 'many');
      for (let i = 0; i < 2000; i++) tx.addChain(NFPROTO_IPV4, 'many', { name: `c${i}` });
      tx.addSet(NFPROTO_IPV4, 'many', { name: 's', flags: 0, keyType: 7, keyLen: 4 });
      await sock.commit(tx.records());
      for (let i = 0; i < 20; i++) {
        const r = await sock.dump(NFPROTO_IPV4, 'many');
        const table = decodeTable(NFPROTO_IPV4, r.records)!;
        expect(table.chains.size).toBe(2000);
        expect(table.sets.size).toBe(1);
      }
      expect(foreign.commits).toBeGreaterThan(100);
    } finally {
      await foreign.stop();
      sock.close();
      own.remove();
    }
  });
});
