// One `exec` stream: start a program with the client's argv, env, cwd, umask,
// fds and optional pty; relay its fds over `fd` streams; forward signals;
// report the exit only after every output stream has been delivered.
import { closeSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import tty from 'node:tty';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { MessageReader, writeMessage } from '../transport/messages.ts';
import {
  type ExecEvent,
  type ExecStart,
  type FdMode,
  parseExecControl,
} from '../transport/protocol.ts';
import type { Stream } from '../transport/stream.ts';
import { watchChild } from './children.ts';
import type { Logger } from './log.ts';
import * as native from './native.ts';
import { killTree } from './proctree.ts';

export interface RunAs {
  uid: number;
  gid: number;
  groups: number[] | null;
}

const signalNumber = (name: string) =>
  constants.signals[`SIG${name}` as keyof typeof constants.signals];

function signalName(n: number): string {
  for (const [name, value] of Object.entries(constants.signals))
    if (value === n) return name.slice(3);
  return String(n);
}

const PIPE_SIZE = 1024 * 1024;

/** The daemon's end of one program fd and the program's end, before spawn. */
interface FdPlumbing {
  fd: number;
  mode: FdMode;
  ours: number;
  theirs: number;
}

export class ExecSession {
  readonly id: number;
  private readonly control: Stream;
  private readonly start: ExecStart;
  private readonly log: Logger;
  private readonly runAs: RunAs;
  private readonly fdStreams = new Map<number, Stream>();
  private pid = 0;
  private exited = false;
  private outputsLeft = 0;
  private exitEvent: ExecEvent | null = null;
  private finished = false;
  /** Streams carrying data to the program, and our ends of its fds. */
  private readonly inputs: Stream[] = [];
  private readonly locals: net.Socket[] = [];
  private readonly startTimer: NodeJS.Timeout;

  constructor(control: Stream, start: ExecStart, runAs: RunAs, log: Logger) {
    this.id = control.id;
    this.control = control;
    this.start = start;
    this.runAs = runAs;
    this.log = log.child({ exec: control.id });
    // The client opens one fd stream per listed fd right after this one.
    this.startTimer = setTimeout(
      () => this.fail('ETIMEDOUT', 'fd streams did not arrive', 255),
      30_000,
    );
    control.on('close', () => this.abort());
    this.maybeSpawn();
  }

  /** An `fd` stream for this exec arrived. */
  attachFd(fd: number, s: Stream): void {
    const unexpected = !this.start.fds.some((f) => f.fd === fd) || this.fdStreams.has(fd);
    if (unexpected || this.pid !== 0 || this.finished) {
      s.destroy(new TransportError(ErrorCode.STREAM_STATE_ERROR, `unexpected fd stream ${fd}`));
      return;
    }
    this.fdStreams.set(fd, s);
    this.maybeSpawn();
  }

  private maybeSpawn(): void {
    if (this.fdStreams.size < this.start.fds.length || this.finished) return;
    clearTimeout(this.startTimer);
    this.spawn();
  }

  private spawn(): void {
    const { start } = this;
    const plumbing: FdPlumbing[] = [];
    let pty: native.Pty | null = null;
    try {
      if (start.tty) {
        pty = native.openpty();
        native.setWinsize(pty.master, start.tty.rows, start.tty.cols);
      }
      for (const { fd, mode } of start.fds) {
        if (pty && fd <= 2) continue;
        if (mode === 'rw') {
          const [a, b] = native.socketpair();
          plumbing.push({ fd, mode, ours: a, theirs: b });
        } else {
          // A 1 MiB pipe lets a program run ahead of the relay instead of
          // blocking every 64 KiB (each block is a wake-up on both sides).
          const [r, w] = native.pipe(PIPE_SIZE);
          plumbing.push(
            mode === 'r' ? { fd, mode, ours: w, theirs: r } : { fd, mode, ours: r, theirs: w },
          );
        }
      }
    } catch (e) {
      for (const p of plumbing) closeFds(p.ours, p.theirs);
      if (pty) closeFds(pty.master, pty.slave);
      return this.fail((e as NodeJS.ErrnoException).code ?? 'EIO', (e as Error).message, 255);
    }

    const maxFd = Math.max(2, ...start.fds.map((f) => f.fd));
    const fds = new Array<number>(maxFd + 1).fill(-1);
    if (pty) fds[0] = fds[1] = fds[2] = pty.slave;
    for (const p of plumbing) fds[p.fd] = p.theirs;

    try {
      this.pid = native.spawn({
        file: start.file,
        argv: start.argv,
        env: start.env,
        cwd: start.cwd || null,
        umask: start.umask,
        fds,
        setsid: true,
        ctty: pty ? 0 : -1,
        uid: this.runAs.uid,
        gid: this.runAs.gid,
        groups: this.runAs.groups,
      });
    } catch (e) {
      for (const p of plumbing) closeFds(p.ours, p.theirs);
      if (pty) closeFds(pty.master, pty.slave);
      const err = e as NodeJS.ErrnoException;
      // Like env(1) and the shell: 127 when the program is not found, 126 when it can't run.
      const execStep = err.syscall === 'execve';
      const exitCode = execStep ? (err.code === 'ENOENT' ? 127 : 126) : 255;
      const what = execStep
        ? start.file
        : `${err.syscall ?? 'spawn'} ${err.syscall === 'chdir' ? start.cwd : ''}`.trim();
      return this.fail(err.code ?? 'EIO', `${what}: ${describe(err)}`, exitCode);
    }
    for (const p of plumbing) closeSync(p.theirs);
    if (pty) closeSync(pty.slave);
    this.log.info({ pid: this.pid, argv: start.argv, tty: !!pty }, 'started');
    writeMessage(this.control, { type: 'started', pid: this.pid } satisfies ExecEvent);

    if (pty) this.relay(0, 'rw', pty.master, true);
    for (const p of plumbing) this.relay(p.fd, p.mode, p.ours, false);
    watchChild(this.pid, (st) => {
      this.exited = true;
      this.exitEvent = {
        type: 'exit',
        code: st.code,
        signal: st.signal === null ? null : signalName(st.signal),
        core: st.core,
      };
      this.log.info({ pid: this.pid, code: st.code, signal: this.exitEvent.signal }, 'exited');
      this.maybeFinish();
    });
    this.readControl(pty);
  }

  /** Connects one program fd to its stream, in the directions its mode says. */
  private relay(fd: number, mode: FdMode, ours: number, isPty: boolean): void {
    const stream = this.fdStreams.get(fd)!;
    // net.Socket refuses a tty fd; a tty.ReadStream is a net.Socket on a TTY handle, writable too.
    const sock = isPty
      ? new tty.ReadStream(ours)
      : new net.Socket({ fd: ours, readable: mode !== 'r', writable: mode !== 'w' });
    this.locals.push(sock);
    if (mode !== 'w') {
      this.inputs.push(stream);
      stream.pipe(sock);
    } else {
      stream.resume();
    }
    // We never write on a stream the program only reads.
    if (mode === 'r') stream.end();
    // The client stopped reading (its stdout is gone): close our end, so the
    // program's next write fails with SIGPIPE as it would locally.
    stream.on('stop', () => {
      sock.destroy();
      if (!stream.writableEnded) stream.end();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // A pty master reads EIO once the last slave fd is closed: that is its EOF.
      if (isPty && e.code === 'EIO') {
        sock.unpipe(stream);
        stream.end();
        return;
      }
      this.log.debug({ fd, err: e.message }, 'relay ended early');
      // The program no longer reads this fd: the client may stop sending.
      if (mode !== 'w') stream.stopSending();
      if (mode !== 'r' && !stream.writableEnded) stream.end();
    });
    if (mode !== 'r') {
      this.outputsLeft++;
      sock.pipe(stream);
      let counted = false;
      const done = () => {
        if (counted) return;
        counted = true;
        this.outputsLeft--;
        this.maybeFinish();
      };
      stream.on('finish', done);
      stream.on('close', done);
    }
  }

  private async readControl(pty: native.Pty | null): Promise<void> {
    const reader = new MessageReader(this.control);
    try {
      for await (const m of reader) {
        const c = parseExecControl(m);
        if (c.type === 'signal') this.signal(c.signal);
        else if (c.type === 'suspend') this.control.conn.expectSilence();
        else if (pty && !this.exited) native.setWinsize(pty.master, c.rows, c.cols);
      }
    } catch (e) {
      if (!this.finished) this.log.debug({ err: (e as Error).message }, 'control stream ended');
    }
  }

  private signal(name: string): void {
    if (this.exited) return;
    // The run's process group is orphaned (its parent, tetherd, is in another
    // session), and the kernel drops a TSTP whose default action would stop
    // such a group. Do what the default would have done locally: stop it,
    // unless the program catches TSTP itself (an editor, a shell).
    const sig = name === 'TSTP' && !catches(this.pid, signalNumber('TSTP')) ? 'STOP' : name;
    try {
      process.kill(-this.pid, signalNumber(sig));
    } catch {
      // The group is gone; the exit is on its way.
    }
  }

  private maybeFinish(): void {
    if (!this.exited || this.outputsLeft > 0 || this.finished) return;
    this.finished = true;
    // The program is gone: the client may stop sending its input.
    for (const s of this.inputs) s.stopSending();
    for (const l of this.locals) l.destroy();
    if (!this.control.destroyed) {
      writeMessage(this.control, this.exitEvent);
      this.control.end();
    }
  }

  private fail(code: string, message: string, exitCode: number): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.startTimer);
    this.log.info({ code, message }, 'exec failed');
    for (const s of this.fdStreams.values()) s.destroy();
    if (!this.control.destroyed) {
      writeMessage(this.control, { type: 'error', code, message, exitCode } satisfies ExecEvent);
      this.control.end();
      // Nothing reads the controls of a run that never started: drain them so the stream can close.
      this.control.resume();
    }
  }

  /** The client went away: nothing of the run may survive it. */
  abort(): void {
    clearTimeout(this.startTimer);
    if (this.pid !== 0 && !this.exited) {
      this.log.info({ pid: this.pid }, 'connection gone: killing the run');
      killTree(this.pid);
    }
    for (const l of this.locals) l.destroy();
    this.finished = true;
  }
}

/** Whether `pid` has a handler for signal `n` (SigCgt in /proc/PID/status). */
function catches(pid: number, n: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(n - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

function closeFds(...fds: number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
  }
}

function describe(err: NodeJS.ErrnoException): string {
  const m = /\((.*)\)\s*$/.exec(err.message);
  return m ? m[1]! : (err.code ?? err.message);
}
