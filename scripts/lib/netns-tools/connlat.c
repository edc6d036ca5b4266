// Data-plane probe for the benchmarks, in C so that what it measures is the kernel's path and not a runtime's
// (client.js's --latency spends 50-100 µs of its own per connect on this machine, more than the DNAT it should show).
//   connlat connect ADDR PORT COUNT WARMUP    TCP connect() time, COUNT samples after WARMUP unmeasured ones; each
//                                             socket is reset on close (SO_LINGER 0): no TIME_WAIT piles up.
//   connlat pingpong ADDR PORT MS             one connection to a netns-tools backend (greeting, then "HOLD"), then
//                                             1-line request/response round trips for MS milliseconds.
//   connlat bulk ADDR PORT MS                 one connection to a `connlat sink`, written to for MS milliseconds in
//                                             128 KiB writes: bulk throughput ("bytesPerSecond").
//   connlat sink PORT                         (in a backend's namespace) accepts connections on PORT, IPv4 and IPv6,
//                                             one at a time, and discards what they send; prints "ready" once listening.
//                                             In C for the same reason: a Node receiver would measure itself.
// Prints one JSON line: {"n":...,"p50Us":...,"p90Us":...,"p99Us":...,"minUs":...,"maxUs":...,"meanUs":...,
// "errors":{"ECONNREFUSED":1}} (pingpong adds "perSecond"). Built by scripts/setup.sh into build/tools/connlat.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static socklen_t target(const char *addr, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    return sizeof *in4;
  }
  if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    return sizeof *in6;
  }
  fprintf(stderr, "connlat: bad address %s\n", addr);
  exit(2);
}

/* Error counts by name, printed as a JSON object. */
static int err_codes[16], err_counts[16], n_errs;
static void count_error(int e) {
  for (int i = 0; i < n_errs; i++)
    if (err_codes[i] == e) {
      err_counts[i]++;
      return;
    }
  if (n_errs < 16) {
    err_codes[n_errs] = e;
    err_counts[n_errs++] = 1;
  }
}

/* Nearest rank, as client.js and bench/lib/stats.ts: the ceil(q * n)-th smallest. */
static double rank(const double *s, int n, double q) {
  if (n == 0) return 0;
  int i = (int)(q * n);
  if ((double)i < q * n) i++;
  i = i < 1 ? 0 : i > n ? n - 1 : i - 1;
  return s[i];
}

static void print_result(double *s, int n, const char *extra) {
  if (n) qsort(s, n, sizeof *s, cmp);
  double sum = 0;
  for (int i = 0; i < n; i++) sum += s[i];
  printf("{\"n\":%d,\"p50Us\":%.1f,\"p90Us\":%.1f,\"p99Us\":%.1f,\"minUs\":%.1f,\"maxUs\":%.1f,\"meanUs\":%.1f,\"errors\":{", n, rank(s, n, 0.5),
         rank(s, n, 0.9), rank(s, n, 0.99), n ? s[0] : 0, n ? s[n - 1] : 0, n ? sum / n : 0);
  for (int i = 0; i < n_errs; i++) {
    const char *name = strerrorname_np(err_codes[i]);
    printf("%s\"%s\":%d", i ? "," : "", name ? name : "EUNKNOWN", err_counts[i]);
  }
  printf("}%s}\n", extra);
}

static int connect_one(const struct sockaddr_storage *ss, socklen_t len, double *us) {
  int fd = socket(ss->ss_family, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  double t0 = now_us();
  int rc = connect(fd, (const struct sockaddr *)ss, len);
  *us = now_us() - t0;
  int err = rc ? errno : 0;
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  return err;
}

/* Reads up to and including '\n'; 0 on success. */
static int read_line(int fd) {
  char c;
  for (;;) {
    ssize_t r = read(fd, &c, 1);
    if (r <= 0) return r < 0 ? errno : ECONNRESET;
    if (c == '\n') return 0;
  }
}

static int sink(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0), zero = 0, one = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
    perror("connlat sink");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  static char buf[1 << 18];
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    while (read(c, buf, sizeof buf) > 0) {
    }
    close(c);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "sink") == 0) return sink(atoi(argv[2]));
  if (argc < 5) {
    fprintf(stderr, "usage: connlat connect ADDR PORT COUNT WARMUP | connlat pingpong ADDR PORT MS | connlat bulk ADDR PORT MS | connlat sink PORT\n");
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t len = target(argv[2], atoi(argv[3]), &ss);
  if (strcmp(argv[1], "connect") == 0) {
    int count = atoi(argv[4]), warmup = argc > 5 ? atoi(argv[5]) : 0;
    double *s = calloc(count ? count : 1, sizeof *s);
    int n = 0;
    for (int i = 0; i < warmup + count; i++) {
      double us = 0;
      int err = connect_one(&ss, len, &us);
      if (i < warmup) continue;
      if (err) count_error(err);
      else s[n++] = us;
    }
    print_result(s, n, "");
    return 0;
  }
  if (strcmp(argv[1], "pingpong") == 0) {
    double ms = atof(argv[4]);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 || read_line(fd) != 0 || write(fd, "HOLD\n", 5) != 5) {
      count_error(errno ? errno : ECONNRESET);
      print_result(NULL, 0, ",\"perSecond\":0");
      return 0;
    }
    size_t cap = 1 << 20;
    double *s = malloc(cap * sizeof *s);
    int n = 0;
    double start = now_us();
    while (now_us() - start < ms * 1000 && (size_t)n < cap) {
      double t0 = now_us();
      if (write(fd, "x\n", 2) != 2 || read_line(fd) != 0) {
        count_error(errno ? errno : ECONNRESET);
        break;
      }
      s[n++] = now_us() - t0;
    }
    double secs = (now_us() - start) / 1e6;
    char extra[64];
    snprintf(extra, sizeof extra, ",\"perSecond\":%.0f", n / secs);
    print_result(s, n, extra);
    close(fd);
    return 0;
  }
  if (strcmp(argv[1], "bulk") == 0) {
    double ms = atof(argv[4]);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
      count_error(errno);
      print_result(NULL, 0, ",\"bytesPerSecond\":0");
      return 0;
    }
    static char buf[1 << 17];
    memset(buf, 'x', sizeof buf);
    double bytes = 0, start = now_us();
    while (now_us() - start < ms * 1000) {
      ssize_t w = write(fd, buf, sizeof buf);
      if (w <= 0) {
        count_error(w < 0 ? errno : ECONNRESET);
        break;
      }
      bytes += w;
    }
    double secs = (now_us() - start) / 1e6;
    close(fd);
    char extra[64];
    snprintf(extra, sizeof extra, ",\"bytesPerSecond\":%.0f", bytes / secs);
    print_result(NULL, 0, extra);
    return 0;
  }
  fprintf(stderr, "connlat: unknown mode %s\n", argv[1]);
  return 2;
}
