/**
 * The interpreter: bind dims, plan the graph once (concrete shapes, order, buffer lifetimes,
 * transposes absorbed into matmul, fused kernels), then run the plan — one kernel per primitive,
 * dispatched exhaustively over the op set.
 */
import { bindDims, concreteShape, type Binding } from "../spec/bind.js";
import { BATCH, evalDim, dimToString } from "../spec/dims.js";
import { operands, postOrder, type Node, type NodeOf } from "../spec/node.js";
import type { Graph } from "./graph.js";
import * as K from "./kernels/ops.js";
import { fusedKernel } from "./kernels/fused.js";
import {
  chainKernel,
  chainOps,
  chainText,
  coalesce,
  type ChainExpr,
  type ChainKernel,
} from "./kernels/chain.js";
import { gemm } from "./gemm.js";
import {
  Tensor,
  TensorError,
  arrayFor,
  dtypeOfArray,
  shapeToString,
  type DType,
  type FloatDType,
  type NamedTensors,
} from "./tensor.js";

/**
 * Evaluation cannot proceed: an input is missing or names no argument of the graph, an integer
 * input holds non-integers, a
 * float input is i32, inner dims of a product differ, or a slice leaves its operand. Shapes that
 * contradict the declared
 * dims are a `BindError` instead.
 */
export class EvalError extends Error {
  override name = "EvalError";
}

/**
 * Options of {@link evaluate} and of everything that evaluates a graph (gradients, gradient checks,
 * the reference implementation).
 */
export interface EvalOptions {
  /** Float precision of every float node (default f64). */
  readonly dtype?: FloatDType;
  /** Use fused kernels for formulas that have one (default true). */
  readonly fused?: boolean;
  /** Stop at the first node that turns finite operands into NaN/Inf and name it. */
  readonly checkFinite?: boolean;
  /** Also return the value of every `call` node, keyed `formula#id` (for localisation). */
  readonly keepCalls?: boolean;
  /**
   * Buffer reuse, in-place steps and the rewrites that avoid materialising values (transposed
   * products, accumulation into a sum) — default true (all). `false` runs every primitive into a
   * fresh array, the plain interpretation the optimised one is tested against; an object picks
   * (benchmarks measure what each buys).
   */
  readonly optimize?: boolean | Optimizations;
}

/** The interpreter's optimisations, each of which leaves every value unchanged. */
export interface Optimizations {
  /** Dead intermediate arrays are reused by later steps of the same dtype and size. */
  readonly reuse: boolean;
  /** An elementwise step writes into an operand's array when that operand dies at the step. */
  readonly inPlace: boolean;
  /** (A·B)ᵀ as Bᵀ·Aᵀ; X + concat(…) and X + scatter_add(…) added piecewise into X. */
  readonly rewrites: boolean;
  /**
   * Elementwise chains (unary, binary, where, constants) whose intermediate values are read once
   * run as one generated loop, and so do row sums and maxima of such a chain (default: on with
   * `optimize: true`, off when an object leaves it out).
   */
  readonly fuse?: boolean;
}

function optimizations(o: EvalOptions["optimize"]): Optimizations {
  if (o === undefined || o === true) {
    return { reuse: true, inPlace: true, rewrites: true, fuse: true };
  }
  if (o === false) return { reuse: false, inPlace: false, rewrites: false, fuse: false };
  return o;
}

type Arr = K.Arr;

interface Step {
  readonly node: Node;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** Indices of the steps whose values this step reads. */
  readonly deps: readonly number[];
  /**
   * `input`: given by the caller; `alias`: the value is deps[0]'s buffer (reshape, stopgrad, an
   * unfused call); `compute`: `run` writes every element of a buffer the run loop hands it.
   */
  readonly kind: "input" | "alias" | "compute";
  /** Operand positions whose buffer `run` may also write into (elementwise at identical indices). */
  readonly inPlace: readonly number[];
  /** For a fused chain: the tree it computes (`mul(L0, sub(L1, C0))`, leaves are deps). */
  readonly fused?: string;
  run(vals: (Arr | undefined)[], out: Arr): void;
}

/** Is `n` a permute that swaps exactly the last two axes? */
function isSwapLast(n: Node): n is NodeOf<"permute"> {
  if (n.op !== "permute") return false;
  const p = n.perm;
  const r = p.length;
  if (r < 2 || p[r - 1] !== r - 2 || p[r - 2] !== r - 1) return false;
  for (let i = 0; i < r - 2; i++) if (p[i] !== i) return false;
  return true;
}

/** Concrete axes of a symbolic axis list, given the batch rank. */
function concreteAxes(
  sym: readonly Node["shape"][number][],
  axes: readonly number[],
  batchRank: number,
): number[] {
  const hasBatch = sym[0] === BATCH;
  const out: number[] = [];
  for (const a of axes) {
    if (!hasBatch) out.push(a);
    else if (a === 0) for (let i = 0; i < batchRank; i++) out.push(i);
    else out.push(a - 1 + batchRank);
  }
  return out.sort((x, y) => x - y);
}

class Plan {
  readonly steps: Step[] = [];
  private readonly index = new Map<Node, number>();
  readonly outputIndex: Record<string, number> = {};
  readonly inputSteps: { name: string; step: number; int: boolean }[] = [];
  private readonly lastUse: number[] = [];
  private readonly keep = new Set<number>();
  /**
   * Step whose computation allocated the buffer a step's value lives in (itself, or an aliased or
   * overwritten operand's owner).
   */
  private readonly owner: number[] = [];
  /** For a step computed in place: the operand step whose buffer it overwrites, else −1. */
  private readonly inPlaceFrom: number[] = [];
  /** Buffers (by owner) that are dead after step i and go back to the pool. */
  private readonly releaseAt: number[][] = [];
  /** Swap-last permutes of a matmul computed as the transposed product. */
  private readonly transposedProduct = new Set<Node>();
  /** Adds computed by adding a concat's or scatter_add's pieces into the other operand. */
  private readonly accumulations = new Map<Node, Accumulation>();
  /** Products that read permuted operands, or write a permuted result, through strides. */
  private readonly stridedProducts = new Map<Node, StridedProduct>();
  /** Nodes computed as a fused chain (their inlined producers get no step of their own). */
  private readonly chains = new Map<Node, PlannedChain | undefined>();
  private readonly optimizations: Optimizations;

