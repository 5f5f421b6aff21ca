/**
 * Rounding depth: an interpreter over the formula graph (JAX's habit — an analysis is to a formula
 * what `abstract_eval` is to a primitive). Each primitive contributes the roundings it adds to the
 * longest chain from an argument to an output element; the depth of a graph is the longest such
 * chain, evaluated at bound sizes. Tolerances (properties/tolerance.ts) multiply it by the unit
 * roundoff: a chain of K roundings is within γ_K = K·u/(1 − K·u) of exact (Higham, *Accuracy and
 * Stability of Numerical Algorithms*, §3.1).
 *
 * The model:
 *
 * - **A sum of K terms** counts K − 1 roundings and **a dot product of length K** counts K (the
 *   products and the K − 1 additions): Higham's bounds γ_{K−1}·Σ|a_i| and γ_K·Σ|a_i b_i|, which
 *   hold for *any* summation order. That is the sequential (worst-order) model, not ⌈log₂ K⌉ for
 *   pairwise summation: a port may sum in any order (BLAS kernels block, NumPy pairs, a plain loop
 *   runs left to right), and the bound must hold for all of them.
 * - **Integer-valued results** (positions, head indices, masks, comparisons) are exact below 2^24,
 *   float32's integer range, and add nothing.
 * - **Values the probe cannot perturb** (sizes, positions, int inputs) carry their rounding into
 *   functions whose conditioning the probe therefore does not measure: sin and cos of an angle θ
 *   turn its relative error into an absolute one of |θ| times it; base^e turns a relative error of
 *   e into |e·ln base| times it. Those rules take the bound |θ| (or |e·ln base|) from an interval
 *   analysis over the same graph ({@link valueRanges}).
 * - **A call** is its body: the composition is what any port computes, up to reassociation, which
 *   the worst-order model already covers. A fused kernel that computes in higher precision and
 *   rounds once rounds less than its body, so the body's depth bounds it too.
 */
import { BATCH, evalDim, type Dim } from "./dims.js";
import { bindDims, type Binding, type TensorInfo } from "./bind.js";
import {
  topoSort,
  type BinaryFn,
  type Constraint,
  type Node,
  type NodeOf,
  type Op,
} from "./node.js";
import type { ScalarFnName } from "./scalar.js";
import type { Expr } from "./expr.js";

/** Integers up to 2^24 are exact in float32 (and float64): their arithmetic rounds nothing. */
const EXACT_INTEGERS = 2 ** 24;

/**
 * Roundings of each scalar function of spec/scalar.ts on the longest chain of its math string:
 * `+ − × ÷`, x² and √ are correctly rounded (1); a libm function (exp, log, tanh, erf, sin, cos,
 * pow) is within 1 ulp (2); a constant subexpression is folded once (1, 0 when exact); max, |·|,
 * floor, the step and negation are exact (0). spec/rounding.test.ts recounts every entry from the
 * math string, so the table cannot drift from the declarations.
 */
export const SCALAR_ROUNDINGS: Readonly<Record<ScalarFnName, number>> = {
  neg: 0, // −x
  exp: 2, // exp(x)
  log: 2, // log(x)
  sqrt: 1, // sqrt(x)
  rsqrt: 2, // 1/sqrt(x)
  recip: 1, // 1/x
  square: 1, // x^2
  tanh: 2, // tanh(x)
  sigmoid: 4, // 1/(1+exp(-x))
  erf: 2, // erf(x)
  sin: 2, // sin(x)
  cos: 2, // cos(x)
  abs: 0, // abs(x)
  relu: 0, // max(x, 0)
  step: 0, // x > 0 ? 1 : 0
  floor: 0, // floor(x)
  gelu: 6, // 0.5*x*(1+erf(x/sqrt(2)))
  gelu_grad: 7, // 0.5*(1+erf(x/sqrt(2))) + x*exp(-x^2/2)/sqrt(2*pi)
  gelu_tanh: 9, // 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))
  gelu_tanh_grad: 13, // 0.5*(1+tanh(t)) + 0.5*x*(1-tanh(t)^2)*sqrt(2/pi)*(1+3*0.044715*x^2)
  silu: 4, // x/(1+exp(-x))
  silu_grad: 5, // (1+exp(-x)+x*exp(-x))/(1+exp(-x))^2
};

