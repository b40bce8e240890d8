// `tether run`: start a program on the device with this process's argv, env,
// cwd, umask and fds, relay its I/O and signals, and end the way it ended.
import { createReadStream, createWriteStream, fstatSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { Connection } from '../transport/connection.ts';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { MessageReader, writeMessage } from '../transport/messages.ts';
import {
  type ExecControl,
  type ExecStart,
  type FdSpec,
  FORWARDED_SIGNALS,
  parseExecEvent,
} from '../transport/protocol.ts';
import type { Stream } from '../transport/stream.ts';
import { describeClose } from './connect.ts';
import { TetherError } from './errors.ts';
import type { InheritedFd } from './fds.ts';
import { output, restoreBlocking } from './stdio.ts';

export interface RunRequest {
  argv: string[];
  env: string[];
  cwd: string;
  umask: number;
  tty: boolean;
  extraFds: InheritedFd[];
  verbose: boolean;
  deviceName: string;
}

/** How the run ended, for the caller to mirror. */
export type Outcome = { code: number } | { signal: string; core: boolean };

interface Endpoint {
  input?: Readable;
  output?: Writable;
  /** Our own stdout/stderr are never ended, only flushed. */
  keepOpen: boolean;
}

/** Local end of a forwarded fd: sockets both ways through libuv, the rest through fs streams. */
function localEndpoint(fd: number, mode: FdSpec['mode']): Endpoint {
  if (fd === 0) return { input: process.stdin, keepOpen: true };
  if (fd === 1 || fd === 2) return { output: output(fd), keepOpen: true };
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

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once everything written to `w` so far has been handed to the kernel. */
function flushed(w: Writable): Promise<void> {
  if (w.destroyed || w.writableEnded) return Promise.resolve();
  return new Promise((resolve) => w.write(Buffer.alloc(0), () => resolve()));
}

export async function run(conn: Connection, req: RunRequest): Promise<Outcome> {
  // A standard fd closed here (`>&-`) stays closed in the program.
  const fds: FdSpec[] = req.tty
    ? [{ fd: 0, mode: 'rw' }]
    : (
        [
          { fd: 0, mode: 'r' },
          { fd: 1, mode: 'w' },
          { fd: 2, mode: 'w' },
        ] as FdSpec[]
      ).filter((f) => isOpen(f.fd));
  for (const f of req.extraFds) fds.push({ fd: f.fd, mode: f.mode });
  const tty = req.tty
    ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 }
    : null;

  const exec = conn.openStream();
  const start: ExecStart = {
    kind: 'exec',
    argv: req.argv,
    file: req.argv[0]!,
    env: req.env,
    cwd: req.cwd,
    umask: req.umask,
    tty,
    fds,
  };
  writeMessage(exec, start);

  const outputsDone: Promise<void>[] = [];
  const inputs: { local: Readable; stream: Stream }[] = [];
  for (const spec of fds) {
    const s = conn.openStream();
    writeMessage(s, { kind: 'fd', exec: exec.id, fd: spec.fd });
    const local: Endpoint =
      req.tty && spec.fd === 0
        ? { input: process.stdin, output: output(1), keepOpen: true }
        : localEndpoint(spec.fd, spec.mode);
    if (local.input) {
      const input = local.input;
      inputs.push({ local: input, stream: s });
      input.pipe(s);
      input.on('error', (e) => s.destroy(new TransportError(ErrorCode.CANCELLED, e.message)));
      // The program closed this fd or exited: stop reading our side.
      s.on('close', () => {
        input.unpipe(s);
        if (input === process.stdin) input.pause();
        else input.destroy();
      });
    } else {
      s.end();
    }
    if (local.output) {
      outputsDone.push(relayOutput(s, local.output, local.keepOpen));
    } else {
      s.resume();
    }
  }

  // Signals sent to us go to the program's process group.
  const sendControl = (c: ExecControl) => {
    if (!exec.destroyed && !exec.writableEnded) writeMessage(exec, c);
  };
  const handlers = new Map<string, () => void>();
  for (const sig of FORWARDED_SIGNALS) {
    let h: () => void;
    if (sig === 'WINCH' && tty) {
      h = () =>
        sendControl({
          type: 'resize',
          rows: process.stdout.rows || 24,
          cols: process.stdout.columns || 80,
        });
    } else if (sig === 'TSTP') {
      // Stop the program, then ourselves, so the shell's job control sees a stopped job.
      h = () => {
        sendControl({ type: 'signal', signal: 'TSTP' });
        setTimeout(() => process.kill(process.pid, 'SIGSTOP'), 20);
      };
    } else {
      h = () => sendControl({ type: 'signal', signal: sig });
    }
    handlers.set(`SIG${sig}`, h);
    process.on(`SIG${sig}` as NodeJS.Signals, h);
  }
  const restoreTty = setRawMode(tty !== null);

  try {
    let outcome: Outcome | null = null;
    const reader = new MessageReader(exec);
    try {
      for await (const m of reader) {
        const ev = parseExecEvent(m);
        if (ev.type === 'started') {
          if (req.verbose) output(2).write(`tether: started pid ${ev.pid} on ${req.deviceName}\n`);
        } else if (ev.type === 'error') {
          throw new TetherError(ev.message, ev.exitCode);
        } else if (ev.signal !== null) {
          outcome = { signal: ev.signal, core: ev.core };
        } else {
          outcome = { code: ev.code ?? 255 };
        }
      }
    } catch (e) {
      if (e instanceof TetherError) throw e;
      const cause = conn.closeError ?? (e as Error);
      throw new TetherError(`${req.deviceName}: ${describeClose(cause)}`);
    }
    if (!outcome) {
      throw new TetherError(
        `${req.deviceName}: ${conn.closeError ? describeClose(conn.closeError) : 'the device ended the run without an exit status'}`,
      );
    }
    // The device sends the exit after all output; wait until we have written it too.
    await Promise.all(outputsDone);
    exec.end();
    return outcome;
  } finally {
    for (const [sig, h] of handlers) process.off(sig as NodeJS.Signals, h);
    restoreTty();
    for (const i of inputs) {
      i.local.unpipe(i.stream);
      if (i.local === process.stdin) process.stdin.pause();
    }
  }
}

function relayOutput(s: Stream, out: Writable, keepOpen: boolean): Promise<void> {
  return new Promise((resolve) => {
    s.pipe(out, { end: !keepOpen });
    // Our reader went away (EPIPE): tell the device to stop, as a local pipe would.
    out.on('error', () => {
      s.unpipe(out);
      s.destroy(new TransportError(ErrorCode.CANCELLED, 'reader closed'));
      resolve();
    });
    const done = () => {
      if (keepOpen) flushed(out).then(resolve);
      else out.once('finish', resolve).once('close', resolve);
    };
    s.once('end', done);
    s.once('close', () => {
      if (!s.readableEnded) resolve();
    });
  });
}

function setRawMode(on: boolean): () => void {
  if (!on || !process.stdin.isTTY) return () => {};
  process.stdin.setRawMode(true);
  return () => process.stdin.setRawMode(false);
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
