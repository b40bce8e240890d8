// Loader of the client's addon (client/native/recvfds.c), built by npm ci or carried by the
// single executable.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface Received {
  data: Buffer;
  fds: number[];
  /** The sender passed more fds than fit: some were dropped. */
  truncated: boolean;
}

interface Addon {
  recvFds(fd: number, maxBytes: number): Received | null;
}

// Same depth from client/ (sources) and dist/ (bundle).
let addonPath = () =>
  fileURLToPath(new URL(`../build/${process.arch}/recvfds.node`, import.meta.url));

let addon: Addon | null = null;

/** Where the single executable (client/sea-main.ts) puts the addon it carries. */
export function useAddon(path: () => string): void {
  addonPath = path;
}

/** Bytes and fds waiting on a unix socket: null if nothing is there yet, empty data at EOF. */
export function recvFds(fd: number, maxBytes: number): Received | null {
  addon ??= createRequire(import.meta.url)(addonPath()) as Addon;
  return addon.recvFds(fd, maxBytes);
}
