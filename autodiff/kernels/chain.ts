/**
 * Fused elementwise chains: a tree of unary, binary and where primitives (constants inlined)
 * evaluated in one pass, optionally summed or maximised along the trailing axes. The planner
 * (evaluate.ts) builds the tree from the graph; here it becomes one monomorphic JavaScript loop,
 * generated once per tree structure, dtype and mode and cached.
 *
 * Values equal the plain interpretation bit for bit: each primitive's expression is the one its
 * own kernel uses (`SCALAR_KERNELS`, `binaryRow`, `where`), evaluated in float64, and in float32
 * mode every primitive's result is rounded with `Math.fround` — exactly where the plain
 * interpretation stores it into a Float32Array. A fused row sum adds the (rounded) elements from
 * +0 left to right in float64, as `reduce` does; a fused row max keeps `reduce`'s NaN rule.
 *
 * A generated loop walks a two-level block: `rows` rows of `n` elements. Each leaf is read at
 * `base + k·rowStride + i·stride` (0 strides broadcast), the output is contiguous.
 */
import type { BinaryFn } from "../../spec/node.js";
import type { ScalarFnName } from "../../spec/scalar.js";
import { SCALAR_KERNELS, erf } from "./scalar.js";
import { broadcastStrides, type Arr } from "./ops.js";

/** One fused expression. Leaves index the step's operand arrays; constants its value list. */
export type ChainExpr =
  | { readonly kind: "leaf"; readonly slot: number }
  | { readonly kind: "const"; readonly slot: number }
  | { readonly kind: "unary"; readonly fn: ScalarFnName; readonly x: ChainExpr }
  | { readonly kind: "binary"; readonly fn: BinaryFn; readonly a: ChainExpr; readonly b: ChainExpr }
  | {
      readonly kind: "where";
      readonly cond: ChainExpr;
      readonly a: ChainExpr;
      readonly b: ChainExpr;
    };

/** `map`: one output element per element; `sum`/`max`: one per row of the trailing axes. */
export type ChainMode = "map" | "sum" | "max";

/** Primitives in the tree (leaves and constants not counted). */
export function chainOps(e: ChainExpr): number {
  switch (e.kind) {
    case "leaf":
    case "const":
      return 0;
    case "unary":
      return 1 + chainOps(e.x);
    case "binary":
      return 1 + chainOps(e.a) + chainOps(e.b);
    case "where":
      return 1 + chainOps(e.cond) + chainOps(e.a) + chainOps(e.b);
  }
}

/** The tree as text (`mul(L0, sub(L1, C0))`): the cache key, and the profile's label. */
export function chainText(e: ChainExpr): string {
  switch (e.kind) {
    case "leaf":
      return `L${e.slot}`;
    case "const":
      return `C${e.slot}`;
    case "unary":
      return `${e.fn}(${chainText(e.x)})`;
    case "binary":
      return `${e.fn}(${chainText(e.a)}, ${chainText(e.b)})`;
    case "where":
      return `where(${chainText(e.cond)}, ${chainText(e.a)}, ${chainText(e.b)})`;
  }
}

/** binaryRow's per-element expressions (ops.ts), in operands x and y. */
const BINARY: Record<BinaryFn, (x: string, y: string) => string> = {
  add: (x, y) => `${x} + ${y}`,
  sub: (x, y) => `${x} - ${y}`,
  mul: (x, y) => `${x} * ${y}`,
  div: (x, y) => `${x} / ${y}`,
  pow: (x, y) => `Math.pow(${x}, ${y})`,
  max: (x, y) => `${x} !== ${x} || ${y} !== ${y} ? NaN : ${x} > ${y} ? ${x} : ${y}`,
  min: (x, y) => `${x} !== ${x} || ${y} !== ${y} ? NaN : ${x} < ${y} ? ${x} : ${y}`,
  eq: (x, y) => `${x} === ${y} ? 1 : 0`,
  lt: (x, y) => `${x} < ${y} ? 1 : 0`,
  le: (x, y) => `${x} <= ${y} ? 1 : 0`,
};