/** Roundings of each binary function: + − × ÷ round once; pow is libm; the rest are exact. */
const BINARY_ROUNDINGS: Readonly<Record<BinaryFn, number>> = {
  add: 1, // fl(a + b) = (a + b)(1 + δ)
  sub: 1, // fl(a − b) = (a − b)(1 + δ)
  mul: 1, // fl(a·b) = a·b·(1 + δ)
  div: 1, // fl(a/b) = (a/b)(1 + δ)
  pow: 2, // a^b within 1 ulp
  max: 0, // picks an operand
  min: 0, // picks an operand
  eq: 0, // 0/1
  lt: 0, // 0/1
  le: 0, // 0/1
};

// ---------------------------------------------------------------------------------------------
// Value ranges: an interval per node, for the conditioning rules

/** Every element of a node lies in [lo, hi]; `int`: every element is an integer. */
export interface ValueRange {
  readonly lo: number;
  readonly hi: number;
  readonly int: boolean;
}

const ANY: ValueRange = { lo: -Infinity, hi: Infinity, int: false };
const hull = (a: ValueRange, b: ValueRange): ValueRange => ({
  lo: Math.min(a.lo, b.lo),
  hi: Math.max(a.hi, b.hi),
  int: a.int && b.int,
});
type Fn2 = (x: number, y: number) => number;
/** f over the corners of two intervals (exact for monotone and bilinear f); NaN widens to all. */
function corners(a: ValueRange, b: ValueRange, f: Fn2, int: boolean): ValueRange {
  const v = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
  if (v.some(Number.isNaN)) return { ...ANY, int };
  return { lo: Math.min(...v), hi: Math.max(...v), int };
}
/** A sum of at most k terms of r: within [k·lo, k·hi] (and 0). */
const scaled = (r: ValueRange, k: number): ValueRange =>
  corners(r, { lo: 0, hi: k, int: true }, (x, y) => x * y, r.int);
const monotone = (r: ValueRange, f: (x: number) => number, int = false): ValueRange => ({
  lo: f(r.lo),
  hi: f(r.hi),
  int,
});
const UNIT: ValueRange = { lo: -1, hi: 1, int: false };
const BIT: ValueRange = { lo: 0, hi: 1, int: true };
/** |x| over an interval: from 0 when it holds 0, else from the end nearer 0. */
const absRange = (x: ValueRange): ValueRange => ({
  lo: x.lo <= 0 && x.hi >= 0 ? 0 : Math.min(Math.abs(x.lo), Math.abs(x.hi)),
  hi: Math.max(Math.abs(x.lo), Math.abs(x.hi)),
  int: x.int,
});

