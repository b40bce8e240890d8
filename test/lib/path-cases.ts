// The cases of the differential path-semantics suite (test/integration/path-semantics.test.ts):
// a fixture tree made by a shell script, then lines of test/lib/path-probe.c's operations on
// every spelling of every kind of path in it. Both are run natively and through `tether run`
// in the same place; the probe's output must be identical.

/**
 * The fixture, made in the current directory BASE (an absolute path), by sh. `hostFile` is a
 * file only the host has: a device-side link to it must lead into the view.
 */
export function fixture(base: string, hostFile: string): string {
  return [
    'mkdir d d/sub e',
    'echo hello >f',
    'printf "#!/bin/sh\\necho script \\"$0\\" \\"$@\\"\\n" >script.sh',
    'printf "#!   \\necho blank-shebang\\n" >blank.sh',
    'printf "echo no-shebang \\"$0\\"\\n" >plain.sh',
    'printf "#!/nonexistent/interp\\n" >badinterp.sh',
    `printf "#!${base}/script.sh\\n" >nested.sh`,
    'chmod +x script.sh blank.sh plain.sh badinterp.sh nested.sh',
    'ln -s f lf',
    'ln -s d ld',
    'ln -s nowhere dangling',
    'ln -s loop1 loop2',
    'ln -s loop2 loop1',
    `ln -s ${base}/d abs`,
    'ln -s d/sub lsub',
    'ln -s ../f d/up',
    'ln -s script.sh lscript',
    'mkfifo fifo',
    `ln -s '${hostFile}' tohost`,
    'ln -s /bin/sh viewsh',
  ].join('\n');
}

/** Names in the fixture, one of each kind (and one that is not there). */
const NAMES = ['f', 'd', 'lf', 'ld', 'lsub', 'dangling', 'loop1', 'abs', 'nonexist', 'fifo'];
/** What may follow a name. */
const SUFFIXES = ['', '/', '/.', '/..', '/../f', '//', '/./'];
/** What may come before it (relative to BASE, the cwd, or absolute). */
const PREFIXES = (base: string) => [
  '',
  './',
  `${base}/`,
  'd/../',
  'nonexist/../',
  'f/../',
  'ld/../',
  'lsub/../',
  `${base}//`,
];
/** Operations that only look. */
const LOOKS = ['stat', 'lstat', 'open', 'list', 'readlink', 'access'];

/** Every looking operation on every spelling: no change to the tree. */
export function looks(base: string): string[] {
  const out: string[] = [];
  for (const name of NAMES)
    for (const suffix of SUFFIXES)
      for (const op of LOOKS) out.push(`${op} ${name}${suffix}${op === 'access' ? ' rx' : ''}`);
  for (const prefix of PREFIXES(base))
    for (const name of ['f', 'd', 'lf', 'ld'])
      for (const op of ['stat', 'lstat', 'list']) out.push(`${op} ${prefix}${name}`);
  for (const p of ['.', '..', './', 'd/sub/../..', 'abs/..', 'abs/../f', 'lsub/..', 'lsub/../..'])
    out.push(`realpath ${p}`, `list ${p}`, `stat ${p}`);
  out.push('openat d sub', 'openat d ../f', 'openat d sub/..', 'openat ld ../f', 'openat d up');
  // links to files only the host has (the view's, wherever the link lives)
  out.push('read tohost', 'stat tohost', 'open tohost/', 'readlink tohost', 'lstat viewsh');
  return out;
}

/** A socket name of 100 bytes: sun_path holds 108. */
const LONG = `sock-${'x'.repeat(95)}`;

