// The addon's own safety, each provoked: close() while exchanges are in flight (the socket
// used to be freed under the worker using it), a request the kernel never answers (it used to block a libuv thread
// for good), a thread that cannot switch back from another namespace (it used to stay there), and record streams
// the batch encoder must not trust (sizes, attributes that libnftnl would dereference as pointers).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native';
import { NFPROTO_IPV4 } from '../../src/dataplane/nftables/netlink/constants';
import { NftTransaction } from '../../src/dataplane/nftables/transaction';
import { REPO } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('addon safety');
const ADDON = path.join(REPO, 'build', 'Release', 'svcplane_native.node');

/** Settles every promise; rejections come back as their errors. */
async function settle<T>(ps: Promise<T>[]): Promise<Array<{ ok: true; value: T } | { ok: false; error: Error & { code?: string } }>> {
  return Promise.all(ps.map((p) => p.then((value) => ({ ok: true as const, value }), (error: Error) => ({ ok: false as const, error }))));
}

/** A netlink message the kernel answers with nothing: RTM_GETLINK without NLM_F_REQUEST or NLM_F_ACK. */
function unansweredRequest(): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(32, 0); // nlmsg_len
  b.writeUInt16LE(18, 4); // RTM_GETLINK
  b.writeUInt16LE(0, 6); // no flags: netlink_rcv_skb skips it and acks only on error or NLM_F_ACK
  return b;
}

/** RTM_GETLINK for one interface, with NLM_F_REQUEST | NLM_F_ACK. */
function getLinkRequest(name: string): Buffer {
  const attrLen = 4 + name.length + 1;
  const len = 16 + 16 + ((attrLen + 3) & ~3);
  const b = Buffer.alloc(len);
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(18, 4);
  b.writeUInt16LE(0x1 | 0x4, 6);
  b.writeUInt16LE(attrLen, 32);
  b.writeUInt16LE(3, 34); // IFLA_IFNAME
  b.write(name, 36, 'latin1');
  return b;
}

