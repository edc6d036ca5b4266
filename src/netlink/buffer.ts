// The one growable byte buffer: netlink messages (message.ts's NetlinkWriter), the addon's record stream
// (src/native/recordStream.ts) and nftables rule bodies (RuleBuilder's slabs) are all written into one of these.
// A sync writes thousands of messages or ~10^5 rules: appends go straight into one Buffer, doubled when full
// (amortised O(1)), with no Buffer per attribute or message. Integers are little-endian: host order here, as
// netlink and libnftnl want.

export class GrowableBuffer {
  /** The backing buffer: replaced when it grows, so read it only after reserve() (never keep it across one). */
  buf: Buffer;
  private len = 0;

  constructor(initial = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** Bytes written. */
  get length(): number {
    return this.len;
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Claims the next `n` bytes (left as they are: the caller writes every one) and returns where they start. */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.len;
    this.len += n;
    return at;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.len);
    this.len += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    // Most are keys of a few bytes: TypedArray#set is several times cheaper than Buffer#copy for those.
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** Writes s as UTF-8 plus a NUL; returns the bytes written. */
  utf8z(s: string): number {
    this.ensure(s.length * 3 + 1);
    const n = this.buf.write(s, this.len, 'utf8');
    this.buf[this.len + n] = 0;
    this.len += n + 1;
    return n + 1;
  }

  /** Overwrites a u16 written earlier (for lengths and counts known only at the end). */
  patchU16(at: number, v: number): void {
    this.buf.writeUInt16LE(v, at);
  }

  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }

  /** The bytes from `start` to the end, as a view (no copy) of the current backing buffer. */
  slice(start: number): Buffer {
    return this.buf.subarray(start, this.len);
  }

  /** Everything written, as a view: do not write more while it is in use. */
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  /** A copy of what was written (the buffer may be reused after reset()). */
  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }

  reset(): void {
    this.len = 0;
  }
}
