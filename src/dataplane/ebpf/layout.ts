// The TS mirror of native/bpf/maps.h: the socket-LB maps' names, record sizes and codecs. Addresses are 16 bytes,
// IPv4 written IPv4-mapped (::ffff:a.b.c.d); addresses and ports in network order, the rest in host (little-endian)
// order. test/unit/ebpf-layout.test.ts holds these sizes to what the kernel reports for the loaded object's maps.
import { bytesToIp, ipToBytes } from '../../model/ip';

/** maps.h SVP_LAYOUT_VERSION: pins live in <root>/v<N>/, so a new layout never adopts an old one's maps. */
export const LAYOUT_VERSION = 1;

export const MAP = {
  services: 'svp_svc',
  slots: 'svp_slots',
  members: 'svp_member',
  backends: 'svp_backends',
  reverse: 'svp_rnat',
  affinity: 'svp_aff',
} as const;

export const SIZE = {
  svcKey: 20,
  svcVal: 16,
  slotKey: 8,
  slotVal: 4,
  memberKey: 8,
  memberVal: 1,
  backendKey: 4,
  backendVal: 20,
  rnatKey: 32,
  rnatVal: 24,
  affKey: 16,
  affVal: 16,
} as const;

/** The capacities compiled into maps.h (SVP_MAX_*). */
export const CAPACITY = { services: 1 << 17, slots: 1 << 18, members: 1 << 18, backends: 1 << 17 } as const;

export const FLAG = { affinity: 0x1, external: 0x2 } as const;

export const IPPROTO = { TCP: 6, UDP: 17 } as const;
export type SocketProtocol = keyof typeof IPPROTO;

export interface Frontend {
  address: string;
  port: number;
  protocol: SocketProtocol;
}

export interface ServiceValue {
  set: number;
  /** Slots 1..count; 0: refuse with ECONNREFUSED. */
  count: number;
  flags: number;
  affinitySeconds: number;
}

export interface BackendValue {
  address: string;
  port: number;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** 16 bytes: an IPv6 address as is, an IPv4 address IPv4-mapped. */
export function address16(ip: string): Buffer {
  const b = ipToBytes(ip);
  return b.length === 16 ? b : Buffer.concat([V4_MAPPED_PREFIX, b]);
}

/** The text form of 16 address bytes (an IPv4-mapped address as plain IPv4). */
export function addressText(b: Uint8Array): string {
  if (Buffer.from(b.buffer, b.byteOffset, 12).equals(V4_MAPPED_PREFIX)) return bytesToIp(b.subarray(12, 16));
  return bytesToIp(b.subarray(0, 16));
}

export function writeServiceKey(out: Buffer, at: number, f: Frontend): void {
  address16(f.address).copy(out, at);
  out.writeUInt16BE(f.port, at + 16);
  out.writeUInt8(IPPROTO[f.protocol], at + 18);
  out.writeUInt8(0, at + 19);
}

export function readServiceKey(b: Buffer, at: number): Frontend {
  const proto = b.readUInt8(at + 18);
  return { address: addressText(b.subarray(at, at + 16)), port: b.readUInt16BE(at + 16), protocol: proto === IPPROTO.UDP ? 'UDP' : 'TCP' };
}

export function writeServiceValue(out: Buffer, at: number, v: ServiceValue): void {
  out.writeUInt32LE(v.set, at);
  out.writeUInt16LE(v.count, at + 4);
  out.writeUInt16LE(v.flags, at + 6);
  out.writeUInt32LE(v.affinitySeconds, at + 8);
  out.writeUInt32LE(0, at + 12);
}

export function readServiceValue(b: Buffer, at: number): ServiceValue {
  return { set: b.readUInt32LE(at), count: b.readUInt16LE(at + 4), flags: b.readUInt16LE(at + 6), affinitySeconds: b.readUInt32LE(at + 8) };
}

/** A (set, number) pair: a slot key (set, slot) or a member key (set, backend id). */
export function writePair(out: Buffer, at: number, set: number, n: number): void {
  out.writeUInt32LE(set, at);
  out.writeUInt32LE(n, at + 4);
}

export function readPair(b: Buffer, at: number): [number, number] {
  return [b.readUInt32LE(at), b.readUInt32LE(at + 4)];
}

export function writeBackendValue(out: Buffer, at: number, v: BackendValue): void {
  address16(v.address).copy(out, at);
  out.writeUInt16BE(v.port, at + 16);
  out.writeUInt16LE(0, at + 18);
}

export function readBackendValue(b: Buffer, at: number): BackendValue {
  return { address: addressText(b.subarray(at, at + 16)), port: b.readUInt16BE(at + 16) };
}

/** Packs records of one size: n records written by `write(buffer, offset, item)`. */
export function pack<T>(items: readonly T[], size: number, write: (out: Buffer, at: number, item: T) => void): Buffer {
  const out = Buffer.alloc(items.length * size);
  for (let i = 0; i < items.length; i++) write(out, i * size, items[i]);
  return out;
}
