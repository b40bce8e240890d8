// QUIC variable-length integers (RFC 9000 §16): the two high bits of the first
// byte give the length (1, 2, 4 or 8 bytes). Values above 2^53-1 cannot be
// represented as a JS number and are rejected rather than silently rounded.

export function varintLength(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`varint out of range: ${value}`);
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x40000000) return 4;
  return 8;
}

/** Writes `value` at `offset` and returns the offset after it. */
export function writeVarint(buf: Uint8Array, offset: number, value: number): number {
  const len = varintLength(value);
  switch (len) {
    case 1:
      buf[offset] = value;
      break;
    case 2:
      buf[offset] = 0x40 | (value >>> 8);
      buf[offset + 1] = value & 0xff;
      break;
    case 4:
      buf[offset] = 0x80 | (value >>> 24);
      buf[offset + 1] = (value >>> 16) & 0xff;
      buf[offset + 2] = (value >>> 8) & 0xff;
      buf[offset + 3] = value & 0xff;
      break;
    default: {
      const hi = Math.floor(value / 2 ** 32);
      const lo = value >>> 0;
      buf[offset] = 0xc0 | (hi >>> 24);
      buf[offset + 1] = (hi >>> 16) & 0xff;
      buf[offset + 2] = (hi >>> 8) & 0xff;
      buf[offset + 3] = hi & 0xff;
      buf[offset + 4] = lo >>> 24;
      buf[offset + 5] = (lo >>> 16) & 0xff;
      buf[offset + 6] = (lo >>> 8) & 0xff;
      buf[offset + 7] = lo & 0xff;
    }
  }
  return offset + len;
}

export function encodeVarint(value: number): Buffer {
  const buf = Buffer.allocUnsafe(varintLength(value));
  writeVarint(buf, 0, value);
  return buf;
}

/** The decoded value and its encoded length. */
export interface Decoded {
  value: number;
  length: number;
}

export class VarintRangeError extends RangeError {}

/**
 * Reads a varint at `offset`; returns null when `buf` ends before it does.
 * Throws VarintRangeError for an 8-byte value beyond 2^53-1.
 */
export function readVarint(buf: Uint8Array, offset: number): Decoded | null {
  if (offset >= buf.length) return null;
  const first = buf[offset]!;
  const length = 1 << (first >>> 6);
  if (offset + length > buf.length) return null;
  let value = first & 0x3f;
  if (length === 8) {
    const hi =
      ((value << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
    const lo =
      ((buf[offset + 4]! << 24) |
        (buf[offset + 5]! << 16) |
        (buf[offset + 6]! << 8) |
        buf[offset + 7]!) >>>
      0;
    if (hi >= 2 ** 21) throw new VarintRangeError('varint beyond 2^53-1');
    value = hi * 2 ** 32 + lo;
  } else {
    for (let i = 1; i < length; i++) value = value * 256 + buf[offset + i]!;
  }
  return { value, length };
}
