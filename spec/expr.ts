/**
 * Typed builders for the expression graph. Every builder returns an `Expr<S>` whose type carries
 * the shape as a tuple of dim names, so a matmul with mismatched inner dims, adding tensors of
 * incompatible shapes or splitting heads on the wrong axis fails to compile; the same shapes are
 * checked again, symbolically, when the node is made and, with sizes, when it is bound.
 */
import { dim, dimToString, type Dim, type SymShape } from "./dims.js";
import type { BinaryFn, Label, Node, ReduceFn } from "./node.js";
import { SCALAR_FNS, type ScalarFnName } from "./scalar.js";
import {
  currentScope,
  explicitDims,
  normAxis,
  shapeRule,
  ShapeError,
  type NodeRequest,
} from "./shape.js";
import type {
  Broadcast,
  CheckBroadcast,
  Dims,
  DropLast,
  KeepLast,
  Mutable,
  Permute,
  SameBatch,
  SwapLast,
  WideOnly,
} from "./types.js";

declare const SHAPE: unique symbol;

/** The shape type of an expression, as a value for type tests (`expectTypeOf(shapeOf(e))`). */
export function shapeOf<S extends Dims>(e: Expr<S>): S {
  return e.shape as unknown as S;
}

/** A typed handle on a graph node. `S` is the shape as dim names; it exists only for the compiler. */
export class Expr<S extends Dims = Dims> {
  declare readonly [SHAPE]: S;
  constructor(readonly node: Node) {}
  get shape(): SymShape {
    return this.node.shape;
  }
  toString(): string {
    return `Expr(${this.node.op}, [${this.node.shape.map(dimToString).join(", ")}])`;
  }
}

export type Operand<S extends Dims = Dims> = Expr<S> | number;
type ShapeOf<X> = X extends Expr<infer S> ? S : X extends number ? [] : Dims;

let nextId = 1;

/** Make a node: run its shape rule and wrap it. */
export function make<S extends Dims = Dims>(req: NodeRequest, label?: Label): Expr<S> {
  if (req.op === "permute") {
    // permute ∘ permute composes; the identity permutation is no node at all (Kᵀᵀ = K)
    const inner = req.x;
    if (inner.op === "permute" && inner.label === undefined)
      return make({ op: "permute", x: inner.x, perm: req.perm.map((p) => inner.perm[p]!) }, label);
    if (
      label === undefined &&
      req.perm.every((p, i) => p === i) &&
      req.perm.length === req.x.shape.length
    )
      return new Expr<S>(req.x);
  }
  const { shape, dtype, constraints } = shapeRule(req);
  const { target: _t, elem: _e, ...fields } = req;
  const scope = currentScope();
  const node = {
    ...fields,
    id: nextId++,
    shape,
    dtype,
    ...(constraints.length > 0 ? { constraints } : {}),
    ...(label !== undefined ? { label } : {}),
    ...(scope !== undefined ? { scope } : {}),
  } as Node;
  return new Expr<S>(node);
}

/** Render `x` as `shown` (presentation only; values and gradients are x's). */
export function displayAs<S extends Dims>(x: Expr<S>, shown: Expr): Expr<S> {
  return new Expr<S>({ ...x.node, display: shown.node } as Node);
}

/** Give a node a display name (`\mu`, `σ²`); rendering binds it as its own equation. */
export function named<S extends Dims>(x: Expr<S>, latex: string, text: string = latex): Expr<S> {
  return new Expr<S>({ ...x.node, label: { latex, text } } as Node);
}

const parseShape = (shape: readonly (string | number | Dim)[]): SymShape =>
  shape.map((d) => (typeof d === "object" ? d : dim(d)));
const lift = (x: Operand): Expr => (typeof x === "number" ? constant(x) : x);

// ---------------------------------------------------------------------------------------------
// Leaves

