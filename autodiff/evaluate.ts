/**
 * The interpreter: bind dims, plan the graph once (concrete shapes, order, buffer lifetimes,
 * transposes absorbed into matmul, fused kernels), then run the plan — one kernel per primitive,
 * dispatched exhaustively over the op set.
 */
import { match } from "ts-pattern";
import { bindDims, concreteShape, type Binding } from "../spec/bind.js";
import { BATCH, evalDim, dimToString } from "../spec/dims.js";
import { topoSort, type Node, type NodeOf } from "../spec/node.js";
import type { Graph } from "./graph.js";
import * as K from "./kernels/ops.js";
import { FUSED } from "./kernels/fused.js";
import { gemm } from "./gemm.js";
import { Tensor, TensorError, arrayFor, shapeToString, type DType, type FloatDType, type NamedTensors } from "./tensor.js";

export class EvalError extends Error {
  override name = "EvalError";
}

export interface EvalOptions {
  /** Float precision of every float node (default f64). */
  readonly dtype?: FloatDType;
  /** Use fused kernels for formulas that have one (default true). */
  readonly fused?: boolean;
  /** Stop at the first node that turns finite operands into NaN/Inf and name it. */
  readonly checkFinite?: boolean;
  /** Also return the value of every `call` node, keyed `formula#id` (for localisation). */
  readonly keepCalls?: boolean;
}

type Arr = K.Arr;

interface Step {
  readonly node: Node;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Indices of the steps whose values this step reads. */
  readonly deps: readonly number[];
  run(vals: (Arr | undefined)[]): Arr;
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
function concreteAxes(sym: readonly Node["shape"][number][], axes: readonly number[], batchRank: number): number[] {
  const hasBatch = sym[0] === BATCH;
  const out: number[] = [];
  for (const a of axes) {
    if (!hasBatch) out.push(a);
    else if (a === 0) for (let i = 0; i < batchRank; i++) out.push(i);
    else out.push(a - 1 + batchRank);
  }
  return out.sort((x, y) => x - y);
}

export class Plan {
  readonly steps: Step[] = [];
  private readonly index = new Map<Node, number>();
  readonly outputIndex: Record<string, number> = {};
  readonly inputSteps: { name: string; step: number; int: boolean }[] = [];
  private readonly lastUse: number[] = [];
  private readonly keep = new Set<number>();

  constructor(
    readonly graph: Graph,
    readonly binding: Binding,
    readonly dtype: FloatDType,
    readonly opts: EvalOptions,
  ) {
    const roots = Object.values(graph.outputs).map((e) => e.node);
    // Dependencies after planning decisions: transposes folded into matmul, fused calls read their args.
    const depsOf = (n: Node): Node[] => {
      if (n.op === "matmul") return [isSwapLast(n.a) ? n.a.x : n.a, isSwapLast(n.b) ? n.b.x : n.b];
      if (n.op === "call") {
        const f = opts.fused !== false ? FUSED[n.formula] : undefined;
        return f !== undefined ? f.args.map((a) => n.args[a]!) : [n.body];
      }
      return [...operandsOf(n)];
    };
    // iterative post-order over planned deps
    const order: Node[] = [];
    const seen = new Set<Node>();
    for (const r of roots) {
      if (seen.has(r)) continue;
      const stack: [Node, number, Node[]][] = [[r, 0, depsOf(r)]];
      seen.add(r);
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        if (top[1] < top[2].length) {
          const c = top[2][top[1]++]!;
          if (!seen.has(c)) {
            seen.add(c);
            stack.push([c, 0, depsOf(c)]);
          }
        } else {
          stack.pop();
          order.push(top[0]);
        }
      }
    }
    for (const n of order) {
      const i = this.steps.length;
      this.index.set(n, i);
      this.steps.push(this.makeStep(n, depsOf(n).map((d) => this.index.get(d)!)));
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
  }

  private shapeOf(n: Node): number[] {
    return concreteShape(n.shape, this.binding);
  }