/** Statements computing every node of `e` into temporaries; returns the name of the root's. */
function emitExpr(e: ChainExpr, f32: boolean, lines: string[], counter: { n: number }): string {
  const round = (s: string) => (f32 ? `Math.fround(${s})` : `(${s})`);
  switch (e.kind) {
    case "leaf":
      return `l${e.slot}`;
    case "const":
      return `c${e.slot}`;
    case "unary": {
      const x = emitExpr(e.x, f32, lines, counter);
      const t = `t${counter.n++}`;
      const k = SCALAR_KERNELS[e.fn];
      const [pre, expr] = typeof k === "string" ? ["", k] : [k.pre, k.expr];
      // a block scope per use, so that the kernel's own temporaries (x, t, s) never collide
      lines.push(`let ${t}; { const x = ${x}; ${pre} ${t} = ${round(expr)}; }`);
      return t;
    }
    case "binary": {
      const a = emitExpr(e.a, f32, lines, counter);
      const b = emitExpr(e.b, f32, lines, counter);
      const t = `t${counter.n++}`;
      lines.push(`const ${t} = ${round(BINARY[e.fn](a, b))};`);
      return t;
    }
    case "where": {
      const c = emitExpr(e.cond, f32, lines, counter);
      const a = emitExpr(e.a, f32, lines, counter);
      const b = emitExpr(e.b, f32, lines, counter);
      const t = `t${counter.n++}`;
      lines.push(`const ${t} = ${c} !== 0 ? ${a} : ${b};`);
      return t;
    }
  }
}

function leafSlots(e: ChainExpr, into: Set<number>, consts: Set<number>): void {
  switch (e.kind) {
    case "leaf":
      into.add(e.slot);
      return;
    case "const":
      consts.add(e.slot);
      return;
    case "unary":
      return leafSlots(e.x, into, consts);
    case "binary":
      leafSlots(e.a, into, consts);
      return leafSlots(e.b, into, consts);
    case "where":
      leafSlots(e.cond, into, consts);
      leafSlots(e.a, into, consts);
      return leafSlots(e.b, into, consts);
  }
}

/**
 * block(out, outBase, rows, n, leaves, bases, rowStrides, strides, consts): the generated loop
 * over one rows × n block.
 */
type Block = (
  out: Arr,
  ob: number,
  rows: number,
  n: number,
  leaves: readonly Arr[],
  bases: readonly number[],
  rowStrides: readonly number[],
  strides: readonly number[],
  consts: readonly number[],
) => void;

const blocks = new Map<string, Block>();

