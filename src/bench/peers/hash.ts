// The name hashing kube-proxy uses for its per-service / per-endpoint chains:
// base32.StdEncoding(sha256(s)), truncated (16 characters in iptables mode, 8 in nftables mode).

import { createHash } from 'node:crypto';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (upper case, "=" padded), as Go's base32.StdEncoding. */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

/** First `chars` characters of base32(sha256(s)). */
export function sha256Base32(s: string, chars: number): string {
  const digest = createHash('sha256').update(s, 'utf8').digest();
  // 5 bits per character: only ceil(chars * 5 / 8) bytes are needed.
  return base32(digest.subarray(0, Math.min(digest.length, Math.ceil((chars * 5) / 8)))).slice(0, chars);
}
