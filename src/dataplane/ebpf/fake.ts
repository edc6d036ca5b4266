// An in-memory EbpfKernel for unit tests: the maps as the kernel keeps them (fixed-size records, capacities, BPF_ANY
// updates, absent keys ignored by delete), links as pins. test/contract/ebpf-kernel.contract.ts holds it and
// LibbpfKernel to one behaviour; where they differ the kernel is right.
import type { EbpfKernel, EbpfLinkInfo, EbpfMapInfo, EbpfMapOpResult, EbpfMapStep, EbpfPinnedLink } from './kernel';
import { CAPACITY, MAP, SIZE } from './layout';

const PROGRAMS = ['svp_connect4', 'svp_connect6', 'svp_sendmsg4', 'svp_sendmsg6', 'svp_recvmsg4', 'svp_recvmsg6', 'svp_getpeername4', 'svp_getpeername6'];

interface FakeMap {
  keySize: number;
  valueSize: number;
  maxEntries: number;
  lru: boolean;
  entries: Map<string, Buffer>;
}

function errnoError(code: string, errno: number, message: string): Error {
  return Object.assign(new Error(message), { code, errno });
}

export class FakeEbpfKernel implements EbpfKernel {
  /** Pinned maps survive close(), as under bpffs; shared by every FakeEbpfKernel given the same store. */
  private maps_: Map<string, FakeMap> | undefined;
  private loaded = false;
  /** Every operation, in order ("update svp_svc 3"), for tests of the update order. */
  readonly log: string[] = [];
  /** Fails the next operation on this map with this errno code (tests of a kernel refusal). */
  failNext?: { map: string; code: string; errno: number };

  constructor(private readonly store: { maps?: Map<string, FakeMap>; links?: EbpfPinnedLink[] } = {}) {}

  preflight(): void {}

  async load(): Promise<EbpfMapInfo[]> {
    if (!this.store.maps) {
      const m = (keySize: number, valueSize: number, maxEntries: number, lru = false): FakeMap => ({ keySize, valueSize, maxEntries, lru, entries: new Map() });
      this.store.maps = new Map([
        [MAP.services, m(SIZE.svcKey, SIZE.svcVal, CAPACITY.services)],
        [MAP.slots, m(SIZE.slotKey, SIZE.slotVal, CAPACITY.slots)],
        [MAP.members, m(SIZE.memberKey, SIZE.memberVal, CAPACITY.members)],
        [MAP.backends, m(SIZE.backendKey, SIZE.backendVal, CAPACITY.backends)],
        [MAP.reverse, m(SIZE.rnatKey, SIZE.rnatVal, 1 << 16, true)],
        [MAP.affinity, m(SIZE.affKey, SIZE.affVal, 1 << 16, true)],
      ]);
    }
    this.maps_ = this.store.maps;
    this.loaded = true;
    return this.maps();
  }

  async attach(): Promise<EbpfLinkInfo[]> {
    this.requireLoaded();
    const adopted = !!this.store.links?.length;
    if (!this.store.links?.length) this.store.links = PROGRAMS.map((p, i) => ({ pin: `links/${p}`, linkId: i + 1, progId: 100 + i, attachType: 0, cgroupId: 1n }));
    return this.store.links.map((l, i) => ({ program: PROGRAMS[i], linkId: l.linkId, progId: l.progId, adopted }));
  }

  private requireLoaded(): Map<string, FakeMap> {
    if (!this.loaded || !this.maps_) throw errnoError('EBADF', 9, 'no BPF object loaded');
    return this.maps_;
  }

  private map(name: string, op: string): FakeMap {
    const m = this.requireLoaded().get(name);
    if (!m) throw errnoError('ENOENT', 2, `BPF map ${name}: not in the loaded object`);
    if (this.failNext?.map === name) {
      const f = this.failNext;
      this.failNext = undefined;
      throw errnoError(f.code, f.errno, `${op} BPF map ${name}: ${f.code}`);
    }
    return m;
  }

  async update(name: string, keys: Buffer, values: Buffer): Promise<EbpfMapOpResult> {
    const m = this.map(name, 'update');
    if (keys.length % m.keySize) throw errnoError('EINVAL', 22, `BPF map ${name}: keys are not a whole number of ${m.keySize}-byte keys`);
    const count = keys.length / m.keySize;
    if (values.length !== count * m.valueSize) throw errnoError('EINVAL', 22, `BPF map ${name}: ${count} keys but ${values.length} bytes of ${m.valueSize}-byte values`);
    for (let i = 0; i < count; i++) {
      const k = keys.subarray(i * m.keySize, (i + 1) * m.keySize).toString('hex');
      if (!m.entries.has(k) && m.entries.size >= m.maxEntries) {
        if (m.lru) m.entries.delete(m.entries.keys().next().value as string);
        else throw errnoError('E2BIG', 7, `update BPF map ${name} (element ${i}, key ${k}): Argument list too long`);
      }
      m.entries.set(k, Buffer.from(values.subarray(i * m.valueSize, (i + 1) * m.valueSize)));
    }
    this.log.push(`update ${name} ${count}`);
    return { count, syscalls: Math.ceil(count / 8192), micros: 0 };
  }

  async delete(name: string, keys: Buffer): Promise<EbpfMapOpResult> {
    const m = this.map(name, 'delete from');
    if (keys.length % m.keySize) throw errnoError('EINVAL', 22, `BPF map ${name}: keys are not a whole number of ${m.keySize}-byte keys`);
    const count = keys.length / m.keySize;
    for (let i = 0; i < count; i++) m.entries.delete(keys.subarray(i * m.keySize, (i + 1) * m.keySize).toString('hex'));
    this.log.push(`delete ${name} ${count}`);
    return { count, syscalls: Math.ceil(count / 8192), micros: 0 };
  }

  async dump(name: string): Promise<EbpfMapOpResult & { keys: Buffer; values: Buffer }> {
    const m = this.map(name, 'dump');
    const keys = Buffer.concat([...m.entries.keys()].map((k) => Buffer.from(k, 'hex')));
    const values = Buffer.concat([...m.entries.values()]);
    return { count: m.entries.size, syscalls: 1, micros: 0, keys, values };
  }

  async apply(steps: EbpfMapStep[]): Promise<{ steps: number; syscalls: number; micros: number }> {
    let syscalls = 0;
    for (const [i, st] of steps.entries()) {
      try {
        syscalls += (st.op === 'update' ? await this.update(st.map, st.keys, st.values) : await this.delete(st.map, st.keys)).syscalls;
      } catch (e) {
        (e as Error).message += ` (step ${i + 1} of ${steps.length})`;
        throw e;
      }
    }
    return { steps: steps.length, syscalls, micros: 0 };
  }

  maps(): EbpfMapInfo[] {
    if (!this.maps_) return [];
    return [...this.maps_].map(([name, m], i) => ({ name, id: i + 1, type: m.lru ? 9 : 1, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: 0, memlock: m.maxEntries * 16 }));
  }

  links(): EbpfPinnedLink[] {
    return this.store.links ?? [];
  }

  pinned(): boolean {
    return !!this.store.maps || !!this.store.links?.length;
  }

  detach(): number {
    const n = this.store.links?.length ?? 0;
    this.store.links = undefined;
    this.store.maps = undefined;
    this.maps_ = undefined;
    this.loaded = false;
    return n;
  }

  close(): void {
    this.loaded = false;
    this.maps_ = undefined;
  }

  /** What a map holds, hex key -> value (tests). */
  entries(name: string): Map<string, Buffer> {
    return this.store.maps?.get(name)?.entries ?? new Map();
  }
}
