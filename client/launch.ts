// The agent's launch socket: the native launcher (client/launcher) hands
// over argv, environment, cwd, umask and its fds, and the agent runs the
// program on the device on those fds, as `tether run` would have. Wire
// format: docs/protocol.md, "Launch socket".

import { closeSync, createReadStream, createWriteStream, fstatSync } from 'node:fs';
import net from 'node:net';
import { endianness } from 'node:os';
import tty from 'node:tty';
import type { Connection } from '../transport/connection.ts';
import { type FdMode, type FdSpec, FORWARDED_SIGNALS } from '../transport/protocol.ts';
import type { DeviceConfig } from './config.ts';
import { sendEnvFilter } from './env-rules.ts';
import { TetherError } from './errors.ts';
import { recvFds } from './native.ts';
import { type Endpoint, type Outcome, run } from './run.ts';
import { unblock } from './stdio.ts';
import { hiddenPaths, viewMounts } from './view-config.ts';

const MAGIC = 'TLN1';
const HEADER = 12;
const MAX_REQUEST = 8 * 1024 * 1024;

interface LaunchRequest {
  argv: string[];
  env: string[];
  cwd: string;
  umask: number;
  fds: FdSpec[];
}

class LaunchError extends Error {}

function parseRequest(payload: Buffer): LaunchRequest {
  const fields = payload.toString('utf8').split('\0');
  if (fields.pop() !== '') throw new LaunchError('request does not end in NUL');
  let i = 0;
  const next = () => {
    if (i >= fields.length) throw new LaunchError('request ends early');
    return fields[i++]!;
  };
  const count = () => {
    const n = Number(next());
    if (!Number.isSafeInteger(n) || n < 0 || n > fields.length) throw new LaunchError('bad count');
    return n;
  };
  const argv = Array.from({ length: count() }, next);
  const env = Array.from({ length: count() }, next);
  const cwd = next();
  const umask = Number(next());
  const fds = Array.from({ length: count() }, () => {
    const m = /^(\d+):(r|w|rw)$/.exec(next());
    if (!m) throw new LaunchError('bad fd entry');
    return { fd: Number(m[1]), mode: m[2] as FdMode };
  });
  if (argv.length === 0 || !(umask >= 0 && umask <= 0o777) || i !== fields.length) {
    throw new LaunchError('malformed request');
  }
  return { argv, env, cwd, umask, fds };
}

/** Reads the request off a paused socket: bytes and fds, without libuv reading it. */
function readRequest(
  sock: net.Socket,
): Promise<{ req: LaunchRequest; fds: number[]; rest: Buffer }> {
  const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
  const chunks: Buffer[] = [];
  const fds: number[] = [];
  let have = 0;
  const deadline = Date.now() + 5000;
  let spins = 0;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      try {
        // The launcher writes its request right after connecting, so waiting is short.
        for (let r = recvFds(fd, 64 * 1024); r; r = recvFds(fd, 64 * 1024)) {
          fds.push(...r.fds);
          if (r.data.length === 0) throw new LaunchError('launcher closed before its request');
          if (r.truncated) throw new LaunchError('too many fds');
          chunks.push(r.data);
          have += r.data.length;
        }
        if (have >= HEADER) {
          const buf = Buffer.concat(chunks);
          if (buf.subarray(0, 4).toString('latin1') !== MAGIC)
            throw new LaunchError('not a launcher');
          const len = Number(
            endianness() === 'LE' ? buf.readBigUInt64LE(4) : buf.readBigUInt64BE(4),
          );
          if (len > MAX_REQUEST) throw new LaunchError('request too large');
          if (buf.length >= HEADER + len) {
            const req = parseRequest(buf.subarray(HEADER, HEADER + len));
            if (fds.length !== req.fds.length) throw new LaunchError('fd count does not match');
            return resolve({ req, fds, rest: buf.subarray(HEADER + len) });
          }
        }
        if (Date.now() > deadline) throw new LaunchError('request timed out');
        if (spins++ < 200) setImmediate(attempt);
        else setTimeout(attempt, 2);
      } catch (e) {
        for (const f of fds) closeQuietly(f);
        reject(e);
      }
    };
    attempt();
  });
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}

/**
 * The local end of an fd the launcher lent us. These file descriptions are
 * shared with the launcher's caller: they are flushed, never shut down, and
 * put back to blocking before our copy is closed.
 */
