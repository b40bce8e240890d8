// Who asks the status API, for /v1/sessions: a paired client sees its own connections and runs
// only (their command lines are its business); the local unix socket, the device
// administrator's, sees all. Over TLS the daemon marks the socket with its client's key; a
// status stream of a connection says it in a header the daemon sets on its inject, which a TLS
// request cannot override. Kept apart from status.ts, which loads fastify only when asked.

export const VIEWER_HEADER = 'x-tether-viewer';

/** The TLS socket of a status request, marked with its client's key by the daemon. */
export type ViewerSocket = { tetherViewer?: string };

/** The client a request is for, or null for everything. */
export function viewerOf(
  socket: unknown,
  headers: Record<string, string | string[] | undefined>,
): string | null {
  const own = (socket as ViewerSocket).tetherViewer;
  if (own !== undefined) return own;
  const h = headers[VIEWER_HEADER];
  return typeof h === 'string' && h !== '' ? h : null;
}
