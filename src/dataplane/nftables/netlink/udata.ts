// nft's element comment, carried in NFTNL_SET_ELEM_USERDATA as a TLV (libnftnl udata.h): type
// NFTNL_UDATA_SET_ELEM_COMMENT, one length byte, NUL-terminated text of at most 127 bytes. Encode and decode
// live together so the transaction, the dump decoder and the fake agree on it.
import { UDATA_SET_ELEM_COMMENT } from './constants';

const encoded = new Map<string, Buffer>();

/** The user-data bytes for a comment (cached: the same Service names recur in every sync). */
export function encodeElementComment(comment: string): Buffer {
  let b = encoded.get(comment);
  if (!b) {
    const text = Buffer.from(comment, 'utf8').subarray(0, 127);
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
