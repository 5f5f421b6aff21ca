/**
 * Gradient checking — of spec graphs, of plain functions with a user-supplied VJP, and of any
 * Implementation's backward pass.
 *
 * The checked scalar is s(x) = Σ_outputs Σ(out ⊙ c) for a seeded random cotangent c. Numeric
 * derivatives are central differences in float64 with a step from the input's scale,
 * h = 2⁻¹⁷·max(1, |x_i|) (≈ u^{1/3}, the step that balances truncation O(h²) against rounding
 * O(u/h)). Each comparison's tolerance is derived, not guessed:
 *
 *   |analytic − numeric| ≤ rtol·max(|analytic|, |numeric|) + 4·(ε_trunc + ε_round) + atol
 *
 * with ε_trunc = |D(h) − D(2h)|/3 (Richardson's estimate of the O(h²) error of D(h)),
 * ε_round = 4u·Σ|out ⊙ c| / h, rtol = 1e-5 and atol = 1e-12·Σ|out ⊙ c|. A wrong rule
 * (dropped term, wrong sign or axis) moves the gradient by O(|grad|) and is caught.
 *
 * With `dtype: "f32"` the analytic gradient is computed in float32 and the allowance adds its own
 * rounding: 8× its measured change when every input moves by one float32 ulp, plus
 * 16·u₃₂·Σ|out ⊙ c| (the rounding of float32 sums whose terms are as large as the checked
 * scalar's) per entry. float32 checks are therefore weaker than float64 ones; rules are proven in
 * float64.
 *
 * Modes: `full` perturbs every element (small inputs); `fast` compares uᵀJv along random
 * directions (cost independent of input size); `bisect` re-checks each node's local VJP in
 * isolation and names the first that disagrees.
 */
import { match } from "ts-pattern";
import { concreteShape } from "../spec/bind.js";
import { withScope } from "../spec/shape.js";
import { Expr, input, make } from "../spec/expr.js";
import { callFormula, getFormula } from "../spec/formula.js";
import { dimToString } from "../spec/dims.js";
import { topoSort, type Node } from "../spec/node.js";
import type { Graph } from "./graph.js";
import { evaluate, plan, type EvalOptions } from "./evaluate.js";
import { gradGraph, vjp as graphVjp } from "./grad.js";
import { gradOperands } from "./vjp.js";
import { Rng } from "./random.js";
import { Tensor, type FloatDType, type NamedTensors } from "./tensor.js";
import type { FormulaConfig, Implementation } from "./implementation.js";

const U64 = 2 ** -53;

/** A differentiable function under test: values and a VJP, sync or async. */
export interface DiffFunction {
  readonly name: string;
  value(inputs: NamedTensors): NamedTensors | Promise<NamedTensors>;
  vjp(inputs: NamedTensors, cotangents: NamedTensors): NamedTensors | Promise<NamedTensors>;
}

/** Options of the gradient checks. */
export interface GradcheckOptions {
  /**
   * `full`: every element (sampled beyond `maxElements`); `fast` (default): random directions;
   * `bisect`: fast, then the first wrong node (graphs only).
   */
  readonly mode?: "full" | "fast" | "bisect";
  /** Seed of the random cotangents, directions and samples (default 0). */
  readonly seed?: number;
  /** Relative tolerance on top of the estimated finite-difference error (default 1e-5). */
  readonly rtol?: number;
  /** Arguments to check (default: every float argument). */
  readonly wrt?: readonly string[];
  /** Full mode: at most this many elements per argument (sampled beyond it; default 4096). */
  readonly maxElements?: number;
  /** Fast mode: random directions (default: one per argument plus one joint). */
  readonly directions?: number;
  /** Precision of the analytic gradient (numeric differences are always float64). */
  readonly dtype?: FloatDType;
  /** Failures to keep in the report (default 5). */
  readonly maxFailures?: number;
}

/**
 * One comparison that failed: the analytic and numeric derivative, their differences, and the
 * allowance they exceeded.
 */
