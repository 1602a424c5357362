/*
 * expr.c - a recursive-descent parser that evaluates an arithmetic
 * expression, as interpreters and config parsers do.
 * Stresses: mutual recursion whose functions loop (expr and term loop over
 * their operators and call down), byte loads, i64 multiply and divide.
 * run(n): an expression of about 2,000 numbers, +, -, *, / and parentheses
 * (nesting depth 12, from an LCG) evaluated n times; acc = acc * 31 + value,
 * as i64 (wrapping).
 */
typedef long long i64;
typedef unsigned int u32;

static const char *p;
static i64 expr(void);

static i64 atom(void) {
    if (*p == '(') {
        p++;
        i64 v = expr();
        p++;
        return v;
    }
    i64 v = 0;
    while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    return v;
}

static i64 term(void) {
    i64 v = atom();
    while (*p == '*' || *p == '/') {
        char o = *p++;
        i64 w = atom();
        v = o == '*' ? (i64)((unsigned long long)v * (unsigned long long)w) : (w && !(w == -1 && v == (i64)(1ull << 63)) ? v / w : v);
    }
    return v;
}

static i64 expr(void) {
    i64 v = term();
    while (*p == '+' || *p == '-') {
        char o = *p++;
        i64 w = term();
        v = (i64)(o == '+' ? (unsigned long long)v + (unsigned long long)w : (unsigned long long)v - (unsigned long long)w);
    }
    return v;
}

static char buf[1 << 16];
static int pos;
static u32 s;

static void gen(int d) {
    s = s * 1103515245u + 12345u;
    if (d == 0 || (d < 8 && (s >> 16) % 3 == 0)) {
        int v = (int)((s >> 8) % 1000), k = 0;
        char t[8];
        do {
            t[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (k) buf[pos++] = t[--k];
        return;
    }
    buf[pos++] = '(';
    gen(d - 1);
    buf[pos++] = "+-*/"[(s >> 20) & 3];
    gen(d - 1);
    buf[pos++] = ')';
}

i64 run(int n) {
    s = 99;
    pos = 0;
    gen(12);
    buf[pos] = 0;
    i64 acc = 0;
    for (int i = 0; i < n; i++) {
        p = buf;
        acc = (i64)((unsigned long long)acc * 31u + (unsigned long long)expr());
    }
    return acc;
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("%lld\n", run(argc > 1 ? atoi(argv[1]) : 1000));
    return 0;
}
#endif