/** Interval of a scalar function's value, given its argument's. */
const UNARY_RANGE: Readonly<Record<ScalarFnName, (x: ValueRange) => ValueRange>> = {
  neg: (x) => ({ lo: -x.hi, hi: -x.lo, int: x.int }),
  exp: (x) => monotone(x, Math.exp),
  log: (x) => (x.lo >= 0 ? monotone(x, Math.log) : ANY),
  sqrt: (x) => (x.lo >= 0 ? monotone(x, Math.sqrt) : ANY),
  rsqrt: (x) => (x.lo > 0 ? { lo: 1 / Math.sqrt(x.hi), hi: 1 / Math.sqrt(x.lo), int: false } : ANY),
  recip: (x) => (x.lo > 0 || x.hi < 0 ? { lo: 1 / x.hi, hi: 1 / x.lo, int: false } : ANY),
  square: (x) => monotone(absRange(x), (v) => v * v, x.int),
  tanh: (x) => monotone(x, Math.tanh),
  sigmoid: (x) => monotone(x, (v) => 1 / (1 + Math.exp(-v))),
  erf: () => UNIT,
  sin: () => UNIT,
  cos: () => UNIT,
  abs: absRange,
  relu: (x) => monotone(x, (v) => Math.max(v, 0), x.int),
  step: () => BIT,
  floor: (x) => monotone(x, Math.floor, true),
  // GELU ≥ −0.17, SiLU ≥ −0.28: below 0 only a little, above by at most x
  gelu: (x) => ({ lo: -0.18, hi: Math.max(0, x.hi), int: false }),
  gelu_tanh: (x) => ({ lo: -0.18, hi: Math.max(0, x.hi), int: false }),
  silu: (x) => ({ lo: -0.28, hi: Math.max(0, x.hi), int: false }),
  gelu_grad: () => ANY,
  gelu_tanh_grad: () => ANY,
  silu_grad: () => ANY,
};

/** Interval of a binary function's value, given its operands'. */
const BINARY_RANGE: Readonly<Record<BinaryFn, (a: ValueRange, b: ValueRange) => ValueRange>> = {
  add: (a, b) => ({ lo: a.lo + b.lo, hi: a.hi + b.hi, int: a.int && b.int }),
  sub: (a, b) => ({ lo: a.lo - b.hi, hi: a.hi - b.lo, int: a.int && b.int }),
  mul: (a, b) => corners(a, b, (x, y) => x * y, a.int && b.int),
  div: (a, b) => {
    if (!(b.lo > 0 || b.hi < 0)) return ANY;
    const q = corners(a, b, (x, y) => x / y, false);
    // a constant integer quotient of integers (1/d with d = 1) is exact
    return { ...q, int: a.int && b.int && q.lo === q.hi && Number.isInteger(q.lo) };
  },
  // a^b = e^{b·ln a} is bilinear in (b, ln a): its extremes lie at corners
  pow: (a, b) => (a.lo > 0 ? corners(a, b, (x, y) => x ** y, false) : ANY),
  max: (a, b) => corners(a, b, Math.max, a.int && b.int),
  min: (a, b) => corners(a, b, Math.min, a.int && b.int),
  eq: () => BIT,
  lt: () => BIT,
  le: () => BIT,
};

/** Sizes of a graph's dims, and the value ranges known for its input leaves (int inputs' data). */
export interface DepthEnv {
  readonly binding: Binding;
  /** Ranges of input leaves by name; a leaf without one may hold any value (of its type). */
  readonly inputs?: Readonly<Record<string, ValueRange>>;
}

function sizeOfDim(d: Dim, env: DepthEnv): number {
  const v = evalDim(d, env.binding.dims);
  if (v === undefined) throw new Error(`rounding depth: dim ${String(d)} is not bound`);
  return v;
}

/** The product of the sizes of axes `axes` of a node's shape (the batch prefix counts its rows). */
function countOf(n: Node, axes: readonly number[], env: DepthEnv): number {
  let k = 1;
  for (const a of axes) {
    const d = n.shape[a < 0 ? n.shape.length + a : a]!;
    k *= d === BATCH ? (env.binding.dims.get(BATCH) ?? 1) : sizeOfDim(d, env);
  }
  return k;
}

type RangeRule<K extends Op> = (
  n: NodeOf<K>,
  r: (x: Node) => ValueRange,
  env: DepthEnv,
) => ValueRange;
/** The number of elements of a node (its every axis). */
const sizeOf = (n: Node, env: DepthEnv): number =>
  countOf(
    n,
    n.shape.map((_, i) => i),
    env,
  );

