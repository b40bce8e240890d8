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
import type { WaitEvent } from './ptrace.ts';
import { ViewError } from './view-client.ts';
import { type ViewMemories, ViewMemory } from './view-memory.ts';
import { type TracedRun, type ViewEnv, ViewSession } from './view-session.ts';

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
  private readonly openedAt = Date.now();
  private startedAt = 0;
  private exited = false;
  private outputsLeft = 0;
  private exitEvent: ExecEvent | null = null;
  private finished = false;
  /** Streams carrying data to the program, and our ends of its fds. */
  private readonly inputs: Stream[] = [];
  private readonly locals: net.Socket[] = [];
  private readonly startTimer: NodeJS.Timeout;
  private readonly viewEnv: ViewEnv | null;
  private readonly memories: ViewMemories;
  private viewStream: Stream | null = null;
  private view: ViewSession | null = null;
  private traced: TracedRun | null = null;
  private spawning = false;
  /** Program fds that are view files, opened by us for the child to inherit. */
  private readonly fileFds = new Map<number, number>();

  constructor(
    control: Stream,
    start: ExecStart,
    runAs: RunAs,
    log: Logger,
    viewEnv: ViewEnv | null,
    memories: ViewMemories,
  ) {
    this.memories = memories;
    this.id = control.id;
    this.viewEnv = viewEnv;
    this.control = control;
    this.start = start;
    this.runAs = runAs;
    this.log = log.child({ exec: control.id });
    // The client opens one fd stream per listed fd right after this one.
    this.startTimer = setTimeout(
      () => this.fail('ETIMEDOUT', "the run's fd or view streams did not arrive", 255),
      30_000,
    );
    control.on('close', () => this.abort());
    this.maybeSpawn();
  }

  /** What the status API shows of this run. */
  describe() {
    const state = this.exited ? 'exited' : this.pid !== 0 ? 'running' : 'starting';
    return {
      id: this.id,
      state,
      pid: this.pid || null,
      argv: this.start.argv,
      cwd: this.start.cwd,
      view: !!this.start.view,
      tty: !!this.start.tty,
      since: new Date(this.startedAt || this.openedAt).toISOString(),
    };
  }

  /** An `fd` stream for this exec arrived. */
  attachFd(fd: number, s: Stream): void {
    const unexpected =
      !this.start.fds.some((f) => f.fd === fd && !f.file) || this.fdStreams.has(fd);
    if (unexpected || this.pid !== 0 || this.finished) {
      s.destroy(new TransportError(ErrorCode.STREAM_STATE_ERROR, `unexpected fd stream ${fd}`));
      return;
    }
    this.fdStreams.set(fd, s);
    this.maybeSpawn();
  }

  /** The run's `view` stream arrived. */
  attachView(s: Stream): void {
    if (!this.start.view || this.viewStream || this.spawning || this.finished) {
      s.destroy(new TransportError(ErrorCode.STREAM_STATE_ERROR, 'unexpected view stream'));
      return;
    }
    this.viewStream = s;
    this.maybeSpawn();
  }

  private maybeSpawn(): void {
    const streams = this.start.fds.filter((f) => !f.file).length;
    if (this.fdStreams.size < streams || this.finished || this.spawning) return;
    if (this.start.view && !this.viewStream) return;
    clearTimeout(this.startTimer);
    this.spawning = true;
    if (!this.start.view) return this.spawn(null);
    if (!this.viewEnv) return this.fail('ENOSYS', 'this device cannot trace programs', 255);
    const { lease } = this.start.view;
    const memory = lease ? this.memories.for(lease) : new ViewMemory();
    const owner = { uid: this.runAs.uid, gid: this.runAs.gid };
    this.view = new ViewSession(
      this.viewStream!,
      this.start.view,
      this.viewEnv,
      memory,
      owner,
      this.log,
    );
    const view = this.view;
    view
      .resolve(this.start)
      .then(async (where) => {
        // Files the client handed over as fds are opened through the view, here.
        for (const f of this.start.fds) {
          if (f.file) this.fileFds.set(f.fd, await view.redirector.openFdFile(f.file, f.mode));
        }
        return where;
      })
      .then((where) => this.spawn(where))
      .catch((e: Error) => {
        this.view?.cleanup();
        closeFds(...this.fileFds.values());
        if (!(e instanceof ViewError)) return this.fail('EIO', e.message, 255);
        const code = e.code;
        const exitCode = e.message.startsWith('chdir') ? 255 : code === 'ENOENT' ? 127 : 126;
        this.fail(
          code,
          `${e.message === code ? this.start.file : e.message}: ${strerror(code)}`,
          exitCode,
        );
      });
  }

  private spawn(where: { file: string; cwd: string; kernelCwd: string } | null): void {
    const { start } = this;
    if (this.finished) return this.view?.cleanup();
    const plumbing: FdPlumbing[] = [];
    let pty: native.Pty | null = null;
    try {
      if (start.tty) {
        pty = native.openpty();
        native.setWinsize(pty.master, start.tty.rows, start.tty.cols);
      }
      for (const { fd, mode, file } of start.fds) {
        if ((pty && fd <= 2) || file) continue;
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
    for (const [fd, local] of this.fileFds) fds[fd] = local;

    const opts = {
      file: where ? where.file : start.file,
      argv: start.argv,
      env: start.env,
      cwd: where ? where.kernelCwd : start.cwd || null,
      umask: start.umask,
      fds,
      setsid: true,
      ctty: pty ? 0 : -1,
      uid: this.runAs.uid,
      gid: this.runAs.gid,
      groups: this.runAs.groups,
    };
    try {
      if (where && this.view && this.viewEnv) {
        this.traced = this.view.start(opts, where.cwd, this.viewEnv, (ev, errno) =>
          this.tracedExit(ev, errno),
        );
        this.pid = this.traced.pid;
      } else {
        this.pid = native.spawn(opts);
      }
    } catch (e) {
      this.view?.cleanup();
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
    closeFds(...this.fileFds.values());
    if (pty) closeSync(pty.slave);
    this.startedAt = Date.now();
    this.log.info({ pid: this.pid, argv: start.argv, tty: !!pty }, 'started');
    writeMessage(this.control, { type: 'started', pid: this.pid } satisfies ExecEvent);

    if (pty) this.relay(0, 'rw', pty.master, true);
    for (const p of plumbing) this.relay(p.fd, p.mode, p.ours, false);
    if (!this.traced) watchChild(this.pid, (st) => this.exitedWith(st.code, st.signal, st.core));
    this.readControl(pty);
  }

  private tracedExit(ev: WaitEvent, execErrno: number | null): void {
    this.traced?.cleanup();
    if (execErrno !== null && ev.kind === 'exited') {
      // The program never started: say why, as a shell would.
      const code = errnoName(execErrno);
      this.exitedWith(null, null, false, {
        type: 'error',
        code,
        message: `${this.start.file}: ${strerror(code)}`,
        exitCode: execErrno === constants.errno.ENOENT ? 127 : 126,
      });
      return;
    }
    if (ev.kind === 'exited') this.exitedWith(ev.code, null, false);
    else if (ev.kind === 'killed') this.exitedWith(null, ev.signal, ev.core);
  }

  private exitedWith(
    code: number | null,
    signal: number | null,
    core: boolean,
    error?: ExecEvent,
  ): void {
    this.exited = true;
    this.exitEvent = error ?? {
      type: 'exit',
      code,
      signal: signal === null ? null : signalName(signal),
      core,
    };
    this.log.info({ pid: this.pid, code, signal }, 'exited');
    this.maybeFinish();
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

  /** tetherd is stopping: the run gets a SIGTERM, as at a system shutdown. */
  terminate(): void {
    if (this.pid !== 0) this.signal('TERM');
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
    this.endView();
    if (!this.control.destroyed) {
      writeMessage(this.control, this.exitEvent);
      this.control.end();
    }
  }

  /** No more view requests: the client's view service then ends its side, and the stream closes. */
  private endView(): void {
    const v = this.viewStream;
    if (v && !v.destroyed && !v.writableEnded) v.end();
  }

  private fail(code: string, message: string, exitCode: number): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.startTimer);
    this.log.info({ code, message }, 'exec failed');
    for (const s of this.fdStreams.values()) s.destroy();
    this.endView();
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

function errnoName(n: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === n) return name;
  return 'EIO';
}

/** The C library's text for an errno name, as the shell prints it. */
function strerror(code: string): string {
  const n = constants.errno[code as keyof typeof constants.errno];
  return typeof n === 'number' ? native.strerror(n) : code;
}

function describe(err: NodeJS.ErrnoException): string {
  const m = /\((.*)\)\s*$/.exec(err.message);
  return m ? m[1]! : (err.code ?? err.message);
}
