// The fuel cost table: data only. How costs are counted and checked lives in instrument.ts.
//
// The base model is wasmtime's (cranelift `fuel_before_op` / `fuel_function_entry`): 1 at every
// function entry and 1 per operator, with the structural operators below free. Budgets written
// for wasmtime therefore carry over unchanged; ../shared/conformance/fuel/fuel.wast checks it.
//
// Beyond wasmtime's classic model, operators whose work grows with an operand are charged in
// proportion to it, so that fuel bounds CPU time: without this a single `memory.fill` of 4 GiB
// would cost 1. The per-byte and per-element constants follow wasmtime v46+ (1 per byte for
// bulk memory, 1 per element for bulk table operations).

export type ScaledOperator =
  | 'memory.fill'
  | 'memory.copy'
  | 'memory.init'
  | 'memory.grow'
  | 'table.fill'
  | 'table.copy'
  | 'table.init'
  | 'table.grow';

export interface CostTable {
  /** Charged once on every function entry (including the start function). */
  readonly functionEntry: number;
  /** Charged for every operator not listed in `free`. */
  readonly operator: number;
  /** Operators that cost nothing: structure, not work. */
  readonly free: readonly FreeOperator[];
  /**
   * Extra fuel per unit of the operator's count operand (bytes, elements or pages), charged and
   * checked before the operator runs, so an oversized operation never starts.
   */
  readonly perUnit: Readonly<Record<ScaledOperator, number>>;
}

/** The operators a cost table may declare free. `try`, `catch`, `catch_all` and `delegate` are
 *  the legacy exception-handling counterparts of block/else/end. */
export type FreeOperator =
  | 'nop'
  | 'drop'
  | 'block'
  | 'loop'
  | 'else'
  | 'end'
  | 'unreachable'
  | 'return'
  | 'try'
  | 'catch'
  | 'catch_all'
  | 'delegate';

export const DEFAULT_COSTS: CostTable = Object.freeze({
  functionEntry: 1,
  operator: 1,
  free: Object.freeze([
    'nop',
    'drop',
    'block',
    'loop',
    'else',
    'end',
    'unreachable',
    'return',
    'try',
    'catch',
    'catch_all',
    'delegate',
  ] as const),
  perUnit: Object.freeze({
    // Per byte: the operation is a memset/memmove over that many bytes.
    'memory.fill': 1,
    'memory.copy': 1,
    'memory.init': 1,
    // Per element: each element is a pointer-sized store on the engine's heap.
    'table.fill': 1,
    'table.copy': 1,
    'table.init': 1,
    'table.grow': 1,
    // Per 64 KiB page: the engine commits the pages and the kernel zeroes them on first touch,
    // which costs about as much as a 1 KiB memory.fill (bench/metering measures it).
    'memory.grow': 1024,
  }),
});

/** Opcodes of the free operators, for the instrumenter's lookup table. */
export const FREE_OPCODES: Readonly<Record<FreeOperator, number>> = {
  unreachable: 0x00,
  nop: 0x01,
  block: 0x02,
  loop: 0x03,
  else: 0x05,
  try: 0x06,
  catch: 0x07,
  end: 0x0b,
  return: 0x0f,
  delegate: 0x18,
  catch_all: 0x19,
  drop: 0x1a,
};