  private makeStep(n: Node, deps: number[]): Step {
    const shape = this.shapeOf(n);
    const dtype: DType = n.dtype === "int" ? "i32" : this.dtype;
    const size = K.sizeOf(shape);
    const alloc = (): Arr => arrayFor(dtype, size) as Arr;
    const b = this.binding;
    const st = this.steps;
    const shp = (k: number): readonly number[] => st[deps[k]!]!.shape;
    const dimVal = (d: Parameters<typeof evalDim>[0]): number => {
      const v = evalDim(d, b.dims);
      if (v === undefined) throw new EvalError(`dim ${dimToString(d)} is not bound`);
      return v;
    };
    const run = match<Node, (v: (Arr | undefined)[]) => Arr>(n)
      .with({ op: "input" }, (n) => {
        this.inputSteps.push({ name: n.name, step: st.length, int: n.dtype === "int" });
        return () => {
          throw new EvalError(`input ${n.name} was not provided`);
        };
      })
      .with({ op: "const" }, (n) => () => {
        const o = alloc();
        o[0] = n.value;
        return o;
      })
      .with({ op: "dim" }, (n) => {
        const v = dimVal(n.dim);
        return () => {
          const o = alloc();
          o[0] = v;
          return o;
        };
      })
      .with({ op: "iota" }, (n) => () => {
        const o = alloc();
        K.iota(o, shape, n.axis);
        return o;
      })
      .with({ op: "unary" }, (n) => (v) => {
        const o = alloc();
        K.unary(n.fn, v[deps[0]!]!, o);
        return o;
      })
      .with({ op: "binary" }, (n) => (v) => {
        const o = alloc();
        K.binary(n.fn, v[deps[0]!]!, shp(0), v[deps[1]!]!, shp(1), o, shape);
        return o;
      })
      .with({ op: "reduce" }, (n) => {
        const axes = concreteAxes(n.x.shape, n.axes, b.batch.length);
        return (v) => {
          const o = alloc();
          K.reduce(n.fn, v[deps[0]!]!, shp(0), axes, o);
          return o;
        };
      })
      .with({ op: "reshape" }, () => (v) => v[deps[0]!]!)
      .with({ op: "stopgrad" }, () => (v) => v[deps[0]!]!)
      .with({ op: "call" }, (n) => {
        const f = this.opts.fused !== false ? FUSED[n.formula] : undefined;
        if (f === undefined) return (v) => v[deps[0]!]!;
        return (v) => {
          const o = alloc();
          f.run(deps.map((d) => v[d]!), deps.map((d) => st[d]!.shape), o, n.config);
          return o;
        };
      })
      .with({ op: "permute" }, (n) => {
        const perm = n.x.shape[0] === BATCH ? concretePerm(n.perm, b.batch.length) : [...n.perm];
        return (v) => {
          const o = alloc();
          K.permute(v[deps[0]!]!, shp(0), perm, o);
          return o;
        };
      })
      .with({ op: "broadcast" }, () => (v) => {
        const o = alloc();
        K.broadcast(v[deps[0]!]!, shp(0), o, shape);
        return o;
      })
      .with({ op: "slice" }, (n) => {
        const axis = n.x.shape[0] === BATCH ? n.axis - 1 + b.batch.length : n.axis;
        const start = dimVal(n.start);
        return (v) => {
          const xs = shp(0);
          const size = shape[axis]!;
          if (start < 0 || start + size > xs[axis]!) {
            throw new EvalError(`slice of ${n.scope ?? "graph"}: elements ${start}…${start + size - 1} along axis ${axis} are outside [0, ${xs[axis]})`);
          }
          const o = alloc();
          K.slice(v[deps[0]!]!, xs, axis, start, size, o);
          return o;
        };
      })
      .with({ op: "concat" }, (n) => {
        const axis = n.xs[0]!.shape[0] === BATCH ? n.axis - 1 + b.batch.length : n.axis;
        return (v) => {
          const o = alloc();
          K.concat(deps.map((d) => v[d]!), deps.map((d) => st[d]!.shape), axis, o);
          return o;
        };
      })
      .with({ op: "matmul" }, (n) => {
        const transA = isSwapLast(n.a);
        const transB = isSwapLast(n.b);
        return (v) => {
          const o = alloc();
          matmulStep(v[deps[0]!]!, shp(0), transA, v[deps[1]!]!, shp(1), transB, o, shape, this.dtype);
          return o;
        };
      })
      .with({ op: "gather" }, (n) => () => {
        throw new EvalError(`internal: gather ${n.id} not planned`);
      })
      .with({ op: "scatter_add" }, () => (v) => {
        const o = alloc();
        K.scatterAdd(v[deps[0]!]!, v[deps[1]!]!, o, shape, `scatter_add${n.scope ? ` in ${n.scope}` : ""}`);
        return o;
      })
      .with({ op: "where" }, () => (v) => {
        const o = alloc();
        K.where(v[deps[0]!]!, shp(0), v[deps[1]!]!, shp(1), v[deps[2]!]!, shp(2), o, shape);
        return o;
      })
      .exhaustive();
    const gatherRun =
      n.op === "gather"
        ? (v: (Arr | undefined)[]) => {
            const o = alloc();
            K.gather(v[deps[0]!]!, shp(0), v[deps[1]!]!, o, `gather${n.scope ? ` in ${n.scope}` : ""} (token ids into a table of ${shp(0)[0]} rows)`);
            return o;
          }
        : run;
    return { node: n, shape, dtype, deps, run: gatherRun };
  }

