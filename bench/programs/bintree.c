/*
 * bintree.c - the Benchmarks Game's binary-trees: allocate, walk and free
 * complete binary trees with the C library's malloc and free (wasi-libc).
 * Stresses: recursion, allocation (the allocator's loops and branches),
 * pointer chasing.
 * run(n): for depth d = 4, 6, ..., n, 2^(n - d + 4) trees of depth d; the sum
 * of their node counts.
 */
#include <stdlib.h>

struct node {
    struct node *l, *r;
};

static struct node *make(int d) {
    struct node *n = malloc(sizeof *n);
    if (!n) abort();
    if (d > 0) {
        n->l = make(d - 1);
        n->r = make(d - 1);
    } else {
        n->l = n->r = 0;
    }
    return n;
}

static int check(const struct node *n) { return n->l ? 1 + check(n->l) + check(n->r) : 1; }

static void drop(struct node *n) {
    if (n->l) {
        drop(n->l);
        drop(n->r);
    }
    free(n);
}

int run(int n) {
    if (n > 20) n = 20;
    int t = 0;
    for (int d = 4; d <= n; d += 2) {
        int trees = 1 << (n - d + 4);
        for (int i = 0; i < trees; i++) {
            struct node *x = make(d);
            t += check(x);
            drop(x);
        }
    }
    return t;
}

#ifdef NATIVE
#include <stdio.h>
int main(int argc, char **argv) {
    printf("%d\n", run(argc > 1 ? atoi(argv[1]) : 14));
    return 0;
}
#endif
