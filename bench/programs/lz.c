/*
 * lz.c - the match finder of an LZ77 compressor (hash chains, as zlib's
 * deflate): for every position, up to 16 earlier candidates with the same
 * 3-byte hash are compared by a small function that loops.
 * Stresses: a loop calling a function with a data-dependent loop, byte loads,
 * unpredictable branches.
 * run(n): a 256 KiB LCG text over an alphabet that varies every 4 KiB,
 * "compressed" n times; the sum of the output sizes.
 */
typedef unsigned int u32;

#define N (1 << 18)
static unsigned char in[N], out[N + N / 2];
static int head[1 << 14], chain[N];

__attribute__((noinline)) static int match(const unsigned char *a, const unsigned char *b, int max) {
    int k = 0;
    while (k < max && a[k] == b[k]) k++;
    return k;
}

int run(int n) {
    u32 s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        in[i] = (unsigned char)"abcdefgh"[(s >> 16) % (u32)((i >> 12) % 7 + 2)];
    }
    int total = 0;
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < (1 << 14); i++) head[i] = -1;
        int o = 0, i = 0;
        while (i < N - 4) {
            unsigned h = ((unsigned)in[i] << 10 ^ (unsigned)in[i + 1] << 5 ^ in[i + 2]) & 16383;
            int best = 0, at = 0, c = head[h], tries = 16;
            while (c >= 0 && tries--) {
                int m = match(in + c, in + i, N - i < 258 ? N - i : 258);
                if (m > best) {
                    best = m;
                    at = c;
                }
                c = chain[c];
            }
            chain[i] = head[h];
            head[h] = i;
            if (best >= 3) {
                out[o++] = 255;
                out[o++] = (unsigned char)best;
                out[o++] = (unsigned char)(i - at);
                i += best;
            } else {
                out[o++] = in[i++];
            }
        }
        total += o;
    }
    return total;
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("%d\n", run(argc > 1 ? atoi(argv[1]) : 1));
    return 0;
}
#endif