  constructor(
    readonly graph: Graph,
    readonly binding: Binding,
    readonly dtype: FloatDType,
    readonly opts: EvalOptions,
  ) {
    this.optimizations = optimizations(opts.optimize);
    const roots = Object.values(graph.outputs).map((e) => e.node);
    const outputNodes = new Set(roots);
    // Dependencies after planning decisions: transposes folded into matmul, fused calls read their args.
    const baseDeps = (n: Node): Node[] => {
      if (n.op === "matmul") return [isSwapLast(n.a) ? n.a.x : n.a, isSwapLast(n.b) ? n.b.x : n.b];
      if (n.op === "call") {
        const f = opts.fused !== false ? fusedKernel(n.formula, n.config) : undefined;
        return f !== undefined ? f.args.map((a) => n.args[a]!) : [n.body];
      }
      return [...operands(n)];
    };
    // How often each value is read; a value read once by a rewritten step need not exist.
    const uses = new Map<Node, number>();
    for (const n of postOrder(roots, baseDeps))
      for (const d of baseDeps(n)) uses.set(d, (uses.get(d) ?? 0) + 1);
    const private1 = (n: Node) => uses.get(n) === 1 && !outputNodes.has(n);
    const depsOf = (n: Node): readonly Node[] => {
      if (!this.optimizations.rewrites) return chainDeps(n) ?? baseDeps(n);
      // (A·B)ᵀ = Bᵀ·Aᵀ: a transposed product is computed transposed, never copied
      if (
        isSwapLast(n) &&
        n.x.op === "matmul" &&
        private1(n.x) &&
        this.shapeOf(n.x.a).length >= 2 &&
        this.shapeOf(n.x.b).length >= 2
      ) {
        const m = n.x;
        this.transposedProduct.add(n);
        return [isSwapLast(m.b) ? m.b.x : m.b, isSwapLast(m.a) ? m.a.x : m.a];
      }
      // permuted operands (split heads) read in place, a permuted product (merge heads) written
      // in place; a formula call without a fused kernel is its body's value (unless calls are kept)
      const seen = (x: Node): Node =>
        x.op === "call" && !opts.keepCalls && private1(x) && baseDeps(x)[0] === x.body
          ? seen(x.body)
          : x;
      const product = n.op === "permute" ? seen(n.x) : undefined;
      const sp =
        n.op === "matmul"
          ? this.stridedProduct(n, undefined)
          : n.op === "permute" && product?.op === "matmul" && private1(product)
            ? this.stridedProduct(product, n)
            : undefined;
      if (sp !== undefined) {
        this.stridedProducts.set(n, sp);
        return [sp.a.node, sp.b.node];
      }
      // X + concat(…) and X + scatter_add(…) add the pieces into X (the backward pass of slice and gather)
      const acc = accumulation(n, private1, (x) => this.shapeOf(x));
      if (acc !== undefined) {
        this.accumulations.set(n, acc);
        return [acc.x, ...acc.pieces];
      }
      return chainDeps(n) ?? baseDeps(n);
    };
    const fuse = this.optimizations.fuse === true && opts.checkFinite !== true;
    // an inlined producer must not be an accumulation, which the rewrite computes better
    const fusable = (p: Node): boolean =>
      isElementwise(p) &&
      private1(p) &&
      (!this.optimizations.rewrites ||
        accumulation(p, private1, (x) => this.shapeOf(x)) === undefined);
    const chainDeps = (n: Node): readonly Node[] | undefined => {
      if (!fuse) return undefined;
      if (!this.chains.has(n)) this.chains.set(n, this.planChain(n, fusable));
      return this.chains.get(n)?.leaves;
    };
    const order = postOrder(roots, depsOf);
    for (const n of order) {
      const i = this.steps.length;
      this.index.set(n, i);
      this.steps.push(
        this.makeStep(
          n,
          depsOf(n).map((d) => this.index.get(d)!),
        ),
      );
      this.lastUse.push(i);
    }
    this.steps.forEach((s, i) => {
      for (const d of s.deps) this.lastUse[d] = Math.max(this.lastUse[d]!, i);
    });
    for (const [name, e] of Object.entries(graph.outputs)) {
      const i = this.index.get(e.node)!;
      this.outputIndex[name] = i;
      this.keep.add(i);
    }
    if (opts.keepCalls) this.steps.forEach((s, i) => s.node.op === "call" && this.keep.add(i));
    this.planBuffers();
  }