export interface GradcheckFailure {
  /**
   * The argument, or the direction in fast mode (`direction over x`, `joint direction over 3
   * arguments`, `direction <k>`).
   */
  readonly input: string;
  /** Multi-index of the element (full mode), or [] for a direction. */
  readonly index: readonly number[];
  readonly analytic: number;
  readonly numeric: number;
  readonly absErr: number;
  readonly relErr: number;
  /** The largest |analytic − numeric| the derived tolerance allows here. */
  readonly allowed: number;
}

export interface BisectFinding {
  /** e.g. `#214 binary mul` */
  readonly node: string;
  readonly op: string;
  /** Innermost formula the node belongs to. */
  readonly formula: string | undefined;
  readonly shapes: readonly (readonly number[])[];
  readonly detail: string;
}

/**
 * The outcome of a gradient check: whether it passed, what was compared, the largest errors, and
 * the first failures.
 */
export interface GradcheckResult {
  /** The checked function's or graph's name. */
  readonly formula: string;
  readonly ok: boolean;
  readonly mode: "full" | "fast" | "bisect";
  /** Elements compared per argument (full mode), or per direction (fast mode; `joint` for the joint direction). */
  readonly checked: readonly { input: string; elements: number }[];
  readonly maxAbsErr: number;
  readonly maxRelErr: number;
  /** The first failures (at most `maxFailures`). */
  readonly failures: readonly GradcheckFailure[];
  /** Set when the check could not run (a VJP that throws or returns a wrong shape). */
  readonly error?: string;
  /** Bisect mode: the first node whose local VJP disagrees with finite differences. */
  readonly bisect?: BisectFinding | null;
  readonly seed: number;
}

function sumProduct(outs: NamedTensors, cots: NamedTensors): { s: number; abs: number } {
  let s = 0;
  let abs = 0;
  for (const [k, c] of Object.entries(cots)) {
    const o = outs[k];
    if (o === undefined) throw new Error(`output ${k} is missing`);
    for (let i = 0; i < c.size; i++) {
      if (c.data[i] === 0) continue; // non-finite outputs (masked scores) carry a zero cotangent
      const p = o.data[i]! * c.data[i]!;
      s += p;
      abs += Math.abs(p);
    }
  }
  return { s, abs };
}

/** Normal cotangent, zero where the output is not finite (−∞ masked scores have no derivative). */
function randomCotangent(rng: Rng, o: Tensor): Tensor {
  const c = rng.normalTensor(o.shape);
  for (let i = 0; i < c.size; i++) if (!Number.isFinite(o.data[i]!)) c.data[i] = 0;
  return c;
}

/** A normal direction that leaves non-finite entries (−∞ scores) alone. */
function finiteDirection(rng: Rng, x: Tensor): Tensor {
  const v = rng.normalTensor(x.shape);
  for (let i = 0; i < v.size; i++) if (!Number.isFinite(x.data[i]!)) v.data[i] = 0;
  return v;
}

function perturbed(inputs: NamedTensors, name: string, index: number, delta: number): NamedTensors {
  const t = inputs[name]!;
  const c = new Tensor("f64", t.shape, Float64Array.from(t.data));
  c.data[index] = t.data[index]! + delta;
  return { ...inputs, [name]: c };
}

function along(inputs: NamedTensors, dirs: NamedTensors, t: number): NamedTensors {
  const out: NamedTensors = { ...inputs };
  for (const [k, v] of Object.entries(dirs)) {
    const x = inputs[k]!;
    const c = new Tensor("f64", x.shape, Float64Array.from(x.data));
    for (let i = 0; i < c.size; i++) c.data[i] = x.data[i]! + t * v.data[i]!;
    out[k] = c;
  }
  return out;
}

function toF64(t: Tensor): Tensor {
  return t.dtype === "f64" ? t : t.dtype === "i32" ? t : t.to("f64");
}

