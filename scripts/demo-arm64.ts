// The main job on an emulated arm64 device (scripts/demo.sh runs this after setting up):
// qemu-system-aarch64 boots Debian's arm64 kernel with an initramfs of busybox, glibc and the
// packaged tetherd-linux-arm64, nothing else (test/lib/arm-device.ts); this host pairs with it
// through the one-time code it prints, and runs ARM programs from a host sysroot of Debian
// arm64 packages, and one built here with the cross compiler, with `tether run`.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARM64_SYSROOT, startArmDevice } from '../test/lib/arm-device.ts';

const ROOT = join(import.meta.dirname, '..');
const TETHER = join(ROOT, 'bin/tether');
const work = mkdtempSync(join(tmpdir(), 'tether-demo-'));
const env = { ...process.env, TETHER_HOME: join(work, 'client'), TETHER_DEVICE: '' };

const say = (s: string) => process.stdout.write(`== ${s}\n`);
/** An argument as a POSIX shell reads it back: the printed commands can be pasted. */
const shellWord = (a: string) =>
  /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
/**
 * Runs tether as a user would, its output straight to ours; resolves with its exit status.
 * Never synchronously: this process drains qemu's console, and qemu stalls when it fills.
 */
function tether(args: string[], input?: string): Promise<number> {
  process.stdout.write(`$ tether ${args.map(shellWord).join(' ')}\n`);
  const child = spawn(TETHER, args, {
    env,
    cwd: work,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'inherit', 'inherit'],
  });
  if (input !== undefined) child.stdin?.end(input);
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 128 + 15)));
}

say('booting the emulated arm64 device (qemu-system-aarch64, no KVM: about 10 s)');
const dev = await startArmDevice('arm64', join(ROOT, 'dist/release/tetherd-linux-arm64'), [
  '--pair',
]);
try {
  process.stdout.write(`tetherd listens on ${dev.address} after ${dev.bootSeconds.toFixed(1)} s\n`);
  const code = /tetherd: pairing code (\S+)/.exec(dev.console())?.[1];
  if (!code) throw new Error('the device printed no pairing code');

  say(`pairing this host with the device (code ${code})`);
  if ((await tether(['pair', 'board', dev.address, '--code', code])) !== 0)
    throw new Error('pairing failed');

  // The sysroot is the view's /, read-only; this directory is shown at its own path, writable.
  const run = ['run', '-d', 'board', '--root', ARM64_SYSROOT, '--bind', work];
  say(`the sysroot's programs on the device: / is ${ARM64_SYSROOT}`);
  await tether([...run, 'uname', '-a']);
  await tether([
    ...run,
    'bash',
    '-c',
    'echo "bash $BASH_VERSION from $(command -v bash); ls: $(ls /usr/bin | wc -l) programs"',
  ]);

  say('a program built here with aarch64-linux-gnu-gcc, run in this directory on the device');
  writeFileSync(
    join(work, 'hello.c'),
    `#include <gnu/libc-version.h>
#include <stdio.h>
#include <sys/utsname.h>
int main(int argc, char **argv) {
  struct utsname u;
  uname(&u);
  char line[128] = "";
  FILE *in = fopen(argv[1], "r");
  if (in && fgets(line, sizeof line, in)) fclose(in);
  printf("hello from %s (%s), glibc %s; %s read: %s", u.nodename, u.machine,
         gnu_get_libc_version(), argv[1], line);
  FILE *out = fopen("result.txt", "w");
  fprintf(out, "written on the %s device\\n", u.machine);
  return fclose(out) == 0 ? 3 : 1;
}
`,
  );
  execFileSync('aarch64-linux-gnu-gcc', ['-O2', '-o', join(work, 'hello'), join(work, 'hello.c')]);
  writeFileSync(join(work, 'input.txt'), 'a line from the host\n');
  const status = await tether([...run, './hello', 'input.txt']);
  process.stdout.write(`exit status: ${status}\n`);
  process.stdout.write(
    `result.txt on this host: ${readFileSync(join(work, 'result.txt'), 'utf8')}`,
  );

  say('stdin and a pipeline through the device');
  await tether(
    [
      ...run,
      'sh',
      '-c',
      'while read -r l; do echo "device $(uname -m) read: $l"; done | tr a-z A-Z',
    ],
    'piped from the host\n',
  );

  say("the device's status API");
  await tether(['status', 'board']);
} finally {
  await dev.stop();
  rmSync(work, { recursive: true, force: true });
}
