// Element keys and endpoint data as the kernel holds them: the bytes a rule's registers hold when it looks them up.
// A concatenation (`ip daddr . meta l4proto . th dport`) is laid out one field per 32-bit register, each field
// zero-padded to 4 bytes: address, protocol (1 byte + 3), port (2 bytes, network order, + 2), then the slot that
// numgen writes (4 bytes, host order). Both tables' elements are made here (the IPVS mode's too, ipvs/filter.ts);
// `explain` builds keys with the same functions to look a Service up.
//
// These run once per element: at 250k endpoints a full sync makes ~500k keys, so they avoid per-call allocations
// (zeroed, slotKeys) and parse IPv4 text in place (writeIP).
import { ipToBytes } from '../../../model/ip';
import type { Protocol } from '../../../model/types';
import { IPPROTO } from '../netlink/constants';

/** The protocol numbers of the Service protocols (meta l4proto). */
export const PROTO_NUMBER: Record<Protocol, number> = IPPROTO;

/**
 * A zero-filled small buffer from Node's shared pool: Buffer.alloc gives every one its own ArrayBuffer, and
 * a 44k-Service sync makes ~10^5 of them, which showed up as most of its garbage-collection time.
 */
export function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

/**
 * Writes an address's bytes at `off`; returns their length. IPv4 text is parsed in place: at 250k endpoints this
 * is faster than any cache lookup. (Addresses reaching the ruleset were validated by the model.)
 */
function writeIP(buf: Buffer, off: number, ip: string): number {
  if (ip.includes(':')) {
    buf.set(ipToBytes(ip), off);
    return 16;
  }
  let v = 0;
  let o = off;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46 /* . */) {
      buf[o++] = v;
      v = 0;
    } else {
      v = v * 10 + c - 48;
    }
  }
  buf[o] = v;
  return 4;
}

const addrLenOf = (ip: string) => (ip.includes(':') ? 16 : 4);

/** `address . proto . port`: the key of a Service address's elements (service-ips, the policy sets, ...). */
export function addrProtoPortKey(ip: string, proto: number, port: number): Buffer {
  const len = addrLenOf(ip);
  const key = zeroed(len + 8);
  writeIP(key, 0, ip);
  key[len] = proto;
  key.writeUInt16BE(port, len + 4);
  return key;
}

/** `proto . port`: the key of a NodePort's elements. */
export function protoPortKey(proto: number, port: number): Buffer {
  const key = zeroed(8);
  key[0] = proto;
  key.writeUInt16BE(port, 4);
  return key;
}

/** `base . slot` for slots 0..n-1 (slot in host order, as numgen writes it), as views of one allocation. */
export function slotKeys(base: Buffer, n: number): Buffer[] {
  const len = base.length + 4;
  const all = Buffer.allocUnsafe(len * n);
  const out: Buffer[] = new Array(n);
  for (let k = 0; k < n; k++) {
    const off = k * len;
    all.set(base, off);
    all.writeUInt32LE(k, off + base.length);
    out[k] = all.subarray(off, off + len);
  }
  return out;
}

/** `address . port` of an endpoint: a slot's data, what DNAT reads (address, then port, in consecutive registers). */
export function endpointData(ip: string, port: number): Buffer {
  const len = addrLenOf(ip);
  const d = zeroed(len + 4);
  writeIP(d, 0, ip);
  d.writeUInt16BE(port, len);
  return d;
}

// No caches of address bytes: the agent keeps no per-address Buffer alive between syncs (memory at 30k Services),
// and parsing is cheaper than a lookup for IPv4 (writeIP).
/** `endpoint . endpoint`: a hairpin pair (source and destination the same endpoint after DNAT). */
export function pairBytes(ip: string): Buffer {
  const a = ipToBytes(ip);
  return Buffer.concat([a, a]);
}
