// Strangers while pairing is open: a few pairing connections at once, and a few a minute from
// each source address, so that no one can hold the pairing window or the daemon's memory by
// opening many (the code itself is guarded by its one use and its ten minutes).

/** Pairing connections served at once. */
export const PAIRING_AT_ONCE = 4;
/** Pairing connections one address may open per minute. */
export const PAIRING_PER_MINUTE = 10;
const MINUTE_MS = 60_000;

export class PairingGate {
  private open = 0;
  /** Start times of the last minute's connections, per address. */
  private readonly recent = new Map<string, number[]>();

  /** A slot for a pairing connection from `address`, or why there is none; release() it. */
  admit(address: string, now = Date.now()): { release: () => void } | { refused: string } {
    const times = (this.recent.get(address) ?? []).filter((t) => now - t < MINUTE_MS);
    if (times.length >= PAIRING_PER_MINUTE) {
      this.recent.set(address, times);
      return {
        refused: `more than ${PAIRING_PER_MINUTE} pairing attempts a minute from ${address}`,
      };
    }
    if (this.open >= PAIRING_AT_ONCE) return { refused: 'too many pairing connections at once' };
    times.push(now);
    this.recent.set(address, times);
    // Forget addresses whose minute is over, so the map stays as small as the traffic.
    for (const [a, ts] of this.recent)
      if (ts.every((t) => now - t >= MINUTE_MS)) this.recent.delete(a);
    this.open++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.open--;
      },
    };
  }
}