/** Check a function's VJP against central differences (full or fast mode). */
export async function gradcheckFunction(
  f: DiffFunction,
  inputs: NamedTensors,
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const mode = opts.mode === "full" ? "full" : "fast";
  const seed = opts.seed ?? 0;
  const rng = new Rng(seed ^ 0x5eed);
  const rtol = opts.rtol ?? 1e-5;
  const maxFailures = opts.maxFailures ?? 5;
  const x64: NamedTensors = {};
  for (const [k, v] of Object.entries(inputs)) x64[k] = toF64(v);
  const wrt = opts.wrt ?? Object.keys(inputs).filter((k) => inputs[k]!.dtype !== "i32");
  const base: GradcheckResult = {
    formula: f.name,
    ok: false,
    mode,
    checked: [],
    maxAbsErr: 0,
    maxRelErr: 0,
    failures: [],
    seed,
  };

  let outs: NamedTensors;
  let analytic: NamedTensors;
  const cots: NamedTensors = {};
  try {
    outs = await f.value(x64);
    for (const [k, o] of Object.entries(outs))
      if (o.dtype !== "i32") cots[k] = randomCotangent(rng, o);
    analytic = await f.vjp(inputs, cots);
  } catch (e) {
    return { ...base, error: `${f.name}: ${(e as Error).message}` };
  }
  // A float32 analytic gradient carries float32 rounding, which central differences in float64
  // do not: measure it — the change of the gradient when every input moves by one float32 ulp
  // in a random direction — and allow 8× that on top of the float64 bound.
  const noise: NamedTensors = {};
  if (opts.dtype === "f32") {
    const nudged: NamedTensors = {};
    for (const [k, v] of Object.entries(inputs)) {
      if (v.dtype === "i32") nudged[k] = v;
      else {
        const c = new Tensor("f32", v.shape, Float32Array.from(v.data));
        for (let i = 0; i < c.size; i++)
          c.data[i] = c.data[i]! * (1 + 2 ** -23 * (rng.uniform() < 0.5 ? -1 : 1));
        nudged[k] = c;
      }
    }
    try {
      const again = await f.vjp(nudged, cots);
      for (const [k, g] of Object.entries(analytic)) {
        const h = again[k];
        if (h === undefined) continue;
        const d = Tensor.zeros(g.shape);
        for (let i = 0; i < g.size; i++)
          d.data[i] = Math.abs(g.data[i]! - h.data[i]!) + 2 ** -24 * Math.abs(g.data[i]!);
        noise[k] = d;
      }
    } catch (e) {
      return { ...base, error: `${f.name}: ${(e as Error).message}` };
    }
  }
  for (const w of wrt) {
    const g = analytic[w];
    if (g === undefined)
      return { ...base, error: `${f.name}: the VJP returned no gradient for ${w}` };
    if (g.shape.length !== x64[w]!.shape.length || g.shape.some((d, i) => d !== x64[w]!.shape[i])) {
      return {
        ...base,
        error:
          `${f.name}: gradient of ${w} has shape [${g.shape.join(", ")}] but ${w} ` +
          `has shape [${x64[w]!.shape.join(", ")}]`,
      };
    }
  }
  const s0 = sumProduct(outs, cots);
  // float32 sums whose terms are as large as the checked scalar's terms round to about
  // u₃₂·Σ|out ⊙ c|; allow 16× that per gradient entry in float32 mode
  const f32Sum = opts.dtype === "f32" ? 16 * 2 ** -24 * s0.abs : 0;
  const S = async (x: NamedTensors) => sumProduct(await f.value(x), cots).s;

  const failures: GradcheckFailure[] = [];
  let maxAbs = 0,
    maxRel = 0,
    nFail = 0;
  const compare = (
    input: string,
    index: readonly number[],
    a: number,
    n: number,
    trunc: number,
    h: number,
    f32noise = 0,
  ) => {
    const round = (4 * U64 * s0.abs) / h;
    const allowed =
      rtol * Math.max(Math.abs(a), Math.abs(n)) + 4 * (trunc + round) + 1e-12 * s0.abs + f32noise;
    const absErr = Math.abs(a - n);
    // relative to the larger magnitude, never below the finite-difference noise floor
    const relErr =
      absErr /
      Math.max(Math.abs(a), Math.abs(n), 4 * (trunc + round) + 1e-12 * s0.abs, Number.MIN_VALUE);
    const bad = !(absErr <= allowed);
    if (Number.isFinite(absErr)) maxAbs = Math.max(maxAbs, absErr);
    if (Number.isFinite(relErr)) maxRel = Math.max(maxRel, relErr);
    if (bad) {
      nFail++;
      if (failures.length < maxFailures)
        failures.push({ input, index, analytic: a, numeric: n, absErr, relErr, allowed });
    }
  };

  const checked: { input: string; elements: number }[] = [];
  if (mode === "full") {
    const maxEl = opts.maxElements ?? 4096;
    for (const w of wrt) {
      const x = x64[w]!;
      const g = analytic[w]!;
      const idx =
        x.size <= maxEl
          ? [...Array(x.size).keys()]
          : Array.from({ length: maxEl }, () => rng.int(x.size));
      for (const i of idx) {
        const h = 2 ** -17 * Math.max(1, Math.abs(x.data[i]!));
        const [p1, m1, p2, m2] = await Promise.all([
          S(perturbed(x64, w, i, h)),
          S(perturbed(x64, w, i, -h)),
          S(perturbed(x64, w, i, 2 * h)),
          S(perturbed(x64, w, i, -2 * h)),
        ]);
        const d1 = (p1 - m1) / (2 * h);
        const d2 = (p2 - m2) / (4 * h);
        compare(
          w,
          x.unravel(i),
          g.data[i]!,
          d1,
          Math.abs(d2 - d1) / 3,
          h,
          noise[w] === undefined ? 0 : 8 * noise[w]!.data[i]! + f32Sum,
        );
      }
      checked.push({ input: w, elements: idx.length });
    }
  } else {
    const dirSets: NamedTensors[] = [];
    const count = opts.directions ?? wrt.length + 1;
    for (let k = 0; k < count; k++) {
      const only = k < wrt.length && count === wrt.length + 1 ? [wrt[k]!] : wrt;
      const d: NamedTensors = {};
      for (const w of only) d[w] = finiteDirection(rng, x64[w]!);
      dirSets.push(d);
    }
    for (let k = 0; k < dirSets.length; k++) {
      const d = dirSets[k]!;
      let a = 0,
        scaleX = 0,
        scaleV = 0,
        n = 0,
        f32noise = 0;
      for (const [w, v] of Object.entries(d)) {
        const g = analytic[w]!;
        const x = x64[w]!;
        const nz = noise[w];
        for (let i = 0; i < v.size; i++) {
          a += g.data[i]! * v.data[i]!;
          if (nz !== undefined) f32noise += (8 * nz.data[i]! + f32Sum) * Math.abs(v.data[i]!);
          if (Number.isFinite(x.data[i]!)) scaleX = Math.max(scaleX, Math.abs(x.data[i]!));
          scaleV = Math.max(scaleV, Math.abs(v.data[i]!));
          n++;
        }
      }
      if (n === 0) continue;
      const h = (2 ** -17 * Math.max(1, scaleX)) / Math.max(scaleV, 1e-300);
      const [p1, m1, p2, m2] = await Promise.all([
        S(along(x64, d, h)),
        S(along(x64, d, -h)),
        S(along(x64, d, 2 * h)),
        S(along(x64, d, -2 * h)),
      ]);
      const d1 = (p1 - m1) / (2 * h);
      const d2 = (p2 - m2) / (4 * h);
      const names = Object.keys(d);
      compare(
        names.length === 1
          ? `direction over ${names[0]}`
          : `joint direction over ${names.length} arguments`,
        [],
        a,
        d1,
        Math.abs(d2 - d1) / 3,
        h * scaleV,
        f32noise,
      );
      checked.push({ input: names.length === 1 ? names[0]! : "joint", elements: n });
    }
  }
  return { ...base, ok: nFail === 0, checked, maxAbsErr: maxAbs, maxRelErr: maxRel, failures };
}

