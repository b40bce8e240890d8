// Starts one run's program under the tracer with the view applied: finds the program and the
// working directory in the view, builds the seccomp filter for the device's ABIs, and wires
// the tracer to the redirector.
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ARCH_ABIS, type ArchAbi, abiForNodeArch } from '../arch/abi.ts';
import { OPEN_FLAGS } from '../arch/fcntl.ts';
import { SYSCALLS } from '../arch/syscalls.ts';
import type { Stream } from '../transport/stream.ts';
import type { ViewSpec } from '../transport/view.ts';
import type { ContentCache } from './cache.ts';
import type { ExecLinks } from './exec-links.ts';
import { deviceProgram } from './exec-view.ts';
import { runsOnlyDir } from './instance.ts';
import type { Logger } from './log.ts';
import * as native from './native.ts';
import { NOTIFIED } from './notify-stop.ts';
import type { WaitEvent } from './ptrace.ts';
import { ENOSYS_CALLS } from './redirect/index.ts';
import { Redirector } from './redirect/redirector.ts';
import { buildFilter, type FilterAbi } from './seccomp.ts';
import type { Proc } from './syscall-stop.ts';
import { TRACE_OPTIONS, Tracer } from './tracer.ts';
import { ViewClient, ViewError } from './view-client.ts';
import type { ViewMemory } from './view-memory.ts';

export interface ViewEnv {
  cache: ContentCache;
  /** Where per-run scratch directories go (on the device, exec-permitted). */
  runsDir: string;
  /** The run user's group, who alone may enter a run's scratch (see runsOnlyDir). */
  runGid: number;
  /** False where the kernel lacks seccomp filters: every syscall then stops (PTRACE_SYSCALL). */
  seccomp: boolean;
  /**
   * How redirected calls reach tetherd (docs/hot-path.md): all as ptrace stops, or those only
   * answered (NOTIFIED) as seccomp user notifications, which need no ptrace stop.
   */
  tracer: Tracing;
  links: ExecLinks;
}

export interface TracedRun {
  pid: number;
  tracer: Tracer;
  /** The errno of the program's first execve when the tracer failed it, else null. */
  execErrno(): number | null;
  cleanup(): void;
}

export type Tracing = 'ptrace' | 'unotify';

/** What the spawn needs that only the view can say. */
export interface ViewStart {
  file: string;
  argv: string[];
  env: string[];
  cwd: string;
}

/** The ABIs programs on this device can use: its own and its 32-bit compat ABI. */
export function deviceAbis(): ArchAbi[] {
  const host = abiForNodeArch(process.arch);
  if (!host) throw new Error(`tracing is not supported on ${process.arch}`);
  if (host.name === 'x86_64') return [host, ARCH_ABIS.i386];
  if (host.name === 'aarch64') return [host, ARCH_ABIS.arm];
  return [host];
}

/**
 * Each ABI's calls by what the filter does with them: the redirected ones are traced (under
 * unotify, those of the device's own ABI that NOTIFIED lists notify instead), every other
 * call of its table runs but those that could reach files behind the view's back, and
 * numbers the table lacks (x86_64's x32 calls, a newer kernel's) fail with ENOSYS.
 */
export function filterAbis(abis: readonly ArchAbi[], tracer: Tracing = 'ptrace'): FilterAbi[] {
  const traced = new Set(Redirector.traced());
  const refused = new Set<string>(ENOSYS_CALLS);
  const own = abiForNodeArch(process.arch);
  return abis.map((abi) => {
    const names = Object.keys(SYSCALLS[abi.name].byName);
    const numbers = (keep: (n: string) => boolean) =>
      names.filter(keep).map((n) => abi.syscallNumber(n)!);
    const notified = new Set<string>(tracer === 'unotify' && abi === own ? NOTIFIED : []);
    // The listener cannot install an O_PATH fd (SECCOMP_IOCTL_NOTIF_ADDFD takes none).
    const O_PATH = OPEN_FLAGS[abi.name].O_PATH;
    const traceIf = [
      { nr: abi.syscallNumber('open'), arg: 1, mask: O_PATH },
      { nr: abi.syscallNumber('openat'), arg: 2, mask: O_PATH },
    ].filter((c): c is { nr: number; arg: number; mask: number } => c.nr !== undefined);
    return {
      auditArch: abi.auditArch,
      trace: numbers((n) => traced.has(n) && !notified.has(n)),
      notify: numbers((n) => traced.has(n) && notified.has(n)),
      traceIf,
      allow: numbers((n) => !traced.has(n) && !refused.has(n)),
    };
  });
}

export function filterFor(abis: readonly ArchAbi[], tracer: Tracing = 'ptrace'): Buffer {
  return buildFilter(filterAbis(abis, tracer));
}

export class ViewSession {
  readonly redirector: Redirector;
  private readonly scratch: string;
  private readonly log: Logger;

  /** `owner`: the run's user (-1: the daemon's own), who uses what the scratch holds. */
  constructor(
    stream: Stream,
    spec: ViewSpec,
    env: ViewEnv,
    memory: ViewMemory,
    owner: { uid: number; gid: number },
    log: Logger,
  ) {
    // Placeholders, working copies and FIFOs live here, made by the daemon and used by the
    // program. The directory stays the daemon's (root:RUNGROUP 0750): a run user who
    // could rename or replace its entries would have the daemon write, chown and read where
    // they point. Sockets the program binds go to a directory of its own (sock/).
    this.scratch = mkdtempSync(join(env.runsDir, 'run-'));
    runsOnlyDir(this.scratch, env.runGid);
    mkdirSync(join(this.scratch, 'sock'), { mode: 0o700 });
    chownSync(join(this.scratch, 'sock'), owner.uid, owner.gid);
    this.log = log;
    this.redirector = new Redirector({
      client: new ViewClient(stream),
      mounts: spec.mounts,
      cache: env.cache,
      scratch: this.scratch,
      links: env.links,
      memory,
      owner,
      log,
    });
  }

