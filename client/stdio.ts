// Our own stdout and stderr as writers that never block the event loop.
// Node writes to pipes synchronously, so a stalled reader of our stdout
// would stall everything: stderr, signal forwarding, the connection. Like
// ssh, we make pipe and socket outputs non-blocking while we run and put
// them back to blocking before we exit.
import { fstatSync, writeSync } from 'node:fs';
import net from 'node:net';
import type { Writable } from 'node:stream';

const outputs = new Map<number, Writable>();
const sockets: net.Socket[] = [];

export function output(fd: 1 | 2): Writable {
  let w = outputs.get(fd);
  if (w) return w;
  const st = fstatSync(fd);
  if (st.isFIFO() || st.isSocket()) {
    const s = new net.Socket({ fd, readable: false, writable: true });
    sockets.push(s);
    w = s;
  } else {
    w = fd === 1 ? process.stdout : process.stderr;
  }
  outputs.set(fd, w);
  return w;
}

type BlockingHandle = { _handle?: { setBlocking?: (on: boolean) => number } };

/** Puts a socket's file description, shared with other processes, back to blocking. */
export function unblock(s: net.Socket): void {
  (s as unknown as BlockingHandle)._handle?.setBlocking?.(true);
}

/** Puts the file descriptions we shared with other processes back to blocking. */
export function restoreBlocking(): void {
  for (const s of sockets) unblock(s);
}

/** One line on stderr, synchronously: for the last words before exit. */
export function printLine(line: string): void {
  restoreBlocking();
  try {
    writeSync(2, `${line}\n`);
  } catch {
    // Nobody reads our stderr any more.
  }
}