/** A spec graph as a DiffFunction (analytic gradient in `dtype`, values in float64). */
export function graphFunction(g: Graph, opts: EvalOptions = {}): DiffFunction {
  return {
    name: g.name,
    value: (x) => evaluate(g, x, { fused: opts.fused ?? true }),
    vjp: (x, c) => graphVjp(g, x, c, opts).grads,
  };
}

/** One formula of an Implementation as a DiffFunction (values and VJP from the implementation). */
export function implementationFunction(
  impl: Implementation,
  formula: string,
  config: FormulaConfig,
): DiffFunction {
  if (impl.backwardPass === undefined) throw new Error(`${impl.name} has no backward pass`);
  const back = impl.backwardPass.bind(impl);
  return {
    name: `${impl.name}:${formula}`,
    value: async (x) => (await impl.forward({ formula, config, inputs: x })).outputs,
    vjp: async (x, c) => (await back({ formula, config, inputs: x, cotangents: c })).grads,
  };
}

/** Gradcheck a graph; in bisect mode also locate the first node whose local VJP is wrong. */
export async function gradcheckGraph(
  g: Graph,
  inputs: NamedTensors,
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const dtype = opts.dtype ?? "f64";
  const f = graphFunction(g, { dtype });
  const result = await gradcheckFunction(f, inputs, {
    ...opts,
    mode: opts.mode === "full" ? "full" : "fast",
  });
  if (opts.mode !== "bisect") return result;
  const finding = bisect(g, inputs, opts);
  return { ...result, mode: "bisect", ok: result.ok && finding === null, bisect: finding };
}

