/*
 * libsort.c - the C library's qsort with a comparator called through a
 * function pointer. Built against wasi-libc (musl's smoothsort).
 * Stresses: a library's loops calling a small leaf function through
 * call_indirect, recursion in the library, loads/stores.
 * run(n): 4 rounds of filling n LCG i32 values and sorting them; an XOR
 * checksum of every 97th element (plus its index) after each round.
 */
#include <stdint.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int run(int n) {
    if (n < 1) n = 1;
    int *a = malloc((size_t)n * sizeof(int));
    if (!a) return -1;
    uint32_t s = 12345;
    int sum = 0;
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            a[i] = (int)(s >> 1);
        }
        qsort(a, (size_t)n, sizeof(int), cmp);
        for (int i = 0; i < n; i += 97) sum ^= a[i] + i;
    }
    free(a);
    return sum;
}

#ifdef NATIVE
#include <stdio.h>
int main(int argc, char **argv) {
    printf("%d\n", run(argc > 1 ? atoi(argv[1]) : 100000));
    return 0;
}
#endif
