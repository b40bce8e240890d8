/* tether's front door, a native program that starts in about a millisecond
 * (a Node start costs ~70 ms, which would dominate configure's thousands of
 * tiny runs).
 *
 * For the one hot form, `tether run PROGRAM [ARGS...]` with no options while
 * the device's agent runs, it hands the agent its argv, environment, cwd,
 * umask and open fds (SCM_RIGHTS over the agent's launch socket), forwards
 * the signals it receives, and ends the way the program ended. The agent
 * does the run itself, on the fds it was given (client/launch.ts).
 *
 * Everything else execs the Node CLI, telling it which fds this process
 * inherited: Node marks every inherited fd close-on-exec at startup, after
 * which they cannot be told apart from its own.
 *
 * Installed from the repository, the CLI is <root>/dist/tether.mjs run by
 * <root>/node_modules/.bin/node. The single-file release (npm run package)
 * is this program with the CLI's Node executable appended and a trailer
 * naming it; that executable is copied once into the cache directory
 * (under a name holding its hash) and exec'ed from there.
 *
 * The launch socket protocol is in docs/protocol.md ("Launch socket").
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

#define MAX_FDS 250 /* below the kernel's SCM_MAX_FD of 253 */

struct fdinfo {
  int fd;
  char mode; /* 'r', 'w' or 'b' (both) */
};

static void die(const char *msg) {
  dprintf(2, "tether: %s\n", msg);
  _exit(255);
}

/* Access mode and close-on-exec flag of one of our fds, from /proc. */
static int fd_flags(int fd, unsigned long *flags) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strstr(buf, "flags:");
  if (!p) return -1;
  *flags = strtoul(p + 6, NULL, 8);
  return 0;
}

static char mode_of(unsigned long flags) {
  switch (flags & O_ACCMODE) {
  case O_WRONLY: return 'w';
  case O_RDWR: return 'b';
  default: return 'r';
  }
}

/* The fds 3 and up that we inherited: those without close-on-exec. */
static int inherited_fds(struct fdinfo *out, int max) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return 0;
  int self = dirfd(d), n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || fd < 3 || fd == self) continue;
    unsigned long flags;
    if (fd_flags((int)fd, &flags) < 0 || (flags & O_CLOEXEC)) continue;
    out[n].fd = (int)fd;
    out[n].mode = mode_of(flags);
    n++;
  }
  closedir(d);
  /* Sorted, so the list reads as the shell wrote it. */
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && out[j - 1].fd > out[j].fd; j--) {
      struct fdinfo t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return n;
}

/* The repository root: this program is <root>/build/tether-launch. */
static void root_dir(char *root, size_t size) {
  ssize_t n = readlink("/proc/self/exe", root, size - 1);
  if (n <= 0) die("cannot find its own location");
  root[n] = 0;
  for (int i = 0; i < 2; i++) {
    char *slash = strrchr(root, '/');
    if (!slash) die("unexpected install layout");
    *slash = 0;
  }
}

/* The single file's last bytes (scripts/package.ts writes them): where the appended
 * executable starts, its size, and the first 16 hex digits of its SHA-256. */
#define PAYLOAD_MAGIC "TETHER-PAYLOAD-1"
struct trailer {
  char magic[16];
  unsigned long long offset, size;
  char id[16];
};

/* $OWN, else $XDG/tether, else ~/HOME_SUB/tether: the XDG base directory rule. */
static int xdg_dir(char *out, size_t size, const char *own, const char *xdg, const char *home_sub) {
  const char *v = getenv(own);
  if (v && *v) return snprintf(out, size, "%s", v) < (int)size ? 0 : -1;
  v = getenv(xdg);
  if (v && *v) return snprintf(out, size, "%s/tether", v) < (int)size ? 0 : -1;
  v = getenv("HOME");
  if (!v || !*v) return -1;
  return snprintf(out, size, "%s/%s/tether", v, home_sub) < (int)size ? 0 : -1;
}

/* $TETHER_CACHE_DIR, else $XDG_CACHE_HOME/tether, else ~/.cache/tether. */
static int cache_dir(char *out, size_t size) {
  return xdg_dir(out, size, "TETHER_CACHE_DIR", "XDG_CACHE_HOME", ".cache");
}