/**
 * Second order (PyTorch's gradgradcheck): the gradient formula itself, with its cotangents as
 * extra inputs, checked against central differences.
 */
export async function gradgradcheckGraph(
  g: Graph,
  inputs: NamedTensors,
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const gg = gradGraph(g);
  const out = evaluate(g, inputs);
  const rng = new Rng((opts.seed ?? 0) ^ 0x2d2);
  const all: NamedTensors = { ...inputs };
  for (const [k, o] of Object.entries(out))
    if (o.dtype !== "i32") all[`cot.${k}`] = randomCotangent(rng, o);
  return gradcheckGraph(gg, all, opts);
}

// ---------------------------------------------------------------------------------------------
// bisect: check every node's own VJP rule at the values it sees in this evaluation

/** Rebuild a node over new operand expressions (same op and attributes). */
function rebuild(n: Node, ops: readonly Expr[]): Expr {
  const o = (i: number) => ops[i]!.node;
  return match<Node, Expr>(n)
    .with({ op: "input" }, { op: "const" }, { op: "dim" }, { op: "iota" }, () => new Expr(n))
    .with({ op: "unary" }, (n) => make({ op: "unary", fn: n.fn, x: o(0) }))
    .with({ op: "binary" }, (n) => make({ op: "binary", fn: n.fn, a: o(0), b: o(1) }))
    .with({ op: "reduce" }, (n) =>
      make({ op: "reduce", fn: n.fn, x: o(0), axes: n.axes, keepdims: n.keepdims }),
    )
    .with({ op: "reshape" }, (n) => make({ op: "reshape", x: o(0), target: n.shape }))
    .with({ op: "permute" }, (n) => make({ op: "permute", x: o(0), perm: n.perm }))
    .with({ op: "broadcast" }, (n) => make({ op: "broadcast", x: o(0), target: n.shape }))
    .with({ op: "slice" }, (n) =>
      make({ op: "slice", x: o(0), axis: n.axis, start: n.start, target: [n.shape[n.axis]!] }),
    )
    .with({ op: "concat" }, (n) => make({ op: "concat", xs: ops.map((e) => e.node), axis: n.axis }))
    .with({ op: "matmul" }, () => make({ op: "matmul", a: o(0), b: o(1) }))
    .with({ op: "gather" }, (n) => make({ op: "gather", table: o(0), indices: n.indices }))
    .with({ op: "scatter_add" }, (n) =>
      make({ op: "scatter_add", updates: o(0), indices: n.indices, target: n.shape }),
    )
    .with({ op: "where" }, (n) => make({ op: "where", cond: n.cond, a: o(0), b: o(1) }))
    .with({ op: "stopgrad" }, () => make({ op: "stopgrad", x: o(0) }))
    .with({ op: "call" }, (n) => {
      const names = Object.keys(n.args);
      const args: Record<string, Expr> = {};
      names.forEach((k, i) => (args[k] = ops[i]!));
      return callFormula(n.formula, args, n.config)[n.output]!;
    })
    .exhaustive();
}

