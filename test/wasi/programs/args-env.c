/* Prints argv and the whole environment, in order. */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
  printf("argc=%d\n", argc);
  for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
  int n = 0;
  for (char **e = environ; e && *e; e++, n++) printf("env[%d]=%s\n", n, *e);
  printf("envc=%d\n", n);
  const char *path = getenv("PATH");
  printf("PATH=%s\n", path ? path : "(unset)");
  return 0;
}
