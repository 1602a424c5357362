/*
 * dispatch.c - a bytecode interpreter whose instructions are small handler functions called
 * through a table of function pointers (call_indirect), as interpreters built from separate
 * handlers are.
 * Stresses: an interpreter's dispatch loop, indirect calls, many small leaf functions.
 * The program: "sum over k = 1..n of (k * 3 + 1) mod 7, with a countdown", as bytecode.
 * run(n) = the accumulator as i32.
 */
typedef int i32;
typedef unsigned int u32;

typedef struct {
    i32 acc, r, k, n, pc, running;
} vm_t;

typedef void (*op_t)(vm_t *);

__attribute__((noinline)) static void op_load_k(vm_t *s) { s->r = s->k; s->pc++; }
__attribute__((noinline)) static void op_mul3(vm_t *s) { s->r *= 3; s->pc++; }
__attribute__((noinline)) static void op_add1(vm_t *s) { s->r += 1; s->pc++; }
__attribute__((noinline)) static void op_mod7(vm_t *s) { s->r = (i32)((u32)s->r % 7u); s->pc++; }
__attribute__((noinline)) static void op_accum(vm_t *s) { s->acc += s->r; s->pc++; }
__attribute__((noinline)) static void op_inc(vm_t *s) { s->k++; s->pc++; }
__attribute__((noinline)) static void op_loop(vm_t *s) { s->pc = s->k <= s->n ? 0 : s->pc + 1; }
__attribute__((noinline)) static void op_halt(vm_t *s) { s->running = 0; }

static op_t handlers[8] = {op_load_k, op_mul3, op_add1, op_mod7, op_accum, op_inc, op_loop, op_halt};
static const unsigned char code[] = {0, 1, 2, 3, 4, 5, 6, 7};

i32 run(i32 n) {
    vm_t s = {0, 0, 1, n, 0, 1};
    while (s.running) handlers[code[s.pc]](&s);
    return s.acc;
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
