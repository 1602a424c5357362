/*
 * words.c - counts words in a hash table, as text-processing code does.
 * Built against wasi-libc: malloc, free, strdup, strcmp, strcat and the
 * string functions' loops.
 * Stresses: loops calling library functions that loop, pointer chasing,
 * byte loads, allocation.
 * run(n): n words of 1-4 syllables from an LCG, counted in a 4096-bucket
 * chained hash table (FNV-1a); then the table is walked and freed.
 * Result: (largest count) * 100000 + (distinct words), wrapping.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ent {
    char *k;
    int c;
    struct ent *next;
};
static struct ent *tab[4096];

static unsigned hash(const char *s) {
    unsigned x = 2166136261u;
    while (*s) x = (x ^ (unsigned char)*s++) * 16777619u;
    return x;
}

static int add(const char *w) {
    unsigned i = hash(w) & 4095;
    for (struct ent *e = tab[i]; e; e = e->next) {
        if (strcmp(e->k, w) == 0) {
            e->c++;
            return 0;
        }
    }
    struct ent *e = malloc(sizeof *e);
    if (!e || !(e->k = strdup(w))) return -1;
    e->c = 1;
    e->next = tab[i];
    tab[i] = e;
    return 0;
}

int run(int n) {
    static const char *syl[] = {"ka", "lo", "mi", "ne", "su", "ra", "to", "vi", "pe", "do", "gu", "xa"};
    char buf[16];
    uint32_t s = 7;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        buf[0] = 0;
        s = s * 1103515245u + 12345u;
        int len = 1 + (int)((s >> 16) % 4);
        for (int j = 0; j < len; j++) {
            s = s * 1103515245u + 12345u;
            strcat(buf, syl[(s >> 16) % 12]);
        }
        failed |= add(buf);
    }
    int best = 0, distinct = 0;
    for (int i = 0; i < 4096; i++) {
        for (struct ent *e = tab[i]; e;) {
            struct ent *next = e->next;
            distinct++;
            if (e->c > best) best = e->c;
            free(e->k);
            free(e);
            e = next;
        }
        tab[i] = 0;
    }
    return failed ? -1 : (int)((unsigned)best * 100000u + (unsigned)distinct);
}

#ifdef NATIVE
#include <stdio.h>
int main(int argc, char **argv) {
    printf("%d\n", run(argc > 1 ? atoi(argv[1]) : 100000));
    return 0;
}
#endif
