// Reaps processes started with the addon's spawn. SIGCHLD only says "some child changed", so
// each signal triggers passes of waitpid over our own pids until a full pass finds nothing.
// Never waitpid(-1): libuv reaps child_process children itself and must keep seeing them.
import { type ExitStatus, waitpid } from './native.ts';
import { onSigchld } from './sigchld.ts';

const watched = new Map<number, (status: ExitStatus) => void>();
let listening = false;
// The SIGCHLD watch does not hold the loop open: without this it could exit while children run.
let keepAlive: NodeJS.Timeout | undefined;

/** Calls onExit once with the exit status of `pid`, a child spawned through the addon. */
export function watchChild(pid: number, onExit: (status: ExitStatus) => void): void {
  if (watched.has(pid)) throw new Error(`pid ${pid} is already watched`);
  watched.set(pid, onExit);
  if (!listening) {
    onSigchld(reap);
    listening = true;
  }
  keepAlive ??= setInterval(() => {}, 2 ** 31 - 1);
  // The child may have exited before it was registered, its SIGCHLD already spent. Deferred so
  // onExit never runs inside watchChild.
  process.nextTick(reap);
}

function reap(): void {
  const exited: [(status: ExitStatus) => void, ExitStatus][] = [];
  for (let found = true; found; ) {
    found = false;
    for (const [pid, onExit] of watched) {
      const status = waitpid(pid);
      if (status) {
        watched.delete(pid);
        exited.push([onExit, status]);
        found = true;
      }
    }
  }
  if (watched.size === 0 && keepAlive) {
    clearInterval(keepAlive);
    keepAlive = undefined;
  }
  for (const [onExit, status] of exited) onExit(status);
}
