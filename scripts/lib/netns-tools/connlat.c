// Data-plane probe for the benchmarks, in C so that what it measures is the kernel's path and not a runtime's
// (client.js's --latency spends 50-100 µs of its own per connect on this machine, more than the DNAT it should show).
//   connlat connect ADDR PORT COUNT WARMUP [DIRECT PORT]
//                                             TCP connect() time, COUNT samples after WARMUP unmeasured ones; each
//                                             socket is reset on close (SO_LINGER 0): no TIME_WAIT piles up. With
//                                             DIRECT PORT, each connect is followed by one to DIRECT:PORT (the pod),
//                                             timed apart ("directP50Us", "directP99Us"): a pair at every moment.
//   connlat pingpong ADDR PORT MS [PODPORT]   1-byte request/response round trips for MS milliseconds, paired: one
//                                             connection to ADDR:PORT (a Service whose endpoints are `connlat echo`),
//                                             one direct to the pod that answered (its greeting names it) on PODPORT
//                                             (default PORT), alternating
//                                             in 20 ms bursts, so both see the same server process and the same moment
//                                             of this machine: "perSecond" and "directPerSecond". Client and servers
//                                             run on CPU 0 (pin_to_cpu0).
//   connlat bulk ADDR PORT MS                 one connection to a `connlat sink`, written to for MS milliseconds in
//                                             128 KiB writes: bulk throughput ("bytesPerSecond").
//   connlat sink PORT                         (in a backend's namespace) accepts connections on PORT, IPv4 and IPv6,
//                                             one at a time, and discards what they send; prints "ready" once listening.
//                                             In C for the same reason: a Node receiver would measure itself.
//   connlat echo PORT                         (in a backend's namespace) a process per connection: writes the pod's
//                                             own address and "\n", then echoes what it reads; prints "ready".
// Prints one JSON line: {"n":...,"p50Us":...,"p90Us":...,"p99Us":...,"minUs":...,"maxUs":...,"meanUs":...,
// "errors":{"ECONNREFUSED":1}} (pingpong adds "perSecond", "directPerSecond", "directP50Us"). Built by scripts/setup.sh into build/tools/connlat.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
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

/* A dual-stack listening socket on PORT, or exits. */
static int listen_any(int port, const char *what) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0), zero = 0, one = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
    perror(what);
    exit(1);
  }
  printf("ready\n");
  fflush(stdout);
  return fd;
}

_Noreturn static void sink(int port) {
  int fd = listen_any(port, "connlat sink");
  static char buf[1 << 18];
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    while (read(c, buf, sizeof buf) > 0) {
    }
    close(c);
  }
}

/*
 * The ping-pong's processes (client and echo servers) all run on one CPU: on two CPUs a round trip's time depends on
 * where the scheduler put each process (same CPU or not: 0.75-1.25x between runs, more than any dataplane's cost),
 * and pinning takes that out of the comparison. The other CPU keeps the rest of the machine.
 */
static void pin_to_cpu0(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof set, &set);
}

_Noreturn static void echo(int port) {
  int fd = listen_any(port, "connlat echo");
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    if (fork() != 0) {
      close(c);
      continue;
    }
    close(fd);
    pin_to_cpu0();
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* The greeting: this pod's address as the connection reached it (after any DNAT or socket-level rewrite). */
    struct sockaddr_in6 me;
    socklen_t len = sizeof me;
    char ip[INET6_ADDRSTRLEN + 1] = "";
    getsockname(c, (struct sockaddr *)&me, &len);
    if (IN6_IS_ADDR_V4MAPPED(&me.sin6_addr)) inet_ntop(AF_INET, &me.sin6_addr.s6_addr[12], ip, sizeof ip);
    else inet_ntop(AF_INET6, &me.sin6_addr, ip, sizeof ip);
    strcat(ip, "\n");
    if (write(c, ip, strlen(ip)) < 0) _exit(0);
    static char buf[1 << 16];
    ssize_t r;
    while ((r = read(c, buf, sizeof buf)) > 0)
      if (write(c, buf, r) != r) break;
    _exit(0);
  }
}

/* Reads one line (without its '\n') into out; 0 on success. */
static int read_text_line(int fd, char *out, size_t cap) {
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r <= 0) return r < 0 ? errno : ECONNRESET;
    if (c == '\n') break;
    if (n + 1 < cap) out[n++] = c;
  }
  out[n] = 0;
  return 0;
}

