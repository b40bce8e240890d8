// SIGCHLD for the daemon's own children and tracees. Normally from the addon's signalfd
// watcher, which keeps the signal from being delivered at all (each ptrace stop sends one;
// daemon/native/sigchld.c says why that matters); where it cannot block the signal in every
// thread, from Node's signal handling.
import type { Logger } from './log.ts';
import * as native from './native.ts';

const listeners = new Set<() => void>();
let watching = false;

function dispatch(): void {
  for (const l of listeners) l();
}

export function onSigchld(fn: () => void, log?: Logger): void {
  if (!watching) {
    watching = true;
    try {
      native.sigchldWatch(dispatch);
    } catch (e) {
      log?.warn({ err: (e as Error).message }, 'SIGCHLD watcher unavailable; using signals');
      process.on('SIGCHLD', dispatch);
    }
  }
  listeners.add(fn);
}

export function offSigchld(fn: () => void): void {
  listeners.delete(fn);
}
