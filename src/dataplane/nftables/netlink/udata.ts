// nft's element comment, carried in NFTNL_SET_ELEM_USERDATA as a TLV (libnftnl udata.h): type
// NFTNL_UDATA_SET_ELEM_COMMENT, one length byte, NUL-terminated text. The kernel takes up to NFT_USERDATA_MAXLEN
// (256) bytes of user data, so the text can be 253 bytes: enough for the longest Service port name
// (63 + 1 + 63 + 1 + 63 = 191 bytes; nft's own 128-character limit cut those). Encode and decode live together so
// the transaction, the dump decoder and the fake agree on it.
import { UDATA_SET_ELEM_COMMENT } from './constants';

/** NFT_USERDATA_MAXLEN (256) less the TLV's type and length bytes and the text's NUL. */
export const MAX_COMMENT_BYTES = 253;

const encoded = new Map<string, Buffer>();

/** The user-data bytes for a comment (cached: the same Service names recur in every sync). */
export function encodeElementComment(comment: string): Buffer {
  let b = encoded.get(comment);
  if (!b) {
    // Callers fit their comments (rules/fragment.ts commentWithReasons); this cut, on a UTF-8 boundary, is only a guard.
    const text = cutUtf8(Buffer.from(comment, 'utf8'), MAX_COMMENT_BYTES);
    b = Buffer.concat([Buffer.from([UDATA_SET_ELEM_COMMENT, text.length + 1]), text, Buffer.from([0])]);
    if (encoded.size > 200_000) encoded.clear();
    encoded.set(comment, b);
  }
  return b;
}

/** The comment in an element's user data, if it has one. */
export function decodeElementComment(udata: Buffer): string | undefined {
  for (let off = 0; off + 2 <= udata.length; ) {
    const type = udata[off];
    const len = udata[off + 1];
    if (type === UDATA_SET_ELEM_COMMENT) {
      const v = udata.subarray(off + 2, off + 2 + len);
      const nul = v.indexOf(0);
      return v.toString('utf8', 0, nul < 0 ? v.length : nul);
    }
    off += 2 + len;
  }
  return undefined;
}

/** At most `max` bytes of UTF-8 text, never ending inside a character. */
export function cutUtf8(b: Buffer, max: number): Buffer {
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}
