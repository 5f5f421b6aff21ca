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
import {
  add, constant, dimValue, div, eq, exp, Expr, iota, le, log, lt, matmul, maxLast, meanLast, mul, reshape, sqrt, square, stopGradient, sub, sumAll, sumLast, transpose, where,
} from "../spec/expr.js";
import { evaluate } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type { Graph } from "../autodiff/graph.js";
import { plantInGraph } from "./plant.js";
import type { Plant } from "./plant.js";
import { ImplementationError } from "../autodiff/implementation.js";
import type { BackwardRequest, BackwardResult, ForwardRequest, ForwardResult, Implementation } from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { Capabilities, FormulaCapability } from "../autodiff/capabilities.js";
import { referenceImplementation } from "../reference/implementation.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { referenceGraph } from "../reference/implementation.js";
import { knownConfig } from "./trace.js";

export { plantInGraph } from "./plant.js";
export type { CallNode, Plant } from "./plant.js";

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
  const declared = formulas ?? formulaNames();
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

/**
 * softmax, log_softmax and logsumexp with the running maximum seeded at −10000 instead of −∞ (a C
 * kernel's `float m = -10000.f;`): rows entirely below −10000 underflow to exp(x − m) = 0, giving
 * 0/0 (softmax), +∞ (log_softmax) or −∞ (logsumexp, and so cross_entropy's loss).
 */
export const plantMaxSeed: Plant = (call) => {
  if (call.formula !== "softmax" && call.formula !== "log_softmax" && call.formula !== "logsumexp") return undefined;
  const x = new Expr(call.args["x"]!);
  const rowMax = maxLast(x);
  const m = where(lt(rowMax, -10000), -10000, rowMax);
  const z = sub(x, m);
  const total = sumLast(exp(z));
  if (call.formula === "softmax") return div(exp(z), total);
  if (call.formula === "log_softmax") return sub(z, log(total));
  return reshape(add(m, log(total)), x.shape.slice(0, -1).map(dimToString) as string[]);
};

/** LayerNorm with the unbiased variance: Σ(x − μ)²/(d − 1), written as the biased one times d/(d − 1). */
export const plantUnbiasedVariance: Plant = (call) => {
  if (call.formula !== "layer_norm") return undefined;
  const x = new Expr(call.args["x"]!);
  const d = dimValue(x.shape[x.shape.length - 1]!);
  const xc = sub(x, meanLast(x));
  const variance = mul(meanLast(square(xc)), div(d, sub(d, 1)));
  return add(mul(new Expr(call.args["gamma"]!), div(xc, sqrt(add(variance, constant(call.config["eps"] as number))))), new Expr(call.args["beta"]!));
};

/** LayerNorm with ε added to the standard deviation: (x − μ)/(σ + ε). */
export const plantEpsOutsideSqrt: Plant = (call) => {
  if (call.formula !== "layer_norm") return undefined;
  const x = new Expr(call.args["x"]!);
  const xc = sub(x, meanLast(x));
  const sigma = sqrt(meanLast(square(xc)));
  return add(mul(new Expr(call.args["gamma"]!), div(xc, add(sigma, constant(call.config["eps"] as number)))), new Expr(call.args["beta"]!));
};

/** `formula` applied with its argument `arg` (a bias) replaced by zeros: the bias left out. */
export function plantDropArgument(formula: string, arg: string): Plant {
  return (call) => {
    if (call.formula !== formula || call.args[arg] === undefined) return undefined;
    const args: Record<string, Expr> = {};
    for (const [k, v] of Object.entries(call.args)) args[k] = new Expr(v);
    args[arg] = sub(args[arg]!, args[arg]!);
    return callFormula(formula, args, call.config)[call.output];
  };
}

/** cross_entropy summed over the counted targets instead of averaged. */
export const plantLossSummed: Plant = (call) => {
  if (call.formula !== "cross_entropy") return undefined;
  const counted = sumAll(sub(1, eq(new Expr(call.args["targets"]!), call.config["ignore_index"] as number)));
  return mul(new Expr(call), counted);
};

/** Position embeddings computed but not added (x − x: zeros of their shape). */
export const plantNoPositions: Plant = (call) =>
  call.formula === "positional_learned" || call.formula === "positional_sinusoidal" ? sub(new Expr(call), new Expr(call)) : undefined;

/** The token embedding multiplied by √d_model (the original Transformer's scale). */
export const plantEmbeddingScaled: Plant = (call) => {
  if (call.formula !== "embedding") return undefined;
  const d = call.shape[call.shape.length - 1]!;
  return mul(new Expr(call), sqrt(dimValue(d)));
};

/** Logits divided by √d_model (a rescaling before a tied output projection, as T5 does). */
export const plantLogitsScaled: Plant = (call) => {
  if (call.formula !== "logits") return undefined;
  const x = new Expr(call.args["x"]!);
  return div(new Expr(call), sqrt(dimValue(x.shape[x.shape.length - 1]!)));
};

/** Tied embeddings whose gradient misses the logits use: the output projection x Eᵀ does not pass a gradient to E. */
export const plantTiedLogitsNoGrad: Plant = (call) => {
  if (call.formula !== "logits") return undefined;
  return matmul(new Expr(call.args["x"]!), transpose(stopGradient(new Expr(call.args["W_vocab"]!))));
};

/** A gpt that skips its final LayerNorm (ln_f): the norm whose γ is the input `ln_f.weight` returns its input. */
export const plantSkipFinalNorm: Plant = (call) => {
  const gamma = call.args["gamma"];
  if (call.formula !== "layer_norm" || gamma === undefined || gamma.op !== "input" || gamma.name !== "ln_f.weight") return undefined;
  return new Expr(call.args["x"]!);
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