/** A named formula input, e.g. `input("x", ["...", "n", "d_model"])`. */
export function input<const S extends Dims>(
  name: string,
  shape: S,
  opts: { int?: boolean; label?: Label } = {},
): Expr<Mutable<S>> {
  return make<Mutable<S>>(
    {
      op: "input",
      name,
      role: "input",
      target: parseShape(shape),
      elem: opts.int ? "int" : "float",
    },
    opts.label,
  );
}

/** A named parameter (weights), e.g. `param("W_Q", ["d_model", "d_model"])`. */
export function param<const S extends Dims>(
  name: string,
  shape: S,
  opts: { label?: Label } = {},
): Expr<Mutable<S>> {
  return make<Mutable<S>>(
    { op: "input", name, role: "param", target: parseShape(shape), elem: "float" },
    opts.label,
  );
}

export function constant(value: number): Expr<[]> {
  return make<[]>({ op: "const", value });
}

/** The bound size of a dim, as a scalar (`d_k` in `1/√d_k`). */
export function dimValue(d: Dim | string): Expr<[]> {
  return make<[]>({ op: "dim", dim: typeof d === "string" ? dim(d) : d });
}

/** Index along `axis` broadcast over `shape`: iota(["n","m"], 0)[i, j] = i. */
export function iota<const S extends Dims>(shape: S, axis: number): Expr<S> {
  const s = parseShape(shape);
  return make<S>({ op: "iota", axis: normAxis(s, axis), target: s });
}

// ---------------------------------------------------------------------------------------------
// Elementwise

export function unary<S extends Dims>(fn: ScalarFnName, x: Expr<S>): Expr<S> {
  if (!(fn in SCALAR_FNS)) throw new ShapeError(`unknown scalar function ${fn}`);
  return make<S>({ op: "unary", fn, x: x.node });
}

export const neg = <S extends Dims>(x: Expr<S>) => unary("neg", x);
export const exp = <S extends Dims>(x: Expr<S>) => unary("exp", x);
export const log = <S extends Dims>(x: Expr<S>) => unary("log", x);
export const sqrt = <S extends Dims>(x: Expr<S>) => unary("sqrt", x);
export const rsqrt = <S extends Dims>(x: Expr<S>) => unary("rsqrt", x);
export const square = <S extends Dims>(x: Expr<S>) => unary("square", x);
export const tanh = <S extends Dims>(x: Expr<S>) => unary("tanh", x);
export const sin = <S extends Dims>(x: Expr<S>) => unary("sin", x);
export const cos = <S extends Dims>(x: Expr<S>) => unary("cos", x);

export function binary<A extends Operand, B extends Operand>(
  fn: BinaryFn,
  a: A,
  b: B,
): Expr<Broadcast<ShapeOf<A>, ShapeOf<B>>> {
  return make({ op: "binary", fn, a: lift(a).node, b: lift(b).node });
}

type BinaryBuilder = <A extends Operand, B extends Operand>(
  a: A,
  b: B & CheckBroadcast<ShapeOf<A>, ShapeOf<B>>,
) => Expr<Broadcast<ShapeOf<A>, ShapeOf<B>>>;

const binaryBuilder =
  (fn: BinaryFn): BinaryBuilder =>
  (a, b) =>
    binary(fn, a, b as Operand) as never;

/** Elementwise a + b with NumPy broadcasting. */
export const add: BinaryBuilder = binaryBuilder("add");
export const sub: BinaryBuilder = binaryBuilder("sub");
/** Elementwise (Hadamard) product a ⊙ b. */
export const mul: BinaryBuilder = binaryBuilder("mul");
export const div: BinaryBuilder = binaryBuilder("div");
export const pow: BinaryBuilder = binaryBuilder("pow");
export const maximum: BinaryBuilder = binaryBuilder("max");
/** 1 where a = b, else 0. */
export const eq: BinaryBuilder = binaryBuilder("eq");
/** 1 where a < b, else 0. */
export const lt: BinaryBuilder = binaryBuilder("lt");
/** 1 where a ≤ b, else 0. */
export const le: BinaryBuilder = binaryBuilder("le");

