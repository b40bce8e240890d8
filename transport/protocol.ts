// The application messages that daemon/ and client/ exchange, with
// validators for what arrives from the peer. Field meanings: docs/protocol.md.
import { ErrorCode, TransportError } from './errors.ts';
import { parseViewSpec, type ViewSpec } from './view.ts';

/** tetherd's TCP port when none is given (sbrsh used it too). */
export const DEFAULT_PORT = 1202;

/** Capabilities announced in HELLO. */
export const Caps = { EXEC: 'exec', PAIR: 'pair', STATUS: 'status' } as const;

/** How the program uses a forwarded fd: reads it, writes it, or both. */
export type FdMode = 'r' | 'w' | 'rw';

export interface FdSpec {
  fd: number;
  mode: FdMode;
  /**
   * A regular file of the view (runs with a view only): the device opens it through the view
   * with these flags and offset instead of relaying bytes, so appends land in the host file
   * and the offset is the file's own. No `fd` stream is opened for it.
   */
  file?: FdFile;
}

export interface FdFile {
  path: string;
  append: boolean;
  offset: number;
}

export interface TtySpec {
  rows: number;
  cols: number;
}

/** First message of an `exec` stream (client → device). */
export interface ExecStart {
  kind: 'exec';
  argv: string[];
  /** Program to execute; defaults to argv[0] (searched in PATH if it has no '/'). */
  file: string;
  env: string[];
  cwd: string;
  umask: number;
  tty: TtySpec | null;
  fds: FdSpec[];
  /** The run's view (its file system comes from the client); absent for the device's own. */
  view?: ViewSpec;
}

/** First message of an `fd` stream: which exec and which program fd it carries. */
export interface FdOpen {
  kind: 'fd';
  exec: number;
  fd: number;
}

/** First message of a run's `view` stream (opened by the client after its fd streams). */
export interface ViewOpen {
  kind: 'view';
  exec: number;
}

/** First message of a `pair` stream: the client's name and its PAKE start (pake.ts). */
export interface PairRequest {
  kind: 'pair';
  name: string;
  ke1: string;
}

/** The client's second message on a `pair` stream: its PAKE finish. */
export interface PairFinish {
  ke3: string;
}

/** First message of a `status` stream: a GET of the status API (`/v1/info`, ...). */
export interface StatusRequest {
  kind: 'status';
  path: string;
}

/** The one message the device answers a `status` stream with, then ends it. */
export interface StatusReply {
  status: number;
  type: string;
  body: string;
}

export type Header = ExecStart | FdOpen | ViewOpen | PairRequest | StatusRequest;

/** Messages on an exec stream after the start. */
export type ExecControl =
  | { type: 'signal'; signal: string }
  | { type: 'resize'; rows: number; cols: number }
  /** The client is about to stop (job control): don't time the connection out meanwhile. */
  | { type: 'suspend' };

export type ExecEvent =
  | { type: 'started'; pid: number }
  | { type: 'exit'; code: number | null; signal: string | null; core: boolean }
  | { type: 'error'; code: string; message: string; exitCode: number };

/** The device's answer to a PairRequest: its name and PAKE answer, or why not. */
export type PairReply = { ok: true; name: string; ke2: string } | { ok: false; error: string };

/** The device's last word on a `pair` stream: the client's key is authorized, or why not. */
export type PairResult = { ok: true } | { ok: false; error: string };

/** Signals a client may forward; the names travel, not the numbers, which differ by ABI. */
export const FORWARDED_SIGNALS = [
  'INT',
  'TERM',
  'HUP',
  'QUIT',
  'USR1',
  'USR2',
  'WINCH',
  'CONT',
  'TSTP',
] as const;

const MAX_FD = 1 << 20;

function bad(what: string): TransportError {
  return new TransportError(ErrorCode.MESSAGE_ERROR, what);
}

/** A peer's value in an error message: short, and never a deep walk of it. */
function show(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x.slice(0, 40));
  if (typeof x === 'number' || typeof x === 'boolean' || x === null || x === undefined)
    return String(x);
  return Array.isArray(x) ? 'an array' : `a ${typeof x}`;
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

const isStr = (x: unknown): x is string => typeof x === 'string';
const isUint = (x: unknown, max = Number.MAX_SAFE_INTEGER): x is number =>
  typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= max;
const noNul = (s: string) => !s.includes('\0');

function strList(x: unknown, what: string): string[] {
  if (!Array.isArray(x) || !x.every((s) => isStr(s) && noNul(s)))
    throw bad(`${what}: expected strings without NUL`);
  return x as string[];
}