  /**
   * Buffer lifetimes. A buffer belongs to the step that allocated it (its owner) and to every
   * alias of it; it dies after the last step that reads any of them, unless one of them is an
   * output (or a kept call) or the caller's input. An elementwise step may write into an
   * operand's buffer that dies at that step (the cotangent sums of the backward pass, activation
   * chains): same dtype and size, so each element is read before it is overwritten at the same
   * index. Not with `checkFinite`, which inspects the operands after the step.
   */
  private planBuffers(): void {
    const n = this.steps.length;
    const maxUse: number[] = new Array<number>(n).fill(-1);
    const pinned: boolean[] = new Array<boolean>(n).fill(false);
    const inPlaceOk = this.opts.checkFinite !== true && this.optimizations.inPlace;
    for (let i = 0; i < n; i++) {
      const s = this.steps[i]!;
      let o = i;
      if (s.kind === "input") pinned[i] = true;
      else if (s.kind === "alias") o = this.owner[s.deps[0]!]!;
      else if (inPlaceOk) {
        for (const k of s.inPlace) {
          const d = s.deps[k]!;
          const od = this.owner[d]!;
          const ds = this.steps[d]!;
          if (!pinned[od] && maxUse[od] === i && ds.dtype === s.dtype && ds.size === s.size) {
            o = od;
            break;
          }
        }
      }
      this.owner.push(o);
      this.inPlaceFrom.push(o !== i && s.kind === "compute" ? this.dataStepOf(i, o) : -1);
      maxUse[o] = Math.max(maxUse[o]!, this.lastUse[i]!);
      if (this.keep.has(i)) pinned[o] = true;
    }
    for (let i = 0; i < n; i++) this.releaseAt.push([]);
    if (!this.optimizations.reuse) return;
    for (let o = 0; o < n; o++) {
      if (this.owner[o] === o && this.steps[o]!.kind === "compute" && !pinned[o])
        this.releaseAt[maxUse[o]!]!.push(o);
    }
  }

  /** The operand of step i whose buffer (owned by o) it overwrites. */
  private dataStepOf(i: number, o: number): number {
    const s = this.steps[i]!;
    for (const k of s.inPlace) if (this.owner[s.deps[k]!] === o) return s.deps[k]!;
    throw new EvalError(`internal: step ${i} has no operand in buffer ${o}`);
  }

  /**
   * The chain rooted at `n`: an elementwise node with its single-use elementwise producers of
   * the same shape inlined (constants too), or a row sum/max (trailing axes) of such a chain.
   * Undefined when fewer than two primitives would run together.
   */
  private planChain(n: Node, fusable: (p: Node) => boolean): PlannedChain | undefined {
    let top: Node;
    let mode: "map" | "sum" | "max" = "map";
    let reduced = 0;
    if (isElementwise(n)) top = n;
    else if (n.op === "reduce" && n.dtype === "float" && fusable(n.x)) {
      const r = n.x.shape.length === 0 ? 0 : this.shapeOf(n.x).length;
      const axes = concreteAxes(n.x.shape, n.axes, this.binding.batch.length);
      if (axes.length === 0 || !axes.every((a, i) => a === r - axes.length + i)) return undefined;
      top = n.x;
      mode = n.fn;
      reduced = axes.length;
    } else return undefined;
    const shape = this.shapeOf(top);
    const same = (p: Node) => {
      const s = this.shapeOf(p);
      return s.length === shape.length && s.every((d, i) => d === shape[i]);
    };
    const leaves: Node[] = [];
    const slots = new Map<Node, number>();
    const consts: number[] = [];
    const f32 = this.dtype === "f32";
    const build = (p: Node, root: boolean): ChainExpr => {
      if ((p.op === "const" || p.op === "dim") && p.dtype === "float") {
        const v = p.op === "const" ? p.value : evalDim(p.dim, this.binding.dims);
        if (v !== undefined) {
          // the plain step stores a constant in an array of the dtype: round it the same way
          consts.push(f32 ? Math.fround(v) : v);
          return { kind: "const", slot: consts.length - 1 };
        }
      }
      if (root || (fusable(p) && same(p))) {
        switch (p.op) {
          case "unary":
            return { kind: "unary", fn: p.fn, x: build(p.x, false) };
          case "binary":
            return { kind: "binary", fn: p.fn, a: build(p.a, false), b: build(p.b, false) };
          case "where":
            return {
              kind: "where",
              cond: build(p.cond, false),
              a: build(p.a, false),
              b: build(p.b, false),
            };
          default:
            break;
        }
      }
      let slot = slots.get(p);
      if (slot === undefined) {
        slot = leaves.length;
        slots.set(p, slot);
        leaves.push(p);
      }
      return { kind: "leaf", slot };
    };
    const expr = build(top, true);
    if (chainOps(expr) + (mode === "map" ? 0 : 1) < 2) return undefined;
    const leafShapes = leaves.map((l) => this.shapeOf(l));
    const kernel = chainKernel(expr, shape, leafShapes, consts, f32, mode, reduced);
    if (kernel === undefined) return undefined;
    const text = mode === "map" ? chainText(expr) : `${mode}(${chainText(expr)})`;
    return { leaves, kernel, text, mode };
  }

  /** `o` as strides over the storage of the nearest node that is not a permute. */
  private viewOf(o: Node): View {
    // aliases: a formula call without a fused kernel is its body's value
    if (o.op === "stopgrad" || o.op === "reshape") {
      const inner = this.viewOf(o.x);
      const contiguous = K.strides(this.shapeOf(o.x));
      if (o.op === "stopgrad" || inner.strides.every((st, i) => st === contiguous[i])) {
        if (o.op === "stopgrad") return inner;
        return { node: inner.node, strides: K.strides(this.shapeOf(o)) };
      }
    }
    const fusedCall = (c: NodeOf<"call">) =>
      this.opts.fused !== false && fusedKernel(c.formula, c.config) !== undefined;
    if (o.op === "call" && !fusedCall(o)) return this.viewOf(o.body);
    if (o.op === "permute") {
      const inner = this.viewOf(o.x);
      const batchRank = this.binding.batch.length;
      const perm = o.x.shape[0] === BATCH ? concretePerm(o.perm, batchRank) : o.perm;
      return { node: inner.node, strides: perm.map((p) => inner.strides[p]!) };
    }
    return { node: o, strides: K.strides(this.shapeOf(o)) };
  }

