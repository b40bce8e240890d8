// The device's end of a run's `view` stream: sends ViewRequests, matches the replies by id and
// gathers an open's content chunks. Requests fail with a ViewError carrying the errno name.
import { constants } from 'node:os';
import { MessageReader, writeMessage } from '../transport/messages.ts';
import type { Stream } from '../transport/stream.ts';
import {
  type DirEntry,
  parseViewReply,
  type StatFs,
  type ViewChunk,
  type ViewNode,
  type ViewReply,
  type ViewRequest,
} from '../transport/view.ts';

export class ViewError extends Error {
  readonly code: string;
  constructor(code: string, message = code) {
    super(message);
    this.code = code;
  }

  /** The errno number the program gets (EIO for a name this kernel does not have). */
  get errno(): number {
    const n = constants.errno[this.code as keyof typeof constants.errno];
    return typeof n === 'number' ? n : constants.errno.EIO;
  }
}

/** Distributes the request union over its members, so `op` narrows the rest. */
type Body<R> = R extends unknown ? Omit<R, 'id'> : never;
export type ViewRequestBody = Body<ViewRequest>;

type Ok = Extract<ViewReply, { ok: true }>;

interface Pending {
  resolve(r: Ok): void;
  reject(e: Error): void;
  /** For opens: the content so far, and where a finished content goes. */
  chunks?: Buffer[];
  content?: { resolve(b: Buffer): void; reject(e: Error): void };
}

export interface OpenResult {
  node: ViewNode;
  key: string;
  /** The file's bytes, when the host sent them. */
  content: Promise<Buffer> | null;
}

export class ViewClient {
  private readonly stream: Stream;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed: Error | null = null;
  /**
   * What requests wait for before they are sent: the run's write-backs in flight, so the host
   * has a process's writes before anything asked after them (a lookup, an exec, a rename).
   */
  gate: () => Promise<void> | null = () => null;

  constructor(stream: Stream) {
    this.stream = stream;
    this.read().catch((e: Error) => this.close(e));
    stream.on('close', () => this.close(new ViewError('EIO', 'the view stream closed')));
  }

  private async read(): Promise<void> {
    for await (const m of new MessageReader(this.stream)) {
      const r = parseViewReply(m);
      const p = this.pending.get(r.id);
      if (!p) continue;
      if ('data' in r) this.chunk(r.id, p, r);
      else if (!r.ok) {
        this.pending.delete(r.id);
        p.reject(new ViewError(r.errno));
      } else {
        if (!('key' in r && r.content)) this.pending.delete(r.id);
        p.resolve(r);
      }
    }
    this.close(new ViewError('EIO', 'the view stream ended'));
  }

  private chunk(id: number, p: Pending, c: ViewChunk): void {
    p.chunks ??= [];
    p.chunks.push(Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength));
    if (!c.end) return;
    this.pending.delete(id);
    const all = Buffer.concat(p.chunks);
    p.content?.resolve(all);
  }

  private close(e: Error): void {
    if (this.closed) return;
    this.closed = e;
    for (const p of this.pending.values()) {
      p.reject(e);
      p.content?.reject(e);
    }
    this.pending.clear();
  }

  private send(body: ViewRequestBody, extra?: Partial<Pending>): Promise<Ok> {
    const held = this.gate();
    return held ? held.then(() => this.sendNow(body, extra)) : this.sendNow(body, extra);
  }

  private sendNow(body: ViewRequestBody, extra?: Partial<Pending>): Promise<Ok> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<Ok>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...extra });
      writeMessage(this.stream, { id, ...body });
    });
  }

  async lookup(path: string, follow: boolean): Promise<ViewNode> {
    const r = await this.send({ op: 'lookup', path, follow });
    if ('node' in r) return r.node;
    throw new ViewError('EIO', 'lookup: no node in reply');
  }

  /** Ops without a payload: done, or a device path to use instead. */
  async simple(body: ViewRequestBody): Promise<{ device: string } | null> {
    const r = await this.send(body);
    return 'device' in r ? { device: r.device } : null;
  }

  /**
   * A change (mkdir, unlink, rename, chmod…): a device path to use instead, or the canonical
   * view paths of the entries the host changed.
   */
  async change(body: ViewRequestBody): Promise<{ device: string } | string[]> {
    const r = await this.send(body);
    if ('device' in r) return { device: r.device };
    return 'changed' in r ? r.changed : [];
  }

  /** A working copy's bytes to the host file: never held behind the gate (it is the gate). */
  async writeBack(body: Extract<ViewRequestBody, { op: 'write' }>): Promise<void> {
    await this.sendNow(body);
  }

  async readlink(path: string): Promise<string | { device: string }> {
    const r = await this.send({ op: 'readlink', path });
    if ('device' in r) return { device: r.device };
    if ('target' in r) return r.target;
    throw new ViewError('EIO', 'readlink: no target in reply');
  }

  async readdir(path: string): Promise<DirEntry[] | { device: string }> {
    const r = await this.send({ op: 'readdir', path });
    if ('device' in r) return { device: r.device };
    if ('entries' in r) return r.entries;
    throw new ViewError('EIO', 'readdir: no entries in reply');
  }

  async statfs(path: string): Promise<StatFs | { device: string }> {
    const r = await this.send({ op: 'statfs', path });
    if ('device' in r) return { device: r.device };
    if ('statfs' in r) return r.statfs;
    throw new ViewError('EIO', 'statfs: no statfs in reply');
  }

  async open(
    body: Extract<ViewRequestBody, { op: 'open' }>,
  ): Promise<OpenResult | { device: string }> {
    let content: Promise<Buffer> | null = null;
    const extra: Partial<Pending> = {};
    content = new Promise<Buffer>((resolve, reject) => {
      extra.content = { resolve, reject };
    });
    // Nobody may wait on it (no content follows): never an unhandled rejection.
    content.catch(() => {});
    const r = await this.send(body, extra);
    if ('device' in r) return { device: r.device };
    if (!('key' in r)) throw new ViewError('EIO', 'open: no key in reply');
    return { node: r.node, key: r.key, content: r.content ? content : null };
  }
}