function borrowedEndpoint(fd: number, mode: FdMode): Endpoint & { release(): void } {
  const st = fstatSync(fd);
  if (st.isFIFO() || st.isSocket()) {
    const s = new net.Socket({ fd, readable: mode !== 'w', writable: mode !== 'r' });
    s.on('error', () => {});
    const release = () => {
      unblock(s);
      s.destroy();
    };
    return {
      input: mode !== 'w' ? s : undefined,
      output: mode !== 'r' ? s : undefined,
      keepOpen: true,
      stopInput: () => s.pause(),
      release,
    };
  }
  if (mode === 'r' && tty.isatty(fd)) {
    // libuv reopens a readable tty, so the terminal's own flags stay as they are.
    const t = new tty.ReadStream(fd);
    // libuv read through a reopened copy of the tty: our received fd is still to close.
    const release = () => {
      t.destroy();
      closeQuietly(fd);
    };
    return { input: t, keepOpen: true, stopInput: () => t.pause(), release };
  }
  const input = mode !== 'w' ? createReadStream('', { fd, autoClose: false }) : undefined;
  const output = mode !== 'r' ? createWriteStream('', { fd, autoClose: false }) : undefined;
  return { input, output, keepOpen: true, release: () => closeQuietly(fd) };
}

function reply(outcome: Outcome | TetherError): string {
  if (outcome instanceof TetherError)
    return `FAIL ${outcome.exitCode} ${outcome.message.replace(/\n/g, ' ')}\n`;
  if ('code' in outcome) return `EXIT ${outcome.code}\n`;
  return `KILL ${outcome.signal} ${outcome.core ? 1 : 0}\n`;
}

async function serveLaunch(
  sock: net.Socket,
  upstream: Connection,
  device: DeviceConfig,
): Promise<void> {
  let got: Awaited<ReturnType<typeof readRequest>>;
  try {
    got = await readRequest(sock);
  } catch (e) {
    sock.end(`FAIL 255 agent: ${(e as Error).message}\n`);
    return;
  }
  const { req, fds: local } = got;
  const byFd = new Map(req.fds.map((f, i) => [f.fd, local[i]!]));
  const endpoints: ReturnType<typeof borrowedEndpoint>[] = [];
  let send: ((sig: string) => void) | null = null;
  let pending = got.rest.toString('latin1');
  const onLines = (text: string) => {
    pending += text;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const m = /^SIG (\w+)$/.exec(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (m && (FORWARDED_SIGNALS as readonly string[]).includes(m[1]!)) send?.(m[1]!);
    }
  };
  sock.setEncoding('latin1');
  sock.on('data', onLines);
  sock.on('error', () => {});
  // The launcher died: end the run as a dropped connection would.
  const gone = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.resume();
  const sent = sendEnvFilter(device.sendEnv);
  const env = [...req.env.filter((e) => sent(e.split('=', 1)[0]!)), ...device.setenv];
  let result: Outcome | TetherError;
  try {
    result = await run(
      upstream,
      {
        argv: req.argv,
        env,
        cwd: req.cwd,
        umask: req.umask,
        tty: null,
        fds: req.fds,
        verbose: false,
        deviceName: device.name,
        view: viewMounts(device, { binds: [] }, req.cwd),
        hide: hiddenPaths(device),
      },
      {
        localFd: (fd) => byFd.get(fd) ?? null,
        endpoint(spec) {
          const e = borrowedEndpoint(byFd.get(spec.fd)!, spec.mode);
          endpoints.push(e);
          return e;
        },
        controls(s) {
          send = (signal) => s({ type: 'signal', signal });
          gone.then(() => s({ type: 'signal', signal: 'HUP' }));
          return () => {
            send = null;
          };
        },
        note() {},
      },
    );
  } catch (e) {
    result = e instanceof TetherError ? e : new TetherError((e as Error).message);
  }
  for (const e of endpoints) e.release();
  // fds the run never got to (it failed while opening its streams).
  for (const f of local.slice(endpoints.length)) closeQuietly(f);
  sock.end(reply(result));
}

/** Listens for launchers on `path`; `active` tracks runs for the agent's idle timer. */
export function listenForLaunches(
  path: string,
  upstream: Connection,
  device: DeviceConfig,
  active: (delta: number) => void,
): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
    active(1);
    serveLaunch(sock, upstream, device).finally(() => active(-1));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}
