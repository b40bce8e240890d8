/* The path-semantics probe of test/integration/path-semantics.test.ts: reads one operation per
 * line from stdin, performs it with the plain syscalls a program would use, and prints one
 * line of what the kernel answered (errno names, not numbers: they are the same on every ABI).
 * Run natively and through `tether run`, its output must be identical.
 *
 *   OP [ARG...]      ops: stat lstat open opendir list read readlink access mkdir rmdir unlink
 *                    creat rename symlink link chdir cwd realpath exec execvp bind connect
 *                    openat fchdir sum
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(void) {
  const char *n = strerrorname_np(errno);
  return n ? n : "E?";
}

static const char *kind(mode_t m) {
  switch (m & S_IFMT) {
  case S_IFDIR: return "dir";
  case S_IFREG: return "reg";
  case S_IFLNK: return "lnk";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "sock";
  case S_IFCHR: return "chr";
  case S_IFBLK: return "blk";
  }
  return "?";
}

static void show_stat(const struct stat *st) {
  if (S_ISREG(st->st_mode))
    printf("%s %o %lld\n", kind(st->st_mode), st->st_mode & 07777, (long long)st->st_size);
  else
    printf("%s %o\n", kind(st->st_mode), st->st_mode & 07777);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of a directory fd's entries, sorted, or the errno getdents gave. */
static void list_fd(int fd) {
  DIR *d = fdopendir(fd);
  if (!d) {
    printf("%s\n", err());
    return;
  }
  char *names[512];
  int n = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) && n < 512) names[n++] = strdup(e->d_name);
  int rerr = errno;
  qsort(names, (size_t)n, sizeof *names, by_name);
  for (int i = 0; i < n; i++) {
    printf("%s%s", i ? " " : "", names[i]);
    free(names[i]);
  }
  if (rerr) {
    errno = rerr;
    printf("%s%s", n ? " " : "", err());
  }
  printf("\n");
  closedir(d);
}

static void unix_socket(const char *op, const char *path) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len >= sizeof a.sun_path) {
    printf("too long for sun_path\n");
    close(s);
    return;
  }
  memcpy(a.sun_path, path, len);
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  int r = strcmp(op, "bind") == 0 ? bind(s, (struct sockaddr *)&a, alen)
                                  : connect(s, (struct sockaddr *)&a, alen);
  if (r == 0 && strcmp(op, "bind") == 0) r = listen(s, 1);
  printf("%s\n", r == 0 ? "ok" : err());
  close(s);
}

/* Runs a program in a child and says how it ended; its own output comes first. */
static void run(char **argv, int search) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (search) execvp(argv[0], argv);
    else execv(argv[0], argv);
    printf("%s\n", err());
    fflush(stdout);
    _exit(127);
  }
  int status;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) printf("exit %d\n", WEXITSTATUS(status));
  else printf("signal %d\n", WTERMSIG(status));
}

