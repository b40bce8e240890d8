/** An error of tether itself: one line on stderr, exit status 255 (as ssh). */
export class TetherError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 255) {
    super(message);
    this.name = 'TetherError';
    this.exitCode = exitCode;
  }
}