  /** The program's view path (PATH searched in the view, as execvp does) and cwd's. */
  async resolve(start: ViewStart): Promise<{ file: string; cwd: string; kernelCwd: string }> {
    const r = this.redirector;
    let cwd = start.cwd || '/';
    let kernelCwd: string;
    // No process yet: /proc/self is nobody's.
    const at = r.walk(cwd, true, { pid: -1, cwd: '/', exe: '', pendingExe: null });
    if (at.kind !== 'view') {
      cwd = at.kind === 'device' ? (at.at ?? cwd) : cwd;
      kernelCwd = cwd;
    } else {
      const viewCwd = at.path;
      const node = await Promise.resolve()
        .then(() => r.lookup(viewCwd, true))
        .catch((e: unknown) => {
          throw e instanceof ViewError ? new ViewError(e.code, `chdir ${cwd}`) : e;
        });
      if (node.where === 'device') {
        cwd = node.path;
        kernelCwd = node.path;
      } else {
        if ((node.st.mode & 0o170000) !== 0o040000) throw new ViewError('ENOTDIR', `chdir ${cwd}`);
        cwd = node.path;
        kernelCwd = r.placeholder(node.path);
      }
    }
    // A relative name stays relative: the tracer resolves it against the view cwd, and a #!
    // interpreter sees it as given, as with a local exec.
    const file = start.file.includes('/')
      ? start.file
      : await this.search(start.file, start.env, cwd);
    return { file, cwd, kernelCwd };
  }

  private async search(name: string, env: string[], cwd: string): Promise<string> {
    const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/bin:/usr/bin';
    let denied = false;
    for (const dir of pathVar.split(':')) {
      const base = dir === '' ? cwd : dir.startsWith('/') ? dir : `${cwd}/${dir}`;
      const candidate = `${base === '/' ? '' : base}/${name}`;
      try {
        const node = await this.redirector.lookup(candidate, true);
        if (node.where === 'device') {
          // A PATH entry in a device mount: the device's own file, if it is there.
          deviceProgram(node.path);
          return candidate;
        }
        if ((node.st.mode & 0o170000) !== 0o100000) continue;
        await this.redirector.access(candidate, 1, true);
        return candidate;
      } catch (e) {
        if (!(e instanceof ViewError)) throw e;
        if (e.code === 'EACCES') denied = true;
      }
    }
    throw new ViewError(denied ? 'EACCES' : 'ENOENT', name);
  }

  /** Spawns the traced program (already placed fds and ids in `opts`). */
  start(
    opts: Omit<native.SpawnOptions, 'trace'>,
    viewCwd: string,
    env: ViewEnv,
    onExit: (ev: WaitEvent, execErrno: number | null) => void,
  ): TracedRun {
    const r = this.redirector;
    const abis = deviceAbis();
    const notify = env.seccomp && env.tracer === 'unotify';
    const trace = {
      options: TRACE_OPTIONS,
      filter: env.seccomp ? filterFor(abis, env.tracer) : null,
      stop: !env.seccomp,
      listener: notify,
    };
    const { pid, listener } = notify
      ? native.spawnNotified({ ...opts, trace })
      : { pid: native.spawn({ ...opts, trace }), listener: null };
    let firstExec: number | null = null;
    let execSeen = false;
    const root: Proc = { pid, cwd: viewCwd, exe: opts.file, pendingExe: null };
    r.spawnExec = pid;
    if (opts.cwd !== null && opts.cwd !== viewCwd) root.cwdStandIn = opts.cwd;
    const procs = new Map<number, Proc>();
    const tracer = new Tracer(
      pid,
      root,
      {
        onSyscall: (s) => {
          procs.set(s.proc.pid, s.proc);
          const action = r.onSyscall(s);
          const first =
            !execSeen && s.proc.pid === pid && (s.name === 'execve' || s.name === 'execveat');
          if (!first) return action;
          execSeen = true;
          // The program's own exec failing means it never ran: remember why.
          return Promise.resolve(action).then((a) => {
            if (a.kind === 'return' && a.value < 0n) firstExec = Number(-a.value);
            return a;
          });
        },
        onExec: (proc) => procs.set(proc.pid, proc),
        // A process's writes go to the host as it exits, ahead of any later request of the run.
        onTaskExit: () => {
          r.work.flushAll();
        },
        onRootExit: (ev) => {
          r.work.flushAll().finally(() => onExit(ev, firstExec));
        },
      },
      this.log,
      !env.seccomp,
      r.fast.table,
      listener,
    );
    r.procs = (p) => procs.get(p) ?? null;
    return {
      pid,
      tracer,
      execErrno: () => firstExec,
      cleanup: () => this.cleanup(),
    };
  }

  cleanup(): void {
    this.redirector.close();
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/** Whether this kernel has seccomp filters (the Seccomp line exists with CONFIG_SECCOMP). */
export function hasSeccomp(status: string): boolean {
  return /^Seccomp:/m.test(status);
}
