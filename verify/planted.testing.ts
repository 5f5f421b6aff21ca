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
import { formulaNames, getFormula } from "../spec/formula.js";
import {
  dimValue,
  div,
  eq,
  Expr,
  matmul,
  mul,
  sqrt,
  stopGradient,
  sub,
  sumAll,
  transpose,
} from "../spec/expr.js";
import { onFormula, reapply, type CallRewrite } from "../spec/rewrite.js";
import { ImplementationError } from "../autodiff/implementation.js";
import type {
  BackwardRequest,
  BackwardResult,
  ForwardRequest,
  ForwardResult,
  Implementation,
} from "../autodiff/implementation.js";
import { outsideCapability } from "../autodiff/capabilities.js";
import type { Capabilities, FormulaCapability } from "../autodiff/capabilities.js";
import { referenceImplementation } from "../reference/implementation.js";
import { requestDType } from "../autodiff/implementation.js";
import { rewrittenImplementation } from "../reference/rewritten.js";
import type { FloatDType } from "../autodiff/tensor.js";
import { layerNormVariance, MAX_SEED, maskShift, maxSeeded } from "../properties/mistakes.js";
import { zerosOf } from "../properties/mistakes.js";

/** A planted mistake: a rewrite of formula applications (spec/rewrite.ts). */
export type Plant = CallRewrite;

/**
 * An Implementation computing every registry formula through the reference with `plant`
 * applied (forward and backward), declaring `formulas` (default: every registry formula).
 */
export function plantedGraphImplementation(
  name: string,
  plant: Plant,
  formulas?: readonly string[],
): Implementation {
  const declared = formulas ?? formulaNames();
  return rewrittenImplementation(name, { forward: plant, backward: plant, formulas: declared });
}

/** The causal mask with `shift` extra visible keys (the registry's mask at shifted sizes). */
export const plantMaskShift = maskShift;

/** GELU computed with the tanh approximation wherever the erf form is asked for. */
export const plantGeluTanh: Plant = onFormula("gelu", (call) =>
  reapply(call, { formula: "gelu_tanh" }),
);

/**
 * Attention scores scaled by 1/√d_model = 1/√(H·d_k) instead of 1/√d_k (inside `mha`, where H is
 * known): the registry's attention on Q/√H.
 */
export const plantScaleDModel: Plant = onFormula("attention", (call) => {
  const H = call.config["H"];
  if (call.config["alibi"] === true || typeof H !== "number") return undefined;
  return reapply(call, { args: { Q: mul(new Expr(call.args["Q"]!), 1 / Math.sqrt(H)) } });
});

/** A post-LN block computed with the pre-LN placement: every part right, the composition wrong. */
export const plantPrePlacement: Plant = onFormula("block", (call) =>
  call.config["placement"] === "post" && call.config["parallel"] !== true
    ? reapply(call, { config: { placement: "pre" } })
    : undefined,
);

/**
 * softmax, log_softmax and logsumexp with the running maximum seeded at −10000 instead of −∞ (a C
 * kernel's `float m = -10000.f;`): rows entirely below −10000 underflow to exp(x − m) = 0, giving
 * 0/0 (softmax), +∞ (log_softmax) or −∞ (logsumexp, and so cross_entropy's loss).
 */
export const plantMaxSeed: Plant = maxSeeded(MAX_SEED);

/** LayerNorm with the unbiased variance: Σ(x − μ)²/(d − 1). */
export const plantUnbiasedVariance: Plant = layerNormVariance("unbiased");

/** LayerNorm with ε added to the standard deviation: (x − μ)/(σ + ε). */
export const plantEpsOutsideSqrt: Plant = layerNormVariance("eps-outside");

/** `formula` applied with its argument `arg` (a bias) replaced by zeros: the bias left out. */
export function plantDropArgument(formula: string, arg: string): Plant {
  return onFormula(formula, (call) => {
    const a = call.args[arg];
    if (a === undefined) return undefined;
    return reapply(call, { args: { [arg]: sub(new Expr(a), new Expr(a)) } });
  });
}

/** cross_entropy summed over the counted targets instead of averaged. */
export const plantLossSummed: Plant = onFormula("cross_entropy", (call) => {
  const counted = sumAll(sub(1, eq(new Expr(call.args["targets"]!), call.config.ignore_index)));
  return mul(new Expr(call), counted);
});

/** Position embeddings computed but not added (zeros of their shape). */
export const plantNoPositions: Plant = onFormula(
  ["positional_learned", "positional_sinusoidal"],
  zerosOf,
);

/** The token embedding multiplied by √d_model (the original Transformer's scale). */
export const plantEmbeddingScaled: Plant = onFormula("embedding", (call) =>
  mul(new Expr(call), sqrt(dimValue(call.shape[call.shape.length - 1]!))),
);

/** Logits divided by √d_model (a rescaling before a tied output projection, as T5 does). */
export const plantLogitsScaled: Plant = onFormula("logits", (call) => {
  const x = new Expr(call.args["x"]!);
  return div(new Expr(call), sqrt(dimValue(x.shape[x.shape.length - 1]!)));
});

/** Tied embeddings whose gradient misses the logits use: the output projection x Eᵀ does not pass a gradient to E. */
export const plantTiedLogitsNoGrad: Plant = onFormula("logits", (call) =>
  matmul(new Expr(call.args["x"]!), transpose(stopGradient(new Expr(call.args["W_vocab"]!)))),
);

/** A gpt that skips its final LayerNorm (ln_f): the norm whose γ is the input `ln_f.weight` returns its input. */
export const plantSkipFinalNorm: Plant = onFormula("layer_norm", (call) => {
  const gamma = call.args["gamma"];
  const final = gamma !== undefined && gamma.op === "input" && gamma.name === "ln_f.weight";
  return final ? new Expr(call.args["x"]!) : undefined;
});

/** An error answer as a process's would read (the implementation declines the request and keeps running). */
function declinedError(impl: string, what: string, message: string): ImplementationError {
  return new ImplementationError(
    `implementation \`${impl}\` reported an error for ${what} (request 0): ${message}`,
    { kind: "declined" },
  );
}

/**
 * One configuration per formula, derived from the registry: every hyperparameter with a default
 * at that default, except GPT-2's choices (tanh GELU, pre-LN), with self-attention only (m = n
 * for the formulas with a causal switch) and no grouped heads (H_kv = H).
 */
export function oneConfigurationCapabilities(): Capabilities {
  const overrides: Readonly<Record<string, number | string | boolean>> = {
    activation: "gelu_tanh",
    placement: "pre",
  };
  const out: Record<string, FormulaCapability> = {};
  for (const f of formulaNames()) {
    const config: Record<string, readonly (number | string | boolean)[]> = {};
    for (const h of getFormula(f).hyper) {
      const v =
        overrides[h.name] !== undefined &&
        (h.choices === undefined || h.choices.includes(String(overrides[h.name])))
          ? overrides[h.name]
          : h.default;
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
export function restrictedImplementation(
  capabilities: Capabilities = oneConfigurationCapabilities(),
  opts: { declare?: boolean; dtypes?: readonly FloatDType[] } = {},
): Implementation {
  const ref = referenceImplementation();
  const name = "restricted";
  const check = (req: ForwardRequest, what: string): void => {
    const dtype = requestDType(req);
    if (opts.dtypes !== undefined && !opts.dtypes.includes(dtype))
      throw declinedError(name, `${what} ${req.formula}`, `${dtype} is not supported`);
    const why = outsideCapability(
      { capabilities },
      { formula: req.formula, config: req.config, dtype, inputs: req.inputs },
    );
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