static void mkdirs(char *dir) {
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(dir, 0700);
    *p = '/';
  }
  mkdir(dir, 0700);
}

/* Copies of other versions go when a new one is made (a running one keeps its inode). */
static void drop_other_copies(const char *dir, const char *keep) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    if (strncmp(n, "tether-", 7) || strlen(n) != 23 || strspn(n + 7, "0123456789abcdef") != 16 ||
        !strcmp(n, keep))
      continue;
    unlinkat(dirfd(d), n, 0);
  }
  closedir(d);
}

static void cannot_write(const char *path, const char *why) {
  dprintf(2, "tether: cannot write %s: %s (set TETHER_CACHE_DIR)\n", path, why);
  _exit(255);
}

/* The appended executable, copied out of this file once; 0 without a trailer (no payload). */
static int payload(char *path, size_t size) {
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0) die("cannot open its own executable");
  struct stat st;
  struct trailer tr;
  if (fstat(self, &st) < 0 || st.st_size < (off_t)sizeof tr ||
      pread(self, &tr, sizeof tr, st.st_size - (off_t)sizeof tr) != (ssize_t)sizeof tr ||
      memcmp(tr.magic, PAYLOAD_MAGIC, 16) != 0) {
    close(self);
    return 0;
  }
  if (tr.offset + tr.size + sizeof tr != (unsigned long long)st.st_size)
    die("this executable is damaged (its trailer does not match its size)");
  char dir[PATH_MAX];
  if (cache_dir(dir, sizeof dir - 64) < 0) die("no cache directory: set TETHER_CACHE_DIR or HOME");
  if (snprintf(path, size, "%s/tether-%.16s", dir, tr.id) >= (int)size) die("cache path too long");
  struct stat have;
  if (stat(path, &have) == 0 && (unsigned long long)have.st_size == tr.size) {
    close(self);
    return 1;
  }
  mkdirs(dir);
  char tmp[PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  if (out < 0) cannot_write(tmp, strerror(errno));
  off_t from = (off_t)tr.offset;
  for (unsigned long long left = tr.size; left > 0;) {
    ssize_t n = sendfile(out, self, &from, left > (1u << 30) ? (1u << 30) : left);
    if (n <= 0) {
      const char *why = n < 0 ? strerror(errno) : "short copy";
      unlink(tmp);
      cannot_write(tmp, why);
    }
    left -= (unsigned long long)n;
  }
  close(self);
  /* A concurrent first start may rename its own copy there too: both are the same bytes. */
  if (close(out) < 0 || rename(tmp, path) < 0) {
    const char *why = strerror(errno);
    unlink(tmp);
    cannot_write(path, why);
  }
  drop_other_copies(dir, strrchr(path, '/') + 1);
  return 1;
}

static void exec_node(char **argv, int argc, const struct fdinfo *fds, int nfds) {
  char root[PATH_MAX], node[PATH_MAX + 32], main_js[PATH_MAX + 32], list[MAX_FDS * 12 + 1];
  int single = payload(node, sizeof node);
  if (!single) {
    root_dir(root, sizeof root);
    snprintf(node, sizeof node, "%s/node_modules/.bin/node", root);
    snprintf(main_js, sizeof main_js, "%s/dist/tether.mjs", root);
  }
  size_t off = 0;
  list[0] = 0;
  for (int i = 0; i < nfds; i++)
    off += (size_t)snprintf(list + off, sizeof list - off, "%s%d:%s", i ? "," : "", fds[i].fd,
                            fds[i].mode == 'b' ? "rw" : fds[i].mode == 'w' ? "w" : "r");
  setenv("TETHER_INHERITED_FDS", list, 1);
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die("out of memory");
  int a = 0;
  args[a++] = node;
  /* The single executable runs its own embedded main script. */
  if (!single) args[a++] = main_js;
  for (int i = 1; i < argc; i++) args[a++] = argv[i];
  execv(node, args);
  dprintf(2, "tether: %s: %s\n", node, strerror(errno));
  _exit(255);
}

/* $TETHER_HOME, else $XDG_CONFIG_HOME/tether, else ~/.config/tether (as client/config.ts). */
static int config_dir(char *out, size_t size) {
  return xdg_dir(out, size, "TETHER_HOME", "XDG_CONFIG_HOME", ".config");
}

