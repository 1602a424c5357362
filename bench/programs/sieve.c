/*
 * sieve.c - sieve of Eratosthenes over a 4,000,000-byte static buffer.
 * Stresses: linear memory stores/loads with strided access, simple loops.
 * run(n) sieves a total of n numbers: [0, n] if n <= MAX, otherwise the
 * range [0, MAX] repeatedly (plus a final partial sieve) until n numbers have
 * been covered; returns the sum of the prime counts of the individual sieves.
 */
typedef int i32;
typedef unsigned int u32;

#define MAX 4000000u

static unsigned char composite[MAX + 1];

static u32 sieve(u32 limit) {
    u32 i, j, count = 0;
    for (i = 0; i <= limit; i++) composite[i] = 0;
    for (i = 2; i * i <= limit; i++) {
        if (composite[i]) continue;
        for (j = i * i; j <= limit; j += i) composite[j] = 1;
    }
    for (i = 2; i <= limit; i++) count += !composite[i];
    return count;
}

i32 run(i32 n) {
    u32 remaining = n < 0 ? 0u : (u32)n;
    u32 total = 0;
    while (remaining > 0) {
        u32 limit = remaining > MAX ? MAX : remaining;
        total += sieve(limit);
        remaining -= limit;
    }
    return (i32)total;
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 1000000;
    printf("%d\n", run(n));
    return 0;
}
#endif
