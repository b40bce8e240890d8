/*
 * delayline: user-space fixed packet delay for the test device's link.
 *
 * This kernel has no sch_netem, so an iptables NFQUEUE rule hands each
 * packet to this program, which gives it back (NF_ACCEPT) once the delay
 * has passed. The delay is the same for every packet, so a FIFO of packet
 * ids keeps the link's order.
 *
 * usage: delayline QUEUE_NUM DELAY_MS   (DELAY_MS may be fractional)
 * Prints "ready" on stdout once the queue is bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
/* After the libc headers: linux/netfilter.h redefines struct in_addr otherwise. */
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

/* Far more than the kernel queue may hold (QUEUE_MAXLEN), so the FIFO never fills. */
#define FIFO_SIZE 65536u
#define QUEUE_MAXLEN 16384u
#define RCVBUF_BYTES (16u << 20)
#define MAX_LATE_NS 500000

struct entry {
  uint32_t id;
  int64_t due_ns;
};

static struct entry fifo[FIFO_SIZE];
static uint32_t head, tail; /* free-running; tail - head = entries held */
static int64_t delay_ns;
/* How late the timer wakes us (running average). We ask to wake that much
 * early and release what is due within that margin, so the mean delay is the
 * set one; a packet may leave up to the margin (tens of us) early. */
static int64_t late_ns;

static int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* When the packet reached the stack: the kernel's receive stamp if it has one
 * (so our own wake-up latency is not added to the delay), else now. */
static int64_t arrival_ns(struct nfq_data *nfa) {
  int64_t now = now_ns();
  struct timeval tv;
  if (nfq_get_timestamp(nfa, &tv) != 0) return now;
  int64_t age = clock_ns(CLOCK_REALTIME) - ((int64_t)tv.tv_sec * 1000000000 + tv.tv_usec * 1000);
  return age > 0 && age < 1000000000 ? now - age : now;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  if (tail - head == FIFO_SIZE) return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
  fifo[tail % FIFO_SIZE] = (struct entry){id, arrival_ns(nfa) + delay_ns};
  tail++;
  return 0;
}

static void release_due(struct nfq_q_handle *qh) {
  int64_t now = now_ns() + late_ns;
  while (head != tail && fifo[head % FIFO_SIZE].due_ns <= now) {
    nfq_set_verdict(qh, fifo[head % FIFO_SIZE].id, NF_ACCEPT, 0, NULL);
    head++;
  }
}

static void die(const char *what) {
  fprintf(stderr, "delayline: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: delayline QUEUE_NUM DELAY_MS\n");
    return 2;
  }
  char *end;
  unsigned long queue = strtoul(argv[1], &end, 10);
  if (*end || queue > 65535) {
    fprintf(stderr, "delayline: bad queue number %s\n", argv[1]);
    return 2;
  }
  double delay_ms = strtod(argv[2], &end);
  if (*end || !(delay_ms >= 0) || delay_ms > 10000) {
    fprintf(stderr, "delayline: bad delay %s\n", argv[2]);
    return 2;
  }
  delay_ns = (int64_t)(delay_ms * 1e6);

  /* A delay line left behind by a crashed test would stall its queue: go with the parent. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) return 0;

  /* Wake-up latency is added to every packet: ask for real-time priority, and
   * without it at least for the smallest timer slack. */
  struct sched_param sp = {.sched_priority = 50};
  if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0) mlockall(MCL_CURRENT | MCL_FUTURE);
  prctl(PR_SET_TIMERSLACK, 1UL);

  struct nfq_handle *h = nfq_open();
  if (!h) die("nfq_open");
  if (nfq_bind_pf(h, AF_INET) < 0) die("nfq_bind_pf");
  struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
  if (!qh) die("nfq_create_queue");
  /* Only the id is needed; GSO packets stay whole instead of being segmented for us. */
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) die("nfq_set_mode");
  nfq_set_queue_maxlen(qh, QUEUE_MAXLEN);
  nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
  nfnl_rcvbufsiz(nfq_nfnlh(h), RCVBUF_BYTES);
  int fd = nfq_fd(h);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

  /* Receive stamps are only taken while some socket asks for them. */
  int stamp_fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (stamp_fd >= 0) setsockopt(stamp_fd, SOL_SOCKET, SO_TIMESTAMP, &one, sizeof one);

  printf("ready\n");
  fflush(stdout);

  static char buf[65536] __attribute__((aligned));
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  for (;;) {
    release_due(qh);
    struct timespec ts, *timeout = NULL;
    int64_t wake = 0;
    if (head != tail) {
      wake = fifo[head % FIFO_SIZE].due_ns - late_ns;
      int64_t wait = wake - now_ns();
      if (wait < 0) wait = 0;
      ts = (struct timespec){wait / 1000000000, wait % 1000000000};
      timeout = &ts;
    }
    int n = ppoll(&pfd, 1, timeout, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("ppoll");
    }
    if (n == 0) {
      int64_t overshoot = now_ns() - wake;
      if (overshoot >= 0 && overshoot < MAX_LATE_NS) late_ns += (overshoot - late_ns) / 8;
      continue;
    }
    for (;;) {
      ssize_t len = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (len < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
        if (errno == EINTR) continue;
        die("recv");
      }
      nfq_handle_packet(h, buf, (int)len);
    }
  }
}
