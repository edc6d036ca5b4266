// Between the image (image.ts) and the maps: reading what the kernel holds, and sending ordered operations as one
// batch per map and step (BPF_MAP_*_BATCH). Map updates are not a transaction: a failure stops the sequence where
// it is, and because of the order every state on the way is one a connect can use (the next sync, a full one,
// finishes the job). The error names the map and the key the kernel refused.
import type { EbpfKernel, EbpfMapStep } from './kernel';
import { type Image, type Ops, emptyImage, memberKey, slotKey, splitMemberKey, splitSlotKey } from './image';
import { MAP, SIZE, pack, readBackendValue, readPair, readServiceKey, readServiceValue, writeBackendValue, writePair, writeServiceKey, writeServiceValue } from './layout';

export interface ConvergeStats {
  syscalls: number;
  /** Time inside bpf() calls. */
  micros: number;
  bytes: number;
}

export async function readImage(kernel: EbpfKernel): Promise<Image> {
  const img = emptyImage();
  const [svc, slots, members, backends] = await Promise.all([MAP.services, MAP.slots, MAP.members, MAP.backends].map((m) => kernel.dump(m)));
  for (let i = 0; i < svc.count; i++) {
    const frontend = readServiceKey(svc.keys, i * SIZE.svcKey);
    img.services.set(`${frontend.protocol}|${frontend.address}|${frontend.port}`, { frontend, value: readServiceValue(svc.values, i * SIZE.svcVal) });
  }
  for (let i = 0; i < slots.count; i++) {
    const [set, slot] = readPair(slots.keys, i * SIZE.slotKey);
    img.slots.set(slotKey(set, slot), slots.values.readUInt32LE(i * SIZE.slotVal));
  }
  for (let i = 0; i < members.count; i++) {
    const [set, backend] = readPair(members.keys, i * SIZE.memberKey);
    img.members.add(memberKey(set, backend));
  }
  for (let i = 0; i < backends.count; i++) img.backends.set(backends.keys.readUInt32LE(i * SIZE.backendKey), readBackendValue(backends.values, i * SIZE.backendVal));
  return img;
}

const u32 = (out: Buffer, at: number, v: number) => out.writeUInt32LE(v, at);
const slotOf = (out: Buffer, at: number, k: number) => {
  const [set, slot] = splitSlotKey(k);
  writePair(out, at, set, slot);
};
const memberOf = (out: Buffer, at: number, k: number) => {
  const [set, backend] = splitMemberKey(k);
  writePair(out, at, set, backend);
};

/** Sends the operations in image.ts's order, as one apply(): one trip to the addon's worker for the whole sync. */
export async function applyToKernel(kernel: EbpfKernel, ops: Ops): Promise<ConvergeStats> {
  const steps: EbpfMapStep[] = [];
  let bytes = 0;
  const put = (map: string, keys: Buffer, values: Buffer) => {
    if (keys.length) steps.push({ op: 'update', map, keys, values });
    bytes += keys.length + values.length;
  };
  const del = (map: string, keys: Buffer) => {
    if (keys.length) steps.push({ op: 'delete', map, keys });
    bytes += keys.length;
  };
  put(MAP.backends, pack(ops.backendsPut.map((x) => x[0]), SIZE.backendKey, u32), pack(ops.backendsPut.map((x) => x[1]), SIZE.backendVal, writeBackendValue));
  put(MAP.slots, pack(ops.slotsPut.map((x) => x[0]), SIZE.slotKey, slotOf), pack(ops.slotsPut.map((x) => x[1]), SIZE.slotVal, u32));
  put(MAP.members, pack(ops.membersPut, SIZE.memberKey, memberOf), Buffer.alloc(ops.membersPut.length, 1));
  put(MAP.services, pack(ops.servicesPut.map((s) => s.frontend), SIZE.svcKey, writeServiceKey), pack(ops.servicesPut.map((s) => s.value), SIZE.svcVal, writeServiceValue));
  del(MAP.services, pack(ops.servicesDelete, SIZE.svcKey, writeServiceKey));
  del(MAP.slots, pack(ops.slotsDelete, SIZE.slotKey, slotOf));
  del(MAP.members, pack(ops.membersDelete, SIZE.memberKey, memberOf));
  del(MAP.backends, pack(ops.backendsDelete, SIZE.backendKey, u32));
  if (steps.length === 0) return { syscalls: 0, micros: 0, bytes: 0 };
  const r = await kernel.apply(steps);
  return { syscalls: r.syscalls, micros: r.micros, bytes };
}
