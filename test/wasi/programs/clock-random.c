/* Uses the clocks, sleeping and randomness, and prints sanity checks: "... ok" or "... FAILED". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

static void check(const char *what, int ok) {
  printf("%s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) failures++;
}

static long long ns(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(void) {
  struct timespec a, b, r, res;

  check("monotonic", clock_gettime(CLOCK_MONOTONIC, &a) == 0);
  volatile unsigned long long spin = 0;
  for (unsigned long long i = 0; i < 100000; i++) spin = spin + i;
  clock_gettime(CLOCK_MONOTONIC, &b);
  check("spin", spin == 4999950000ULL);
  check("monotonic never goes back", ns(b) >= ns(a));

  check("realtime", clock_gettime(CLOCK_REALTIME, &r) == 0);
  check("realtime after 2020", r.tv_sec > 1577836800);
  time_t t = time(NULL);
  /* glibc's time() reads the coarse clock, which lags CLOCK_REALTIME by up to a timer tick: just
     after a second boundary it may still say the second before (the native build failed so once). */
  check("time() agrees with realtime", t + 1 >= r.tv_sec && t - r.tv_sec < 60);

  check("monotonic resolution", clock_getres(CLOCK_MONOTONIC, &res) == 0 && ns(res) > 0 && ns(res) <= 1000000);

  struct timespec d = {0, 20 * 1000000L}; /* 20 ms */
  clock_gettime(CLOCK_MONOTONIC, &a);
  int slept = nanosleep(&d, NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  check("nanosleep 20ms", slept == 0 && ns(b) - ns(a) >= 20 * 1000000LL);

  unsigned char x[32], y[32], zero[32];
  memset(zero, 0, sizeof zero);
  check("getentropy", getentropy(x, sizeof x) == 0 && getentropy(y, sizeof y) == 0);
  check("getentropy differs", memcmp(x, y, sizeof x) != 0 && memcmp(x, zero, sizeof x) != 0);

  unsigned int seed;
  memcpy(&seed, x, sizeof seed);
  srandom(seed);
  long v = random();
  check("random in range", v >= 0 && v <= 2147483647L);

  printf("failures=%d\n", failures);
  return failures ? 1 : 0;
}