  /**
   * Product `m` reading its operands through their permutes' strides and, with `out` (a
   * permute of m), writing its entries where `out` keeps them. Undefined when no operand is a
   * permute beyond a swap of the last two axes (the plain path handles those), or when a view
   * is not a GEMM operand: unit stride along rows or columns, batch axes that merge into one.
   * The entries are the same K products summed in the same order: values do not change.
   */
  private stridedProduct(
    m: NodeOf<"matmul">,
    out: NodeOf<"permute"> | undefined,
  ): StridedProduct | undefined {
    const sa = this.shapeOf(m.a),
      sb = this.shapeOf(m.b),
      so = this.shapeOf(m);
    if (sa.length < 2 || sb.length < 2 || so.length < 2) return undefined;
    const a = this.viewOf(m.a),
      b = this.viewOf(m.b);
    const plain = (o: Node, v: View) => v.node === (isSwapLast(o) ? o.x : o);
    if (out === undefined && plain(m.a, a) && plain(m.b, b)) return undefined;
    let cStrides = K.strides(so);
    if (out !== undefined) {
      const batchRank = this.binding.batch.length;
      const perm = m.shape[0] === BATCH ? concretePerm(out.perm, batchRank) : out.perm;
      const outSt = K.strides(this.shapeOf(out));
      const inv: number[] = [];
      perm.forEach((p, k) => (inv[p] = k));
      cStrides = so.map((_, ax) => outSt[inv[ax]!]!);
    }
    const r = so.length;
    const M = so[r - 2]!,
      N = so[r - 1]!,
      Kd = sa[sa.length - 1]!;
    /** A stored matrix: unit stride along columns (plain) or rows (transposed), else none. */
    type Stored = { trans: boolean; ld: number } | undefined;
    const matrix = (st: readonly number[], shape: readonly number[]): Stored => {
      const k = shape.length;
      const rows = shape[k - 2]!,
        cols = shape[k - 1]!;
      const rs = st[k - 2]!,
        cs = st[k - 1]!;
      if (cols === 1 || cs === 1) return { trans: false, ld: rows === 1 ? Math.max(cols, 1) : rs };
      if (rows === 1 || rs === 1) return { trans: true, ld: cols === 1 ? Math.max(rows, 1) : cs };
      return undefined;
    };
    const ma = matrix(a.strides, sa),
      mb = matrix(b.strides, sb),
      mc = matrix(cStrides, so);
    if (ma === undefined || mb === undefined || mc === undefined) return undefined;
    if (ma.ld < (ma.trans ? M : Kd) || mb.ld < (mb.trans ? Kd : N)) return undefined;
    if (mc.ld < (mc.trans ? M : N)) return undefined;
    // batch axes of A and B broadcast (stride 0) to the output's, then merged into one
    const bo = so.slice(0, -2);
    const aligned = (st: readonly number[], shape: readonly number[]) => {
      const bs = shape.slice(0, -2);
      const off = bo.length - bs.length;
      return bo.map((d, i) => (i < off || (bs[i - off] === 1 && d !== 1) ? 0 : st[i - off]!));
    };
    const batchStrides = [aligned(a.strides, sa), aligned(b.strides, sb), cStrides.slice(0, -2)];
    const merged = coalesce(bo, batchStrides);
    if (merged.dims.length > 1) return undefined;
    const batch = merged.dims[0] ?? 1;
    const [sA, sB, sC] = merged.strides.map((s) => s[0] ?? 0) as [number, number, number];
    // C stored transposed: compute Cᵀ = Bᵀ·Aᵀ (each entry the same products b·a = a·b, same order)
    const t = mc.trans;
    const [rows, cols] = t ? [N, M] : [M, N];
    // the C[b] must not overlap (what matmul's own check requires)
    const sequential = sC >= (rows - 1) * mc.ld + cols;
    const interleaved = sC >= cols && (batch - 1) * sC + cols <= mc.ld;
    if (batch > 1 && rows > 0 && cols > 0 && !sequential && !interleaved) return undefined;
    if (t) {
      return {
        a: b,
        b: a,
        batch,
        M: N,
        N: M,
        K: Kd,
        transA: !mb.trans,
        transB: !ma.trans,
        lda: mb.ld,
        ldb: ma.ld,
        ldc: mc.ld,
        sA: sB,
        sB: sA,
        sC,
      };
    }
    return {
      a,
      b,
      batch,
      M,
      N,
      K: Kd,
      transA: ma.trans,
      transB: mb.trans,
      lda: ma.ld,
      ldb: mb.ld,
      ldc: mc.ld,
      sA,
      sB,
      sC,
    };
  }

  private shapeOf(n: Node): number[] {
    return concreteShape(n.shape, this.binding);
  }