/** `a` where cond ≠ 0, else `b` (all three broadcast). */
export function where<C extends Dims, A extends Operand, B extends Operand>(
  cond: Expr<C>,
  a: A,
  b: B,
): Expr<Broadcast<C, Broadcast<ShapeOf<A>, ShapeOf<B>>>> {
  return make({ op: "where", cond: cond.node, a: lift(a).node, b: lift(b).node });
}

export function stopGradient<S extends Dims>(x: Expr<S>): Expr<S> {
  return make<S>({ op: "stopgrad", x: x.node });
}

// ---------------------------------------------------------------------------------------------
// Reductions

/** Reduce over axes (negative axes count from the end). */
export function reduce(fn: ReduceFn, x: Expr, axes: readonly number[], keepdims = false): Expr {
  return make({
    op: "reduce",
    fn,
    x: x.node,
    axes: axes.map((a) => normAxis(x.shape, a)),
    keepdims,
  });
}

/** Σ over the last axis, keeping it as size 1 (so the result broadcasts against x). */
export function sumLast<S extends Dims>(x: Expr<S>): Expr<KeepLast<S>>;
export function sumLast<S extends Dims>(x: Expr<S>, keepdims: false): Expr<DropLast<S>>;
export function sumLast(x: Expr, keepdims = true): Expr {
  return reduce("sum", x, [-1], keepdims);
}

/** max over the last axis, keeping it as size 1. */
export function maxLast<S extends Dims>(x: Expr<S>): Expr<KeepLast<S>>;
export function maxLast<S extends Dims>(x: Expr<S>, keepdims: false): Expr<DropLast<S>>;
export function maxLast(x: Expr, keepdims = true): Expr {
  return reduce("max", x, [-1], keepdims);
}

/** Mean over the last axis, kept: (1/d) Σ_j x_j with d the axis's symbolic size. */
export function meanLast<S extends Dims>(x: Expr<S>): Expr<KeepLast<S>> {
  const d = x.shape[x.shape.length - 1]!;
  return binary("mul", binary("div", 1, dimValue(d)), sumLast(x)) as never;
}

/** Σ over every axis (the batch prefix included) to a scalar. */
export function sumAll(x: Expr): Expr<[]> {
  return reduce(
    "sum",
    x,
    x.shape.map((_, i) => i),
    false,
  ) as Expr<[]>;
}

// ---------------------------------------------------------------------------------------------
// Movement

export function reshape<const T extends Dims>(x: Expr, shape: T): Expr<T> {
  return make<T>({ op: "reshape", x: x.node, target: parseShape(shape) });
}

export function permute<S extends Dims, const P extends readonly number[]>(
  x: Expr<S>,
  perm: P,
): Expr<Permute<S, P>> {
  return make({ op: "permute", x: x.node, perm: perm.map((p) => normAxis(x.shape, p)) });
}

/** Swap the last two axes (Kᵀ). */
export function transpose<S extends Dims>(x: Expr<S>): Expr<SwapLast<S>> {
  const r = x.shape.length;
  if (explicitDims(x.shape).length < 2)
    throw new ShapeError(`transpose${scopeMsg()}: ${x} has fewer than 2 axes`);
  const perm = x.shape.map((_, i) => i);
  perm[r - 1] = r - 2;
  perm[r - 2] = r - 1;
  return make({ op: "permute", x: x.node, perm });
}

export function broadcastTo<const T extends Dims>(x: Expr, shape: T): Expr<T> {
  return make<T>({ op: "broadcast", x: x.node, target: parseShape(shape) });
}

/** Elements start … start+size−1 along axis (symbolic start and size allowed). */
export function slice(x: Expr, axis: number, start: Dim | string, size: Dim | string): Expr {
  const st = typeof start === "string" ? dim(start) : start;
  const sz = typeof size === "string" ? dim(size) : size;
  return make({ op: "slice", x: x.node, axis: normAxis(x.shape, axis), start: st, target: [sz] });
}