function describe(n: Node): string {
  const what =
    n.op === "unary" || n.op === "binary" || n.op === "reduce"
      ? `${n.op} ${n.fn}`
      : n.op === "call"
        ? `call ${n.formula}`
        : n.op;
  return `#${n.id} ${what}`;
}

/**
 * Evaluate the graph keeping every value, then for each node with differentiable operands check
 * its local VJP (the rule, or a formula's custom VJP) against central differences at those values.
 * Returns the first disagreeing node in evaluation order, or null.
 */
export function bisect(
  g: Graph,
  inputs: NamedTensors,
  opts: GradcheckOptions = {},
): BisectFinding | null {
  const roots = Object.values(g.outputs).map((e) => e.node);
  const binding = plan(g, inputs, { fused: false }).binding;
  const order = topoSort(roots);
  // only nodes on a differentiable path from the float arguments, with a nonzero rule
  const argNodes = new Set(
    Object.values(g.args)
      .filter((e) => e.node.dtype === "float")
      .map((e) => e.node),
  );
  const depends = new Set<Node>();
  for (const n of order)
    if (argNodes.has(n) || (n.op !== "stopgrad" && gradOperands(n).some((o) => depends.has(o))))
      depends.add(n);
  const piecewiseConstant = (n: Node) =>
    (n.op === "binary" && (n.fn === "eq" || n.fn === "lt" || n.fn === "le")) ||
    (n.op === "unary" && (n.fn === "step" || n.fn === "floor"));
  // values of every node: evaluate a graph whose outputs are all the nodes we need
  const nodes = order.filter(
    (n) => n.dtype === "float" && depends.has(n) && n.op !== "input" && !piecewiseConstant(n),
  );
  const need = new Set<Node>();
  for (const n of nodes) for (const o of localOperands(n)) if (depends.has(o)) need.add(o);
  const outs: Record<string, Expr> = {};
  const byNode = new Map<Node, string>();
  for (const n of need) {
    const k = `n${n.id}`;
    outs[k] = new Expr(n);
    byNode.set(n, k);
  }
  const vals = evaluate({ ...g, name: `${g.name} (bisect)`, outputs: outs }, inputs, {
    fused: false,
  });
  const dims: Record<string, number> = {};
  for (const [k, v] of binding.dims) if (k !== "...") dims[k] = v;
  for (const n of nodes) {
    const ops = localOperands(n);
    // perturb only operands on a differentiable path (a mask of −∞ stays as it is)
    const live = (o: Node) => o.dtype === "float" && depends.has(o);
    if (!ops.some(live)) continue;
    const leaves = ops.map((o, i) =>
      live(o) ? input(`operand${i}`, o.shape.map(dimToString)) : new Expr(o),
    );
    let local: Expr;
    try {
      // rebuilt in the node's own formula scope, so messages (and planted-rule predicates) see it
      local =
        n.scope === undefined ? rebuild(n, leaves) : withScope(n.scope, () => rebuild(n, leaves));
    } catch (e) {
      continue;
    }
    const localInputs: NamedTensors = {};
    ops.forEach((o, i) => {
      if (live(o)) localInputs[`operand${i}`] = vals[byNode.get(o)!]!;
    });
    const args: Record<string, Expr> = {};
    leaves.forEach((l, i) => {
      if (live(ops[i]!)) args[`operand${i}`] = l;
    });
    // operands the rule does not differentiate (token ids, where's condition) stay original
    // nodes: the local graph may read any original argument
    for (const [name, e] of Object.entries(g.args)) {
      if (!(name in args)) args[name] = e;
      if (!(name in localInputs) && inputs[name] !== undefined) localInputs[name] = inputs[name]!;
    }
    const lg: Graph = {
      name: `${describe(n)}`,
      config: {},
      args,
      outputs: { y: local },
      relations: [],
      hyper: new Map(Object.entries(dims)),
    };
    let res: GradcheckResult | undefined;
    let err: string | undefined;
    try {
      // gradcheckFunction is async only for external functions; graphs resolve synchronously
      res = runSync(lg, localInputs, opts.seed ?? 0);
    } catch (e) {
      err = (e as Error).message;
    }
    if (err !== undefined || (res !== undefined && !res.ok)) {
      const f = res?.failures[0];
      return {
        node: describe(n),
        op: n.op,
        formula: n.scope,
        shapes: ops.map((o) => concreteShape(o.shape, binding)),
        detail:
          err ??
          res?.error ??
          (f
            ? `along ${f.input}: analytic ${f.analytic.toExponential(6)} vs numeric ` +
              `${f.numeric.toExponential(6)} (allowed ${f.allowed.toExponential(2)})`
            : "check failed"),
      };
    }
  }
  return null;
}

