/*
 * crc32.c - CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as in zlib)
 * over an internally generated message of n KiB: byte k is (x >> 24) of the
 * LCG x = x * 1664525 + 1013904223 (seed 1), the same stream as sha256.c.
 * The 256-entry table is rebuilt bit by bit on every call.
 * Stresses: byte-wise table lookups (dependent loads), shifts/xors, short
 * data-dependent branches while building the table.
 * Returns the CRC as an i32 (same bits as zlib.crc32 of the message).
 */
typedef int i32;
typedef unsigned int u32;

static u32 table[256];

i32 run(i32 n) {
    u32 i, k, crc = 0xffffffffu, x = 1, len;
    for (i = 0; i < 256; i++) {
        u32 c = i;
        for (k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        table[i] = c;
    }
    len = n < 0 ? 0u : (u32)n * 1024u;
    for (i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        crc = table[(crc ^ (x >> 24)) & 0xffu] ^ (crc >> 8);
    }
    return (i32)(crc ^ 0xffffffffu);
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 1024;
    printf("%d\n", run(n));
    return 0;
}
#endif
