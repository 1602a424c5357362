/*
 * matmul.c - dense n x n double-precision matrix multiply, C = A * B,
 * repeated REPS times (A is perturbed before each repetition, so every
 * product is really computed). n is clamped to [1, MAXN]; buffers are static.
 * Stresses: f64 multiply/add, nested loops, sequential memory access (i-k-j
 * loop order).
 * Returns an i64 hash (FNV-1a over the IEEE-754 bits of every element of C
 * after every repetition), so any difference in a floating-point result
 * changes the checksum.
 */
typedef int i32;
typedef long long i64;
typedef unsigned long long u64;

#define MAXN 256
#define REPS 32

static double A[MAXN * MAXN];
static double B[MAXN * MAXN];
static double C[MAXN * MAXN];

static u64 bits(double d) {
    union { double d; u64 u; } x;
    x.d = d;
    return x.u;
}

i64 run(i32 n) {
    i32 i, j, k, r;
    u64 h = 14695981039346656037ull;
    if (n < 1) n = 1;
    if (n > MAXN) n = MAXN;
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            A[i * n + j] = (double)((i * 7 + j * 3) % 17 - 8) / (double)(j + 1);
            B[i * n + j] = (double)((i * 5 + j * 11) % 13 - 6) * 0.25 + 1.0 / (double)(i + 2);
        }
    }
    for (r = 0; r < REPS; r++) {
        A[(r * 31) % (n * n)] += 1.0;
        for (i = 0; i < n * n; i++) C[i] = 0.0;
        for (i = 0; i < n; i++) {
            for (k = 0; k < n; k++) {
                double a = A[i * n + k];
                double *crow = &C[i * n];
                const double *brow = &B[k * n];
                for (j = 0; j < n; j++) crow[j] += a * brow[j];
            }
        }
        for (i = 0; i < n * n; i++) {
            h ^= bits(C[i]);
            h *= 1099511628211ull;
        }
    }
    return (i64)h;
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 100;
    printf("%lld\n", run(n));
    return 0;
}
#endif
