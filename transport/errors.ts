// Wire error codes, carried by CLOSE, GOAWAY, RESET_STREAM and STOP_SENDING.
// Numbers are part of the protocol (docs/protocol.md); never renumber.
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  FRAME_ENCODING_ERROR: 0x2,
  FRAME_SIZE_ERROR: 0x3,
  FLOW_CONTROL_ERROR: 0x4,
  STREAM_LIMIT_ERROR: 0x5,
  STREAM_STATE_ERROR: 0x6,
  VERSION_MISMATCH: 0x7,
  IDLE_TIMEOUT: 0x8,
  INTERNAL_ERROR: 0x9,
  UNAUTHORIZED: 0xa,
  CANCELLED: 0xb,
  REFUSED: 0xc,
  MESSAGE_ERROR: 0xd,
  CONNECTION_LOST: 0xe,
} as const;

export function errorName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `ERROR_0x${code.toString(16)}`;
}

/** An error of the transport: a wire code and a one-line reason. */
export class TransportError extends Error {
  readonly code: number;
  /** True when the peer sent this code; false when we detected it. */
  readonly remote: boolean;
  constructor(code: number, reason: string, remote = false) {
    super(reason ? `${errorName(code)}: ${reason}` : errorName(code));
    this.name = 'TransportError';
    this.code = code;
    this.remote = remote;
  }
}