/** Operands checked by bisect: the rule's own operands (a formula call with a custom VJP: its args). */
function localOperands(n: Node): readonly Node[] {
  if (n.op === "call") return getFormula(n.formula).vjp !== undefined ? Object.values(n.args) : [];
  if (n.op === "gather" || n.op === "scatter_add" || n.op === "where")
    return n.op === "where" ? [n.a, n.b] : n.op === "gather" ? [n.table] : [n.updates];
  return gradOperands(n);
}

/** Fast-mode check of a small graph, synchronously (two random directions). */
function runSync(g: Graph, inputs: NamedTensors, seed: number): GradcheckResult {
  const rng = new Rng(seed ^ 0xb15ec7);
  const out = evaluate(g, inputs, { fused: false });
  const cots: NamedTensors = {};
  for (const [k, o] of Object.entries(out)) cots[k] = randomCotangent(rng, o);
  const wrt = Object.keys(inputs).filter((k) => k.startsWith("operand"));
  const grads = graphVjp(g, inputs, cots, { fused: false, wrt }).grads;
  for (const w of wrt) {
    const gw = grads[w]!;
    const x = inputs[w]!;
    if (gw.shape.length !== x.shape.length || gw.shape.some((d, i) => d !== x.shape[i])) {
      return {
        formula: g.name,
        ok: false,
        mode: "fast",
        checked: [],
        maxAbsErr: NaN,
        maxRelErr: NaN,
        failures: [],
        seed,
        error:
          `VJP gives ${w} a gradient of shape [${gw.shape.join(", ")}] for an ` +
          `operand of shape [${x.shape.join(", ")}]`,
      };
    }
  }
  const s0 = sumProduct(out, cots);
  const failures: GradcheckFailure[] = [];
  let maxAbs = 0,
    maxRel = 0;
  for (let k = 0; k < 2; k++) {
    const d: NamedTensors = {};
    for (const w of wrt) d[w] = finiteDirection(rng, inputs[w]!);
    let a = 0,
      sx = 0;
    for (const w of wrt) {
      for (let i = 0; i < d[w]!.size; i++) {
        a += grads[w]!.data[i]! * d[w]!.data[i]!;
        if (Number.isFinite(inputs[w]!.data[i]!)) sx = Math.max(sx, Math.abs(inputs[w]!.data[i]!));
      }
    }
    const h = 2 ** -17 * Math.max(1, sx);
    const S = (t: number) => sumProduct(evaluate(g, along(inputs, d, t), { fused: false }), cots).s;
    const d1 = (S(h) - S(-h)) / (2 * h);
    const d2 = (S(2 * h) - S(-2 * h)) / (4 * h);
    const trunc = Math.abs(d2 - d1) / 3;
    const round = (4 * U64 * s0.abs) / h;
    const allowed =
      1e-5 * Math.max(Math.abs(a), Math.abs(d1)) + 4 * (trunc + round) + 1e-12 * s0.abs;
    const absErr = Math.abs(a - d1);
    maxAbs = Math.max(maxAbs, absErr);
    maxRel = Math.max(maxRel, absErr / Math.max(Math.abs(d1), 1e-300));
    if (!(absErr <= allowed))
      failures.push({
        input: `direction ${k}`,
        index: [],
        analytic: a,
        numeric: d1,
        absErr,
        relErr: absErr / Math.max(Math.abs(d1), 1e-300),
        allowed,
      });
  }
  return {
    formula: g.name,
    ok: failures.length === 0,
    mode: "fast",
    checked: [],
    maxAbsErr: maxAbs,
    maxRelErr: maxRel,
    failures,
    seed,
  };
}