  private makeStep(n: Node, deps: number[]): Step {
    const shape = this.shapeOf(n);
    const dtype: DType = n.dtype === "int" ? "i32" : this.dtype;
    const size = K.sizeOf(shape);
    const b = this.binding;
    const st = this.steps;
    const shp = (k: number): readonly number[] => st[deps[k]!]!.shape;
    const dimVal = (d: Parameters<typeof evalDim>[0]): number => {
      const v = evalDim(d, b.dims);
      if (v === undefined) throw new EvalError(`dim ${dimToString(d)} is not bound`);
      return v;
    };
    type Run = (v: (Arr | undefined)[], o: Arr) => void;
    const compute = (
      run: Run,
      inPlace: readonly number[] = [],
    ): Pick<Step, "kind" | "run" | "inPlace"> => ({ kind: "compute", run, inPlace });
    const alias: Pick<Step, "kind" | "run" | "inPlace"> = {
      kind: "alias",
      run: () => {},
      inPlace: [],
    };
    const elementwise = (k: number): readonly number[] => Array.from({ length: k }, (_, i) => i);
    /** The product op(deps[0])·op(deps[1]), each operand read transposed or not. */
    const product = (transA: boolean, transB: boolean) =>
      compute((v, o) =>
        matmulStep(
          v[deps[0]!]!,
          shp(0),
          transA,
          v[deps[1]!]!,
          shp(1),
          transB,
          o,
          shape,
          this.dtype,
        ),
      );
    const sp = this.stridedProducts.get(n);
    if (sp !== undefined) {
      const dtype = this.dtype;
      const run = (v: (Arr | undefined)[], o: Arr) =>
        gemm({
          dtype,
          a: v[deps[0]!]! as Float64Array,
          b: v[deps[1]!]! as Float64Array,
          c: o as Float64Array,
          batch: sp.batch,
          M: sp.M,
          N: sp.N,
          K: sp.K,
          transA: sp.transA,
          transB: sp.transB,
          lda: sp.lda,
          ldb: sp.ldb,
          ldc: sp.ldc,
          aBatchStride: sp.sA,
          bBatchStride: sp.sB,
          cBatchStride: sp.sC,
        });
      return { node: n, shape, dtype: this.dtype, size, deps, kind: "compute", run, inPlace: [] };
    }
    const chain = this.chains.get(n);
    if (chain !== undefined) {
      const leaves: Arr[] = new Array<Arr>(deps.length);
      // a leaf of the output's size is read at the output's index, before it is written
      const fullSize = (k: number) => st[deps[k]!]!.size === size;
      const inPlace = chain.mode === "map" ? deps.map((_, k) => k).filter(fullSize) : [];
      const run = (v: (Arr | undefined)[], o: Arr) => {
        for (let k = 0; k < deps.length; k++) leaves[k] = v[deps[k]!]!;
        chain.kernel.run(leaves, o);
      };
      const fused = chain.text;
      return { node: n, shape, dtype, size, deps, kind: "compute", run, inPlace, fused };
    }
    const how = ((): Pick<Step, "kind" | "run" | "inPlace"> => {
      switch (n.op) {
        case "input": {
          this.inputSteps.push({ name: n.name, step: st.length, int: n.dtype === "int" });
          return { kind: "input", run: () => {}, inPlace: [] };
        }
        case "const": {
          return compute((_v, o) => void (o[0] = n.value));
        }
        case "dim": {
          const v = dimVal(n.dim);
          return compute((_v, o) => void (o[0] = v));
        }
        case "iota": {
          return compute((_v, o) => K.iota(o, shape, n.axis));
        }
        case "unary": {
          return compute((v, o) => K.unary(n.fn, v[deps[0]!]!, o), [0]);
        }
        case "binary": {
          const acc = this.accumulations.get(n);
          if (acc !== undefined) return compute(this.accumulateStep(acc, deps), [0]);
          return compute(
            (v, o) => K.binary(n.fn, v[deps[0]!]!, shp(0), v[deps[1]!]!, shp(1), o, shape),
            elementwise(2),
          );
        }
        case "reduce": {
          const axes = concreteAxes(n.x.shape, n.axes, b.batch.length);
          return compute((v, o) => K.reduce(n.fn, v[deps[0]!]!, shp(0), axes, o));
        }
        case "reshape": {
          return alias;
        }
        case "stopgrad": {
          return alias;
        }
        case "call": {
          const f = this.opts.fused !== false ? fusedKernel(n.formula, n.config) : undefined;
          if (f === undefined) return alias;
          return compute(
            (v, o) =>
              f.run(
                deps.map((d) => v[d]!),
                deps.map((d) => st[d]!.shape),
                o,
                n.config,
              ),
            f.inPlace ?? [],
          );
        }
        case "permute": {
          if (this.transposedProduct.has(n)) {
            // n = (op(A)·op(B))ᵀ = op(B)ᵀ·op(A)ᵀ with deps [B, A]; a transposed operand is read untransposed
            const m = n.x as NodeOf<"matmul">;
            return product(!isSwapLast(m.b), !isSwapLast(m.a));
          }
          const perm = n.x.shape[0] === BATCH ? concretePerm(n.perm, b.batch.length) : [...n.perm];
          return compute((v, o) => K.permute(v[deps[0]!]!, shp(0), perm, o));
        }
        case "broadcast": {
          return compute((v, o) => K.broadcast(v[deps[0]!]!, shp(0), o, shape));
        }
        case "slice": {
          const axis = n.x.shape[0] === BATCH ? n.axis - 1 + b.batch.length : n.axis;
          const start = dimVal(n.start);
          return compute((v, o) => {
            const xs = shp(0);
            const size = shape[axis]!;
            if (start < 0 || start + size > xs[axis]!) {
              throw new EvalError(
                `slice of ${n.scope ?? "graph"}: elements ${start}…${start + size - 1} ` +
                  `along axis ${axis} are outside [0, ${xs[axis]})`,
              );
            }
            K.slice(v[deps[0]!]!, xs, axis, start, size, o);
          });
        }
        case "concat": {
          const axis = n.xs[0]!.shape[0] === BATCH ? n.axis - 1 + b.batch.length : n.axis;
          return compute((v, o) =>
            K.concat(
              deps.map((d) => v[d]!),
              deps.map((d) => st[d]!.shape),
              axis,
              o,
            ),
          );
        }
        case "matmul": {
          return product(isSwapLast(n.a), isSwapLast(n.b));
        }
        case "gather": {
          const what = `gather${n.scope ? ` in ${n.scope}` : ""}`;
          return compute((v, o) =>
            K.gather(
              v[deps[0]!]!,
              shp(0),
              v[deps[1]!]!,
              o,
              `${what} (token ids into a table of ${shp(0)[0]} rows)`,
            ),
          );
        }
        case "scatter_add": {
          return compute((v, o) =>
            K.scatterAdd(
              v[deps[0]!]!,
              v[deps[1]!]!,
              o,
              shape,
              `scatter_add${n.scope ? ` in ${n.scope}` : ""}`,
            ),
          );
        }
        case "where": {
          return compute(
            (v, o) =>
              K.where(v[deps[0]!]!, shp(0), v[deps[1]!]!, shp(1), v[deps[2]!]!, shp(2), o, shape),
            elementwise(3),
          );
        }
        default: {
          const unknown: never = n;
          throw new EvalError(`no step for op ${(unknown as { op: string }).op}`);
        }
      }
    })();
    return { node: n, shape, dtype, size, deps, ...how };
  }

