/*
 * sort.c - sort n pseudo-random i32 values with a hand-written quicksort
 * (median-of-three pivot, insertion sort below 16 elements, recursion on the
 * smaller half only). n is clamped to [0, MAXN].
 * Stresses: data-dependent (unpredictable) branches, loads/stores, calls.
 * Values come from the LCG x = x * 1103515245 + 12345 (seed 42), value = x
 * as a signed i32. Returns -1 if the output is not sorted, otherwise a
 * wrapping checksum sum(a[i] * (i + 1)) masked to 31 bits.
 */
typedef int i32;
typedef unsigned int u32;

#define MAXN 2000000

static i32 a[MAXN];

static void insertion(i32 lo, i32 hi) {
    i32 i, j;
    for (i = lo + 1; i <= hi; i++) {
        i32 v = a[i];
        for (j = i - 1; j >= lo && a[j] > v; j--) a[j + 1] = a[j];
        a[j + 1] = v;
    }
}

static void swap(i32 i, i32 j) {
    i32 t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static void quicksort(i32 lo, i32 hi) {
    while (hi - lo >= 16) {
        i32 mid = lo + (hi - lo) / 2;
        i32 pivot, i, j;
        if (a[mid] < a[lo]) swap(mid, lo);
        if (a[hi] < a[lo]) swap(hi, lo);
        if (a[hi] < a[mid]) swap(hi, mid);
        pivot = a[mid];
        i = lo;
        j = hi;
        for (;;) { /* Hoare partition */
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            swap(i, j);
            i++;
            j--;
        }
        /* [lo, j] and [j + 1, hi]; recurse on the smaller part */
        if (j - lo < hi - j) {
            quicksort(lo, j);
            lo = j + 1;
        } else {
            quicksort(j + 1, hi);
            hi = j;
        }
    }
    insertion(lo, hi);
}

i32 run(i32 n) {
    u32 x = 42, sum = 0;
    i32 i;
    if (n < 0) n = 0;
    if (n > MAXN) n = MAXN;
    for (i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        a[i] = (i32)x;
    }
    quicksort(0, n - 1);
    for (i = 0; i < n; i++) {
        if (i > 0 && a[i - 1] > a[i]) return -1;
        sum += (u32)a[i] * (u32)(i + 1);
    }
    return (i32)(sum & 0x7fffffffu);
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
static int cmp(const void *p, const void *q) {
    i32 x = *(const i32 *)p, y = *(const i32 *)q;
    return (x > y) - (x < y);
}
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 100000;
    i32 r = run(n), i;
    if (n < 0) n = 0;
    if (n > MAXN) n = MAXN;
    /* self-check: the result must equal libc qsort's output element-wise */
    i32 *ref = malloc(sizeof(i32) * (n > 0 ? n : 1));
    u32 x = 42;
    for (i = 0; i < n; i++) { x = x * 1103515245u + 12345u; ref[i] = (i32)x; }
    qsort(ref, n, sizeof(i32), cmp);
    for (i = 0; i < n; i++)
        if (ref[i] != a[i]) { fprintf(stderr, "sort.c: mismatch vs qsort at %d\n", i); return 1; }
    free(ref);
    printf("%d\n", r);
    return 0;
}
#endif
