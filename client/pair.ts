// `tether pair NAME ADDRESS`: shows the device fingerprint, proves the one-time code with the
// device through a PAKE bound to both keys (transport/pake.ts), pins the device, keeps the key.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { Connection } from '../transport/connection.ts';
import { ErrorCode, TransportError } from '../transport/errors.ts';
import { createIdentity, type Identity, saveIdentity } from '../transport/identity.ts';
import { readHeader, writeMessage } from '../transport/messages.ts';
import { clientFinish, clientStart } from '../transport/pake.ts';
import { Caps, type PairFinish, parsePairReply, parsePairResult } from '../transport/protocol.ts';
import { appendDevice, configDir, loadConfig, parseAddress } from './config.ts';
import { describeClose, openLink } from './connect.ts';
import { TetherError } from './errors.ts';

/** Stores a device's client key under keys/, never over another device's. */
function keepKey(name: string, id: Identity): string {
  const dir = join(configDir(), 'keys');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_');
  for (let i = 1; ; i++) {
    const path = join(dir, i === 1 ? `${base}.pem` : `${base}-${i}.pem`);
    if (existsSync(path)) continue;
    saveIdentity(path, id);
    return path;
  }
}

async function askCode(): Promise<string> {
  if (!process.stdin.isTTY)
    throw new TetherError('no pairing code: pass --code CODE (stdin is not a terminal)');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question('pairing code shown by tetherd: ')).trim();
  } finally {
    rl.close();
  }
}

export async function pair(
  name: string,
  address: string,
  code: string | undefined,
  clientName: string,
  defaultPort: number,
): Promise<void> {
  const cfg = loadConfig(defaultPort);
  if (cfg.devices.has(name))
    throw new TetherError(
      `device ${name} is already in ${cfg.path}; remove its block to pair again`,
    );
  const addr = parseAddress(address, defaultPort);
  // A key of its own for this device, kept only once paired: one stolen key opens one device.
  const id = await createIdentity(`${clientName} for ${name}`);
  const { socket, fingerprint } = await openLink(
    { name, address: addr, setenv: [], binds: [] },
    id,
  );
  process.stderr.write(
    `device ${name} (${addr.host}:${addr.port}) key fingerprint is ${fingerprint}\n`,
  );
  const conn = new Connection(socket, { role: 'client', caps: [Caps.PAIR] });
  try {
    const hello = await conn.ready().catch((e: Error) => {
      // A stranger is refused outright unless pairing is open on the device.
      if (e instanceof TransportError && e.code === ErrorCode.UNAUTHORIZED) {
        throw new TetherError(
          `${name}: pairing is not open on the device (run \`tetherd pair\` there, or start it with --pair)`,
        );
      }
      throw new TetherError(`${name}: ${describeClose(e)}`);
    });
    if (hello.caps.includes(Caps.EXEC)) {
      process.stderr.write(`this client is already authorized on ${name}\n`);
    }
    const theCode = code ?? (await askCode());
    const ids = { clientFp: id.fingerprint, deviceFp: fingerprint! };
    const pake = await clientStart(theCode);
    const s = conn.openStream();
    writeMessage(s, { kind: 'pair', name: clientName, ke1: pake.ke1 });
    const failed = (e: Error) => {
      throw new TetherError(`${name}: pairing failed: ${describeClose(conn.closeError ?? e)}`);
    };
    const reply = parsePairReply(await readHeader(s).catch(failed));
    if (!reply.ok) throw new TetherError(`${name}: pairing refused: ${reply.error}`);
    const ke3 = await clientFinish(theCode, pake.state, reply.ke2, ids);
    if (ke3 === null) {
      // A wrong code, or a machine in between (its key is not the device's): the device,
      // if it is one, says which it saw; nothing is pinned either way.
      s.end();
      const verdict = await readHeader(s).then(parsePairResult, () => null);
      const why =
        verdict && !verdict.ok ? verdict.error : 'the device did not prove it knows the code';
      throw new TetherError(`${name}: pairing refused: ${why}`);
    }
    writeMessage(s, { ke3 } satisfies PairFinish);
    s.end();
    const result = parsePairResult(await readHeader(s).catch(failed));
    if (!result.ok) throw new TetherError(`${name}: pairing refused: ${result.error}`);
    const identityFile = keepKey(name, id);
    appendDevice(cfg, {
      name,
      address: addr,
      fingerprint: fingerprint!,
      identityFile,
      setenv: [],
      binds: [],
    });
    process.stderr.write(`paired with ${reply.name}; saved as device ${name} in ${cfg.path}\n`);
  } finally {
    conn.close();
  }
}
