// Exercises every addon entry point (commit, rejected commit, dump, encode/sendEncoded, generation, close) in a
// throwaway network namespace; run under valgrind by test/native/memcheck.sh to check the C++ for memory
// errors and leaks. Needs root and the built dist/.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const { NetlinkNftClient } = require(path.join(root, 'dist/src/dataplane/nftables/client.js'));
const { NftablesProxier } = require(path.join(root, 'dist/src/dataplane/nftables/proxier.js'));
const { defaultConfig } = require(path.join(root, 'dist/src/dataplane/nftables/ruleset.js'));
const { NftTransaction } = require(path.join(root, 'dist/src/dataplane/nftables/transaction.js'));
const { RuleBuilder } = require(path.join(root, 'dist/src/dataplane/nftables/netlink/expr.js'));
const { toModel } = require(path.join(root, 'dist/bench/lib/model.js'));
const { makeServices } = require(path.join(root, 'dist/bench/peers/shape.js'));

const ns = `svpmem${process.pid}`;
execFileSync('ip', ['netns', 'add', ns]);
(async () => {
  const client = new NetlinkNftClient({ netns: `/run/netns/${ns}` });
  const p = new NftablesProxier(client, defaultConfig({ clusterCIDRs: ['198.18.0.0/17'] }));
  const model = toModel(makeServices(300, 3, { withNodePorts: true }));
  await p.syncFull(model);
  await p.syncFull(model); // dump + decode + empty diff
  const sp = [...model.values()][7];
  await p.syncPartial(new Map([[sp.key, { ...sp, endpoints: sp.endpoints.slice(1) }]]));
  const bad = new NftTransaction();
  bad.addRule(2, 'svcplane', 'no-such-chain', new RuleBuilder().verdict({ kind: 'accept' }).body());
  await client.run(bad).then(() => { throw new Error('expected a rejection'); }, () => undefined);
  const rows = (await p.status()).rows.length;
  const sock = client.socket;
  const tx = new NftTransaction();
  tx.addChain(2, 'svcplane', { name: 'memcheck' });
  const enc = sock.encode(tx.records());
  await sock.sendEncoded(enc);
  await sock.generation();
  await p.cleanup();
  p.close();
  console.log(`memcheck workload done: ${rows} status rows`);
})().finally(() => execFileSync('ip', ['netns', 'del', ns]));
