// The client's configuration directory and its devices file, in the spirit
// of ssh_config:
//
//   default arm
//   device arm
//     address 192.168.7.2:1202
//     fingerprint SHA256:...
//     idletimeout 60
//     agent auto
//     identityfile keys/arm.pem
//   device local
//     command tetherd --stdio --user me
//
// `tether pair` appends device blocks; people edit the rest by hand.
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';

export function configDir(): string {
  if (process.env.TETHER_HOME) return process.env.TETHER_HOME;
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'tether');
}

export interface DeviceConfig {
  name: string;
  address?: { host: string; port: number };
  fingerprint?: string;
  command?: string;
  /** Extra environment assignments for runs on this device. */
  setenv: string[];
  /** 'auto' starts an agent on first use; 'no' never uses one; unset uses a running one. */
  agent?: 'auto' | 'no';
  /** Give up on a link that stays silent this long (seconds), as ssh's ServerAliveCountMax. */
  idleTimeout?: number;
  /** Runs see the host's files (the view) unless 'no'. */
  view?: 'yes' | 'no';
  /** Host directory shown as the view's `/` (the target sysroot); the host's `/` by default. */
  root?: string;
  /** Host directories shown at their own path, writable. */
  binds: string[];
  /** Host paths never served to this device, beyond the built-in ones (view-config.ts). */
  hide?: string[];
  /** This device's own client key (`tether pair` makes one per device); the shared one if unset. */
  identityFile?: string;
  /** Which of the caller's variables a run gets (env-rules.ts), after the default rules. */
  sendEnv?: string[];
}

export interface Config {
  default?: string;
  devices: Map<string, DeviceConfig>;
  path: string;
}

export class ConfigError extends Error {}

export function parseAddress(v: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d+))?$/.exec(v);
  const port = Number(m?.[3] ?? defaultPort);
  if (!m || !Number.isInteger(port) || port <= 0 || port > 65535)
    throw new ConfigError(`bad address ${JSON.stringify(v)}: expected HOST[:PORT]`);
  return { host: m[1] ?? m[2]!, port };
}

export function parseConfig(text: string, path: string, defaultPort: number): Config {
  const cfg: Config = { devices: new Map(), path };
  let cur: DeviceConfig | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const [key, ...rest] = line.split(/\s+/);
    const value = rest.join(' ');
    const where = `${path}:${i + 1}`;
    if (!value) throw new ConfigError(`${where}: ${key} needs a value`);
    switch (key!.toLowerCase()) {
      case 'default':
        cfg.default = value;
        return;
      case 'device':
        cur = { name: value, setenv: [], binds: [] };
        cfg.devices.set(value, cur);
        return;
    }
    if (!cur) throw new ConfigError(`${where}: ${key} outside a device block`);
    const d: DeviceConfig = cur;
    switch (key!.toLowerCase()) {
      case 'address':
        d.address = parseAddress(value, defaultPort);
        return;
      case 'fingerprint':
        if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(value))
          throw new ConfigError(`${where}: bad fingerprint`);
        d.fingerprint = value;
        return;
      case 'command':
        d.command = value;
        return;
      case 'agent':
        if (value !== 'auto' && value !== 'no')
          throw new ConfigError(`${where}: agent is auto or no`);
        d.agent = value;
        return;
      case 'idletimeout': {
        const n = Number(value);
        if (!Number.isFinite(n) || n <= 0)
          throw new ConfigError(`${where}: idletimeout needs seconds`);
        d.idleTimeout = n;
        return;
      }
      case 'setenv':
        if (!/^[^=\s]+=/.test(value)) throw new ConfigError(`${where}: setenv needs NAME=value`);
        d.setenv.push(value);
        return;
      case 'view':
        if (value !== 'yes' && value !== 'no') throw new ConfigError(`${where}: view is yes or no`);
        d.view = value;
        return;
      case 'identityfile':
        d.identityFile = value.startsWith('/') ? value : join(dirname(path), value);
        return;
      case 'sendenv':
        d.sendEnv = [...(d.sendEnv ?? []), ...value.split(/\s+/)];
        return;
      case 'hide':
        if (!value.startsWith('/')) throw new ConfigError(`${where}: hide needs an absolute path`);
        d.hide = [...(d.hide ?? []), value];
        return;
      case 'root':
      case 'bind':
        if (!value.startsWith('/'))
          throw new ConfigError(`${where}: ${key} needs an absolute path`);
        if (key === 'root') d.root = value;
        else d.binds.push(value);
        return;
      default:
        throw new ConfigError(`${where}: unknown keyword ${key}`);
    }
  });
  return cfg;
}

export function loadConfig(defaultPort: number): Config {
  const path = join(configDir(), 'config');
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return parseConfig(text, path, defaultPort);
}

export function appendDevice(cfg: Config, d: DeviceConfig): void {
  mkdirSync(configDir(), { recursive: true, mode: 0o700 });
  const lines = [`\n# added by tether pair on ${new Date().toISOString()}`, `device ${d.name}`];
  if (d.address)
    lines.push(
      `  address ${d.address.host.includes(':') ? `[${d.address.host}]` : d.address.host}:${d.address.port}`,
    );
  if (d.fingerprint) lines.push(`  fingerprint ${d.fingerprint}`);
  if (d.identityFile) lines.push(`  identityfile ${relative(dirname(cfg.path), d.identityFile)}`);
  appendFileSync(cfg.path, `${lines.join('\n')}\n`, { mode: 0o600 });
}
