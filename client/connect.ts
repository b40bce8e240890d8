// Getting a Connection to a device: TLS with its pinned key, a command whose
// stdio is the connection (ssh, ip netns exec, a local tetherd --stdio), or
// the local default device.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { isSea } from 'node:sea';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Connection } from '../transport/connection.ts';
import { type Identity, loadIdentity, loadOrCreateIdentity } from '../transport/identity.ts';
import { Caps } from '../transport/protocol.ts';
import { connectTls, peerFingerprint } from '../transport/tls.ts';
import { type Config, configDir, type DeviceConfig } from './config.ts';
import { TetherError } from './errors.ts';

export const LOCAL_DEVICE = 'local';

/**
 * Where the single executable finds tetherd: the standard directories, not the caller's PATH
 * (that is the program's, and `env PATH=... tether run` must still find the daemon).
 */
const DAEMON_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function installedDaemon(): string {
  for (const dir of DAEMON_DIRS) {
    const file = join(dir, 'tetherd');
    try {
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {}
  }
  throw new TetherError(
    `no tetherd for the local device in ${DAEMON_DIRS.join(':')}: install it there, or pair a device`,
  );
}

/** Without any configuration, runs go to a tetherd started on this machine. */
function localDevice(): DeviceConfig {
  // bin/tetherd sits at the same depth from client/ (sources) and dist/ (bundle); the single
  // executable has none beside it.
  const daemon = isSea()
    ? installedDaemon()
    : fileURLToPath(new URL('../bin/tetherd', import.meta.url));
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return {
    name: LOCAL_DEVICE,
    command: `exec ${q(daemon)} --stdio --log-level warn --user ${q(userInfo().username)}`,
    setenv: [],
    binds: [],
  };
}

export function resolveDevice(cfg: Config, name: string | undefined): DeviceConfig {
  const want = name || process.env.TETHER_DEVICE || cfg.default || LOCAL_DEVICE;
  const d = cfg.devices.get(want);
  if (d) return d;
  if (want === LOCAL_DEVICE) return localDevice();
  throw new TetherError(
    `unknown device ${JSON.stringify(want)}: pair it with \`tether pair ${want} ADDRESS\` or add it to ${cfg.path}`,
  );
}

/** The key this client shows `d`: its own, made at pairing, or the shared one. */
export function clientIdentity(d: DeviceConfig): Promise<Identity> {
  if (!d.identityFile) return loadOrCreateIdentity(configDir(), `tether@${userInfo().username}`);
  let id: Identity | null;
  try {
    id = loadIdentity(d.identityFile);
  } catch (e) {
    throw new TetherError(
      `device ${d.name}: identityfile ${d.identityFile}: ${(e as Error).message}`,
    );
  }
  if (!id)
    throw new TetherError(
      `device ${d.name}: identityfile ${d.identityFile} is missing: remove the device's block and pair again`,
    );
  return Promise.resolve(id);
}

function keyChanged(d: DeviceConfig, seen: string): TetherError {
  return new TetherError(
    [
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
      '@    WARNING: DEVICE IDENTIFICATION HAS CHANGED!          @',
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
      'IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!',
      `The key of device ${d.name} is now ${seen},`,
      `but ${d.fingerprint} is pinned in the tether config.`,
      'If the device was reinstalled, remove its block from the config and pair again.',
      `Connection to ${d.name} refused.`,
    ].join('\n'),
  );
}

/** Opens the byte stream to the device and checks who is on the other end. */
export async function openLink(
  d: DeviceConfig,
  id?: Identity,
): Promise<{ socket: Duplex; fingerprint: string | null }> {
  if (d.command) {
    const child = spawn('/bin/sh', ['-c', d.command], { stdio: ['pipe', 'pipe', 'inherit'] });
    const socket = Duplex.from({ readable: child.stdout, writable: child.stdin });
    child.on('error', (e) => socket.destroy(e));
    child.on('exit', (code, signal) => {
      if (code !== 0 && code !== null)
        socket.destroy(new TetherError(`device command exited with status ${code}: ${d.command}`));
      else if (signal) socket.destroy(new TetherError(`device command killed by SIG${signal}`));
    });
    return { socket, fingerprint: null };
  }
  if (!d.address) throw new TetherError(`device ${d.name} has neither an address nor a command`);
  const identity = id ?? (await clientIdentity(d));
  let socket: Awaited<ReturnType<typeof connectTls>>;
  try {
    socket = await connectTls(identity, d.address.host, d.address.port);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TetherError(
      `connect to ${d.name} (${d.address.host}:${d.address.port}): ${err.code ?? err.message}`,
    );
  }
  const seen = peerFingerprint(socket);
  if (!seen) {
    socket.destroy();
    throw new TetherError(`device ${d.name} presented no certificate`);
  }
  if (d.fingerprint && d.fingerprint !== seen) {
    socket.destroy();
    throw keyChanged(d, seen);
  }
  return { socket, fingerprint: seen };
}

/** A ready Connection to a paired device. */
export async function connect(d: DeviceConfig): Promise<Connection> {
  if (d.address && !d.fingerprint)
    throw new TetherError(
      `device ${d.name} has no pinned fingerprint: pair it with \`tether pair\``,
    );
  const { socket } = await openLink(d);
  const conn = new Connection(socket, {
    role: 'client',
    caps: [Caps.EXEC],
    idleTimeoutMs: d.idleTimeout === undefined ? undefined : d.idleTimeout * 1000,
  });
  let hello: Awaited<ReturnType<Connection['ready']>>;
  try {
    hello = await conn.ready();
  } catch (e) {
    throw new TetherError(`${d.name}: ${describeClose(e as Error)}`);
  }
  if (!hello.caps.includes(Caps.EXEC)) {
    conn.close();
    throw new TetherError(
      `${d.name}: this client is not authorized on the device; pair it with \`tether pair ${d.name}\``,
    );
  }
  return conn;
}

/** One line for why a connection ended. */
export function describeClose(e: Error): string {
  return e.message
    .replace(/^UNAUTHORIZED: /, 'refused: ')
    .replace(/^CONNECTION_LOST: /, 'connection lost: ');
}
