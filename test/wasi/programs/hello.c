/* Prints a fixed greeting, ASCII and UTF-8. */
#include <stdio.h>

int main(void) {
  printf("Hello, world!\n");
  printf("unicode: h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93\n");
  fputs("to stderr\n", stderr);
  return 0;
}
