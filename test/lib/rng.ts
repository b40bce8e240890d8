// A seeded PRNG (mulberry32) for the fuzz tests: each case draws from its own (seed, part,
// index) stream, so a failure names the case that reproduces it.
export class Rng {
  private s: number;
  constructor(...seeds: number[]) {
    let h = 0x811c9dc5;
    for (const x of seeds) h = Math.imul(h ^ (x >>> 0), 0x01000193) ^ (h >>> 13);
    this.s = h >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let z = Math.imul(this.s ^ (this.s >>> 15), 1 | this.s);
    z = (z + Math.imul(z ^ (z >>> 7), 61 | z)) ^ z;
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}
