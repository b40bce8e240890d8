// What the daemon is doing right now, for the status API: its connections and the
// runs on them. Sessions report themselves; nothing here changes what they do.
import type { ExecSession } from './exec.ts';

/** A run as the status API and a stopping daemon see it (an ExecSession). */
export type RunView = Pick<ExecSession, 'describe' | 'terminate'>;

export interface ConnectionInfo {
  id: number;
  /** The client's key fingerprint; null when the channel authenticated it (stdio). */
  client: string | null;
  /** The name the client paired with, from authorized_clients. */
  name: string | null;
  address: string | null;
  since: number;
}

export class Activity {
  readonly startedAt = Date.now();
  private nextId = 1;
  private readonly connections = new Map<number, ConnectionInfo>();
  private readonly runs = new Map<RunView, number>();
  private readonly idleWaiters = new Set<() => void>();
  runsStarted = 0;
  connectionsAccepted = 0;

  connectionOpened(info: Omit<ConnectionInfo, 'id' | 'since'>): number {
    const id = this.nextId++;
    this.connections.set(id, { ...info, id, since: Date.now() });
    this.connectionsAccepted++;
    return id;
  }

  connectionClosed(id: number): void {
    this.connections.delete(id);
  }

  runOpened(session: RunView, connection: number): void {
    this.runs.set(session, connection);
    this.runsStarted++;
  }

  runClosed(session: RunView): void {
    this.runs.delete(session);
    if (this.runs.size === 0) for (const w of this.idleWaiters) w();
  }

  /** SIGTERM to every run; resolves once all have ended (exit reported) or after `ms`. */
  terminateRuns(ms: number): Promise<void> {
    for (const r of this.runs.keys()) r.terminate();
    if (this.runs.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.idleWaiters.add(done);
    });
  }

  listConnections(): ConnectionInfo[] {
    return [...this.connections.values()];
  }

  listRuns() {
    return [...this.runs].map(([session, connection]) => ({
      connection,
      ...session.describe(),
    }));
  }
}
