/* Writes forever: to stdout, or to stderr with argument "stderr". Never exits by itself. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  FILE *out = argc > 1 && strcmp(argv[1], "stderr") == 0 ? stderr : stdout;
  for (unsigned long i = 0;; i++) fprintf(out, "spam %lu\n", i);
}