/** The value-range rule of each primitive, one line each. */
const RANGE_RULES: { readonly [K in Op]: RangeRule<K> } = {
  input: (n, _r, env) => env.inputs?.[n.name] ?? { ...ANY, int: n.dtype === "int" },
  const: (n) => ({ lo: n.value, hi: n.value, int: Number.isInteger(n.value) }),
  dim: (n, _r, env) => {
    const v = sizeOfDim(n.dim, env);
    return { lo: v, hi: v, int: true };
  },
  iota: (n, _r, env) => ({ lo: 0, hi: Math.max(0, countOf(n, [n.axis], env) - 1), int: true }),
  unary: (n, r) => UNARY_RANGE[n.fn](r(n.x)),
  binary: (n, r) => BINARY_RANGE[n.fn](r(n.a), r(n.b)),
  reduce: (n, r, env) => (n.fn === "max" ? r(n.x) : scaled(r(n.x), countOf(n.x, n.axes, env))),
  reshape: (n, r) => r(n.x),
  permute: (n, r) => r(n.x),
  broadcast: (n, r) => r(n.x),
  slice: (n, r) => r(n.x),
  concat: (n, r) => n.xs.map(r).reduce(hull),
  matmul: (n, r, env) => scaled(BINARY_RANGE.mul(r(n.a), r(n.b)), countOf(n.a, [-1], env)),
  gather: (n, r) => r(n.table),
  scatter_add: (n, r, env) => scaled(r(n.updates), sizeOf(n.indices, env)),
  where: (n, r) => hull(r(n.a), r(n.b)),
  stopgrad: (n, r) => r(n.x),
  call: (n, r) => r(n.body),
};