  /**
   * out = X + concat(parts) or X + scatter_add(updates, indices), deps [X, ...pieces], with the
   * composition's exact values: a concat adds each part into its slab (a zero part adds +0,
   * which only turns −0 into +0); a scatter sums each id's update rows from 0 in order, rounds
   * that sum to the dtype as scatter_add's output would be, then adds it to X's row.
   */
  private accumulateStep(
    acc: Accumulation,
    deps: readonly number[],
  ): (v: (Arr | undefined)[], o: Arr) => void {
    const shape = this.shapeOf(acc.node);
    const f32 = this.dtype === "f32";
    if (acc.kind === "concat") {
      const c = acc.node as NodeOf<"concat">;
      const axis = c.xs[0]!.shape[0] === BATCH ? c.axis - 1 + this.binding.batch.length : c.axis;
      const outer = K.sizeOf(shape.slice(0, axis));
      const inner = K.sizeOf(shape.slice(axis + 1));
      const total = shape[axis]!;
      let at = 0;
      let next = 1;
      const slabs = c.xs.map((x) => {
        const d = this.shapeOf(x)[axis]!;
        const slab = { at, d, dep: isZeroFill(x) ? -1 : deps[next++]! };
        at += d;
        return slab;
      });
      return (v, o) => {
        const x = v[deps[0]!]!;
        if (o !== x) o.set(x);
        for (const { at, d, dep } of slabs)
          K.addSlab(o, dep < 0 ? undefined : v[dep]!, outer, total * inner, at * inner, d * inner);
      };
    }
    const rowShape = shape.slice(1);
    const row = K.sizeOf(rowShape);
    const what = `scatter_add${acc.node.scope ? ` in ${acc.node.scope}` : ""}`;
    return (v, o) => {
      const x = v[deps[0]!]!;
      if (o !== x) o.set(x);
      K.addScatter(o, v[deps[1]!]!, v[deps[2]!]!, shape[0]!, row, f32, what);
    };
  }

  /** Run the plan on named input tensors. */
  run(inputs: Readonly<Record<string, Tensor>>): {
    outputs: NamedTensors;
    calls: Map<Node, Tensor>;
  } {
    const vals: (Arr | undefined)[] = new Array(this.steps.length);
    for (const { name, step, int } of this.inputSteps) {
      const t = inputs[name];
      const s = this.steps[step]!;
      if (t === undefined)
        throw new EvalError(`${this.graph.name}: input ${name} was not provided`);
      vals[step] = coerceInput(t, s.dtype, int, name, this.graph.name);
    }
    const calls = new Map<Node, Tensor>();
    const n = this.steps.length;
    const bufs: (Arr | undefined)[] = new Array(n);
    try {
      for (let i = 0; i < n; i++) {
        const s = this.steps[i]!;
        if (s.kind === "compute") {
          const from = this.inPlaceFrom[i]!;
          const out =
            from >= 0
              ? vals[from]!
              : (bufs[i] = this.optimizations.reuse
                  ? POOL.take(s.dtype, s.size)
                  : (arrayFor(s.dtype, s.size) as Arr));
          if (profiler !== undefined) {
            const t0 = performance.now();
            s.run(vals, out);
            profiler(s, performance.now() - t0, from >= 0);
          } else s.run(vals, out);
          if (this.opts.checkFinite) this.checkFinite(s, out, vals);
          vals[i] = out;
        } else if (s.kind === "alias") vals[i] = vals[s.deps[0]!];
        if (this.opts.keepCalls && s.node.op === "call")
          calls.set(s.node, new Tensor(s.dtype, s.shape, vals[i]!));
        // operands read for the last time: drop the reference; dead buffers go back to the pool
        for (const d of s.deps) if (this.lastUse[d] === i && !this.keep.has(d)) vals[d] = undefined;
        for (const o of this.releaseAt[i]!) {
          POOL.give(bufs[o]!);
          bufs[o] = undefined;
        }
      }
    } finally {
      POOL.trim();
    }
    const outputs: NamedTensors = {};
    for (const [name, i] of Object.entries(this.outputIndex)) {
      const s = this.steps[i]!;
      outputs[name] = new Tensor(s.dtype, s.shape, vals[i]!);
    }
    return { outputs, calls };
  }

  private checkFinite(s: Step, out: Arr, vals: (Arr | undefined)[]): void {
    if (s.node.op === "const") return;
    const bad = firstNonFinite(out);
    if (bad < 0) return;
    const opsFinite = s.deps.every((d) => firstNonFinite(vals[d]!) < 0);
    if (!opsFinite) return;
    const idx = new Tensor(s.dtype, s.shape, out).unravel(bad);
    const what =
      s.node.op === "unary"
        ? `unary ${s.node.fn}`
        : s.node.op === "binary"
          ? `binary ${s.node.fn}`
          : s.node.op === "call"
            ? `call ${s.node.formula}`
            : s.node.op;
    throw new NonFiniteError(
      `first non-finite value: node #${s.node.id} ` +
        `(${what})${s.node.scope ? ` in formula ${s.node.scope}` : ""} produced ` +
        `${out[bad]} at index [${idx.join(", ")}] of shape ` +
        `${shapeToString(s.shape)} from finite operands`,
      s.node,
    );
  }
}

/**
 * With `checkFinite`, the first node that produced NaN or ±Inf from finite operands; the message names the node, its
 * formula, the element's index and the shape.
 */
export class NonFiniteError extends Error {
  override name = "NonFiniteError";
  /** @param node The node whose result was not finite. */
  constructor(
    message: string,
    readonly node: Node,
  ) {
    super(message);
  }
}

function firstNonFinite(a: Arr): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

