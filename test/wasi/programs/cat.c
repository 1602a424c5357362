/* Copies stdin to stdout byte for byte, then reports the count on stderr. */
#include <stdio.h>

int main(void) {
  static char buf[4096];
  size_t n, total = 0;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (fwrite(buf, 1, n, stdout) != n) return 2;
    total += n;
  }
  if (ferror(stdin)) return 3;
  fprintf(stderr, "cat: %zu bytes\n", total);
  return 0;
}