/** The interval of every node reachable from `roots` (children first, iteratively). */
function valueRanges(
  roots: readonly Node[],
  env: DepthEnv,
  order: readonly Node[] = topoSort(roots),
): Map<Node, ValueRange> {
  const out = new Map<Node, ValueRange>();
  const r = (x: Node): ValueRange => out.get(x)!;
  for (const n of order) {
    out.set(n, (RANGE_RULES[n.op] as RangeRule<Op>)(n as never, r, env));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Depth

/** What a depth rule sees: the depth and value range of each operand, and the sizes. */
interface DepthCtx {
  readonly d: (x: Node) => number;
  readonly r: (x: Node) => ValueRange;
  readonly env: DepthEnv;
}
type DepthRule<K extends Op> = (n: NodeOf<K>, c: DepthCtx) => number;

/** max |v| over a range, at least 1: the factor turning v's relative error into an absolute one. */
const magnitude = (r: ValueRange): number => Math.max(1, Math.abs(r.lo), Math.abs(r.hi));

/** The rounding rule of each primitive: its result's depth from its operands', one line each. */
const DEPTH_RULES: { readonly [K in Op]: DepthRule<K> } = {
  input: () => 0, // arguments are exact by definition
  const: (n) => (Math.fround(n.value) === n.value ? 0 : 1), // 1/(1 − p), ε: rounded once
  dim: () => 0, // a size: an exact integer
  iota: () => 0, // an index: an exact integer
  // sin/cos(θ): |δ sin θ| ≤ |θ|·relerr(θ), so θ's roundings count |θ| times; then f's own
  unary: (n, { d, r }) => {
    const angle = n.fn === "sin" || n.fn === "cos";
    return (angle ? d(n.x) * magnitude(r(n.x)) : d(n.x)) + SCALAR_ROUNDINGS[n.fn];
  },
  // a^b: relerr = |b·ln a|·relerr(b) + |b|·relerr(a) + 1 ulp
  binary: (n, { d, r }) => {
    if (n.fn !== "pow") return Math.max(d(n.a), d(n.b)) + BINARY_ROUNDINGS[n.fn];
    const a = r(n.a);
    const b = r(n.b);
    const lnA = a.lo > 0 ? Math.max(Math.abs(Math.log(a.lo)), Math.abs(Math.log(a.hi))) : Infinity;
    // an exact operand adds nothing, however large its factor (0·∞ = 0)
    const amp = (k: number, factor: number) => (k === 0 ? 0 : k * Math.max(1, factor));
    const fromB = amp(d(n.b), lnA * magnitude(b));
    return Math.max(fromB, amp(d(n.a), magnitude(b))) + BINARY_ROUNDINGS.pow;
  },
  // Σ of K terms: γ_{K−1} in any order; max picks an element
  reduce: (n, { d, env }) =>
    d(n.x) + (n.fn === "sum" ? Math.max(0, countOf(n.x, n.axes, env) - 1) : 0),
  reshape: (n, { d }) => d(n.x),
  permute: (n, { d }) => d(n.x),
  broadcast: (n, { d }) => d(n.x),
  slice: (n, { d }) => d(n.x),
  concat: (n, { d }) => Math.max(...n.xs.map(d)),
  // a dot product of length K: γ_K (K products, K − 1 sums)
  matmul: (n, { d, env }) => Math.max(d(n.a), d(n.b)) + countOf(n.a, [-1], env),
  gather: (n, { d }) => d(n.table), // picks rows
  // each row of the table sums up to N updates (N the number of indices): γ_{N−1}
  scatter_add: (n, { d, env }) => d(n.updates) + Math.max(0, sizeOf(n.indices, env) - 1),
  where: (n, { d }) => Math.max(d(n.a), d(n.b)), // picks a or b (the condition is not rounded)
  stopgrad: (n, { d }) => d(n.x),
  call: (n, { d }) => d(n.body), // the composition (see the module comment)
};

/**
 * K of every node reachable from `roots`: the roundings on the longest chain from an argument to
 * any element of the node. Integer results below 2^24 are exact (0).
 */
function roundingDepths(roots: readonly Node[], env: DepthEnv): Map<Node, number> {
  const order = topoSort(roots);
  const ranges = valueRanges(roots, env, order);
  const out = new Map<Node, number>();
  const ctx: DepthCtx = { d: (x) => out.get(x)!, r: (x) => ranges.get(x)!, env };
  for (const n of order) {
    const v = ranges.get(n)!;
    const exact = v.int && Math.max(Math.abs(v.lo), Math.abs(v.hi)) <= EXACT_INTEGERS;
    out.set(n, exact ? 0 : (DEPTH_RULES[n.op] as DepthRule<Op>)(n as never, ctx));
  }
  return out;
}

/** A graph to measure: its outputs and the dim facts that bind its sizes (autodiff's Graph). */
export interface DepthGraph {
  readonly name: string;
  readonly outputs: Readonly<Record<string, Expr>>;
  readonly relations: readonly Constraint[];
  readonly hyper: ReadonlyMap<string, number>;
}

/**
 * K of each output of a graph for arguments of these shapes (and, for int arguments such as
 * position ids, these value ranges): the longest chain of roundings from an argument to an
 * element of the output, the `K` of γ_K.
 */
export function outputDepths(
  g: DepthGraph,
  tensors: Readonly<Record<string, TensorInfo>>,
  inputs?: Readonly<Record<string, ValueRange>>,
): Record<string, number> {
  const roots = Object.values(g.outputs).map((e) => e.node);
  const opts = { formula: g.name, hyper: g.hyper, relations: g.relations };
  const binding = bindDims(roots, tensors, opts);
  const depths = roundingDepths(roots, { binding, ...(inputs !== undefined ? { inputs } : {}) });
  const out: Record<string, number> = {};
  for (const [k, e] of Object.entries(g.outputs)) out[k] = depths.get(e.node)!;
  return out;
}

/** The depth of a graph: the largest of its outputs' ({@link outputDepths}). */
export function graphDepth(
  g: DepthGraph,
  tensors: Readonly<Record<string, TensorInfo>>,
  inputs?: Readonly<Record<string, ValueRange>>,
): number {
  return Math.max(0, ...Object.values(outputDepths(g, tensors, inputs)));
}
