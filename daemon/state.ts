// The daemon's state directory: identity, authorized client keys, pairing.
import { appendFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * mkdir -p, one component at a time: Node's recursive mkdir retries forever where the kernel
 * answers ENOENT for a new directory under one that exists (/proc/x).
 */
export function makeDir(dir: string, mode = 0o700): void {
  const abs = resolve(dir);
  let at = '/';
  for (const part of abs.split('/').filter(Boolean)) {
    at = join(at, part);
    try {
      mkdirSync(at, { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if (!statSync(abs).isDirectory())
    throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${abs}'`), { code: 'ENOTDIR' });
}

export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return '/var/lib/tetherd';
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'tetherd');
}

export class State {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    makeDir(dir);
  }

  get authorizedPath(): string {
    return join(this.dir, 'authorized_clients');
  }

  get pairingPath(): string {
    return join(this.dir, 'pairing.json');
  }

  /** authorized_clients: fingerprint and the name it paired with, per line. */
  private clients(): Map<string, string | null> {
    let text: string;
    try {
      text = readFileSync(this.authorizedPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
    const out = new Map<string, string | null>();
    for (const line of text.split('\n')) {
      const [fp, name] = line.trim().split(/\s+/);
      if (fp) out.set(fp, name ?? null);
    }
    return out;
  }

  /**
   * An authorized client and the name it paired with; undefined for any other key. Read on
   * every connection, so pairing and hand edits apply at once.
   */
  client(fingerprint: string): { name: string | null } | undefined {
    const clients = this.clients();
    return clients.has(fingerprint) ? { name: clients.get(fingerprint) ?? null } : undefined;
  }

  authorize(fingerprint: string, name: string): void {
    if (this.client(fingerprint)) return;
    const clean = name.replace(/[^\w@.:-]/g, '_');
    appendFileSync(this.authorizedPath, `${fingerprint} ${clean} ${new Date().toISOString()}\n`, {
      mode: 0o600,
    });
  }
}