/** Changes, in an order where each sees the last one's result (the same in both runs). */
export function changes(base: string): string[] {
  return [
    'mkdir new/',
    'stat new',
    'rmdir new/.',
    'rmdir new/..',
    'rmdir new/',
    'stat new',
    'mkdir new2/./',
    'mkdir nonexist/new',
    'mkdir f/new',
    'mkdir d/sub/../made',
    'stat d/made',
    'rmdir ld',
    'rmdir ld/',
    'unlink lf/',
    'unlink f/',
    'unlink d',
    'creat c1/',
    'creat c2',
    'creat c2',
    'rename c2 c3/',
    'rename c2 c3',
    'rename c3 d/sub/../c4',
    'stat d/c4',
    'rename d/c4/ c5',
    'symlink f s1/',
    'symlink f s2',
    'readlink s2/',
    'readlink s2',
    'link f h1',
    'link lf h2',
    'lstat h2',
    'link d h3',
    'unlink dangling',
    'lstat dangling',
    // the working directory, by name and by handle, and after it is removed or moved
    'chdir d/sub',
    'cwd',
    'stat ../../f',
    'chdir ..',
    'cwd',
    'chdir ld',
    'cwd',
    'chdir ../lsub',
    'cwd',
    'chdir ..',
    'chdir ..',
    'cwd',
    `chdir ${base}/e`,
    'mkdir gone',
    'chdir gone',
    `rmdir ${base}/e/gone`,
    'cwd',
    'stat .',
    'creat x',
    'chdir ..',
    'cwd',
    `chdir ${base}`,
    'mkdir m1 m1/m2',
    'creat m1/m2/file',
    'chdir m1/m2',
    `rename ${base}/m1 ${base}/m9`,
    'cwd',
    'access file r',
    'stat ../m2/file',
    `chdir ${base}`,
    'fchdir d',
    'cwd',
    `chdir ${base}`,
    // a relative unix socket name that fits sun_path only as written
    `bind ${LONG}`,
    `connect ${LONG}`,
    `lstat ${LONG}`,
    `unlink ${LONG}`,
    `connect ${LONG}`,
  ];
}

/** Programs run by exec (execv) and execvp, as a shell or make would. */
export function execs(base: string): string[] {
  return [
    `exec ${base}/script.sh a1`,
    'exec ./script.sh a1 a2',
    'exec ./lscript',
    'exec ./blank.sh',
    'exec ./plain.sh',
    'exec ./badinterp.sh',
    'exec ./nested.sh n1',
    'exec ./viewsh ./script.sh v',
    'exec ./d',
    'exec ./f',
    'exec ./script.sh/',
    'exec ./loop1',
    'exec ./nonexist',
    'exec ./dangling',
    'execvp ./blank.sh',
    'execvp ./plain.sh p1',
    'execvp ./nested.sh',
    'execvp ./loop1',
  ];
}

/** The device's own mounts: /proc, /dev and /proc/self/{exe,cwd,fd,root}. */
export function procs(): string[] {
  const out: string[] = [];
  // What the program is: its size depends on the build, only its name is the same everywhere.
  for (const p of ['/proc/self/exe', '/proc/self/../self/exe', '/proc/1/../self/exe'])
    out.push(`lstat ${p}`, `readlink ${p}`);
  for (const p of [
    '/proc/self/exe/',
    '/proc/self/exe/../exe',
    '/proc/self/cwd',
    '/proc/self/cwd/',
    '/proc/self/root',
    '/proc/self/fd/0/',
    '/proc/self/fd/999999',
    '/proc/self/fd/999999/..',
    '/dev/null/',
    '/dev/./null',
    '/dev/../dev/null',
  ])
    for (const op of ['stat', 'lstat', 'readlink', 'open']) out.push(`${op} ${p}`);
  out.push('realpath /proc/self/cwd');
  return out;
}

/**
 * What only a device with the same kernel and programs as this host prints alike: /proc's
 * listings, /dev/fd, the program's size and bytes however /proc/self/exe is spelt (not the copy
 * the device runs), a dynamic program's too.
 */
export function procsSameHost(): string[] {
  const out: string[] = [];
  for (const p of ['/proc/self/exe', '/proc/self/../self/exe', '/proc/1/../self/exe'])
    out.push(`stat ${p}`, `open ${p}`);
  // /dev/fd is a link of the distribution's, not the kernel's (a busybox root may lack it).
  for (const op of ['stat', 'lstat', 'readlink', 'open']) out.push(`${op} /dev/fd/..`);
  return [
    ...out,
    'list /dev/fd/..',
    'list /proc/self/fd/..',
    'sum /proc/self/exe',
    'sum /proc/self/../self/exe',
    'sum /proc/thread-self/../exe',
    'exec /usr/bin/md5sum /proc/self/exe',
  ];
}
