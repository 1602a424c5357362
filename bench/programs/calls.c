/*
 * calls.c - a loop that calls small functions it cannot inline (as across translation units).
 * Stresses: loops whose body is mostly calls to short leaf functions: a 64-bit mixing step and an
 * array read, n times over a 4096-word table that is rewritten as it goes.
 * run(n) = low 32 bits of the final state.
 */
typedef int i32;
typedef unsigned int u32;
typedef unsigned long long u64;

#define N 4096
static u32 table[N];

__attribute__((noinline)) static u64 mix(u64 h, u32 v) {
    h ^= v;
    h *= 0x100000001b3ULL;
    return h ^ (h >> 29);
}

__attribute__((noinline)) static u32 load(u32 i) { return table[i & (N - 1)]; }

__attribute__((noinline)) static void store(u32 i, u32 v) { table[i & (N - 1)] = v; }

i32 run(i32 n) {
    u64 h = 0xcbf29ce484222325ULL;
    for (u32 i = 0; i < N; i++) table[i] = i * 2654435761u;
    for (u32 i = 0; i < (u32)n; i++) {
        h = mix(h, load(i));
        store(i * 7, (u32)h);
    }
    return (i32)(u32)h;
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 1000;
    printf("%d\n", run(n));
    return 0;
}
#endif
