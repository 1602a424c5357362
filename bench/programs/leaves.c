/*
 * leaves.c - a particle simulation written with small vector helper functions, each a leaf (no
 * loop, no call), called from the step loop; and a matrix multiply whose inner product is a
 * function of its own (the "matrix multiply in a function" shape, 1.70x on real code).
 * Stresses: many small leaf functions, f64 arithmetic, loops that call.
 * run(n) = a hash of the final positions and the product, as i32.
 */
typedef int i32;
typedef unsigned int u32;
typedef unsigned long long u64;

typedef struct { double x, y, z; } v3;

#define P 64
#define M 24
static v3 pos[P], vel[P];
static double A[M * M], B[M * M], C[M * M];

__attribute__((noinline)) static v3 vadd(v3 a, v3 b) { v3 r = {a.x + b.x, a.y + b.y, a.z + b.z}; return r; }
__attribute__((noinline)) static v3 vsub(v3 a, v3 b) { v3 r = {a.x - b.x, a.y - b.y, a.z - b.z}; return r; }
__attribute__((noinline)) static v3 vscale(v3 a, double s) { v3 r = {a.x * s, a.y * s, a.z * s}; return r; }
__attribute__((noinline)) static double vdot(v3 a, v3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

__attribute__((noinline)) static double dot(const double *a, const double *b, int n) {
    double s = 0;
    for (int k = 0; k < n; k++) s += a[k] * b[k * M];
    return s;
}

static u64 hash(u64 h, double d) {
    union { double d; u64 u; } c = {d};
    h ^= c.u;
    return h * 0x100000001b3ULL;
}

i32 run(i32 n) {
    for (int i = 0; i < P; i++) {
        v3 p = {i * 0.5, i * 0.25 - 3.0, (i % 7) * 1.5};
        v3 v = {0.01 * (i % 3), -0.02 * (i % 5), 0.015};
        pos[i] = p;
        vel[i] = v;
    }
    for (int i = 0; i < M * M; i++) { A[i] = (i % 13) * 0.1; B[i] = (i % 11) * 0.2; }
    v3 center = {0, 0, 0};
    for (int step = 0; step < n; step++) {
        for (int i = 0; i < P; i++) {
            v3 d = vsub(center, pos[i]);
            double r2 = vdot(d, d) + 1.0;
            vel[i] = vadd(vel[i], vscale(d, 0.001 / r2));
            pos[i] = vadd(pos[i], vel[i]);
        }
        if ((step & 63) == 0) {
            for (int i = 0; i < M; i++)
                for (int j = 0; j < M; j++) C[i * M + j] = dot(&A[i * M], &B[j], M);
            A[step % (M * M)] += C[(step * 7) % (M * M)] * 1e-9;
        }
    }
    u64 h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < P; i++) h = hash(hash(hash(h, pos[i].x), pos[i].y), pos[i].z);
    for (int i = 0; i < M * M; i++) h = hash(h, C[i]);
    return (i32)(u32)(h ^ (h >> 32));
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
