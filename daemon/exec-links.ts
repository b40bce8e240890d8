// What the kernel executes for a program of the view, so that it looks like the program: a
// copy whose PT_INTERP names the cached loader (through a short symlink: the new name must fit
// where the old one was), hard-linked under the program's own name. The kernel then loads the
// view's loader for it, names the process after it (comm, as ps and pgrep see it), and keeps
// its argv as given (/proc/PID/cmdline).
import {
  chmodSync,
  closeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { runsOnlyDir, SHORT_DIR_FILE } from './instance.ts';

export class ExecLinks {
  private readonly dir: string;
  /** Where the loader symlinks go: a short path, or null where none could be made. */
  private readonly shortDir: string | null;
  private readonly loaders = new Map<string, string>();
  private readonly patched = new Map<string, string>();
  private readonly names = new Map<string, string>();
  private next = 1;

  /**
   * `dir`: an exec-permitted directory of the daemon's own, emptied now, that runs of group
   * `runGid` may enter (runsOnlyDir: the programs are host files).
   */
  constructor(dir: string, runGid: number, shortBase = '/tmp') {
    this.dir = dir;
    rmSync(dir, { recursive: true, force: true });
    runsOnlyDir(dir, runGid);
    let short: string | null = null;
    try {
      // A fresh directory of ours (mkdtemp: nobody else can have planted links in it).
      short = mkdtempSync(join(shortBase, '.t'));
      // Every run user's kernel follows the loader links through it.
      chmodSync(short, 0o755);
      // Where it is, for whoever removes this daemon's directory if it is killed (instance.ts).
      writeFileSync(join(dir, SHORT_DIR_FILE), short);
    } catch {
      short = null;
    }
    this.shortDir = short;
  }

  /**
   * The program at device file `file` (a cache entry) with PT_INTERP at [offset, offset+size)
   * pointing at `loader`, or null when the loader's short name does not fit there.
   */
  withLoader(
    file: string,
    interp: { offset: number; size: number },
    loader: string,
  ): string | null {
    const link = this.loaderLink(loader);
    if (link === null || Buffer.byteLength(link) + 1 > interp.size) return null;
    const k = `${file}\0${link}`;
    let out = this.patched.get(k);
    if (!out) {
      out = join(this.dir, `p${this.next++}`);
      copyFileSync(file, out);
      const name = Buffer.alloc(interp.size);
      name.write(link);
      const fd = openSync(out, 'r+');
      try {
        writeSync(fd, name, 0, name.length, interp.offset);
      } finally {
        closeSync(fd);
      }
      this.patched.set(k, out);
    }
    return out;
  }

  private loaderLink(loader: string): string | null {
    if (this.shortDir === null) return null;
    let link = this.loaders.get(loader);
    if (!link) {
      link = join(this.shortDir, String(this.loaders.size + 1));
      try {
        symlinkSync(loader, link);
      } catch {
        return null;
      }
      this.loaders.set(loader, link);
    }
    return link;
  }

  /** `file` under the name `name` (what the kernel calls the process), as a hard link. */
  named(file: string, name: string): string {
    const base = basename(name) || 'program';
    const k = `${file}\0${base}`;
    let out = this.names.get(k);
    if (!out) {
      const d = join(this.dir, `n${this.next++}`);
      mkdirSync(d);
      out = join(d, base);
      linkSync(file, out);
      this.names.set(k, out);
    }
    return out;
  }

  close(): void {
    if (this.shortDir) rmSync(this.shortDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
