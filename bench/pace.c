// pace: a paced HTTP/1.1 keep-alive load that logs every request, for the reload scenario of
// `npm run bench` (bench/run.ts) and the reload timeline lab (bench/lab/reload-timeline.sh).
//
// N connections to 127.0.0.1:PORT each send GET PATH (Host: HOST), wait for the whole response,
// wait DELAY ms and send the next one, as wrk's delay() does. One line per answered request:
//
//   <start, CLOCK_REALTIME µs> <latency µs> <status>
//
// so that requests can be matched to the moments of configuration changes. A connection the
// server closes or resets is a socket error (as wrk counts them): its request in flight is not
// answered, and the connection is opened again after DELAY. The last line on stderr is the
// summary: "requests R errors E non2xx X".
//
// Build: cc -O2 -o pace pace.c
// Usage: pace PORT HOST PATH CONNECTIONS SECONDS DELAY_MS OUTFILE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;              // -1: not connected
  int waiting;         // a request is in flight
  long long sent_mono; // when it was written (µs, CLOCK_MONOTONIC)
  long long sent_real; // the same, CLOCK_REALTIME
  long long next;      // when to send the next request (or reconnect), CLOCK_MONOTONIC µs
  int len;
  char buf[16384];
} Conn;

static long long now_us(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static struct sockaddr_in addr;
static int ep;

static int open_conn(Conn *c, unsigned index) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -1;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, O_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = index};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
  c->waiting = 0;
  c->len = 0;
  return 0;
}

static void drop_conn(Conn *c, long long retry_at) {
  if (c->fd >= 0) close(c->fd); // close() also takes it out of the epoll set
  c->fd = -1;
  c->waiting = 0;
  c->len = 0;
  c->next = retry_at;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: pace PORT HOST PATH CONNECTIONS SECONDS DELAY_MS OUTFILE\n");
    return 2;
  }
  int port = atoi(argv[1]);
  const char *host = argv[2], *path = argv[3];
  int n = atoi(argv[4]);
  double secs = atof(argv[5]);
  long long delay = (long long)(atof(argv[6]) * 1000);
  FILE *out = fopen(argv[7], "w");
  if (!out || n <= 0 || n > 4096) {
    fprintf(stderr, "pace: cannot write %s, or bad connection count\n", argv[7]);
    return 2;
  }
  char req[1024];
  int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ep = epoll_create1(0);
  Conn *c = calloc(n, sizeof(Conn));
  long long start = now_us(CLOCK_MONOTONIC);
  for (int i = 0; i < n; i++) {
    if (open_conn(&c[i], i) != 0) {
      perror("pace: connect");
      return 1;
    }
    c[i].next = start + delay * i / n; // spread the first requests over one delay
  }
  long long end = start + (long long)(secs * 1e6);
  long count = 0, errors = 0, non2xx = 0;
  for (;;) {
    long long now = now_us(CLOCK_MONOTONIC);
    if (now >= end) break;
    long long wake = end;
    for (int i = 0; i < n; i++) {
      Conn *x = &c[i];
      if (x->waiting) continue;
      if (x->next > now) {
        if (x->next < wake) wake = x->next;
        continue;
      }
      if (x->fd < 0 && open_conn(x, i) != 0) {
        errors++;
        x->next = now + delay;
        continue;
      }
      x->sent_mono = now_us(CLOCK_MONOTONIC);
      x->sent_real = now_us(CLOCK_REALTIME);
      if (write(x->fd, req, rl) != rl) {
        errors++;
        drop_conn(x, now + delay);
        continue;
      }
      x->waiting = 1;
      x->len = 0;
    }
    int timeout_ms = (int)((wake - now_us(CLOCK_MONOTONIC) + 999) / 1000);
    if (timeout_ms < 0) timeout_ms = 0;
    struct epoll_event ev[64];
    int k = epoll_wait(ep, ev, 64, timeout_ms);
    for (int j = 0; j < k; j++) {
      Conn *x = &c[ev[j].data.u32];
      if (x->fd < 0) continue;
      int r = read(x->fd, x->buf + x->len, sizeof x->buf - 1 - x->len);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        // Closed or reset: the request in flight (if any) failed; an idle keep-alive
        // connection closed by the server is an error too for wrk when it next writes.
        errors++;
        drop_conn(x, now_us(CLOCK_MONOTONIC) + delay);
        continue;
      }
      x->len += r;
      x->buf[x->len] = 0;
      char *head_end = strstr(x->buf, "\r\n\r\n");
      if (!head_end) {
        if (x->len >= (int)sizeof x->buf - 1) {
          errors++;
          drop_conn(x, now_us(CLOCK_MONOTONIC) + delay);
        }
        continue;
      }
      char *cl = strcasestr(x->buf, "\r\ncontent-length:");
      int body = cl && cl < head_end ? atoi(cl + 17) : 0;
      if (x->len < (head_end + 4 - x->buf) + body) continue;
      if (!x->waiting) continue; // an answer nobody asked for: ignore it
      long long t = now_us(CLOCK_MONOTONIC);
      int status = atoi(x->buf + 9);
      if (status < 200 || status > 399) non2xx++;
      fprintf(out, "%lld %lld %d\n", x->sent_real, t - x->sent_mono, status);
      count++;
      x->waiting = 0;
      x->len = 0;
      x->next = t + delay;
    }
  }
  fclose(out);
  fprintf(stderr, "requests %ld errors %ld non2xx %ld\n", count, errors, non2xx);
  return 0;
}
