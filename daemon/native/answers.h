/* The answer table's entry points for the two tracers (answers.c): a ptrace seccomp stop and a
 * seccomp user notification. Each answers from the table and lets the call go on: 1; or 0,
 * leaving the call untouched for JavaScript. */
#ifndef TETHER_ANSWERS_H
#define TETHER_ANSWERS_H
#include <linux/seccomp.h>
#include <sys/types.h>

int answers_try(void *table, pid_t pid);
int answers_notified(void *table, int listener, const struct seccomp_notif *req);
#endif
