// The daemon's one logger: pino JSON on stderr (stdout may be the connection
// under --stdio), or pino-pretty as a plain stream (no worker thread).
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

export function createLogger(level: string, format: 'json' | 'pretty'): Logger {
  const dest = format === 'pretty' ? pretty({ destination: 2, sync: true }) : pino.destination(2);
  return pino({ level }, dest);
}
