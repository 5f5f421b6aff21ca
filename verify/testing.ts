/**
 * Test support: implementations with a mistake planted consistently through every formula that
 * contains the broken one, the way a real port carries a bug — an off-by-one causal mask breaks
 * `causal_mask`, `attention`, `mha`, every block and `gpt` alike.
 *
 * The reference graph of the requested formula is rebuilt with each application of the broken
 * formula replaced by a planted expression (spec primitives, so the planted implementation is
 * still evaluated and differentiated by the engine), then evaluated without fused kernels (a
 * fused kernel would compute the original formula from its arguments).
 */
import "../spec/index.js";
import { callFormula, formulaNames, getFormula } from "../spec/formula.js";
import { subDim, dimToString } from "../spec/dims.js";
import { add, constant, dimValue, div, Expr, iota, le, matmul, mul, sqrt, transpose, where } from "../spec/expr.js";
import type { Node, NodeOf } from "../spec/node.js";
import { topoSort } from "../spec/node.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type { Graph } from "../autodiff/graph.js";
import { ImplementationError } from "../autodiff/implementation.js";
import type { BackwardRequest, BackwardResult, ForwardRequest, ForwardResult, Implementation } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { Capabilities, FormulaCapability } from "../autodiff/capabilities.js";
import { referenceImplementation } from "../reference/implementation.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { referenceGraph } from "../reference/implementation.js";
import { knownConfig } from "./trace.js";

type CallNode = NodeOf<"call">;

/** A planted mistake: for an application of a formula, the expression that replaces it (or undefined to keep it). */
export type Plant = (call: CallNode) => Expr | undefined;

/** Rebuild a node with new operands (same id, label and shape). */
function withOperands(n: Node, m: (x: Node) => Node): Node {
  switch (n.op) {
    case "input":
    case "const":
    case "dim":
    case "iota":
      return n;
    case "unary":
    case "reduce":
    case "reshape":
    case "permute":
    case "broadcast":
    case "slice":
    case "stopgrad":
      return m(n.x) === n.x ? n : { ...n, x: m(n.x) };
    case "binary":
    case "matmul":
      return m(n.a) === n.a && m(n.b) === n.b ? n : { ...n, a: m(n.a), b: m(n.b) };
    case "concat":
      return n.xs.every((x) => m(x) === x) ? n : { ...n, xs: n.xs.map(m) };
    case "gather":
      return m(n.table) === n.table && m(n.indices) === n.indices ? n : { ...n, table: m(n.table), indices: m(n.indices) };
    case "scatter_add":
      return m(n.updates) === n.updates && m(n.indices) === n.indices ? n : { ...n, updates: m(n.updates), indices: m(n.indices) };
    case "where":
      return m(n.cond) === n.cond && m(n.a) === n.a && m(n.b) === n.b ? n : { ...n, cond: m(n.cond), a: m(n.a), b: m(n.b) };
    case "call": {
      const args: Record<string, Node> = {};
      let changed = m(n.body) !== n.body;
      for (const [k, v] of Object.entries(n.args)) {
        args[k] = m(v);
        if (args[k] !== v) changed = true;
      }
      return changed ? { ...n, args, body: m(n.body) } : n;
    }
  }
}

function argNodes(n: Node): readonly Node[] {
  return n.op === "call" ? Object.values(n.args) : [];
}

/** The graph with every call the plant answers replaced (its arguments rewritten first). */
export function plantInGraph(g: Graph, plant: Plant): Graph {
  const roots = Object.values(g.outputs).map((e) => e.node);
  // call arguments are reached through the body, but list them too so they are mapped first
  const order = topoSort([...roots, ...roots.flatMap(argNodes)]);
  const memo = new Map<Node, Node>();
  const m = (x: Node): Node => memo.get(x) ?? x;
  for (const n of order) {
    let out = withOperands(n, m);
    if (out.op === "call") {
      const replaced = plant(out);
      if (replaced !== undefined) out = replaced.node;
    }
    memo.set(n, out);
  }
  const outputs: Record<string, Expr> = {};
  for (const [k, e] of Object.entries(g.outputs)) outputs[k] = new Expr(m(e.node));
  return { ...g, name: `${g.name} (planted)`, outputs };
}

function dtypeOf(inputs: NamedTensors, config: Readonly<Record<string, unknown>>): FloatDType {
  const d = config["dtype"];
  if (d === "f32" || d === "f64") return d;
  return Object.values(inputs).some((t) => t.dtype === "f32") ? "f32" : "f64";
}

/**
 * An Implementation computing every registry formula through the reference with `plant`
 * applied (forward and backward), declaring `formulas` (default: every registry formula).
 */
export function plantedGraphImplementation(name: string, plant: Plant, formulas?: readonly string[]): Implementation {
  const graphs = new Map<string, Graph>();
  const graphOf = (formula: string, config: Readonly<Record<string, number | string | boolean>>): Graph => {
    const cfg = knownConfig(formula, config);
    const key = `${formula}|${JSON.stringify(cfg)}`;
    let g = graphs.get(key);
    if (g === undefined) {
      g = plantInGraph(referenceGraph(formula, cfg), plant);
      graphs.set(key, g);
    }
    return g;
  };
  const declared = formulas ?? ["softmax", "logsumexp", "log_softmax", "causal_mask", "alibi_bias", "attention", "split_heads", "merge_heads", "mha", "layer_norm", "rms_norm", "gelu", "gelu_tanh", "relu", "silu", "linear", "ffn", "swiglu", "embedding", "positional_sinusoidal", "positional_learned", "rope", "logits", "cross_entropy", "block", "block_post_ln", "block_pre_ln", "gpt"];
  return {
    name,
    formulas: declared,
    backward: true,
    dtypes: ["f64", "f32"],
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      return { outputs: evaluate(graphOf(req.formula, req.config), req.inputs, { dtype: dtypeOf(req.inputs, req.config), fused: false }) };
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      return { grads: vjp(graphOf(req.formula, req.config), req.inputs, req.cotangents, { dtype: dtypeOf(req.inputs, req.config), fused: false }).grads };
    },
  };
}

