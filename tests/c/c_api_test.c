/* The C interface (include/poscache/poscache.h), from C: a real poscache-writer is started on a
 * scratch segment, fed through a producer ring, and read back with a reader, the way a Rust or
 * Go binding would use it; then read-through against a second writer that serves it, with a
 * refresher answering on its socket from a thread. Every failure prints what was expected and
 * exits 1. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "poscache/poscache.h"

static int failures = 0;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              poscache_last_error());                                                    \
      ++failures;                                                                        \
    }                                                                                    \
  } while (0)

#define CHECK_STATUS(call, want)                                                                   \
  do {                                                                                             \
    int got_ = (call);                                                                             \
    if (got_ != (want)) {                                                                          \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, \
              #call, poscache_status_name(got_), poscache_status_name(want),                       \
              poscache_last_error());                                                              \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_TEXT(r, p, field, want)                                                      \
  do {                                                                                     \
    char buf_[64];                                                                         \
    int st_ = poscache_position_field_text((r), (p), (field), buf_, sizeof buf_);          \
    if (st_ != POSCACHE_OK || strcmp(buf_, (want)) != 0) {                                 \
      fprintf(stderr, "%s:%d: field %s is '%s' (%s), expected '%s'\n", __FILE__, __LINE__, \
              (field), buf_, poscache_status_name(st_), (want));                           \
      ++failures;                                                                          \
    }                                                                                      \
  } while (0)

static const int64_t kSecond = 1000000000;

static void cleanup(const char* seg) {
  const char* suffixes[] = {"",         ".lock",     ".trades",  ".sock", ".streams",
                            ".readers", ".requests", ".refresh", ".wake"};
  char path[256];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; ++i) {
    snprintf(path, sizeof path, "/dev/shm/%s%s", seg, suffixes[i]);
    unlink(path);
  }
}

static pid_t start_writer(const char* seg) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* quiet = freopen("/dev/null", "w", stdout);
    (void)quiet;
    execl(POSCACHE_WRITER_BIN, POSCACHE_WRITER_BIN, "-s", seg, "--capacity", "1000", "--no-redis",
          "--log-level", "warn", (char*)NULL);
    _exit(127);
  }
  /* Ready when its socket answers: a producer can attach. */
  for (int i = 0; i < 1000; ++i) {
    poscache_producer* p = poscache_producer_open(seg, "probe");
    if (p != NULL) {
      poscache_producer_close(p);
      return pid;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "the writer did not come up: %s\n", poscache_last_error());
  kill(pid, SIGKILL);
  exit(1);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
  nanosleep(&ts, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- read-through: a writer whose namespace hold (trading preset, stale after 30 s) refreshes
 * on miss and on stale, and a refresher written here on the writer's socket (JSON lines, as any
 * language without a client library would: docs/read-through.md, "By hand, on the socket"). */

static pid_t start_refresh_writer(const char* seg) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* quiet = freopen("/dev/null", "w", stdout);
    (void)quiet;
    execl(POSCACHE_WRITER_BIN, POSCACHE_WRITER_BIN, "-s", seg, "--capacity", "1000", "--no-redis",
          "--no-http", "--no-generate", "--log-level", "warn", "-n", "hold:trading:30s",
          "--refresh", "hold:both:2s:2", (char*)NULL);
    _exit(127);
  }
  /* Ready when its socket answers and the request files exist (the wake socket is made last). */
  char wake[256];
  snprintf(wake, sizeof wake, "/dev/shm/%s.wake", seg);
  for (int i = 0; i < 1000; ++i) {
    poscache_producer* p = poscache_producer_open(seg, "probe");
    if (p != NULL) {
      poscache_producer_close(p);
      if (access(wake, F_OK) == 0) return pid;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "the refresh writer did not come up: %s\n", poscache_last_error());
  kill(pid, SIGKILL);
  exit(1);
}

/* The refresher: answers each request by its instrument. NONE: absent; SILENT: never; any other:
 * qty 7, or 8 when the request is forced. */
