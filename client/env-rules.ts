// Which of the caller's variables a run takes to the device, in the manner of ssh's SendEnv:
// glob patterns (`*`, `?`, matched regardless of case), a leading `-` leaves the matches out, and
// the last pattern that matches a name decides. The defaults come first, a device's `sendenv`
// lines after them, so `sendenv GH_TOKEN` sends one the defaults keep back, and `sendenv -*`
// followed by names turns the list into an allow-list. Variables set on purpose (--env, the
// device's `setenv`) always go.

/** By default everything but credentials by their usual names and the host's agent sockets. */
export const DEFAULT_SEND_ENV: readonly string[] = [
  '*',
  '-SSH_AUTH_SOCK',
  '-SSH_AGENT_PID',
  '-GPG_AGENT_INFO',
  '-KRB5CCNAME',
  '-AWS_*',
  '-*TOKEN',
  '-*SECRET*',
  '-*PASSWORD*',
  '-*PASSWD*',
  '-*API_KEY',
  '-*_CREDENTIALS',
];

function globRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** The test for a name under `rules` (the defaults, then `extra`). */
export function sendEnvFilter(extra: readonly string[] = []): (name: string) => boolean {
  const rules = [...DEFAULT_SEND_ENV, ...extra].map((r) => {
    const drop = r.startsWith('-');
    return { drop, re: globRegExp(drop ? r.slice(1) : r) };
  });
  return (name) => {
    for (let i = rules.length - 1; i >= 0; i--) if (rules[i]!.re.test(name)) return !rules[i]!.drop;
    return false;
  };
}