/* The device a plain run goes to: $TETHER_DEVICE, the config's `default`, or local. */
static void device_name(const char *dir, char *out, size_t size) {
  const char *v = getenv("TETHER_DEVICE");
  snprintf(out, size, "%s", v && *v ? v : "local");
  if (v && *v) return;
  char path[PATH_MAX + 16], line[1024];
  snprintf(path, sizeof path, "%s/config", dir);
  FILE *f = fopen(path, "re");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char key[16], value[256];
    if (sscanf(line, " %15s %255s", key, value) == 2 && !strcasecmp(key, "default")) {
      snprintf(out, size, "%s", value);
      break;
    }
  }
  fclose(f);
}

static int connect_agent(const char *named) {
  char dir[PATH_MAX], dev[256];
  if (config_dir(dir, sizeof dir) < 0) return -1;
  if (named) snprintf(dev, sizeof dev, "%s", named);
  else device_name(dir, dev, sizeof dev);
  for (char *c = dev; *c; c++)
    if (!(*c == '.' || *c == '-' || *c == '_' || (*c >= '0' && *c <= '9') ||
          (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
      *c = '_';
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/agents/%s.launch", dir, dev) >=
      (int)sizeof sa.sun_path)
    return -1;
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(s);
    return -1;
  }
  return s;
}

/* A growable buffer of NUL-terminated fields. */
struct buf {
  char *data;
  size_t len, cap;
};

static void put(struct buf *b, const char *s) {
  size_t n = strlen(s) + 1;
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->data = realloc(b->data, b->cap);
    if (!b->data) die("out of memory");
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static void put_num(struct buf *b, long v) {
  char s[32];
  snprintf(s, sizeof s, "%ld", v);
  put(b, s);
}

static const char *const signames[] = {
    [SIGHUP] = "HUP",   [SIGINT] = "INT",   [SIGQUIT] = "QUIT", [SIGILL] = "ILL",
    [SIGTRAP] = "TRAP", [SIGABRT] = "ABRT", [SIGBUS] = "BUS",   [SIGFPE] = "FPE",
    [SIGKILL] = "KILL", [SIGUSR1] = "USR1", [SIGSEGV] = "SEGV", [SIGUSR2] = "USR2",
    [SIGPIPE] = "PIPE", [SIGALRM] = "ALRM", [SIGTERM] = "TERM", [SIGCHLD] = "CHLD",
    [SIGCONT] = "CONT", [SIGSTOP] = "STOP", [SIGTSTP] = "TSTP", [SIGTTIN] = "TTIN",
    [SIGTTOU] = "TTOU", [SIGURG] = "URG",   [SIGXCPU] = "XCPU", [SIGXFSZ] = "XFSZ",
    [SIGVTALRM] = "VTALRM", [SIGPROF] = "PROF", [SIGWINCH] = "WINCH", [SIGIO] = "IO",
    [SIGPWR] = "PWR",   [SIGSYS] = "SYS",
};
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
                                 SIGUSR2, SIGWINCH, SIGCONT, SIGTSTP};

static int sigpipe_w = -1;

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (write(sigpipe_w, &b, 1) < 0) { /* full: the signal is already pending there */ }
  errno = saved;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("lost the agent while sending");
    p += w;
    n -= (size_t)w;
  }
}

static void end_like(const char *reply) {
  char name[32];
  int code, core;
  if (sscanf(reply, "EXIT %d", &code) == 1) _exit(code & 0xff);
  if (sscanf(reply, "KILL %31s %d", name, &core) == 2) {
    for (int s = 1; s < (int)(sizeof signames / sizeof *signames); s++) {
      if (!signames[s] || strcmp(signames[s], name)) continue;
      signal(s, SIG_DFL);
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, s);
      sigprocmask(SIG_UNBLOCK, &set, NULL);
      raise(s);
      _exit(128 + s);
    }
    _exit(255);
  }
  const char *msg = strchr(reply + 5, ' ');
  if (sscanf(reply, "FAIL %d", &code) == 1 && msg) {
    dprintf(2, "tether: %s\n", msg + 1);
    _exit(code & 0xff);
  }
  die("the agent sent an unreadable reply");
}

