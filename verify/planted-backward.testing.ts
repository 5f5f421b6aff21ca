/**
 * Test support for backward localisation: implementations whose forward pass is the reference's
 * and whose backward pass carries a planted mistake, the way a hand-written backward kernel goes
 * wrong while its forward stays right.
 *
 * A mistake is planted as `sg(F(args)) + (G(args) − sg(G(args)))`, `sg` stopping gradients: its
 * value is F's, its gradient G's. The backward pass is the engine's VJP of the reference graph
 * with every application of the broken formula so replaced (spec/rewrite.ts, `withGradientOf`).
 */
import "../spec/index.js";
import { callFormula } from "../spec/formula.js";
import {
  add,
  constant,
  dimValue,
  Expr,
  meanLast,
  mul,
  rsqrt,
  square,
  stopGradient,
  sub,
} from "../spec/expr.js";
import { callArgs, firstOf, onFormula, reapply, withGradientOf } from "../spec/rewrite.js";
import type { CallOf } from "../spec/rewrite.js";
import type { Implementation } from "../autodiff/implementation.js";
import { rewrittenImplementation } from "../reference/rewritten.js";
import type { Plant } from "./planted.testing.js";

/** A plant that keeps `formula`'s value and takes its gradient from `wrong(call)`. */
function backwardOnly<N extends string>(
  formula: N,
  wrong: (call: CallOf<N>) => Expr | undefined,
): Plant {
  return onFormula(formula, (call) => {
    const g = wrong(call);
    return g === undefined ? undefined : withGradientOf(new Expr(call), g);
  });
}

/**
 * Attention whose backward pass drops the score scale: it differentiates QKᵀ instead of
 * QKᵀ/√d_k (the registry's attention with `scale = 1`), as a backward kernel that recomputes the
 * probabilities without the scale does.
 */
export const plantAttentionScaleBackward: Plant = backwardOnly("attention", (call) =>
  reapply(call, { config: { scale: 1 } }),
);

/**
 * LayerNorm whose backward pass treats the row mean and variance as constants: x̄ = γ ȳ / σ
 * without the two projection terms (a classic hand-written LayerNorm backward mistake).
 */
export const plantLayerNormStatsConstant: Plant = backwardOnly("layer_norm", (call) => {
  const { x, gamma, beta } = callArgs(call) as { x: Expr; gamma: Expr; beta: Expr };
  const mu = meanLast(x);
  const variance = meanLast(square(sub(x, mu)));
  const xhat = mul(
    sub(x, stopGradient(mu)),
    stopGradient(rsqrt(add(variance, constant(call.config.eps)))),
  );
  return add(mul(gamma, xhat), beta);
});

/** An FFN whose backward pass skips the activation's derivative (passes φ's cotangent straight through). */
export const plantFfnActivationBackward: Plant = backwardOnly("ffn", (call) => {
  type FfnArgs = Record<"x" | "W_1" | "b_1" | "W_2" | "b_2", Expr>;
  const { x, W_1, b_1, W_2, b_2 } = callArgs(call) as FfnArgs;
  const h = callFormula("linear", { x, W: W_1, b: b_1 })["y"]!;
  const act = callFormula(call.config.activation, { x: h })["y"]!;
  return callFormula("linear", { x: withGradientOf(act, h), W: W_2, b: b_2 })["y"]!;
});

/** A forward mistake to combine with a backward one: the loss summed over positions instead of averaged. */
export const plantLossSummed: Plant = (call) => {
  if (call.formula !== "cross_entropy") return undefined;
  let loss = new Expr(call);
  for (const d of new Expr(call.args["logits"]!).shape.slice(0, -1)) loss = mul(loss, dimValue(d));
  return loss;
};

/**
 * The reference's forward pass with `plant`'s mistakes in the backward pass only; with
 * `forwardPlant`, a second, independent mistake in both passes (forward values and the gradients
 * of those wrong values).
 */
export function backwardPlantedImplementation(
  name: string,
  plant: Plant,
  opts: { formulas?: readonly string[]; forwardPlant?: Plant } = {},
): Implementation {
  const fwd = opts.forwardPlant;
  return rewrittenImplementation(name, {
    ...(fwd !== undefined ? { forward: fwd } : {}),
    backward: fwd === undefined ? plant : firstOf(fwd, plant),
    ...(opts.formulas !== undefined ? { formulas: opts.formulas } : {}),
  });
}