static void op(int argc, char **argv) {
  const char *o = argv[0], *a = argc > 1 ? argv[1] : "", *b = argc > 2 ? argv[2] : "";
  struct stat st;
  char buf[PATH_MAX + 1];
  if (!strcmp(o, "stat") || !strcmp(o, "lstat")) {
    int r = o[0] == 's' ? stat(a, &st) : lstat(a, &st);
    if (r < 0) printf("%s\n", err());
    else show_stat(&st);
  } else if (!strcmp(o, "open")) {
    int fd = open(a, O_RDONLY | O_NONBLOCK); /* a FIFO must not wait for a writer */
    if (fd < 0) printf("%s\n", err());
    else {
      fstat(fd, &st);
      show_stat(&st);
      close(fd);
    }
  } else if (!strcmp(o, "read")) {
    int fd = open(a, O_RDONLY | O_NONBLOCK); /* a FIFO must not wait for a writer */
    ssize_t n = fd < 0 ? -1 : read(fd, buf, 40);
    if (n < 0) printf("%s\n", err());
    else {
      for (ssize_t i = 0; i < n; i++)
        if (buf[i] < 32 || buf[i] > 126) buf[i] = '.';
      printf("%.*s\n", (int)n, buf);
    }
    if (fd >= 0) close(fd);
  } else if (!strcmp(o, "opendir") || !strcmp(o, "list")) {
    int fd = open(a, O_RDONLY | O_DIRECTORY);
    if (fd < 0) printf("%s\n", err());
    else if (o[0] == 'o') {
      printf("ok\n");
      close(fd);
    } else list_fd(fd);
  } else if (!strcmp(o, "readlink")) {
    ssize_t n = readlink(a, buf, PATH_MAX);
    if (n < 0) printf("%s\n", err());
    else printf("%.*s\n", (int)n, buf);
  } else if (!strcmp(o, "access")) {
    int mode = (strchr(b, 'r') ? R_OK : 0) | (strchr(b, 'w') ? W_OK : 0) |
               (strchr(b, 'x') ? X_OK : 0);
    printf("%s\n", access(a, mode) == 0 ? "ok" : err());
  } else if (!strcmp(o, "mkdir")) {
    printf("%s\n", mkdir(a, 0755) == 0 ? "ok" : err());
  } else if (!strcmp(o, "rmdir")) {
    printf("%s\n", rmdir(a) == 0 ? "ok" : err());
  } else if (!strcmp(o, "unlink")) {
    printf("%s\n", unlink(a) == 0 ? "ok" : err());
  } else if (!strcmp(o, "creat")) {
    int fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
    printf("%s\n", fd >= 0 ? "ok" : err());
    if (fd >= 0) close(fd);
  } else if (!strcmp(o, "rename")) {
    printf("%s\n", rename(a, b) == 0 ? "ok" : err());
  } else if (!strcmp(o, "symlink")) {
    printf("%s\n", symlink(a, b) == 0 ? "ok" : err());
  } else if (!strcmp(o, "link")) {
    printf("%s\n", link(a, b) == 0 ? "ok" : err());
  } else if (!strcmp(o, "chdir")) {
    printf("%s\n", chdir(a) == 0 ? "ok" : err());
  } else if (!strcmp(o, "fchdir")) {
    int fd = open(a, O_RDONLY | O_DIRECTORY);
    printf("%s\n", fd >= 0 && fchdir(fd) == 0 ? "ok" : err());
    if (fd >= 0) close(fd);
  } else if (!strcmp(o, "cwd")) {
    printf("%s\n", getcwd(buf, sizeof buf) ? buf : err());
  } else if (!strcmp(o, "realpath")) {
    printf("%s\n", realpath(a, buf) ? buf : err());
  } else if (!strcmp(o, "openat")) {
    /* openat(open(a), b): a directory fd and a name relative to it */
    int dfd = open(a, O_RDONLY | O_DIRECTORY);
    int fd = dfd < 0 ? -1 : openat(dfd, b, O_RDONLY | O_NONBLOCK);
    if (fd < 0) printf("%s\n", err());
    else {
      fstat(fd, &st);
      show_stat(&st);
      close(fd);
    }
    if (dfd >= 0) close(dfd);
  } else if (!strcmp(o, "sum")) {
    /* FNV-1a of the whole file: the same bytes, or not */
    int fd = open(a, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
      printf("%s\n", err());
      return;
    }
    unsigned long long h = 14695981039346656037ull, size = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
      for (ssize_t i = 0; i < n; i++, size++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
    if (n < 0) printf("%s\n", err());
    else printf("%llu bytes %016llx\n", size, h);
    close(fd);
  } else if (!strcmp(o, "exec") || !strcmp(o, "execvp")) {
    run(argv + 1, o[4] == 'v');
  } else if (!strcmp(o, "bind") || !strcmp(o, "connect")) {
    unix_socket(o, a);
  } else {
    printf("unknown op %s\n", o);
  }
}

int main(void) {
  char line[8192];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0] || line[0] == '#') continue;
    char *argv[16];
    int argc = 0;
    for (char *t = strtok(line, " "); t && argc < 15; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    for (int i = 0; i < argc; i++) printf("%s%s", i ? " " : "", argv[i]);
    printf(" => ");
    errno = 0;
    op(argc, argv);
    fflush(stdout);
  }
  return 0;
}