export function concat(xs: readonly Expr[], axis: number): Expr {
  if (xs.length === 0) throw new ShapeError(`concat${scopeMsg()}: nothing to concatenate`);
  return make({ op: "concat", xs: xs.map((x) => x.node), axis: normAxis(xs[0]!.shape, axis) });
}

// ---------------------------------------------------------------------------------------------
// Products and indexing

/**
 * Matrix product over the last two axes with batch axes broadcast. The second operand's inner dim
 * is `NoInfer`, so `matmul(Q, K)` with Q: [n, d_k], K: [n, d_k] is a compile error (use Kᵀ).
 */
export function matmul<B extends Dims, I extends string, J extends string, K extends string>(
  a: Expr<readonly [...B, I, J]>,
  b: Expr<readonly [NoInfer<J>, K]>,
): Expr<[...B, I, K]>;
export function matmul<
  B extends Dims,
  B2 extends Dims,
  I extends string,
  J extends string,
  K extends string,
>(
  a: Expr<readonly [...B, I, J]>,
  b: Expr<readonly [...B2, NoInfer<J>, K]> & SameBatch<B, B2>,
): Expr<[...B, I, K]>;
export function matmul<A extends Dims, B extends Dims>(
  a: Expr<A> & WideOnly<A, B>,
  b: Expr<B>,
): Expr<Dims>;
export function matmul(a: Expr, b: Expr): Expr {
  return make({ op: "matmul", a: a.node, b: b.node });
}

/** Rows of `table` picked by integer ids: E[t] for each token id t. */
export function gather<V extends string, D extends Dims, I extends Dims>(
  table: Expr<readonly [V, ...D]>,
  indices: Expr<I>,
): Expr<[...I, ...D]> {
  return make({ op: "gather", table: table.node, indices: indices.node });
}

// ---------------------------------------------------------------------------------------------
// Heads

/**
 * [..., n, D] → [..., heads, n, size] with D = heads·size: columns h·size … (h+1)·size−1 form head h.
 * `from` must name the last axis, so splitting the wrong axis is a compile error.
 */
export function splitHeads<
  B extends Dims,
  N extends string,
  D extends string,
  const HN extends string,
  const DK extends string,
>(
  x: Expr<readonly [...B, N, D]>,
  axes: { from: NoInfer<D>; heads: HN; size: DK },
): Expr<[...B, HN, N, DK]> {
  const s = x.shape;
  const n = s[s.length - 2]!;
  const last = s[s.length - 1]!;
  if (dimToString(last) !== axes.from) {
    throw new ShapeError(
      `splitHeads${scopeMsg()}: the last axis of ${x} is ${dimToString(last)}, not ${axes.from}`,
    );
  }
  const prefix = s.slice(0, -2);
  const r = reshape(x, [
    ...prefix.map(dimToString),
    dimToString(n),
    axes.heads,
    axes.size,
  ] as string[]);
  const k = prefix.length;
  const perm = [...prefix.map((_, i) => i), k + 1, k, k + 2];
  return permute(r, perm) as never;
}

/** [..., heads, n, size] → [..., n, D]: concatenate heads as column blocks (the inverse of splitHeads). */
export function mergeHeads<
  B extends Dims,
  HN extends string,
  N extends string,
  DK extends string,
  const D extends string,
>(x: Expr<readonly [...B, HN, N, DK]>, to: D): Expr<[...B, N, D]> {
  const s = x.shape;
  const k = s.length - 3;
  const perm = [...s.slice(0, k).map((_, i) => i), k + 1, k, k + 2];
  const p = permute(x, perm);
  return reshape(p, [
    ...s.slice(0, k).map(dimToString),
    dimToString(s[k + 1]!),
    to,
  ] as string[]) as never;
}

function scopeMsg(): string {
  const s = currentScope();
  return s === undefined ? "" : ` in formula ${s}`;
}
