/* Exits with argv[1] as its status: through exit(), or by returning from main with "return". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  int code = argc > 1 ? atoi(argv[1]) : 0;
  int by_return = argc > 2 && strcmp(argv[2], "return") == 0;
  printf("exiting with %d by %s\n", code, by_return ? "return" : "exit");
  if (by_return) return code;
  exit(code);
}