typedef struct refresher {
  int fd;
  pthread_t thread;
  atomic_int registered;
  atomic_int fetches;
} refresher;

static void send_line(int fd, const char* line) {
  size_t n = strlen(line);
  while (n > 0) {
    ssize_t w = send(fd, line, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    line += w;
    n -= (size_t)w;
  }
}

/* The value of "member":"..." in a JSON object's text (the writer's requests hold no escapes). */
static void member_text(const char* obj, const char* member, char* out, size_t len) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\":\"", member);
  out[0] = '\0';
  const char* at = strstr(obj, pattern);
  if (at == NULL) return;
  at += strlen(pattern);
  size_t i = 0;
  while (at[i] != '\0' && at[i] != '"' && i + 1 < len) {
    out[i] = at[i];
    ++i;
  }
  out[i] = '\0';
}

/* {"op":"fetch","requests":[{"account":..,"attempt":..,"instrument":..,"ns":..,"reason":..,
 * "request":N}, ...]}: answers each. */
static void answer_fetch(refresher* f, char* line) {
  char* obj = strstr(line, "\"requests\":[");
  while (obj != NULL && (obj = strchr(obj, '{')) != NULL) {
    char* end = strchr(obj, '}');
    if (end == NULL) return;
    *end = '\0';
    char instrument[80], reason[16];
    member_text(obj, "instrument", instrument, sizeof instrument);
    member_text(obj, "reason", reason, sizeof reason);
    const char* id = strstr(obj, "\"request\":");
    if (id != NULL) {
      unsigned long long request = strtoull(id + strlen("\"request\":"), NULL, 10);
      char answer[256];
      atomic_fetch_add(&f->fetches, 1);
      if (strncmp(instrument, "SILENT", 6) == 0) {
        answer[0] = '\0';
      } else if (strncmp(instrument, "NONE", 4) == 0) {
        snprintf(answer, sizeof answer, "{\"op\":\"answer\",\"request\":%llu,\"absent\":true}\n",
                 request);
      } else {
        snprintf(answer, sizeof answer,
                 "{\"op\":\"answer\",\"request\":%llu,\"upsert\":{\"qty\":\"%s\"}}\n", request,
                 strcmp(reason, "forced") == 0 ? "8" : "7");
      }
      if (answer[0] != '\0') send_line(f->fd, answer);
    }
    obj = end + 1;
  }
}

static void* serve(void* arg) {
  refresher* f = arg;
  char buf[65536];
  size_t have = 0;
  send_line(f->fd, "{\"op\":\"refresher\",\"namespaces\":[\"hold\"],\"name\":\"c-test\"}\n");
  for (;;) {
    ssize_t n = recv(f->fd, buf + have, sizeof buf - 1 - have, 0);
    if (n <= 0) return NULL; /* shut down by the test, or the writer went */
    have += (size_t)n;
    buf[have] = '\0';
    char* line = buf;
    char* nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      if (strstr(line, "\"refresher\":\"registered\"") != NULL) atomic_store(&f->registered, 1);
      if (strstr(line, "\"op\":\"fetch\"") != NULL) answer_fetch(f, line);
      line = nl + 1;
    }
    have = strlen(line);
    memmove(buf, line, have + 1);
  }
}

static int start_refresher(refresher* f, const char* seg) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "/dev/shm/%s.sock", seg);
  f->fd = socket(AF_UNIX, SOCK_STREAM, 0);
  atomic_init(&f->registered, 0);
  atomic_init(&f->fetches, 0);
  if (f->fd < 0 || connect(f->fd, (struct sockaddr*)&addr, sizeof addr) != 0) return -1;
  if (pthread_create(&f->thread, NULL, serve, f) != 0) return -1;
  for (int i = 0; i < 500 && !atomic_load(&f->registered); ++i) sleep_ms(10);
  return atomic_load(&f->registered) ? 0 : -1;
}