static int connected(const struct sockaddr_storage *ss, socklen_t len) {
  int fd = socket(ss->ss_family, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)ss, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Round trips on fd until `until`; appends their times to s[*n] (at most cap). 0 on success. */
static int burst(int fd, double until, double *s, int *n, int cap) {
  while (now_us() < until && *n < cap) {
    double t0 = now_us();
    if (write(fd, "x\n", 2) != 2 || read_line(fd) != 0) return errno ? errno : ECONNRESET;
    s[(*n)++] = now_us() - t0;
  }
  return 0;
}

static int pingpong(const struct sockaddr_storage *ss, socklen_t len, int port, double ms) {
  char pod[INET6_ADDRSTRLEN + 1];
  pin_to_cpu0();
  int svc = connected(ss, len);
  if (svc < 0 || read_text_line(svc, pod, sizeof pod) != 0) {
    fprintf(stderr, "connlat pingpong: the Service connection: %s\n", strerror(errno ? errno : ECONNRESET));
    count_error(errno ? errno : ECONNRESET);
    return 1; /* no figure without its pair: a set-up fault, not a measurement */
  }
  struct sockaddr_storage ds;
  socklen_t dlen = target(pod, port, &ds);
  int direct = connected(&ds, dlen);
  char skip[INET6_ADDRSTRLEN + 1];
  if (direct < 0 || read_text_line(direct, skip, sizeof skip) != 0) {
    fprintf(stderr, "connlat pingpong: direct to %s: %s\n", pod, strerror(errno ? errno : ECONNRESET));
    count_error(errno ? errno : ECONNRESET);
    return 1; /* no figure without its pair: a set-up fault, not a measurement */
  }
  const int cap = 1 << 20;
  double *s = malloc(cap * sizeof *s), *d = malloc(cap * sizeof *d);
  int n = 0, dn = 0, err = 0;
  double spent = 0, dspent = 0, start = now_us();
  while (!err && now_us() - start < ms * 1000) {
    double t0 = now_us();
    err = burst(svc, t0 + 20000, s, &n, cap);
    double t1 = now_us();
    if (!err) err = burst(direct, t1 + 20000, d, &dn, cap);
    spent += t1 - t0;
    dspent += now_us() - t1;
  }
  if (err) count_error(err);
  qsort(d, dn, sizeof *d, cmp);
  char extra[160];
  snprintf(extra, sizeof extra, ",\"perSecond\":%.0f,\"directPerSecond\":%.0f,\"directP50Us\":%.1f", spent > 0 ? n / (spent / 1e6) : 0,
           dspent > 0 ? dn / (dspent / 1e6) : 0, rank(d, dn, 0.5));
  print_result(s, n, extra);
  close(svc);
  close(direct);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "sink") == 0) sink(atoi(argv[2]));
  if (argc == 3 && strcmp(argv[1], "echo") == 0) echo(atoi(argv[2]));
  if (argc < 5) {
    fprintf(stderr, "usage: connlat connect ADDR PORT COUNT WARMUP [DIRECT PORT] | connlat pingpong ADDR PORT MS [PODPORT] | connlat bulk ADDR PORT MS | connlat sink PORT | connlat echo PORT\n");
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t len = target(argv[2], atoi(argv[3]), &ss);
  if (strcmp(argv[1], "connect") == 0) {
    int count = atoi(argv[4]), warmup = argc > 5 ? atoi(argv[5]) : 0;
    /* With DIRECT PORT: every other connect goes there (the pod), so both figures see the same moments. */
    int paired = argc > 7;
    struct sockaddr_storage ds;
    socklen_t dlen = paired ? target(argv[6], atoi(argv[7]), &ds) : 0;
    double *s = calloc(count ? count : 1, sizeof *s), *d = calloc(count ? count : 1, sizeof *d);
    int n = 0, dn = 0;
    for (int i = 0; i < warmup + count; i++) {
      double us = 0, dus = 0;
      int err = connect_one(&ss, len, &us);
      int derr = paired ? connect_one(&ds, dlen, &dus) : 0;
      if (i < warmup) continue;
      if (err) count_error(err);
      else s[n++] = us;
      if (paired && !derr) d[dn++] = dus;
    }
    char extra[96] = "";
    if (paired) {
      qsort(d, dn, sizeof *d, cmp);
      snprintf(extra, sizeof extra, ",\"directP50Us\":%.1f,\"directP99Us\":%.1f", rank(d, dn, 0.5), rank(d, dn, 0.99));
    }
    print_result(s, n, extra);
    return 0;
  }
  if (strcmp(argv[1], "pingpong") == 0) return pingpong(&ss, len, atoi(argc > 5 ? argv[5] : argv[3]), atof(argv[4]));
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
