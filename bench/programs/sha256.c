/*
 * sha256.c - FIPS 180-4 SHA-256 over an internally generated message of
 * n KiB (n * 1024 bytes). The message bytes come from a 32-bit LCG
 * (x = x * 1664525 + 1013904223, byte = x >> 24, seed 1) and are produced
 * block by block, so no big buffer is needed.
 * Stresses: i32 rotates/shifts/xor/add, a 64-entry constant table, loads and
 * stores of a small message schedule.
 * Returns the first 4 bytes of the digest, big-endian, as an i32.
 * The native build has `--dump n` to write the message to stdout, so the
 * digest can be checked against coreutils' sha256sum.
 */
typedef int i32;
typedef unsigned int u32;
typedef unsigned long long u64;

static const u32 K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static u32 H[8];
static unsigned char block[64];
static u32 W[64];

#define ROTR(x, r) (((x) >> (r)) | ((x) << (32 - (r))))

static void compress(void) {
    u32 a, b, c, d, e, f, g, h, t1, t2;
    i32 i;
    for (i = 0; i < 16; i++)
        W[i] = ((u32)block[4 * i] << 24) | ((u32)block[4 * i + 1] << 16) |
               ((u32)block[4 * i + 2] << 8) | (u32)block[4 * i + 3];
    for (i = 16; i < 64; i++) {
        u32 s0 = ROTR(W[i - 15], 7) ^ ROTR(W[i - 15], 18) ^ (W[i - 15] >> 3);
        u32 s1 = ROTR(W[i - 2], 17) ^ ROTR(W[i - 2], 19) ^ (W[i - 2] >> 10);
        W[i] = W[i - 16] + s0 + W[i - 7] + s1;
    }
    a = H[0]; b = H[1]; c = H[2]; d = H[3]; e = H[4]; f = H[5]; g = H[6]; h = H[7];
    for (i = 0; i < 64; i++) {
        t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i];
        t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
}

static u32 lcg_state;

static unsigned char next_byte(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (unsigned char)(lcg_state >> 24);
}

i32 run(i32 n) {
    u64 len, bitlen, done;
    i32 i, fill;
    if (n < 0) n = 0;
    len = (u64)(u32)n * 1024u;
    bitlen = len * 8u;
    lcg_state = 1;
    H[0] = 0x6a09e667; H[1] = 0xbb67ae85; H[2] = 0x3c6ef372; H[3] = 0xa54ff53a;
    H[4] = 0x510e527f; H[5] = 0x9b05688c; H[6] = 0x1f83d9ab; H[7] = 0x5be0cd19;
    /* len is a multiple of 64, so the message fills whole blocks */
    for (done = 0; done < len; done += 64) {
        for (i = 0; i < 64; i++) block[i] = next_byte();
        compress();
    }
    /* padding block: 0x80, zeros, 64-bit big-endian bit length */
    block[0] = 0x80;
    for (fill = 1; fill < 56; fill++) block[fill] = 0;
    for (i = 0; i < 8; i++) block[56 + i] = (unsigned char)(bitlen >> (56 - 8 * i));
    compress();
    return (i32)H[0];
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--dump") == 0) {
        long long len = atoll(argv[2]) * 1024, k;
        lcg_state = 1;
        for (k = 0; k < len; k++) putchar(next_byte());
        return 0;
    }
    {
        i32 n = argc > 1 ? atoi(argv[1]) : 1024;
        i32 r = run(n);
        if (argc > 2 && strcmp(argv[2], "--hex") == 0) {
            for (int i = 0; i < 8; i++) printf("%08x", H[i]);
            printf("\n");
        } else {
            printf("%d\n", r);
        }
    }
    return 0;
}
#endif