static void stop_refresher(refresher* f) {
  shutdown(f->fd, SHUT_RDWR);
  pthread_join(f->thread, NULL);
  close(f->fd);
}

static void test_read_through(void) {
  char seg[64];
  snprintf(seg, sizeof seg, "poscache_test_capi_rt_%d", (int)getpid());
  cleanup(seg);
  const pid_t writer = start_refresh_writer(seg);
  poscache_reader* r = poscache_reader_open(seg);
  CHECK(r != NULL);
  if (r == NULL) exit(1);
  CHECK(poscache_refresh_available(r) == 1);
  poscache_position pos;
  int reason = -1;

  /* No refresher registered yet: said at once, nothing waited for. */
  double start = now_s();
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "AAPL", &pos, 5 * kSecond, 0, &reason),
               POSCACHE_NOT_FOUND);
  CHECK(reason == POSCACHE_FETCH_NO_REFRESHER);
  CHECK(now_s() - start < 1.0);
  CHECK(poscache_request(r, "hold", "C1", "AAPL", POSCACHE_REFRESH_FORCED) ==
        POSCACHE_REQUEST_NO_REFRESHER);

  /* Bad input. */
  CHECK_STATUS(poscache_get_or_fetch(NULL, "hold", "C1", "AAPL", &pos, 0, 0, &reason),
               POSCACHE_BAD_INPUT);
  CHECK_STATUS(poscache_get_or_fetch(r, "futures", "C1", "AAPL", &pos, 0, 0, &reason),
               POSCACHE_BAD_KEY);
  CHECK(strstr(poscache_last_error(), "futures") != NULL);
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "", "AAPL", &pos, 0, 0, &reason), POSCACHE_BAD_KEY);
  CHECK(reason == POSCACHE_FETCH_CACHED);
  CHECK_STATUS(poscache_get_or_fetch_by_id(r, 77, "C1", "AAPL", &pos, 0, 0, &reason),
               POSCACHE_BAD_KEY);
  CHECK(poscache_request(r, "futures", "C1", "AAPL", POSCACHE_REFRESH_FORCED) ==
        POSCACHE_REQUEST_BAD_KEY);
  CHECK(poscache_request(r, "hold", "C1", NULL, POSCACHE_REFRESH_MISS) == POSCACHE_REQUEST_BAD_KEY);
  CHECK_STATUS(poscache_request(r, "hold", "C1", "AAPL", 4 /* a rebuild */), POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "why 4") != NULL);
  CHECK_STATUS(poscache_request(NULL, "hold", "C1", "AAPL", POSCACHE_REFRESH_MISS),
               POSCACHE_BAD_INPUT);

  refresher f;
  CHECK(start_refresher(&f, seg) == 0);

  /* A miss, fetched by the refresher; then fresh: cached; forced: fetched again. */
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "AAPL", &pos, 10 * kSecond, 0, &reason),
               POSCACHE_OK);
  CHECK(reason == POSCACHE_FETCH_FETCHED);
  CHECK(strcmp(pos.account, "C1") == 0 && strcmp(pos.instrument, "AAPL") == 0 && !pos.stale);
  CHECK_TEXT(r, &pos, "qty", "7.000000000000000000");
  const uint64_t fetched_version = pos.version;
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "AAPL", &pos, 10 * kSecond, 0, &reason),
               POSCACHE_OK);
  CHECK(reason == POSCACHE_FETCH_CACHED && pos.version == fetched_version);
  const int hold = poscache_namespace_id(r, "hold");
  CHECK_STATUS(poscache_get_or_fetch_by_id(r, hold, "C1", "AAPL", &pos, 10 * kSecond, 1, &reason),
               POSCACHE_OK);
  CHECK(reason == POSCACHE_FETCH_FETCHED && pos.version > fetched_version);
  CHECK_TEXT(r, &pos, "qty", "8.000000000000000000");
  CHECK(strcmp(poscache_fetch_reason_name(reason), "fetched") == 0);

  /* The source has none: absent, then remembered (at once, nothing asked). */
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "NONE", &pos, 10 * kSecond, 0, &reason),
               POSCACHE_NOT_FOUND);
  CHECK(reason == POSCACHE_FETCH_ABSENT);
  const int fetches = atomic_load(&f.fetches);
  start = now_s();
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "NONE", &pos, 10 * kSecond, 0, NULL),
               POSCACHE_NOT_FOUND);
  CHECK(now_s() - start < 1.0);
  CHECK(poscache_request(r, "hold", "C1", "NONE", POSCACHE_REFRESH_MISS) ==
        POSCACHE_REQUEST_REMEMBERED);
  CHECK(atomic_load(&f.fetches) == fetches);

  /* Nobody answers: the timeout, kept (within a second of slack), then the key is in flight. */
  start = now_s();
  CHECK_STATUS(poscache_get_or_fetch(r, "hold", "C1", "SILENT", &pos, kSecond / 4, 0, &reason),
               POSCACHE_NOT_FOUND);
  const double waited = now_s() - start;
  CHECK(reason == POSCACHE_FETCH_TIMEOUT);
  CHECK(waited >= 0.2 && waited < 1.25);
  CHECK(poscache_request(r, "hold", "C1", "SILENT", POSCACHE_REFRESH_MISS) ==
        POSCACHE_REQUEST_PENDING);

  /* Asked without waiting: the answer lands for a later read. */
  CHECK(poscache_request(r, "hold", "C2", "MSFT", POSCACHE_REFRESH_FORCED) ==
        POSCACHE_REQUEST_ASKED);
  int st = POSCACHE_NOT_FOUND;
  for (int i = 0; i < 500 && st != POSCACHE_OK; ++i) {
    st = poscache_get(r, "hold", "C2", "MSFT", &pos);
    if (st != POSCACHE_OK) sleep_ms(10);
  }
  CHECK_STATUS(st, POSCACHE_OK);
  CHECK_TEXT(r, &pos, "qty", "8.000000000000000000");

  CHECK(strcmp(poscache_fetch_reason_name(POSCACHE_FETCH_NO_REFRESHER), "no_refresher") == 0);
  CHECK(strcmp(poscache_fetch_reason_name(99), "unknown reason") == 0);
  CHECK(strcmp(poscache_request_status_name(POSCACHE_REQUEST_REMEMBERED), "remembered") == 0);
  CHECK(strcmp(poscache_request_status_name(-1), "unknown request status") == 0);

  stop_refresher(&f);
  poscache_reader_close(r);
  kill(writer, SIGTERM);
  int status = 0;
  waitpid(writer, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  cleanup(seg);
}