static void launch(int s, int argc, char **argv, const struct fdinfo *extra, int nextra) {
  struct fdinfo fds[MAX_FDS + 3];
  int n = 0;
  for (int fd = 0; fd < 3; fd++) /* a closed standard fd stays closed */
    if (fcntl(fd, F_GETFD) >= 0) fds[n++] = (struct fdinfo){fd, fd == 0 ? 'r' : 'w'};
  for (int i = 0; i < nextra && n < MAX_FDS; i++) fds[n++] = extra[i];

  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) die("cannot read the current directory");
  mode_t mask = umask(0);
  umask(mask);

  struct buf b = {0};
  put_num(&b, argc);
  for (int i = 0; i < argc; i++) put(&b, argv[i]);
  long nenv = 0;
  for (char **e = environ; *e; e++) nenv++;
  put_num(&b, nenv);
  for (char **e = environ; *e; e++) put(&b, *e);
  put(&b, cwd);
  put_num(&b, (long)mask);
  put_num(&b, n);
  for (int i = 0; i < n; i++) {
    char f[24];
    snprintf(f, sizeof f, "%d:%s", fds[i].fd, fds[i].mode == 'b' ? "rw" : fds[i].mode == 'w' ? "w" : "r");
    put(&b, f);
  }

  /* Header: magic and payload length; the fds ride on the header's bytes. */
  char head[12];
  memcpy(head, "TLN1", 4);
  unsigned long long len = b.len;
  memcpy(head + 4, &len, 8);
  union {
    char raw[CMSG_SPACE(sizeof(int) * (MAX_FDS + 3))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {head, sizeof head};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.raw,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) ((int *)CMSG_DATA(c))[i] = fds[i].fd;
  ssize_t sent;
  do sent = sendmsg(s, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent != (ssize_t)sizeof head) die("could not hand the run to the agent");
  write_all(s, b.data, b.len);

  /* Signals arrive through a pipe so the wait below sees them in order. */
  int sp[2];
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe failed");
  sigpipe_w = sp[1];
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  char reply[1024];
  size_t got = 0;
  for (;;) {
    struct pollfd p[2] = {{s, POLLIN, 0}, {sp[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll failed");
    }
    if (p[1].revents & POLLIN) {
      unsigned char sig;
      while (read(sp[0], &sig, 1) == 1) {
        char line[32];
        int m = snprintf(line, sizeof line, "SIG %s\n", signames[sig]);
        if (send(s, line, (size_t)m, MSG_NOSIGNAL) < 0) continue;
        /* Stop the program, then ourselves, so job control sees a stopped job. */
        if (sig == SIGTSTP) kill(getpid(), SIGSTOP);
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(s, reply + got, sizeof reply - 1 - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die("the agent went away during the run");
      got += (size_t)r;
      reply[got] = 0;
      char *nl = strchr(reply, '\n');
      if (nl) {
        *nl = 0;
        end_like(reply);
      }
      if (got == sizeof reply - 1) die("the agent sent an unreadable reply");
    }
  }
}

int main(int argc, char **argv) {
  struct fdinfo extra[MAX_FDS];
  int nextra = inherited_fds(extra, MAX_FDS);
  /* The hot forms: run [-d NAME | --device NAME | --device=NAME] [--] PROGRAM [ARGS...] */
  if (argc >= 3 && !strcmp(argv[1], "run")) {
    int i = 2;
    const char *device = NULL;
    if (i + 1 < argc && (!strcmp(argv[i], "-d") || !strcmp(argv[i], "--device"))) {
      device = argv[i + 1];
      i += 2;
    } else if (!strncmp(argv[i], "--device=", 9)) {
      device = argv[i] + 9;
      i += 1;
    }
    if (i < argc && !strcmp(argv[i], "--")) i++;
    else if (i < argc && argv[i][0] == '-') i = argc; /* another option: the Node CLI's job */
    if (i < argc && (!device || *device)) {
      int s = connect_agent(device);
      if (s >= 0) launch(s, argc - i, argv + i, extra, nextra);
    }
  }
  exec_node(argv, argc, extra, nextra);
  return 255;
}