function compileBlock(e: ChainExpr, f32: boolean, mode: ChainMode, leafCount: number): Block {
  const key = `${mode}|${f32 ? "f32" : "f64"}|${leafCount}|${chainText(e)}`;
  let b = blocks.get(key);
  if (b !== undefined) return b;
  const slots = new Set<number>();
  const consts = new Set<number>();
  leafSlots(e, slots, consts);
  const lines: string[] = [];
  const root = emitExpr(e, f32, lines, { n: 0 });
  const L = [...slots].sort((x, y) => x - y);
  const head = [
    ...L.map((j) => `const A${j} = leaves[${j}], s${j} = strides[${j}], r${j} = rowStrides[${j}];`),
    ...[...consts].map((j) => `const c${j} = consts[${j}];`),
  ];
  const rowStart = L.map((j) => `const b${j} = bases[${j}] + k * r${j};`);
  const reads = L.map((j) => `const l${j} = A${j}[b${j} + i * s${j}];`);
  const inner = [...reads, ...lines];
  let body: string;
  if (mode === "map") {
    body = `for (let k = 0; k < rows; k++) { const oo = ob + k * n; ${rowStart.join(" ")}
      for (let i = 0; i < n; i++) { ${inner.join(" ")} out[oo + i] = ${root}; } }`;
  } else if (mode === "sum") {
    body = `for (let k = 0; k < rows; k++) { ${rowStart.join(" ")} let acc = 0;
      for (let i = 0; i < n; i++) { ${inner.join(" ")} acc += ${root}; } out[ob + k] = acc; }`;
  } else {
    // reduce's max: NaN wins and ends the row
    body = `for (let k = 0; k < rows; k++) { ${rowStart.join(" ")} let acc = -Infinity;
      for (let i = 0; i < n; i++) { ${inner.join(" ")} const v = ${root};
        if (v > acc || v !== v) acc = v; if (acc !== acc) break; } out[ob + k] = acc; }`;
  }
  const src = `return function fusedChain(out, ob, rows, n, leaves, bases, rowStrides, strides, consts) {
    ${head.join(" ")} ${body} };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  b = new Function("erf", "SQRT1_2", "SQRT_2_PI", "INV_SQRT_2PI", src)(
    erf,
    Math.SQRT1_2,
    Math.sqrt(2 / Math.PI),
    1 / Math.sqrt(2 * Math.PI),
  ) as Block;
  blocks.set(key, b);
  return b;
}

/**
 * Merge adjacent axes that every operand walks contiguously (stride[i] = stride[i+1]·dim[i+1]),
 * after dropping size-1 axes. Returns the merged dims and each operand's merged strides.
 */
export function coalesce(
  dims: readonly number[],
  strides: readonly (readonly number[])[],
): { dims: number[]; strides: number[][] } {
  const keep = dims.map((d, i) => (d === 1 ? -1 : i)).filter((i) => i >= 0);
  const outDims: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (const ax of keep) {
    const r = outDims.length;
    const mergeable =
      r > 0 && strides.every((s, j) => outStrides[j]![r - 1] === s[ax]! * dims[ax]!);
    if (mergeable) {
      outDims[r - 1] = outDims[r - 1]! * dims[ax]!;
      strides.forEach((s, j) => (outStrides[j]![r - 1] = s[ax]!));
    } else {
      outDims.push(dims[ax]!);
      strides.forEach((s, j) => outStrides[j]!.push(s[ax]!));
    }
  }
  return { dims: outDims, strides: outStrides };
}

/** A planned chain: `run` evaluates it over arrays whose shapes were fixed at planning time. */
export interface ChainKernel {
  run(leaves: readonly Arr[], out: Arr): void;
}

/**
 * The kernel for `expr` over `shape` (the element shape of the tree), its leaves of
 * `leafShapes` broadcast to it. `map` writes every element; `sum`/`max` reduce the trailing
 * `reduced` axes of `shape` and write one element per row. Undefined when the reduction's leaves
 * cannot be walked as rows × n (a leaf broadcast across part of the reduced axes only).
 */
export function chainKernel(
  expr: ChainExpr,
  shape: readonly number[],
  leafShapes: readonly (readonly number[])[],
  consts: readonly number[],
  f32: boolean,
  mode: ChainMode,
  reduced = 0,
): ChainKernel | undefined {
  const leafStrides = leafShapes.map((s) => broadcastStrides(s, shape));
  const outStrides = broadcastStrides(shape, shape);
  const block = compileBlock(expr, f32, mode, leafShapes.length);
  if (mode !== "map") {
    // kept axes → rows, reduced axes → n; each group must merge into one axis
    const split = shape.length - reduced;
    const kept = coalesce(shape.slice(0, split), [
      outStrides.slice(0, split),
      ...leafStrides.map((s) => s.slice(0, split)),
    ]);
    const red = coalesce(shape.slice(split), [
      outStrides.slice(split),
      ...leafStrides.map((s) => s.slice(split)),
    ]);
    if (kept.dims.length > 1 || red.dims.length > 1) return undefined;
    const rows = kept.dims[0] ?? 1;
    const n = red.dims[0] ?? 1;
    const rowStrides = leafStrides.map((_, j) => kept.strides[j + 1]![0] ?? 0);
    const strides = leafStrides.map((_, j) => red.strides[j + 1]![0] ?? 0);
    const bases = leafStrides.map(() => 0);
    const zero = shape.some((d) => d === 0);
    return {
      run(leaves, out) {
        if (zero) {
          if (out.length > 0) out.fill(mode === "max" ? -Infinity : 0);
          return;
        }
        block(out, 0, rows, n, leaves, bases, rowStrides, strides, consts);
      },
    };
  }
  const size = shape.reduce((p, d) => p * d, 1);
  const c = coalesce(shape, [outStrides, ...leafStrides]);
  const dims = c.dims;
  const r = dims.length;
  const ls = leafStrides.map((_, j) => c.strides[j + 1]!);
  const n = r === 0 ? 1 : dims[r - 1]!;
  const rows = r < 2 ? 1 : dims[r - 2]!;
  const strides = ls.map((s) => (r === 0 ? 0 : s[r - 1]!));
  const rowStrides = ls.map((s) => (r < 2 ? 0 : s[r - 2]!));
  if (r <= 2) {
    const bases = ls.map(() => 0);
    return {
      run: (leaves, out) =>
        size > 0 && block(out, 0, rows, n, leaves, bases, rowStrides, strides, consts),
    };
  }
  // more than two axes after merging: an odometer over the leading ones, one block per step
  const outer = dims.slice(0, r - 2);
  const outerCount = outer.reduce((p, d) => p * d, 1);
  const blockSize = rows * n;
  return {
    run(leaves, out) {
      if (size === 0) return;
      const idx = outer.map(() => 0);
      const bases = ls.map(() => 0);
      for (let p = 0; p < outerCount; p++) {
        block(out, p * blockSize, rows, n, leaves, bases, rowStrides, strides, consts);
        for (let ax = outer.length - 1; ax >= 0; ax--) {
          idx[ax]!++;
          for (let j = 0; j < bases.length; j++) bases[j]! += ls[j]![ax]!;
          if (idx[ax]! < outer[ax]!) break;
          for (let j = 0; j < bases.length; j++) bases[j]! -= ls[j]![ax]! * outer[ax]!;
          idx[ax] = 0;
        }
      }
    },
  };
}