  /** Run the plan on named input tensors. */
  run(inputs: Readonly<Record<string, Tensor>>): { outputs: NamedTensors; calls: Map<Node, Tensor> } {
    const vals: (Arr | undefined)[] = new Array(this.steps.length);
    for (const { name, step, int } of this.inputSteps) {
      const t = inputs[name];
      const s = this.steps[step]!;
      if (t === undefined) throw new EvalError(`${this.graph.name}: input ${name} was not provided`);
      vals[step] = coerceInput(t, s.dtype, int, name, this.graph.name);
    }
    const calls = new Map<Node, Tensor>();
    const n = this.steps.length;
    for (let i = 0; i < n; i++) {
      const s = this.steps[i]!;
      if (s.node.op !== "input") {
        const out = s.run(vals);
        if (this.opts.checkFinite) this.checkFinite(s, out, vals);
        vals[i] = out;
        if (this.opts.keepCalls && s.node.op === "call") calls.set(s.node, new Tensor(s.dtype, s.shape, out));
      }
      // free operands whose last use was this step (views share buffers: reshape keeps its source alive)
      for (const d of s.deps) if (this.lastUse[d] === i && !this.keep.has(d) && !aliases(this.steps, d, i)) vals[d] = undefined;
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
    const what = s.node.op === "unary" ? `unary ${s.node.fn}` : s.node.op === "binary" ? `binary ${s.node.fn}` : s.node.op === "call" ? `call ${s.node.formula}` : s.node.op;
    throw new NonFiniteError(
      `first non-finite value: node #${s.node.id} (${what})${s.node.scope ? ` in formula ${s.node.scope}` : ""} produced ${out[bad]} at index [${idx.join(", ")}] of shape ${shapeToString(s.shape)} from finite operands`,
      s.node,
    );
  }
}

export class NonFiniteError extends Error {
  override name = "NonFiniteError";
  constructor(message: string, readonly node: Node) {
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

/** A reshape/stopgrad/fusable call returns its operand's buffer: the operand must outlive it. */
function aliases(steps: readonly Step[], d: number, i: number): boolean {
  const op = steps[i]!.node.op;
  return (op === "reshape" || op === "stopgrad" || (op === "call" && steps[i]!.deps.length === 1 && !FUSED_KEYS.has((steps[i]!.node as NodeOf<"call">).formula))) && steps[i]!.deps[0] === d;
}
const FUSED_KEYS = new Set(Object.keys(FUSED));

function operandsOf(n: Node): readonly Node[] {
  switch (n.op) {
    case "input":
    case "const":
    case "dim":
    case "iota":
      return [];
    case "unary":
    case "reduce":
    case "reshape":
    case "permute":
    case "broadcast":
    case "slice":
    case "stopgrad":
      return [n.x];
    case "binary":
    case "matmul":
      return [n.a, n.b];
    case "concat":
      return n.xs;
    case "gather":
      return [n.table, n.indices];
    case "scatter_add":
      return [n.updates, n.indices];
    case "where":
      return [n.cond, n.a, n.b];
    case "call":
      return [n.body];
  }
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
      if (!Number.isInteger(v)) throw new EvalError(`${formula}: input ${name} must hold integer ids (i32); element [${t.unravel(i).join(", ")}] is ${v}`);
    }
    return Int32Array.from(t.data) as Arr;
  }
  if (t.dtype === "i32") throw new EvalError(`${formula}: input ${name} must be a float tensor (${want}), got i32`);
  if (t.dtype === want) return t.data as Arr;
  const out = arrayFor(want, t.size) as Arr;
  out.set(t.data);
  return out;
}

/** Batched matmul with NumPy batch broadcasting; transposes arrive as flags. */
function matmulStep(a: Arr, aShape: readonly number[],  transA: boolean, b: Arr, bShape: readonly number[], transB: boolean, out: Arr, outShape: readonly number[], dtype: FloatDType): void {
  // a vector (its rows carried by an empty batch prefix) multiplies as one row
  if (aShape.length === 1) aShape = [1, aShape[0]!];
  // logical shapes: the operand node's shape is the permuted one; the stored one is aShape
  const ra = aShape.length, rb = bShape.length;
  const M = transA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const Ka = transA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const N = transB ? bShape[rb - 2]! : bShape[rb - 1]!;
  const Kb = transB ? bShape[rb - 1]! : bShape[rb - 2]!;
  if (Ka !== Kb) throw new EvalError(`matmul: inner dims ${Ka} and ${Kb} differ (${shapeToString(aShape)} · ${shapeToString(bShape)})`);
  const batchA = aShape.slice(0, -2), batchB = bShape.slice(0, -2);
  const batchO = outShape.slice(0, -2);
  const nA = K.sizeOf(batchA), nB = K.sizeOf(batchB), nO = K.sizeOf(batchO);
  const fa = a as Float64Array | Float32Array, fb = b as Float64Array | Float32Array, fo = out as Float64Array | Float32Array;
  if (nB === 1 && !transA) {
    // fold A's batch into rows: one (nA·M)×K · K×N product
    gemm({ dtype, a: fa, b: fb, c: fo, batch: 1, M: nA * M, N, K: Ka, transA: false, transB, aBatchStride: 0, bBatchStride: 0 });
    return;
  }
  if (nA === nO && nB === nO) {
    gemm({ dtype, a: fa, b: fb, c: fo, batch: nO, M, N, K: Ka, transA, transB, aBatchStride: M * Ka, bBatchStride: Ka * N });
    return;
  }
  if (nA === nO && nB === 1) {
    gemm({ dtype, a: fa, b: fb, c: fo, batch: nO, M, N, K: Ka, transA, transB, aBatchStride: M * Ka, bBatchStride: 0 });
    return;
  }
  if (nA === 1 && nB === nO) {
    gemm({ dtype, a: fa, b: fb, c: fo, batch: nO, M, N, K: Ka, transA, transB, aBatchStride: 0, bBatchStride: Ka * N });
    return;
  }
  // general broadcast: one product per output batch index
  const sa = K.broadcastStrides(batchA, batchO), sb = K.broadcastStrides(batchB, batchO);
  const idx = new Array<number>(batchO.length).fill(0);
  for (let p = 0; p < nO; p++) {
    let oa = 0, ob = 0;
    for (let i = 0; i < idx.length; i++) {
      oa += idx[i]! * sa[i]!;
      ob += idx[i]! * sb[i]!;
    }
    gemm({
      dtype,
      a: fa.subarray(oa * M * Ka, (oa + 1) * M * Ka),
      b: fb.subarray(ob * Ka * N, (ob + 1) * Ka * N),
      c: fo.subarray(p * M * N, (p + 1) * M * N),
      batch: 1, M, N, K: Ka, transA, transB, aBatchStride: 0, bBatchStride: 0,
    });
    for (let i = idx.length - 1; i >= 0; i--) {
      idx[i]!++;
      if (idx[i]! < batchO[i]!) break;
      idx[i] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------

const planCache = new WeakMap<Graph, Map<string, Plan>>();

/** Bind the graph's dims to the given tensors and plan it (cached per graph, shapes and options). */
export function plan(graph: Graph, inputs: Readonly<Record<string, { shape: readonly number[]; dtype: string }>>, opts: EvalOptions = {}): Plan {
  const dtype = opts.dtype ?? "f64";
  const key = `${dtype}|${opts.fused !== false}|${opts.checkFinite === true}|${opts.keepCalls === true}|${Object.entries(inputs)
    .map(([k, t]) => `${k}:${t.shape.join("x")}`)
    .sort()
    .join(",")}`;
  let byKey = planCache.get(graph);
  if (byKey === undefined) planCache.set(graph, (byKey = new Map()));
  const cached = byKey.get(key);
  if (cached !== undefined) return cached;
  for (const [k, t] of Object.entries(inputs)) {
    if (!(k in graph.args)) {
      throw new EvalError(`${graph.name} has no argument "${k}"; its arguments are ${Object.keys(graph.args).join(", ")}`);
    }
    void t;
  }
  // every given argument takes part in binding, even one the outputs do not read (a zero gradient
  // still needs its shape)
  const roots = [...Object.values(graph.outputs).map((e) => e.node), ...Object.entries(graph.args).filter(([k]) => k in inputs).map(([, e]) => e.node)];
  const binding: Binding = bindDims(roots, inputs, { formula: graph.name, hyper: graph.hyper, relations: graph.relations });
  const p = new Plan(graph, binding, dtype, opts);
  if (byKey.size > 16) byKey.clear();
  byKey.set(key, p);
  return p;
}

/** Evaluate every output of a graph. Dims are bound from the actual tensors. */
export function evaluate(graph: Graph, inputs: Readonly<Record<string, Tensor>>, opts: EvalOptions = {}): NamedTensors {
  for (const [k, t] of Object.entries(inputs)) {
    if (!(t instanceof Tensor)) throw new TensorError(`${graph.name}: input ${k} is not a Tensor`);
  }
  return plan(graph, inputs, opts).run(inputs).outputs;
}

export { topoSort };