int main(void) {
  char seg[64];
  snprintf(seg, sizeof seg, "poscache_test_capi_%d", (int)getpid());
  cleanup(seg);

  /* No segment: NULL and a message naming it. */
  CHECK(poscache_reader_open(seg) == NULL);
  CHECK(strstr(poscache_last_error(), seg) != NULL);
  CHECK(poscache_producer_open(seg, "nobody") == NULL);
  CHECK(strlen(poscache_last_error()) > 0);

  const pid_t writer = start_writer(seg);
  poscache_reader* r = poscache_reader_open(seg);
  poscache_producer* p = poscache_producer_open(seg, "c-test");
  CHECK(r != NULL);
  CHECK(p != NULL);
  if (r == NULL || p == NULL) return 1;

  /* The worked example, as fills, then a mark. */
  uint64_t seq = 0;
  CHECK_STATUS(
      poscache_fill(p, "spot", "w1", "SOL", POSCACHE_BUY, "10", "100", NULL, "T1", 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(
      poscache_fill(p, "spot", "w1", "SOL", POSCACHE_BUY, "10", "110", "0.5", "T2", 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(
      poscache_fill(p, "spot", "w1", "SOL", POSCACHE_SELL, "5", "120", NULL, "T3", 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_mark(p, "spot", "SOL", "130", NULL, 0, &seq), POSCACHE_OK);
  CHECK(seq == 4);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  poscache_position pos;
  CHECK_STATUS(poscache_get(r, "spot", "w1", "SOL", &pos), POSCACHE_OK);
  CHECK(strcmp(pos.account, "w1") == 0 && strcmp(pos.instrument, "SOL") == 0);
  CHECK(pos.version != 0);
  CHECK_TEXT(r, &pos, "qty", "15.000000000000000000");
  CHECK_TEXT(r, &pos, "avg_price", "105.000000000000000000");
  CHECK_TEXT(r, &pos, "realized_pnl", "75.000000000000000000");
  CHECK_TEXT(r, &pos, "unrealized_pnl", "375.000000000000000000");
  CHECK_TEXT(r, &pos, "fees", "0.500000000000000000");
  /* Then sell 20 @ 100: short 5 at 100. */
  CHECK_STATUS(
      poscache_fill(p, "spot", "w1", "SOL", POSCACHE_SELL, "20", "100", NULL, "T4", 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK_STATUS(poscache_get(r, "spot", "w1", "SOL", &pos), POSCACHE_OK);
  CHECK_TEXT(r, &pos, "qty", "-5.000000000000000000");
  CHECK_TEXT(r, &pos, "avg_price", "100.000000000000000000");
  CHECK(poscache_outcome(p, seq, NULL, 0) == POSCACHE_OUTCOME_APPLIED);
  /* The same trade again is a duplicate, and says so; a refused one says why. */
  CHECK_STATUS(
      poscache_fill(p, "spot", "w1", "SOL", POSCACHE_SELL, "20", "100", NULL, "T4", kSecond, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK(poscache_outcome(p, seq, NULL, 0) == POSCACHE_OUTCOME_DUPLICATE);
  CHECK_STATUS(poscache_erase(p, "spot", "nobody", "SOL", kSecond, &seq), POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK(poscache_outcome(p, seq, NULL, 0) == POSCACHE_OUTCOME_NOT_FOUND);
  CHECK(poscache_outcome(p, seq + 1, NULL, 0) == POSCACHE_OUTCOME_UNKNOWN);
  /* A batch: a buy of 2 ETH at 50 and its cash leg, together or not at all. */
  CHECK_STATUS(poscache_batch_begin(p), POSCACHE_OK);
  CHECK_STATUS(poscache_batch_begin(p), POSCACHE_BAD_INPUT);
  CHECK_STATUS(poscache_fill(p, "spot", "w3", "ETH", POSCACHE_BUY, "2", "50", NULL, "C-1", 0, &seq),
               POSCACHE_OK);
  CHECK_STATUS(
      poscache_fill(p, "spot", "w3", "USDC", POSCACHE_SELL, "100", "1", NULL, "C-1-cash", 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_batch_end(p, kSecond, &seq), POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK(poscache_outcome(p, seq, NULL, 0) == POSCACHE_OUTCOME_APPLIED);
  CHECK(poscache_outcome(p, seq + 2, NULL, 0) == POSCACHE_OUTCOME_APPLIED);
  CHECK_STATUS(poscache_get(r, "spot", "w3", "USDC", &pos), POSCACHE_OK);
  CHECK_TEXT(r, &pos, "qty", "-100.000000000000000000");
  /* One refused at the push: nothing is sent. */
  CHECK_STATUS(poscache_batch_begin(p), POSCACHE_OK);
  CHECK_STATUS(poscache_fill(p, "spot", "w3", "ETH", POSCACHE_BUY, "1", "50", NULL, NULL, 0, &seq),
               POSCACHE_OK);
  CHECK_STATUS(poscache_fill(p, "spot", "w3", "ETH", POSCACHE_BUY, "1", "5O", NULL, NULL, 0, &seq),
               POSCACHE_BAD_INPUT);
  CHECK_STATUS(poscache_batch_end(p, kSecond, &seq), POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "command 1") != NULL);

  /* An upsert with several fields, an int64 add, a namespace id for a hot loop. */
  const char* names[] = {"collateral_amount", "debt_amount", "health_factor"};
  const char* values[] = {"2500000000000000000000", "1800000000000000000000",
                          "1.145833333333333333"};
  CHECK_STATUS(
      poscache_upsert(p, "lending", "0xab12", "USDC", names, values, 3, 0, POSCACHE_MERGE, 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_add(p, "lending", "0xab12", "USDC", "blocks_unhealthy", 3, 0, &seq),
               POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  const int lending = poscache_namespace_id(r, "lending");
  CHECK(lending >= 0);
  CHECK(poscache_field_index(r, lending, "blocks_unhealthy") >= 0);
  CHECK(poscache_field_index(r, lending, "colour") == -1);
  CHECK_STATUS(poscache_get_by_id(r, lending, "0xab12", "USDC", &pos), POSCACHE_OK);
  CHECK_TEXT(r, &pos, "collateral_amount", "2500000000000000000000");
  CHECK_TEXT(r, &pos, "health_factor", "1.145833333333333333");
  CHECK_TEXT(r, &pos, "blocks_unhealthy", "3");
  /* Many at once: the same answers as one at a time, in order; a missing key, an unknown
   * namespace id and a NULL account answered per key. */
  const int spot = poscache_namespace_id(r, "spot");
  poscache_key keys[70];
  for (int i = 0; i < 70; ++i) {
    keys[i].ns = spot;
    keys[i].account = "w1";
    keys[i].instrument = i % 2 ? "SOL" : "NONE";
  }
  keys[3].ns = lending;
  keys[3].account = "0xab12";
  keys[3].instrument = "USDC";
  keys[5].ns = 999;
  keys[66].account = NULL;
  poscache_position many[70];
  int many_status[70];
  CHECK_STATUS(poscache_get_many(r, keys, 70, many, many_status), POSCACHE_OK);
  for (int i = 0; i < 70; ++i) {
    poscache_position one;
    const int want = poscache_get_by_id(r, keys[i].ns, keys[i].account, keys[i].instrument, &one);
    CHECK(many_status[i] == want);
    if (want == POSCACHE_OK) {
      CHECK(strcmp(many[i].account, one.account) == 0 && many[i].version == one.version);
    }
  }
  CHECK(many_status[1] == POSCACHE_OK && many_status[0] == POSCACHE_NOT_FOUND);
  CHECK(many_status[3] == POSCACHE_OK && many_status[5] == POSCACHE_BAD_KEY);
  CHECK(many_status[66] == POSCACHE_BAD_KEY && many_status[69] == POSCACHE_OK);
  CHECK_TEXT(r, &many[3], "health_factor", "1.145833333333333333");
  CHECK_TEXT(r, &many[69], "qty", "-5.000000000000000000");
  CHECK_STATUS(poscache_get_many(r, keys, 0, NULL, NULL), POSCACHE_OK);
  CHECK_STATUS(poscache_get_many(r, NULL, 1, many, many_status), POSCACHE_BAD_INPUT);
  char small[4];
  CHECK_STATUS(poscache_position_field_text(r, &pos, "debt_amount", small, sizeof small),
               POSCACHE_SMALL_BUFFER);
  CHECK_STATUS(poscache_position_field_text(r, &pos, "last_update_block", small, sizeof small),
               POSCACHE_NOT_FOUND);
  CHECK_STATUS(poscache_position_field_text(r, &pos, "colour", small, sizeof small),
               POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "colour") != NULL);

  /* Bad input is refused before anything is queued, naming the part and the value. */
  const char* bad_values[] = {"12.5.3"};
  CHECK_STATUS(
      poscache_upsert(p, "spot", "w1", "SOL", names, bad_values, 1, 0, POSCACHE_MERGE, 0, &seq),
      POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "collateral_amount") != NULL);
  const char* qty_name[] = {"qty"};
  CHECK_STATUS(
      poscache_upsert(p, "spot", "w1", "SOL", qty_name, bad_values, 1, 0, POSCACHE_MERGE, 0, &seq),
      POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "12.5.3") != NULL);
  CHECK_STATUS(
      poscache_fill(p, "futures", "w1", "SOL", POSCACHE_BUY, "1", "1", NULL, NULL, 0, &seq),
      POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "futures") != NULL);
  CHECK_STATUS(poscache_fill(p, "spot", "w1", "SOL", 7, "1", "1", NULL, NULL, 0, &seq),
               POSCACHE_BAD_INPUT);
  CHECK_STATUS(poscache_upsert(p, "spot", "w1", "SOL", qty_name, values, 1, 0, 9, 0, &seq),
               POSCACHE_BAD_INPUT);
  CHECK_STATUS(poscache_get(r, "futures", "w1", "SOL", &pos), POSCACHE_BAD_KEY);
  CHECK_STATUS(poscache_get(r, "spot", "nobody", "SOL", &pos), POSCACHE_NOT_FOUND);

  /* An account as of one moment: w1 holds SOL in spot; 0xab12 USDC in lending. */
  const char* one[] = {"1"};
  CHECK_STATUS(
      poscache_upsert(p, "spot", "0xab12", "ETH", qty_name, one, 1, 0, POSCACHE_MERGE, 0, &seq),
      POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  poscache_position book[4];
  size_t count = 0;
  CHECK_STATUS(poscache_snapshot(r, "0xab12", book, 4, &count), POSCACHE_OK);
  CHECK(count == 2);
  CHECK(strcmp(book[0].account, "0xab12") == 0 && strcmp(book[1].account, "0xab12") == 0);
  CHECK(strcmp(book[0].instrument, "ETH") == 0 || strcmp(book[1].instrument, "ETH") == 0);
  CHECK_STATUS(poscache_snapshot(r, "0xab12", book, 1, &count), POSCACHE_SMALL_BUFFER);
  CHECK(count == 2);
  CHECK_STATUS(poscache_snapshot(r, "nobody", book, 4, &count), POSCACHE_NOT_FOUND);
  CHECK(count == 0);
  CHECK_STATUS(poscache_snapshot(r, "", book, 4, &count), POSCACHE_BAD_KEY);

  /* A text field (the lending preset's asset addresses): the text itself, exactly. */
  const char* asset_name[] = {"collateral_asset"};
  const char* weth[] = {"0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"};
  CHECK_STATUS(poscache_upsert(p, "lending", "0xab12", "USDC", asset_name, weth, 1, 0,
                               POSCACHE_MERGE, 0, &seq),
               POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK_STATUS(poscache_get(r, "lending", "0xab12", "USDC", &pos), POSCACHE_OK);
  char asset[64];
  CHECK_STATUS(poscache_position_field_text(r, &pos, "collateral_asset", asset, sizeof asset),
               POSCACHE_OK);
  CHECK(strcmp(asset, weth[0]) == 0);
  CHECK_STATUS(poscache_position_field_text(r, &pos, "collateral_asset", asset, 8),
               POSCACHE_SMALL_BUFFER);
  const char* too_long[] = {"0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2-0123456789"};
  CHECK_STATUS(poscache_upsert(p, "lending", "0xab12", "USDC", asset_name, too_long, 1, 0,
                               POSCACHE_MERGE, 0, &seq),
               POSCACHE_BAD_INPUT);
  CHECK(strstr(poscache_last_error(), "holds at most 48 bytes") != NULL);

  /* A fill the writer refuses (its cost basis beyond 10^38): the producer hears why. */
  CHECK_STATUS(poscache_fill(p, "spot", "w2", "ETH", POSCACHE_BUY, "99999999999999999999",
                             "99999999999999999999", NULL, NULL, 0, &seq),
               POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  char why[256];
  CHECK_STATUS(poscache_producer_last_refusal(p, why, sizeof why), POSCACHE_OK);
  CHECK(strstr(why, "cost_basis") != NULL);
  CHECK_STATUS(poscache_get(r, "spot", "w2", "ETH", &pos), POSCACHE_NOT_FOUND);

  /* Removals, and change notification. */
  const uint64_t before = poscache_change_sequence(r);
  const uint64_t ring_at = poscache_change_position(r);
  CHECK_STATUS(poscache_erase(p, "spot", "w1", "SOL", 0, &seq), POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK(poscache_wait_for_change(r, before, 5 * kSecond) == 1);
  CHECK_STATUS(poscache_get(r, "spot", "w1", "SOL", &pos), POSCACHE_NOT_FOUND);
  CHECK_STATUS(poscache_invalidate_account(p, "0xab12", NULL, 0, &seq), POSCACHE_OK);
  CHECK_STATUS(poscache_wait_applied(p, seq, 10 * kSecond), POSCACHE_OK);
  CHECK_STATUS(poscache_get(r, "lending", "0xab12", "USDC", &pos), POSCACHE_NOT_FOUND);
  CHECK_STATUS(poscache_wait_synced(p, seq, kSecond), POSCACHE_NO_REDIS);

  /* The same removals from the change ring, in order. */
  CHECK(poscache_wait_for_changes(r, ring_at, 5 * kSecond) == 1);
  poscache_change ch[4];
  uint64_t next = 0;
  CHECK_STATUS(poscache_changes(r, ring_at, ch, 4, &count, &next), POSCACHE_OK);
  CHECK(count == 2 && next == poscache_change_position(r));
  CHECK(ch[0].kind == POSCACHE_CHANGE_ERASED && strcmp(ch[0].account, "w1") == 0);
  CHECK(strcmp(ch[0].instrument, "SOL") == 0 && ch[0].ns == poscache_namespace_id(r, "spot"));
  CHECK(ch[1].kind == POSCACHE_CHANGE_INVALIDATED_ACCOUNT && ch[1].ns == -1);
  CHECK(strcmp(ch[1].account, "0xab12") == 0 && ch[1].instrument[0] == '\0');
  CHECK(strcmp(poscache_change_kind_name(ch[1].kind), "invalidated_account") == 0);
  CHECK(ch[1].version > ch[0].version);
  CHECK_STATUS(poscache_changes(r, next + 1, ch, 4, &count, &next), POSCACHE_INVALID_POSITION);
  CHECK(count == 0);
  CHECK(strcmp(poscache_status_name(POSCACHE_FULL), "full") == 0);

  /* Read-through on a writer that serves none: no request channel, and why. */
  CHECK(poscache_refresh_available(r) == 0);
  CHECK(strstr(poscache_last_error(), ".refresh") != NULL);
  int reason = -1;
  CHECK_STATUS(poscache_get_or_fetch(r, "spot", "w9", "SOL", &pos, kSecond / 10, 0, &reason),
               POSCACHE_NOT_FOUND);
  CHECK(reason == POSCACHE_FETCH_UNAVAILABLE);
  CHECK_STATUS(poscache_get_or_fetch(r, "spot", "w3", "ETH", &pos, kSecond / 10, 0, &reason),
               POSCACHE_OK);
  CHECK(reason == POSCACHE_FETCH_CACHED && strcmp(pos.instrument, "ETH") == 0);
  CHECK(poscache_request(r, "spot", "w9", "SOL", POSCACHE_REFRESH_FORCED) ==
        POSCACHE_REQUEST_UNAVAILABLE);
  CHECK(poscache_refresh_available(NULL) == 0);

  poscache_producer_close(p);
  poscache_reader_close(r);
  poscache_reader_close(NULL);
  poscache_producer_close(NULL);
  kill(writer, SIGTERM);
  int status = 0;
  waitpid(writer, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  cleanup(seg);
  test_read_through();
  if (failures > 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("C interface: every check passed\n");
  return 0;
}
