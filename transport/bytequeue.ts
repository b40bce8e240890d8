// Bytes received in chunks, consumed from the front. Joining chunks only
// when a whole unit (frame, message) is there keeps parsing linear however
// finely the input is cut.
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Index of the first live chunk: Array.shift() would make draining quadratic. */
  private first = 0;
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** The first `n` bytes (fewer if fewer are held), without consuming them. */
  peek(n: number): Buffer {
    n = Math.min(n, this.length);
    const head = this.chunks[this.first];
    if (!head) return Buffer.alloc(0);
    if (head.length >= n) return head.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (let i = this.first; off < n; i++) {
      const c = this.chunks[i]!;
      off += c.copy(out, off, 0, Math.min(c.length, n - off));
    }
    return out;
  }

  /** Removes and returns the first `n` bytes; the caller checks `length` first. */
  take(n: number): Buffer {
    if (n > this.length) throw new RangeError('ByteQueue.take beyond its length');
    this.length -= n;
    const head = this.chunks[this.first];
    if (head && head.length >= n) {
      if (head.length === n) this.drop();
      else this.chunks[this.first] = head.subarray(n);
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[this.first]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.drop();
      else this.chunks[this.first] = c.subarray(k);
    }
    return out;
  }

  /** Everything held, consumed. */
  takeAll(): Buffer {
    return this.take(this.length);
  }

  private drop(): void {
    this.first++;
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first > 1024 && this.first * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}
