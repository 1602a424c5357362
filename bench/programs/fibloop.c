/*
 * fibloop.c - doubly recursive Fibonacci as compilers really emit it.
 * Stresses: recursion that loops. Without disable_tail_calls, clang's tail-call elimination turns
 * fib(n - 2) into a loop around the single remaining call fib(n - 1): every frame runs a loop whose
 * body calls the function itself (the shape that cost most on real code, 1.80x).
 * run(n) = fib(n) as i32 (wrapping).
 */
typedef int i32;
typedef unsigned int u32;

__attribute__((noinline)) static u32 fib(u32 n) {
    if (n < 2) return n;
    return fib(n - 1) + fib(n - 2);
}

i32 run(i32 n) {
    if (n < 0) n = 0;
    return (i32)fib((u32)n);
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 30;
    printf("%d\n", run(n));
    return 0;
}
#endif