/** An add whose operand `node` (a concat or scatter_add read only there) is added piecewise into `x`. */
interface Accumulation {
  readonly kind: "concat" | "scatter_add";
  readonly node: Node;
  readonly x: Node;
  /** Planned operands besides x: the concat's non-zero parts, or scatter_add's updates and indices. */
  readonly pieces: readonly Node[];
}

/** An operand read through strides: element (i₀, …) at Σ iₖ·strides[k] of `node`'s array. */
interface View {
  readonly node: Node;
  readonly strides: readonly number[];
}

/** A product on strided operands and output: the arguments of one `gemm` call. */
interface StridedProduct {
  readonly a: View;
  readonly b: View;
  readonly batch: number;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly transA: boolean;
  readonly transB: boolean;
  readonly lda: number;
  readonly ldb: number;
  readonly ldc: number;
  readonly sA: number;
  readonly sB: number;
  readonly sC: number;
}

/** A chain planned at a node: its operands (leaves), the kernel, and its tree as text. */
interface PlannedChain {
  readonly leaves: readonly Node[];
  readonly kernel: ChainKernel;
  readonly text: string;
  readonly mode: "map" | "sum" | "max";
}

/** A float unary, binary or where: a node a fused chain can compute. */
function isElementwise(n: Node): boolean {
  return (n.op === "unary" || n.op === "binary" || n.op === "where") && n.dtype === "float";
}

/** A broadcast of the constant 0 (the zero parts of a slice's cotangent). */
function isZeroFill(n: Node): boolean {
  return n.op === "broadcast" && n.x.op === "const" && n.x.value === 0;
}

function accumulation(
  n: Node,
  privateUse: (n: Node) => boolean,
  shapeOf: (n: Node) => number[],
): Accumulation | undefined {
  if (n.op !== "binary" || n.fn !== "add" || n.dtype !== "float") return undefined;
  const out = shapeOf(n);
  const full = (x: Node) => {
    const s = shapeOf(x);
    return s.length === out.length && s.every((d, i) => d === out[i]);
  };
  if (!full(n.a) || !full(n.b)) return undefined;
  for (const [c, x] of [
    [n.b, n.a],
    [n.a, n.b],
  ] as const) {
    if (!privateUse(c)) continue;
    if (c.op === "concat" && c.xs.length > 0)
      return { kind: "concat", node: c, x, pieces: c.xs.filter((p) => !isZeroFill(p)) };
    if (c.op === "scatter_add" && out.length >= 1)
      return { kind: "scatter_add", node: c, x, pieces: [c.updates, c.indices] };
  }
  return undefined;
}

/** Symbolic axis 0 is the batch prefix "..." (it stays first): expand it to its concrete axes. */
function concretePerm(perm: readonly number[], batchRank: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < batchRank; i++) out.push(i);
  for (const p of perm.slice(1)) out.push(p - 1 + batchRank);
  return out;
}

function coerceInput(t: Tensor, want: DType, int: boolean, name: string, formula: string): Arr {
  if (int) {
    if (t.dtype === "i32") return t.data as Arr;
    for (let i = 0; i < t.size; i++) {
      const v = t.data[i]!;
      if (!Number.isInteger(v))
        throw new EvalError(
          `${formula}: input ${name} must hold integer ids (i32); element [${t.unravel(i).join(", ")}] is ${v}`,
        );
    }
    return Int32Array.from(t.data) as Arr;
  }
  if (t.dtype === "i32")
    throw new EvalError(`${formula}: input ${name} must be a float tensor (${want}), got i32`);
  if (t.dtype === want) return t.data as Arr;
  const out = arrayFor(want, t.size) as Arr;
  out.set(t.data);
  return out;
}