/** A record stream (native/nft_records.h) of one record, attributes given as [type, value]. */
function recordStream(kind: number, family: number, attrs: Array<[number, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.writeUInt32LE(0x424e5653, 0);
  head.writeUInt32LE(1, 4);
  head.writeUInt32LE(1, 8);
  parts.push(head, Buffer.from([1, kind, family, 0, 0, 0, 0, 0]));
  const n = Buffer.alloc(2);
  n.writeUInt16LE(attrs.length, 0);
  parts.push(n);
  for (const [type, value] of attrs) {
    const h = Buffer.alloc(6);
    h.writeUInt16LE(type, 0);
    h.writeUInt32LE(value.length, 2);
    parts.push(h, value);
  }
  return Buffer.concat(parts);
}

describe.runIf(haveRoot)('addon safety', () => {
  let ns: ReturnType<typeof makeNetns>;
  beforeAll(() => {
    ns = makeNetns('safe');
  });
  afterAll(() => ns?.remove());

  it('close() while exchanges are in flight: each settles (done, or EBADF), none uses a freed socket', async () => {
    for (let round = 0; round < 20; round++) {
      const sock = new (native().NftSocket)({ netns: ns.path });
      const inFlight: Promise<unknown>[] = [];
      for (let i = 0; i < 32; i++) inFlight.push(i % 4 === 0 ? sock.dump(NFPROTO_IPV4, 'nosuch') : sock.generation());
      sock.close();
      const t = new (native().NetlinkTransceiver)({ bus: 'route', netns: ns.path });
      const tInFlight = Array.from({ length: 16 }, () => t.transact([getLinkRequest('lo')]));
      t.close();
      for (const r of await settle([...inFlight, ...tInFlight])) {
        if (!r.ok) expect(r.error.code, r.error.message).toBe('EBADF');
      }
      // Closed is closed: new exchanges are refused at once.
      expect(() => sock.generation()).toThrow(/closed/);
    }
  });

  it('a request the kernel never answers rejects after the reply timeout, naming it; the socket then works', async () => {
    const t = new (native().NetlinkTransceiver)({ bus: 'route', netns: ns.path, replyTimeoutMs: 300 });
    try {
      const t0 = Date.now();
      const r = await Promise.race([
        t.transact([getLinkRequest('lo'), unansweredRequest()]).then(() => 'answered', (e: Error & { code?: string }) => e),
        new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 60 s'), 60_000)),
      ]);
      expect(r).toBeInstanceOf(Error);
      const e = r as Error & { code?: string };
      expect(e.code).toBe('ETIMEDOUT');
      expect(e.message).toMatch(/netlink request #1 \(message type 18, flags 0x0\): no reply from the kernel within 300 ms/);
      expect(Date.now() - t0).toBeLessThan(30_000);
      // The socket is usable again (reopened: nothing of the abandoned exchange is read as the next one's reply).
      const ok = await t.transact([getLinkRequest('lo')]);
      expect(ok.results[0].errno).toBe(0);
      expect(ok.results[0].replies.length).toBe(1);
    } finally {
      t.close();
    }
  });

  it('a thread that cannot return from the other namespace ends the process with the reason', () => {
    // An LD_PRELOAD shim failing the Nth setns() call: the 2nd is the way back from the namespace.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-setns-'));
    try {
      const src = path.join(dir, 'failsetns.c');
      fs.writeFileSync(src, `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
static int calls;
int setns(int fd, int nstype) {
  static int (*real)(int, int);
  if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "setns");
  const char *at = getenv("FAIL_SETNS_CALL");
  if (at && ++calls == atoi(at)) { errno = EPERM; return -1; }
  return real(fd, nstype);
}
`);
      const so = path.join(dir, 'failsetns.so');
      execFileSync('cc', ['-shared', '-fPIC', '-o', so, src, '-ldl']);
      const script = `
        const fs = require('fs');
        const before = fs.readlinkSync('/proc/thread-self/ns/net');
        try { new (require(${JSON.stringify(ADDON)}).NftSocket)({ netns: ${JSON.stringify(ns.path)} }); } catch (e) { console.log('threw: ' + e.message); }
        console.log(fs.readlinkSync('/proc/thread-self/ns/net') === before ? 'still in its own namespace' : 'left in the other namespace');
      `;
      // After anything already preloaded (a sanitizer's runtime, when the addon is built with one: test/native/asan.sh).
      const preload = [process.env.LD_PRELOAD, so].filter(Boolean).join(' ');
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: preload, FAIL_SETNS_CALL: '2' }, timeout: 60_000 });
      expect(r.stdout).not.toContain('left in the other namespace');
      expect(r.signal).toBe('SIGABRT');
      expect(r.stderr).toContain(`could not return from network namespace ${ns.path} to its own (setns: Operation not permitted, EPERM)`);
      // The same shim failing the way in only (1st call) is an ordinary error.
      const r1 = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: preload, FAIL_SETNS_CALL: '1' }, timeout: 60_000 });
      expect(r1.status).toBe(0);
      expect(r1.stdout).toContain(`threw: setns ${ns.path}: Operation not permitted`);
      expect(r1.stdout).toContain('still in its own namespace');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a record with an attribute libnftnl takes as a pointer is refused, never dereferenced', async () => {
    const sock = new (native().NftSocket)({ netns: ns.path });
    try {
      const z = (s: string) => Buffer.from(`${s}\0`);
      const bogusPointer = Buffer.alloc(8, 0x41);
      // NFTNL_SET_EXPR (17): libnftnl's setter takes a struct nftnl_expr *.
      const set = recordStream(4, NFPROTO_IPV4, [[0, z('t')], [1, z('s')], [17, bogusPointer]]);
      await expect(sock.commit(set)).rejects.toThrow(/set ip t s.*refused set attribute 17/);
      await expect(sock.check(set)).rejects.toMatchObject({ code: 'EINVAL' });
      // NFTNL_CHAIN_DEVICES (12): a const char ** array.
      const chain = recordStream(2, NFPROTO_IPV4, [[0, z('c')], [2, z('t')], [12, bogusPointer]]);
      await expect(sock.commit(chain)).rejects.toThrow(/chain ip t c.*refused chain attribute 12/);
    } finally {
      sock.close();
    }
  });

  it('records far larger than the encoder first sizes for are encoded whole, and the kernel takes them', async () => {
    const sock = new (native().NftSocket)({ netns: ns.path });
    try {
      const tx = new NftTransaction();
      tx.addTable(NFPROTO_IPV4, 'big');
      tx.addSet(NFPROTO_IPV4, 'big', { name: 'keys', flags: 0, keyType: 7, keyLen: 4 });
      const elements = Array.from({ length: 100_000 }, (_, i) => ({ key: Buffer.from([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]), comment: `element ${i} `.repeat(8) }));
      tx.addElements(NFPROTO_IPV4, 'big', 'keys', elements);
      // One batch (BEGIN, the records, END) of well over 8 MiB; the kernel parses every message of it, so a message
      // cut short or run over would be refused.
      const r = await sock.commit(tx.records());
      expect(r.messages).toBe(r.operations + 2);
      expect(r.bytes).toBeGreaterThan(8 << 20);
      const dumped = await sock.dump(NFPROTO_IPV4, 'big');
      expect(dumped.exists).toBe(true);
      const list = execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'set', 'ip', 'big', 'keys'], { encoding: 'utf8', maxBuffer: 256 << 20 });
      expect(list).toContain('10.1.134.159');
      expect(list).toContain('element 99999');
    } finally {
      sock.close();
    }
  });
});