/** The causal mask with `shift` extra visible keys: M[i, j] = 0 iff j ≤ i + (m − n) + shift. */
export function plantMaskShift(shift: number): Plant {
  return (call) => {
    if (call.formula !== "causal_mask") return undefined;
    const [n, m] = call.shape as [Parameters<typeof dimToString>[0], Parameters<typeof dimToString>[0]];
    const shape = [dimToString(n), dimToString(m)] as const;
    const i = iota(shape, 0);
    const j = iota(shape, 1);
    return where(le(j, add(i, add(dimValue(subDim(m, n)), constant(shift)))), 0, Number.NEGATIVE_INFINITY);
  };
}

/** GELU computed with the tanh approximation wherever the erf form is asked for. */
export const plantGeluTanh: Plant = (call) => (call.formula === "gelu" ? callFormula("gelu_tanh", { x: new Expr(call.args["x"]!) })["y"] : undefined);

/** Attention scores scaled by 1/√d_model = 1/√(H·d_k) instead of 1/√d_k (inside `mha`, where H is known). */
export const plantScaleDModel: Plant = (call) => {
  if (call.formula !== "attention" || call.config["alibi"] === true) return undefined;
  const H = call.config["H"];
  if (typeof H !== "number") return undefined;
  const Q = new Expr(call.args["Q"]!);
  const K = new Expr(call.args["K"]!);
  const V = new Expr(call.args["V"]!);
  const d_k = Q.shape[Q.shape.length - 1]!;
  let scores: Expr = mul(div(matmul(Q, transpose(K)), sqrt(dimValue(d_k))), constant(1 / Math.sqrt(H)));
  if (call.config["causal"] === true) scores = add(scores, callFormula("causal_mask", {}, { n: dimToString(Q.shape[Q.shape.length - 2]!), m: dimToString(K.shape[K.shape.length - 2]!) })["y"]!);
  return matmul(callFormula("softmax", { x: scores })["y"]!, V);
};

/** A post-LN block computed with the pre-LN placement: every part right, the composition wrong. */
export const plantPrePlacement: Plant = (call) => {
  if (call.formula !== "block" || call.config["placement"] !== "post" || call.config["parallel"] === true) return undefined;
  const args: Record<string, Expr> = {};
  for (const [k, v] of Object.entries(call.args)) args[k] = new Expr(v);
  return callFormula("block", args, { ...call.config, placement: "pre" })[call.output];
};

/** An error answer as a process's would read (the implementation declines the request and keeps running). */
export function declinedError(impl: string, what: string, message: string): ImplementationError {
  return new ImplementationError(`implementation \`${impl}\` reported an error for ${what} (request 0): ${message}`, { kind: "declined" });
}

/**
 * One configuration per formula, derived from the registry: every hyperparameter with a default
 * at that default, except GPT-2's choices (tanh GELU, pre-LN), with self-attention only (m = n
 * for the formulas with a causal switch) and no grouped heads (H_kv = H).
 */
export function oneConfigurationCapabilities(): Capabilities {
  const overrides: Readonly<Record<string, number | string | boolean>> = { activation: "gelu_tanh", placement: "pre" };
  const out: Record<string, FormulaCapability> = {};
  for (const f of formulaNames()) {
    const config: Record<string, readonly (number | string | boolean)[]> = {};
    for (const h of getFormula(f).hyper) {
      const v = overrides[h.name] !== undefined && (h.choices === undefined || h.choices.includes(String(overrides[h.name]))) ? overrides[h.name] : h.default;
      if (v !== undefined) config[h.name] = [v];
    }
    // self-attention only: for the formulas with a causal switch (softmax's m is its row length)
    const causal = getFormula(f).hyper.some((h) => h.name === "causal");
    out[f] = { config, dims: { ...(causal ? { m: { equals: "n" } } : {}), H_kv: { equals: "H" } } };
  }
  return out;
}

/**
 * The reference restricted to `capabilities`: it declines every request outside them, as a port
 * that supports one configuration per formula does. With `declare: false` it does not say so in
 * advance (every limit shows up only as a decline).
 */
export function restrictedImplementation(capabilities: Capabilities = oneConfigurationCapabilities(), opts: { declare?: boolean; dtypes?: readonly FloatDType[] } = {}): Implementation {
  const ref = referenceImplementation();
  const name = "restricted";
  const check = (req: ForwardRequest, what: string): void => {
    const dtype = dtypeOf(req.inputs, req.config);
    if (opts.dtypes !== undefined && !opts.dtypes.includes(dtype)) throw declinedError(name, `${what} ${req.formula}`, `${dtype} is not supported`);
    const why = outsideCapability({ capabilities }, { formula: req.formula, config: req.config, dtype, inputs: req.inputs });
    if (why !== undefined) throw declinedError(name, `${what} ${req.formula}`, why);
  };
  return {
    name,
    formulas: ref.formulas,
    backward: ref.backward,
    dtypes: opts.dtypes ?? ["f64", "f32"],
    ...(opts.declare === false ? {} : { capabilities }),
    async forward(req: ForwardRequest): Promise<ForwardResult> {
      check(req, "forward");
      return ref.forward(req);
    },
    async backwardPass(req: BackwardRequest): Promise<BackwardResult> {
      check(req, "backward");
      return ref.backwardPass!(req);
    },
  };
}
