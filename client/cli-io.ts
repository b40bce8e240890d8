// The CLI's side of a run: this process's stdio and inherited fds are the
// program's fds, signals sent to this process are the program's signals,
// and this process ends the way the program did.
import { createReadStream, createWriteStream, fstatSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { type ExecControl, type FdSpec, FORWARDED_SIGNALS } from '../transport/protocol.ts';
import type { Endpoint, RunIO } from './run.ts';
import { output, restoreBlocking } from './stdio.ts';

/** Sockets both ways through libuv; files, ttys and pipes through fs streams. */
export function fdEndpoint(fd: number, mode: FdSpec['mode']): Endpoint {
  if (fstatSync(fd).isSocket()) {
    const s = new net.Socket({ fd, readable: mode !== 'w', writable: mode !== 'r' });
    return {
      input: mode !== 'w' ? s : undefined,
      output: mode !== 'r' ? s : undefined,
      keepOpen: false,
    };
  }
  return {
    input: mode !== 'w' ? createReadStream('', { fd, autoClose: false }) : undefined,
    output: mode !== 'r' ? createWriteStream('', { fd, autoClose: false }) : undefined,
    keepOpen: false,
  };
}

export function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** The program's fds for a CLI run: 0-2 (those open here) or the tty, then the extras. */
export function cliFds(tty: boolean, extra: FdSpec[]): FdSpec[] {
  // A standard fd closed here (`>&-`) stays closed in the program.
  const std: FdSpec[] = tty
    ? [{ fd: 0, mode: 'rw' }]
    : (
        [
          { fd: 0, mode: 'r' },
          { fd: 1, mode: 'w' },
          { fd: 2, mode: 'w' },
        ] as FdSpec[]
      ).filter((f) => isOpen(f.fd));
  return [...std, ...extra];
}

export function cliIO(tty: boolean): RunIO {
  const pauseStdin = () => process.stdin.pause();
  return {
    localFd: (fd) => fd,
    endpoint(spec) {
      if (spec.fd === 0 && tty) {
        return { input: process.stdin, output: output(1), keepOpen: true, stopInput: pauseStdin };
      }
      if (spec.fd === 0) return { input: process.stdin, keepOpen: true, stopInput: pauseStdin };
      if (spec.fd === 1 || spec.fd === 2) return { output: output(spec.fd), keepOpen: true };
      return fdEndpoint(spec.fd, spec.mode);
    },
    controls(send: (c: ExecControl) => void, goingSilent: () => void) {
      const handlers = new Map<NodeJS.Signals, () => void>();
      for (const sig of FORWARDED_SIGNALS) {
        let h: () => void;
        if (sig === 'WINCH' && tty) {
          h = () => send({ type: 'resize', ...windowSize() });
        } else if (sig === 'TSTP') {
          // Stop the program, then ourselves, so the shell's job control sees a stopped job.
          h = () => {
            send({ type: 'signal', signal: 'TSTP' });
            goingSilent();
            setTimeout(() => process.kill(process.pid, 'SIGSTOP'), 20);
          };
        } else {
          h = () => send({ type: 'signal', signal: sig });
        }
        handlers.set(`SIG${sig}`, h);
        process.on(`SIG${sig}`, h);
      }
      const raw = tty && process.stdin.isTTY;
      if (raw) process.stdin.setRawMode(true);
      return () => {
        for (const [sig, h] of handlers) process.off(sig, h);
        if (raw) process.stdin.setRawMode(false);
      };
    },
    note(line) {
      output(2).write(`${line}\n`);
    },
  };
}

export function windowSize(): { rows: number; cols: number } {
  return { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 };
}

/** Dies of the same signal as the program did (so the shell reports it), else exits 128+n. */
export function mirrorSignal(signal: string): never {
  const n = constants.signals[`SIG${signal}` as keyof typeof constants.signals];
  const name = `SIG${signal}` as NodeJS.Signals;
  // Node ignores SIGPIPE and handles others; installing and removing a
  // listener puts the default action back.
  const noop = () => {};
  process.on(name, noop);
  process.off(name, noop);
  process.removeAllListeners(name);
  restoreBlocking();
  try {
    process.kill(process.pid, name);
  } catch {
    // Not a signal this system knows.
  }
  process.exit(128 + (n ?? 0));
}
