// Exercises every addon entry point (commit, rejected commit, check, dump, generation, close; the
// netlink transceiver's transact and transactPacked with refusals and dumps; netSysctl; libraries; close() with exchanges in
// flight, an exchange the kernel never answers, dumps interrupted by another writer's commits, a record refused
// for a pointer-typed attribute, the abstract sockets of the writer lock) in a
// throwaway network namespace; run under valgrind by test/native/memcheck.sh to check the C++ for memory
// errors and leaks. Needs root and the built dist/.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const { NetlinkNftClient } = require(path.join(root, 'dist/src/dataplane/nftables/client.js'));
const { NftablesProxier } = require(path.join(root, 'dist/src/dataplane/nftables/proxier.js'));
const { defaultConfig } = require(path.join(root, 'dist/src/dataplane/nftables/rules/config.js'));
const { NftTransaction } = require(path.join(root, 'dist/src/dataplane/nftables/transaction.js'));
const { RuleBuilder } = require(path.join(root, 'dist/src/dataplane/nftables/netlink/expr.js'));
const { toModel } = require(path.join(root, 'dist/src/bench/model.js'));
const { makeServices } = require(path.join(root, 'dist/src/bench/shape.js'));

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
  // A refused expression: the extended ack's offset mapped back to the rule's expression (and the refusal probed).
  const badExpr = new NftTransaction();
  badExpr.addRule(2, 'svcplane', 'services', new RuleBuilder().payload(1, 1, 16, 4).lookup('no-such-set', 1).verdict({ kind: 'accept' }).body());
  const refused = await client.run(badExpr).then(() => null, (e) => e);
  if (!refused || !/expression #1 \(lookup\)/.test(refused.message)) throw new Error(`expected the refused expression to be named: ${refused && refused.message}`);
  const rows = (await p.status()).rows.length;
  const sock = client.socket;
  const tx = new NftTransaction();
  tx.addChain(2, 'svcplane', { name: 'memcheck' });
  const checked = await sock.check(tx.records());
  if (checked.errors.length !== 0) throw new Error(`check refused: ${JSON.stringify(checked.errors)}`);
  await sock.commit(tx.records());
  await sock.generation();
  await p.cleanup();
  p.close();

  // The transceiver: packed requests (one ack per page, refusals by sequence), a packed dump, the array form.
  const native = require(path.join(root, 'build/Release/svcplane_native.node'));
  const { NetlinkWriter } = require(path.join(root, 'dist/src/netlink/message.js'));
  const rtnl = require(path.join(root, 'dist/src/netlink/rtnl.js'));
  execFileSync('ip', ['-n', ns, 'link', 'add', 'mem0', 'type', 'bridge']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'mem0', 'up']);
  const index = Number(/^(\d+):/.exec(execFileSync('ip', ['-n', ns, '-o', 'link', 'show', 'mem0'], { encoding: 'utf8' }))[1]);
  const t = new native.NetlinkTransceiver({ bus: 'route', netns: `/run/netns/${ns}` });
  const w = new NetlinkWriter(128);
  for (let i = 0; i < 2500; i++) rtnl.writeNewLocalRoute(w, index, `198.18.${200 + (i >> 8)}.${i & 255}`);
  rtnl.writeNewLocalRoute(w, index, '198.18.200.1'); // EEXIST
  const r1 = await t.transactPacked(w.finish(), { ackLastOnly: true });
  const r2 = await t.transactPacked(w.finish()); // all EEXIST, one ack each
  const dump = await t.transactPacked(rtnl.dumpRoutesRequest());
  const r3 = await t.transact([rtnl.getLinkRequest('mem0'), rtnl.getLinkRequest('nosuch')]);
  try {
    t.transactPacked(Buffer.from([1, 2, 3])); // a malformed buffer is refused before any worker starts
    throw new Error('expected a refusal');
  } catch (e) {
    if (e.code !== 'EINVAL') throw e;
  }
  t.close();
  // Sysctls of the namespace: read, write, refused name, missing file.
  await native.netSysctl('net.ipv4.ip_forward', `/run/netns/${ns}`, '1');
  const fwd = await native.netSysctl('net.ipv4.ip_forward', `/run/netns/${ns}`);
  await native.netSysctl('kernel.hostname', `/run/netns/${ns}`).catch(() => undefined);
  await native.netSysctl('net.ipv4.nosuch', `/run/netns/${ns}`).catch(() => undefined);
  console.log(`transceiver: ${r1.failures.length} + ${r2.failures.length} refusals, dump ${dump.replies[0].data.length} bytes, ${r3.results.length} results; ip_forward=${fwd}`);
  // The build-time library versions (svcplane version).
  console.log(`libraries: libnftnl ${native.libraries.libnftnl}, libmnl ${native.libraries.libmnl}`);

  // close() with exchanges in flight: each settles; the socket is freed once, by whoever finishes last.
  const s2 = new native.NftSocket({ netns: `/run/netns/${ns}` });
  const flying = [];
  for (let i = 0; i < 16; i++) flying.push((i % 4 ? s2.generation() : s2.dump(2, 'nosuch')).catch((e) => { if (e.code !== 'EBADF') throw e; }));
  s2.close();
  await Promise.all(flying);
  // A request the kernel never answers (no NLM_F_REQUEST, no NLM_F_ACK): rejected after the reply timeout, socket reopened.
  const t2 = new native.NetlinkTransceiver({ bus: 'route', netns: `/run/netns/${ns}`, replyTimeoutMs: 500 });
  const noReply = Buffer.alloc(32);
  noReply.writeUInt32LE(32, 0);
  noReply.writeUInt16LE(18, 4);
  await t2.transact([noReply]).then(() => { throw new Error('expected a timeout'); }, (e) => { if (e.code !== 'ETIMEDOUT') throw e; });
  const again = await t2.transact([rtnl.getLinkRequest('mem0')]);
  t2.close();
  // A record whose attribute libnftnl would take as a pointer (NFTNL_SET_EXPR) is refused.
  const ptr = Buffer.concat([Buffer.from([0x53, 0x56, 0x4e, 0x42, 1, 0, 0, 0, 1, 0, 0, 0, 1, 4, 2, 0, 0, 0, 0, 0, 1, 0, 17, 0, 8, 0, 0, 0]), Buffer.alloc(8, 0x41)]);
  const s3 = new native.NftSocket({ netns: `/run/netns/${ns}` });
  await s3.commit(ptr).then(() => { throw new Error('expected a refusal'); }, (e) => { if (e.code !== 'EINVAL') throw e; });
  // Dumps while another writer commits in a table of the same family made before svcplane's: interrupted reads,
  // chains put together from several.
  const { NftTransaction: Tx } = require(path.join(root, 'dist/src/dataplane/nftables/transaction.js'));
  const early = new Tx();
  early.addTable(2, 'aaa-early');
  const fw = new NetlinkNftClient({ netns: `/run/netns/${ns}` });
  await fw.run(early);
  const p2 = new NftablesProxier(new NetlinkNftClient({ netns: `/run/netns/${ns}` }), defaultConfig({ clusterCIDRs: ['198.18.0.0/17'] }));
  await p2.syncFull(model);
  let writing = true;
  const add = new Tx();
  add.addChain(2, 'aaa-early', { name: 'churn' });
  const del = new Tx();
  del.deleteChain(2, 'aaa-early', 'churn');
  let commits = 0;
  const writer = (async () => { while (writing) await fw.run(commits++ % 2 ? del : add); })();
  for (let i = 0; i < 4; i++) await p2.syncFull(model);
  writing = false;
  await writer;
  p2.close();
  fw.close();
  s3.close();
  // The writer lock's abstract sockets: held, its holder named, a second listener refused.
  const lockFd = native.listenAbstract('svcplane.io/memcheck', `/run/netns/${ns}`);
  const peer = native.connectAbstract('svcplane.io/memcheck', `/run/netns/${ns}`);
  try {
    native.listenAbstract('svcplane.io/memcheck', `/run/netns/${ns}`);
    throw new Error('expected EADDRINUSE');
  } catch (e) {
    if (e.code !== 'EADDRINUSE') throw e;
  }
  require('node:fs').closeSync(peer.fd);
  require('node:fs').closeSync(lockFd);
  if (native.connectAbstract('svcplane.io/memcheck', `/run/netns/${ns}`) !== null) throw new Error('lock outlived its socket');
  console.log(`safety: reply after timeout ${again.results[0].errno}, ${commits} foreign commits during 4 full syncs, lock holder pid ${peer.pid}`);
  console.log(`memcheck workload done: ${rows} status rows`);
})().finally(() => execFileSync('ip', ['netns', 'del', ns]));
