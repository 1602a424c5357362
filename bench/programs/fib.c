/*
 * fib.c - naive doubly recursive Fibonacci.
 * Stresses: function calls (call/return, stack-pointer traffic), tiny bodies.
 * run(n) = fib(n) as i32 (wrapping; fib(46) is the largest that fits).
 * fib(n) makes 2 * fib(n + 1) - 1 calls in total.
 */
typedef int i32;
typedef unsigned int u32;

/* Keep both recursive calls: without disable_tail_calls, clang's tail-call
 * elimination turns fib(n - 2) into a loop around a single call. */
#ifdef __clang__
#define KEEP_CALLS __attribute__((noinline, disable_tail_calls))
#else
#define KEEP_CALLS __attribute__((noinline))
#endif

KEEP_CALLS static u32 fib(u32 n) {
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