/** Batched matmul with NumPy batch broadcasting; transposes arrive as flags. */
function matmulStep(
  a: Arr,
  aShape: readonly number[],
  transA: boolean,
  b: Arr,
  bShape: readonly number[],
  transB: boolean,
  out: Arr,
  outShape: readonly number[],
  dtype: FloatDType,
): void {
  // a vector (its rows carried by an empty batch prefix) multiplies as one row
  if (aShape.length === 1) aShape = [1, aShape[0]!];
  // logical shapes: the operand node's shape is the permuted one; the stored one is aShape
  const ra = aShape.length,
    rb = bShape.length;
  const M = transA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const Ka = transA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const N = transB ? bShape[rb - 2]! : bShape[rb - 1]!;
  const Kb = transB ? bShape[rb - 1]! : bShape[rb - 2]!;
  if (Ka !== Kb)
    throw new EvalError(
      `matmul: inner dims ${Ka} and ${Kb} differ (${shapeToString(aShape)} · ${shapeToString(bShape)})`,
    );
  const batchA = aShape.slice(0, -2),
    batchB = bShape.slice(0, -2);
  const batchO = outShape.slice(0, -2);
  const nA = K.sizeOf(batchA),
    nB = K.sizeOf(batchB),
    nO = K.sizeOf(batchO);
  const fa = a as Float64Array | Float32Array,
    fb = b as Float64Array | Float32Array,
    fo = out as Float64Array | Float32Array;
  if (nB === 1 && !transA) {
    // fold A's batch into rows: one (nA·M)×K · K×N product
    gemm({
      dtype,
      a: fa,
      b: fb,
      c: fo,
      batch: 1,
      M: nA * M,
      N,
      K: Ka,
      transA: false,
      transB,
      aBatchStride: 0,
      bBatchStride: 0,
    });
    return;
  }
  if ((nA === nO || nA === 1) && (nB === nO || nB === 1)) {
    // each operand either has every output batch or one shared by all (batch stride 0)
    gemm({
      dtype,
      a: fa,
      b: fb,
      c: fo,
      batch: nO,
      M,
      N,
      K: Ka,
      transA,
      transB,
      aBatchStride: nA === 1 ? 0 : M * Ka,
      bBatchStride: nB === 1 ? 0 : Ka * N,
    });
    return;
  }
  // general broadcast: one product per output batch index
  const sa = K.broadcastStrides(batchA, batchO),
    sb = K.broadcastStrides(batchB, batchO);
  const idx = new Array<number>(batchO.length).fill(0);
  for (let p = 0; p < nO; p++) {
    let oa = 0,
      ob = 0;
    for (let i = 0; i < idx.length; i++) {
      oa += idx[i]! * sa[i]!;
      ob += idx[i]! * sb[i]!;
    }
    gemm({
      dtype,
      a: fa.subarray(oa * M * Ka, (oa + 1) * M * Ka),
      b: fb.subarray(ob * Ka * N, (ob + 1) * Ka * N),
      c: fo.subarray(p * M * N, (p + 1) * M * N),
      batch: 1,
      M,
      N,
      K: Ka,
      transA,
      transB,
      aBatchStride: 0,
      bBatchStride: 0,
    });
    for (let i = idx.length - 1; i >= 0; i--) {
      idx[i]!++;
      if (idx[i]! < batchO[i]!) break;
      idx[i] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Typed arrays of dead intermediate values, by dtype and length, for the next step that needs
 * one: a fresh large array costs zeroing and page faults, and V8 counts it as external memory
 * that triggers garbage collections. Every compute kernel writes all of its output, so a reused
 * array needs no clearing. The pool holds at most `RUN_CAP` bytes during a run and `IDLE_CAP`
 * bytes between runs (what a repeated evaluation of a small graph needs); the rest is left to
 * the garbage collector. Evaluation is synchronous, so one pool serves every plan.
 */
class BufferPool {
  static readonly RUN_CAP = 1024 * 2 ** 20;
  static readonly IDLE_CAP = 64 * 2 ** 20;
  private readonly free = new Map<string, Arr[]>();
  private bytes = 0;

  take(dtype: DType, size: number): Arr {
    const list = this.free.get(`${dtype}:${size}`);
    const a = list?.pop();
    if (a !== undefined) {
      this.bytes -= a.byteLength;
      return a;
    }
    return arrayFor(dtype, size) as Arr;
  }

  give(a: Arr): void {
    if (a.length === 0 || this.bytes + a.byteLength > BufferPool.RUN_CAP) return;
    const key = `${dtypeOfArray(a)}:${a.length}`;
    let list = this.free.get(key);
    if (list === undefined) this.free.set(key, (list = []));
    list.push(a);
    this.bytes += a.byteLength;
  }

  /** Drop the largest arrays until at most IDLE_CAP bytes are held. */
  trim(): void {
    if (this.bytes <= BufferPool.IDLE_CAP) return;
    const all = [...this.free.values()].flat().sort((x, y) => x.byteLength - y.byteLength);
    this.free.clear();
    this.bytes = 0;
    for (const a of all) {
      if (this.bytes + a.byteLength > BufferPool.IDLE_CAP) break;
      this.give(a);
    }
  }
}

const POOL = new BufferPool();

/** What a step profiler sees: the step's node, concrete shape and operand steps. */
export interface ProfiledStep {
  readonly node: Node;
  readonly shape: readonly number[];
  readonly deps: readonly number[];
  /** Set when the step is a fused chain: the tree it computes. */
  readonly fused?: string;
}
let profiler: ((step: ProfiledStep, ms: number, inPlace: boolean) => void) | undefined;

/** Time every computed step of every run (bench/profile.ts); undefined switches it off. */
export function setStepProfiler(
  f: ((step: ProfiledStep, ms: number, inPlace: boolean) => void) | undefined,
): void {
  profiler = f;
}

// ---------------------------------------------------------------------------------------------

const planCache = new WeakMap<Graph, Map<string, Plan>>();

/** Bind the graph's dims to the given tensors and plan it (cached per graph, shapes and options). */
export function plan(
  graph: Graph,
  inputs: Readonly<Record<string, { shape: readonly number[]; dtype: string }>>,
  opts: EvalOptions = {},
): Plan {
  const dtype = opts.dtype ?? "f64";
  const key =
    `${dtype}|${opts.fused !== false}|${opts.checkFinite === true}` +
    `|${opts.keepCalls === true}` +
    `|${JSON.stringify(optimizations(opts.optimize))}` +
    `|${Object.entries(inputs)
      .map(([k, t]) => `${k}:${t.shape.join("x")}`)
      .sort()
      .join(",")}`;
  let byKey = planCache.get(graph);
  if (byKey === undefined) planCache.set(graph, (byKey = new Map()));
  const cached = byKey.get(key);
  if (cached !== undefined) return cached;
  for (const [k, t] of Object.entries(inputs)) {
    if (!(k in graph.args)) {
      throw new EvalError(
        `${graph.name} has no argument "${k}"; its arguments are ${Object.keys(graph.args).join(", ")}`,
      );
    }
    void t;
  }
  // every given argument takes part in binding, even one the outputs do not read (a zero gradient
  // still needs its shape)
  const roots = [
    ...Object.values(graph.outputs).map((e) => e.node),
    ...Object.entries(graph.args)
      .filter(([k]) => k in inputs)
      .map(([, e]) => e.node),
  ];
  const binding: Binding = bindDims(roots, inputs, {
    formula: graph.name,
    hyper: graph.hyper,
    relations: graph.relations,
  });
  const p = new Plan(graph, binding, dtype, opts);
  if (byKey.size > 16) byKey.clear();
  byKey.set(key, p);
  return p;
}

/** Evaluate every output of a graph. Dims are bound from the actual tensors. */
export function evaluate(
  graph: Graph,
  inputs: Readonly<Record<string, Tensor>>,
  opts: EvalOptions = {},
): NamedTensors {
  for (const [k, t] of Object.entries(inputs)) {
    if (!(t instanceof Tensor)) throw new TensorError(`${graph.name}: input ${k} is not a Tensor`);
  }
  return plan(graph, inputs, opts).run(inputs).outputs;
}
