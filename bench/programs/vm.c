/*
 * vm.c - a small stack-based bytecode interpreter (switch dispatch, which
 * clang lowers to a br_table) running a bytecode program that sums the
 * Collatz step counts of 1..n. Values on the VM stack are i64.
 * Stresses: indirect/unpredictable branches (br_table), loads/stores of the
 * VM stack and locals, i64 arithmetic.
 * run(n) = sum over i in [1, n] of steps(i), where steps(1) = 0,
 * steps(x) = 1 + steps(x even ? x / 2 : 3x + 1); returned as a wrapping i32.
 * The native build cross-checks the interpreter against plain C.
 */
typedef int i32;
typedef long long i64;
typedef unsigned long long u64;

enum {
    OP_HALT, OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_MUL, OP_AND, OP_SHR,
    OP_EQ, OP_GT, OP_JMP, OP_JZ, OP_JNZ
};

#define CODE_MAX 128

static i32 code[CODE_MAX];
static i32 pc_emit;
static i64 stack[64];
static i64 locals[8];

static void emit(i32 op) { code[pc_emit++] = op; }
static void emit2(i32 op, i32 arg) { code[pc_emit++] = op; code[pc_emit++] = arg; }
/* emit a jump whose target is not known yet; returns the operand slot */
static i32 emit_jump(i32 op) { code[pc_emit++] = op; code[pc_emit++] = -1; return pc_emit - 1; }
static void patch(i32 slot, i32 target) { code[slot] = target; }

enum { L_I, L_X, L_TOTAL, L_N };

static void assemble(void) {
    i32 loop_i, loop_x, j_end, j_next, j_even, j_count, even, count, next_i;
    pc_emit = 0;
    /* i = 1 */
    emit2(OP_PUSH, 1); emit2(OP_STORE, L_I);
    /* loop_i: if (i > n) goto end */
    loop_i = pc_emit;
    emit2(OP_LOAD, L_I); emit2(OP_LOAD, L_N); emit(OP_GT); j_end = emit_jump(OP_JNZ);
    /* x = i */
    emit2(OP_LOAD, L_I); emit2(OP_STORE, L_X);
    /* loop_x: if (x == 1) goto next_i */
    loop_x = pc_emit;
    emit2(OP_LOAD, L_X); emit2(OP_PUSH, 1); emit(OP_EQ); j_next = emit_jump(OP_JNZ);
    /* if ((x & 1) == 0) goto even */
    emit2(OP_LOAD, L_X); emit2(OP_PUSH, 1); emit(OP_AND); j_even = emit_jump(OP_JZ);
    /* x = x * 3 + 1; goto count */
    emit2(OP_LOAD, L_X); emit2(OP_PUSH, 3); emit(OP_MUL); emit2(OP_PUSH, 1); emit(OP_ADD);
    emit2(OP_STORE, L_X); j_count = emit_jump(OP_JMP);
    /* even: x = x >> 1 */
    even = pc_emit;
    emit2(OP_LOAD, L_X); emit2(OP_PUSH, 1); emit(OP_SHR); emit2(OP_STORE, L_X);
    /* count: total = total + 1; goto loop_x */
    count = pc_emit;
    emit2(OP_LOAD, L_TOTAL); emit2(OP_PUSH, 1); emit(OP_ADD); emit2(OP_STORE, L_TOTAL);
    emit2(OP_JMP, loop_x);
    /* next_i: i = i + 1; goto loop_i */
    next_i = pc_emit;
    emit2(OP_LOAD, L_I); emit2(OP_PUSH, 1); emit(OP_ADD); emit2(OP_STORE, L_I);
    emit2(OP_JMP, loop_i);
    /* end: return total */
    patch(j_end, pc_emit);
    emit2(OP_LOAD, L_TOTAL); emit(OP_HALT);
    patch(j_next, next_i);
    patch(j_even, even);
    patch(j_count, count);
}

static i64 interpret(void) {
    i32 pc = 0, sp = 0; /* sp = number of values on the stack */
    for (;;) {
        i32 op = code[pc++];
        switch (op) {
        case OP_HALT: return stack[sp - 1];
        case OP_PUSH: stack[sp++] = code[pc++]; break;
        case OP_LOAD: stack[sp++] = locals[code[pc++]]; break;
        case OP_STORE: locals[code[pc++]] = stack[--sp]; break;
        case OP_ADD: sp--; stack[sp - 1] = (i64)((u64)stack[sp - 1] + (u64)stack[sp]); break;
        case OP_MUL: sp--; stack[sp - 1] = (i64)((u64)stack[sp - 1] * (u64)stack[sp]); break;
        case OP_AND: sp--; stack[sp - 1] &= stack[sp]; break;
        case OP_SHR: sp--; stack[sp - 1] = (i64)((u64)stack[sp - 1] >> (stack[sp] & 63)); break;
        case OP_EQ: sp--; stack[sp - 1] = stack[sp - 1] == stack[sp]; break;
        case OP_GT: sp--; stack[sp - 1] = stack[sp - 1] > stack[sp]; break;
        case OP_JMP: pc = code[pc]; break;
        case OP_JZ: sp--; pc = stack[sp] == 0 ? code[pc] : pc + 1; break;
        case OP_JNZ: sp--; pc = stack[sp] != 0 ? code[pc] : pc + 1; break;
        default: return -1;
        }
    }
}

i32 run(i32 n) {
    i32 k;
    assemble();
    for (k = 0; k < 8; k++) locals[k] = 0;
    locals[L_N] = n;
    return (i32)interpret();
}

#ifdef NATIVE
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    i32 n = argc > 1 ? atoi(argv[1]) : 10000, i;
    i32 r = run(n);
    u64 total = 0;
    for (i = 1; i <= n; i++) {
        u64 x = (u64)i;
        while (x != 1) { x = (x & 1) ? x * 3 + 1 : x >> 1; total++; }
    }
    if ((i32)total != r) { fprintf(stderr, "vm.c: interpreter %d != plain C %d\n", r, (i32)total); return 1; }
    printf("%d\n", r);
    return 0;
}
#endif
