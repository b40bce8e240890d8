// `tether status`: what a device's tetherd is doing, read from its status API
// through `status` streams of an ordinary tether connection (so it works over
// TLS, ssh and a local daemon alike).

import type { Connection } from '../transport/connection.ts';
import { readHeader, writeMessage } from '../transport/messages.ts';
import { Caps, parseStatusReply } from '../transport/protocol.ts';
import type { DeviceConfig } from './config.ts';
import { connect, describeClose } from './connect.ts';
import { TetherError } from './errors.ts';

interface Info {
  name: string;
  version: string;
  node: string;
  arch: string;
  kernel: { release: string };
  fingerprint: string;
  uptimeSeconds: number;
  rssBytes: number;
  connections: number;
  runs: number;
  /** How redirected calls reach tetherd: ptrace stops, or user notifications for some. */
  tracer?: 'ptrace' | 'unotify' | null;
  cache: {
    entries: number;
    bytes: number;
    hits: number;
    misses: number;
    hitRate: number | null;
  } | null;
  /** Redirected calls answered by the tracer's table without JavaScript, and its misses. */
  fastAnswers?: { hits: number; misses: number } | null;
}

interface Run {
  id: number;
  state: string;
  pid: number | null;
  argv: string[];
  since: string;
}

interface Session {
  id: number;
  client: string | null;
  name: string | null;
  address: string | null;
  since: string;
  runs: Run[];
}

async function get(conn: Connection, device: string, path: string): Promise<unknown> {
  const s = conn.openStream();
  writeMessage(s, { kind: 'status', path });
  s.end();
  const reply = parseStatusReply(
    await readHeader(s).catch((e: Error) => {
      throw new TetherError(`${device}: ${describeClose(conn.closeError ?? e)}`);
    }),
  );
  if (reply.status !== 200) throw new TetherError(`${device}: ${path}: status ${reply.status}`);
  return JSON.parse(reply.body);
}

function age(since: string | number, now: number): string {
  let s = Math.max(0, Math.round((now - new Date(since).getTime()) / 1000));
  if (s < 60) return `${s}s`;
  const parts: string[] = [];
  for (const [unit, n] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (s >= n) parts.push(`${Math.floor(s / n)}${unit}`);
    s %= n;
  }
  return parts.slice(0, 2).join('');
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]!) : c)).join('  '));
}

/** The readable form: the daemon, its cache, then one line per connection and per run. */
export function formatStatus(
  device: string,
  info: Info,
  sessions: Session[],
  now = Date.now(),
): string {
  const lines = [
    `${device}: tetherd ${info.version} (node ${info.node}, ${info.arch}) on Linux ${info.kernel.release}, up ${age(now - info.uptimeSeconds * 1000, now)}, ${mib(info.rssBytes)} resident`,
    `key ${info.fingerprint}`,
  ];
  const c = info.cache;
  if (c) {
    const opens = c.hits + c.misses;
    const rate =
      c.hitRate === null
        ? 'no opens yet'
        : `${(c.hitRate * 100).toFixed(1)}% of ${opens} opens from the cache`;
    lines.push(`cache: ${c.entries} files, ${mib(c.bytes)}; ${rate}`);
  } else lines.push('cache: none (this device cannot run programs with a view)');
  lines.push(
    `${sessions.length} connection${sessions.length === 1 ? '' : 's'}, ${info.runs} run${info.runs === 1 ? '' : 's'}`,
  );
  for (const s of sessions)
    lines.push(
      `  connection ${s.id}: ${s.name ?? s.client ?? 'stdio'}${s.address ? ` from ${s.address}` : ''}, ${age(s.since, now)}`,
    );
  const runs = sessions.flatMap((s) =>
    s.runs.map((r) => ({ ...r, who: s.name ?? s.client ?? 'stdio' })),
  );
  if (runs.length > 0) {
    const rows = [['RUN', 'PID', 'STATE', 'AGE', 'CLIENT', 'COMMAND']];
    for (const r of runs)
      rows.push([
        String(r.id),
        String(r.pid ?? '-'),
        r.state,
        age(r.since, now),
        r.who,
        r.argv.join(' '),
      ]);
    lines.push(...table(rows).map((l) => `  ${l}`));
  }
  return `${lines.join('\n')}\n`;
}

export async function status(device: DeviceConfig, json: boolean): Promise<void> {
  const conn = await connect(device);
  try {
    const hello = await conn.ready();
    if (!hello.caps.includes(Caps.STATUS))
      throw new TetherError(`${device.name}: this tetherd has no status API (an older version)`);
    const [info, list] = await Promise.all([
      get(conn, device.name, '/v1/info'),
      get(conn, device.name, '/v1/sessions'),
    ]);
    const sessions = (list as { sessions: Session[] }).sessions;
    process.stdout.write(
      json
        ? `${JSON.stringify({ info, sessions }, null, 2)}\n`
        : formatStatus(device.name, info as Info, sessions),
    );
  } finally {
    conn.close();
  }
}