function parseExecStart(m: Record<string, unknown>): ExecStart {
  const argv = strList(m.argv, 'argv');
  if (argv.length === 0) throw bad('argv is empty');
  const env = strList(m.env, 'env');
  if (!env.every((e) => e.indexOf('=') > 0)) throw bad('env entries must be NAME=value');
  const file = m.file === undefined ? argv[0]! : m.file;
  if (!isStr(file) || file === '' || !noNul(file)) throw bad('bad file');
  if (!isStr(m.cwd) || !noNul(m.cwd)) throw bad('bad cwd');
  if (!isUint(m.umask, 0o777)) throw bad('bad umask');
  let tty: TtySpec | null = null;
  if (m.tty !== null && m.tty !== undefined) {
    if (!isObj(m.tty) || !isUint(m.tty.rows, 0xffff) || !isUint(m.tty.cols, 0xffff))
      throw bad('bad tty');
    tty = { rows: m.tty.rows, cols: m.tty.cols };
  }
  if (!Array.isArray(m.fds)) throw bad('bad fds');
  const seen = new Set<number>();
  const fds: FdSpec[] = m.fds.map((f: unknown) => {
    if (!isObj(f) || !isUint(f.fd, MAX_FD) || (f.mode !== 'r' && f.mode !== 'w' && f.mode !== 'rw'))
      throw bad('bad fd entry');
    if (seen.has(f.fd)) throw bad(`fd ${f.fd} listed twice`);
    seen.add(f.fd);
    if (f.file === undefined) return { fd: f.fd, mode: f.mode };
    const file = f.file;
    if (
      !isObj(file) ||
      !isStr(file.path) ||
      !file.path.startsWith('/') ||
      !noNul(file.path) ||
      typeof file.append !== 'boolean' ||
      !isUint(file.offset) ||
      f.fd <= 2
    )
      throw bad('bad fd file');
    return {
      fd: f.fd,
      mode: f.mode,
      file: { path: file.path, append: file.append, offset: file.offset },
    };
  });
  // With a pty, fd 0 carries the terminal both ways and 1 and 2 are the same terminal.
  if (
    tty &&
    (!fds.some((f) => f.fd === 0 && f.mode === 'rw') || fds.some((f) => f.fd === 1 || f.fd === 2))
  ) {
    throw bad('with tty, fds must hold fd 0 (rw) and neither 1 nor 2');
  }
  const view = m.view === undefined || m.view === null ? null : parseViewSpec(m.view);
  if (!view && fds.some((f) => f.file)) throw bad('fd files need a view');
  const start: ExecStart = { kind: 'exec', argv, file, env, cwd: m.cwd, umask: m.umask, tty, fds };
  if (view) start.view = view;
  return start;
}

/** Validates the first message of a stream opened by the peer. */
export function parseHeader(x: unknown): Header {
  if (!isObj(x)) throw bad('stream header is not a map');
  switch (x.kind) {
    case 'exec':
      return parseExecStart(x);
    case 'fd':
      if (!isUint(x.exec) || !isUint(x.fd, MAX_FD)) throw bad('bad fd header');
      return { kind: 'fd', exec: x.exec, fd: x.fd };
    case 'view':
      if (!isUint(x.exec)) throw bad('bad view header');
      return { kind: 'view', exec: x.exec };
    case 'pair':
      if (!isStr(x.name) || x.name.length > 256 || !isPakeMessage(x.ke1))
        throw bad('bad pair request');
      return { kind: 'pair', name: x.name, ke1: x.ke1 };
    case 'status':
      if (!isStr(x.path) || !x.path.startsWith('/') || x.path.length > 256 || !noNul(x.path))
        throw bad('bad status request');
      return { kind: 'status', path: x.path };
    default:
      throw bad(`unknown stream kind ${show(x.kind)}`);
  }
}

export function parseStatusReply(x: unknown): StatusReply {
  if (!isObj(x) || !isUint(x.status, 999) || !isStr(x.type) || !isStr(x.body))
    throw bad('bad status reply');
  return { status: x.status, type: x.type, body: x.body };
}

export function parseExecControl(x: unknown): ExecControl {
  if (!isObj(x)) throw bad('exec control is not a map');
  if (
    x.type === 'signal' &&
    isStr(x.signal) &&
    (FORWARDED_SIGNALS as readonly string[]).includes(x.signal)
  ) {
    return { type: 'signal', signal: x.signal };
  }
  if (x.type === 'resize' && isUint(x.rows, 0xffff) && isUint(x.cols, 0xffff)) {
    return { type: 'resize', rows: x.rows, cols: x.cols };
  }
  if (x.type === 'suspend') return { type: 'suspend' };
  throw bad(`bad exec control ${show(x.type)}`);
}

export function parseExecEvent(x: unknown): ExecEvent {
  if (!isObj(x)) throw bad('exec event is not a map');
  switch (x.type) {
    case 'started':
      if (isUint(x.pid)) return { type: 'started', pid: x.pid };
      break;
    case 'exit':
      if (
        (x.code === null || isUint(x.code, 255)) &&
        (x.signal === null || isStr(x.signal)) &&
        typeof x.core === 'boolean'
      ) {
        return { type: 'exit', code: x.code, signal: x.signal, core: x.core };
      }
      break;
    case 'error':
      if (isStr(x.code) && isStr(x.message) && isUint(x.exitCode, 255)) {
        return { type: 'error', code: x.code, message: x.message, exitCode: x.exitCode };
      }
      break;
  }
  throw bad(`bad exec event ${show(x.type)}`);
}

/** OPAQUE's messages travel as they come, base64url text of a few hundred bytes. */
function isPakeMessage(x: unknown): x is string {
  return isStr(x) && x.length <= 1024 && /^[A-Za-z0-9_-]*$/.test(x);
}

export function parsePairReply(x: unknown): PairReply {
  if (isObj(x) && x.ok === true && isStr(x.name) && isPakeMessage(x.ke2))
    return { ok: true, name: x.name, ke2: x.ke2 };
  if (isObj(x) && x.ok === false && isStr(x.error)) return { ok: false, error: x.error };
  throw bad('bad pair reply');
}

export function parsePairFinish(x: unknown): PairFinish {
  if (isObj(x) && isPakeMessage(x.ke3)) return { ke3: x.ke3 };
  throw bad('bad pair finish');
}

export function parsePairResult(x: unknown): PairResult {
  if (isObj(x) && x.ok === true) return { ok: true };
  if (isObj(x) && x.ok === false && isStr(x.error)) return { ok: false, error: x.error };
  throw bad('bad pair result');
}

/** Pairing codes are shown as XXXXX-XXXXX; case, spaces and dashes don't matter. */
export function normalizePairCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}
