// The client side of one exec: send the start, open a stream per program
// fd and connect each to its local end, forward controls (signals,
// resizes), and return how the program ended once all its output is out.
// Where the local ends and the controls come from is the caller's: this
// process's own stdio (the CLI, cli-io.ts) or fds a launcher handed to the
// agent (launch.ts).
import type { Readable, Writable } from 'node:stream';
import type { Connection } from '../transport/connection.ts';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { MessageReader, writeMessage } from '../transport/messages.ts';
import {
  type ExecControl,
  type ExecStart,
  type FdSpec,
  parseExecEvent,
  type TtySpec,
} from '../transport/protocol.ts';
import type { Stream } from '../transport/stream.ts';
import { describeClose } from './connect.ts';
import { TetherError } from './errors.ts';
import { cwdHint, viewSpecOf } from './view-config.ts';
import { fdFile } from './view-fds.ts';
import type { Mount } from './view-resolve.ts';
import { ViewServer } from './view-server.ts';

/** The local end of one program fd. */
export interface Endpoint {
  input?: Readable;
  output?: Writable;
  /** After the last output: flush and leave open (our own stdio), or end it. */
  keepOpen: boolean;
  /** Stop reading once the program no longer reads (pause, or destroy). */
  stopInput?: () => void;
}

export interface RunIO {
  endpoint(spec: FdSpec): Endpoint;
  /**
   * Starts delivering signals and resizes to `send`; returns the undo.
   * `goingSilent` is for a client about to be stopped by job control.
   */
  controls(send: (c: ExecControl) => void, goingSilent: () => void): () => void;
  /** Where progress lines (-v) go. */
  note(line: string): void;
  /** This process's fd behind program fd `fd` (for files the view opens on the device). */
  localFd(fd: number): number | null;
}

export interface RunRequest {
  argv: string[];
  env: string[];
  cwd: string;
  umask: number;
  tty: TtySpec | null;
  fds: FdSpec[];
  verbose: boolean;
  deviceName: string;
  /** The view's mounts, or null to run on the device's own files. */
  view: Mount[] | null;
  /** Host paths the view never serves (view-config.ts hiddenPaths). */
  hide: string[];
}

/** How the run ended, for the caller to mirror. */
export type Outcome = { code: number } | { signal: string; core: boolean };

/** Resolves once everything written to `w` so far has been handed to the kernel. */
function flushed(w: Writable): Promise<void> {
  if (w.destroyed || w.writableEnded) return Promise.resolve();
  return new Promise((resolve) => w.write(Buffer.alloc(0), () => resolve()));
}

function relayOutput(s: Stream, out: Writable, keepOpen: boolean): Promise<void> {
  return new Promise((resolve) => {
    s.pipe(out, { end: !keepOpen });
    // Our reader went away (EPIPE): tell the device to stop, as a local pipe would.
    out.on('error', () => {
      s.unpipe(out);
      s.stopSending();
      resolve();
    });
    s.once('end', () => {
      if (keepOpen) flushed(out).then(resolve);
      else out.once('finish', resolve).once('close', resolve);
    });
    s.once('close', () => {
      if (!s.readableEnded) resolve();
    });
  });
}

function relayInput(s: Stream, local: Endpoint): void {
  const input = local.input!;
  input.pipe(s);
  input.on('error', (e) => s.destroy(new TransportError(ErrorCode.CANCELLED, e.message)));
  // The program closed this fd or exited: stop reading our side.
  const stop = () => {
    input.unpipe(s);
    if (local.stopInput) local.stopInput();
    else input.destroy();
    if (!s.writableEnded) s.end();
  };
  s.on('stop', stop);
  s.on('close', stop);
}

export async function run(conn: Connection, req: RunRequest, io: RunIO): Promise<Outcome> {
  const exec = conn.openStream();
  const fds = req.fds.map((spec) => {
    const local = req.view ? io.localFd(spec.fd) : null;
    const file = local === null || !req.view ? null : fdFile(spec, local, req.view);
    return file ? { ...spec, file } : spec;
  });
  const start: ExecStart = {
    kind: 'exec',
    argv: req.argv,
    file: req.argv[0]!,
    env: req.env,
    cwd: req.cwd,
    umask: req.umask,
    tty: req.tty,
    fds,
    ...(req.view ? { view: viewSpecOf(req.view) } : {}),
  };
  writeMessage(exec, start);

  const outputsDone: Promise<void>[] = [];
  const endpoints: Endpoint[] = [];
  for (const spec of fds) {
    if (spec.file) continue;
    const s = conn.openStream();
    writeMessage(s, { kind: 'fd', exec: exec.id, fd: spec.fd });
    const local = io.endpoint(spec);
    endpoints.push(local);
    if (local.input) relayInput(s, local);
    else s.end();
    if (local.output) outputsDone.push(relayOutput(s, local.output, local.keepOpen));
    else s.resume();
  }

  if (req.view) {
    const s = conn.openStream();
    writeMessage(s, { kind: 'view', exec: exec.id });
    // A broken view stream ends the run on the device (its file calls fail); nothing to add here.
    new ViewServer(req.view, req.hide).serve(s).catch(() => {});
  }

  const send = (c: ExecControl) => {
    if (!exec.destroyed && !exec.writableEnded) writeMessage(exec, c);
  };
  // Both ends stop timing the link out until they hear each other again.
  const undoControls = io.controls(send, () => {
    send({ type: 'suspend' });
    conn.expectSilence();
  });
  try {
    let outcome: Outcome | null = null;
    try {
      for await (const m of new MessageReader(exec)) {
        const ev = parseExecEvent(m);
        if (ev.type === 'started') {
          if (req.verbose) io.note(`tether: started pid ${ev.pid} on ${req.deviceName}`);
        } else if (ev.type === 'error') {
          const missingCwd = ev.code === 'ENOENT' && ev.message.startsWith('chdir ');
          const hint = missingCwd ? cwdHint(req.view, req.cwd) : null;
          throw new TetherError(hint ? `${ev.message} (${hint})` : ev.message, ev.exitCode);
        } else if (ev.signal !== null) {
          outcome = { signal: ev.signal, core: ev.core };
        } else {
          outcome = { code: ev.code ?? 255 };
        }
      }
    } catch (e) {
      if (e instanceof TetherError) throw e;
      throw new TetherError(`${req.deviceName}: ${describeClose(conn.closeError ?? (e as Error))}`);
    }
    if (!outcome) {
      const why = conn.closeError
        ? describeClose(conn.closeError)
        : 'the device ended the run without an exit status';
      throw new TetherError(`${req.deviceName}: ${why}`);
    }
    // The device sends the exit after all output; wait until we have written it too.
    await Promise.all(outputsDone);
    return outcome;
  } finally {
    undoControls();
    for (const e of endpoints) e.stopInput?.();
    // A run that failed to start still closes its exec stream (and frees its stream credit).
    if (!exec.writableEnded) exec.end();
    exec.resume();
  }
}
