// The behaviour every EbpfKernel must have (what the ebpf dataplane asks of the kernel), as one vitest suite:
// test/unit/ebpf-fake.contract.test.ts runs it against FakeEbpfKernel, test/kernel/ebpf-kernel.contract.test.ts
// against LibbpfKernel on this machine's kernel (a bpffs directory and a cgroup of the test's own), so the fake the
// ebpf unit tests rely on cannot drift from the kernel. Where they disagree the kernel is right.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EbpfKernel } from '../../src/dataplane/ebpf/kernel';
import { MAP, SIZE, pack, readServiceKey, readServiceValue, writeServiceKey, writeServiceValue, type Frontend } from '../../src/dataplane/ebpf/layout';

export interface EbpfContractSubject {
  kernel: EbpfKernel;
  /** A second kernel over the same pins (a restart). */
  reopen(): EbpfKernel;
  done(): void;
}

const f4: Frontend = { address: '198.18.60.1', port: 80, protocol: 'TCP' };
const f6: Frontend = { address: 'fd00:60::1', port: 53, protocol: 'UDP' };
const keys = (...f: Frontend[]) => pack(f, SIZE.svcKey, writeServiceKey);
const values = (...set: number[]) => pack(set.map((s) => ({ set: s, count: 2, flags: 1, affinitySeconds: 30 })), SIZE.svcVal, writeServiceValue);

export function ebpfKernelContract(name: string, make: () => Promise<EbpfContractSubject>): void {
  describe(`EbpfKernel contract: ${name}`, () => {
    let s: EbpfContractSubject;
    beforeEach(async () => {
      s = await make();
    });
    afterEach(() => s.done());

    it('reports the maps with the record sizes of layout.ts', async () => {
      const maps = await s.kernel.load();
      const byName = new Map(maps.map((m) => [m.name, m]));
      expect(byName.get(MAP.services)).toMatchObject({ keySize: SIZE.svcKey, valueSize: SIZE.svcVal });
      expect(byName.get(MAP.slots)).toMatchObject({ keySize: SIZE.slotKey, valueSize: SIZE.slotVal });
      expect(byName.get(MAP.members)).toMatchObject({ keySize: SIZE.memberKey, valueSize: SIZE.memberVal });
      expect(byName.get(MAP.backends)).toMatchObject({ keySize: SIZE.backendKey, valueSize: SIZE.backendVal });
      expect(byName.get(MAP.reverse)).toMatchObject({ keySize: SIZE.rnatKey, valueSize: SIZE.rnatVal });
      expect(byName.get(MAP.affinity)).toMatchObject({ keySize: SIZE.affKey, valueSize: SIZE.affVal });
    });

    it('writes, overwrites, dumps and deletes records; deleting an absent key is not an error', async () => {
      await s.kernel.load();
      expect((await s.kernel.update(MAP.services, keys(f4, f6), values(7, 8))).count).toBe(2);
      await s.kernel.update(MAP.services, keys(f4), values(9));
      const d = await s.kernel.dump(MAP.services);
      const got = new Map<string, number>();
      for (let i = 0; i < d.count; i++) got.set(readServiceKey(d.keys, i * SIZE.svcKey).address, readServiceValue(d.values, i * SIZE.svcVal).set);
      expect(got).toEqual(new Map([['198.18.60.1', 9], ['fd00:60::1', 8]]));
      expect((await s.kernel.delete(MAP.services, keys(f4, { ...f4, port: 81 }, f6))).count).toBe(3);
      expect((await s.kernel.dump(MAP.services)).count).toBe(0);
    });

    it('refuses records of the wrong size, naming the map', async () => {
      await s.kernel.load();
      await expect(s.kernel.update(MAP.services, Buffer.alloc(SIZE.svcKey + 1), Buffer.alloc(SIZE.svcVal))).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining(MAP.services) });
      await expect(s.kernel.update(MAP.services, keys(f4), Buffer.alloc(3))).rejects.toMatchObject({ code: 'EINVAL' });
    });

    it('apply() runs its steps in order in one call; the first refused step stops the rest and is named', async () => {
      await s.kernel.load();
      const r = await s.kernel.apply([
        { op: 'update', map: MAP.services, keys: keys(f4, f6), values: values(7, 8) },
        { op: 'delete', map: MAP.services, keys: keys(f6) },
        { op: 'update', map: MAP.services, keys: keys(f4), values: values(9) },
      ]);
      expect(r.steps).toBe(3);
      const d = await s.kernel.dump(MAP.services);
      expect(d.count).toBe(1);
      expect(readServiceValue(d.values, 0).set).toBe(9);
      await expect(s.kernel.apply([
        { op: 'delete', map: MAP.services, keys: keys(f4) },
        { op: 'update', map: MAP.services, keys: keys(f6), values: Buffer.alloc(3) },
        { op: 'update', map: MAP.services, keys: keys(f4), values: values(5) },
      ])).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(new RegExp(`${MAP.services}.*\\(step 2 of 3\\)`)) });
      expect((await s.kernel.dump(MAP.services)).count).toBe(0); // step 1 done, step 3 never sent
      // A full sync's size (the libbpf kernel sends it off the JS thread; a few elements run on it): same result.
      const many = Array.from({ length: 3000 }, (_, i): Frontend => ({ address: `198.18.${61 + (i >> 8)}.${i & 255}`, port: 80, protocol: 'TCP' }));
      const big = await s.kernel.apply([{ op: 'update', map: MAP.services, keys: keys(...many), values: values(...many.map((_, i) => i + 1)) }]);
      expect(big.steps).toBe(1);
      expect((await s.kernel.dump(MAP.services)).count).toBe(3000);
      await s.kernel.apply([{ op: 'delete', map: MAP.services, keys: keys(...many) }]);
      expect((await s.kernel.dump(MAP.services)).count).toBe(0);
    });

    it('keeps pinned maps and links across a restart, adopting the links; detach removes both', async () => {
      await s.kernel.load();
      const first = await s.kernel.attach();
      expect(first).toHaveLength(8);
      expect(first.every((l) => !l.adopted)).toBe(true);
      await s.kernel.update(MAP.services, keys(f4), values(7));
      s.kernel.close();
      const again = s.reopen();
      await again.load();
      expect((await again.dump(MAP.services)).count).toBe(1);
      const second = await again.attach();
      expect(second.every((l) => l.adopted)).toBe(true);
      expect(second.map((l) => l.linkId)).toEqual(first.map((l) => l.linkId));
      expect(again.links()).toHaveLength(8);
      expect(again.detach()).toBe(8);
      expect(again.pinned()).toBe(false);
      expect(again.links()).toEqual([]);
      again.close();
    });
  });
}
