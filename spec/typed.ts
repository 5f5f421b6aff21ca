/**
 * Typed front ends of the core registry formulas: the same formulas (they build `call` nodes of
 * the registry), with their shapes in the signature so a mismatch is a compile error.
 *
 * @example
 * const x = input("x", ["n", "d_model"]);
 * const W = param("W", ["d_model", "d_ff"]);
 * const b = param("b", ["d_ff"]);
 * const h = linear(x, W, b); // Expr<["n", "d_ff"]>
 */
import type { Expr } from "./expr.js";
import { call1 } from "./formula.js";
import type { Config } from "./node.js";
import type { Dims, SameBatch } from "./types.js";

/** softmax over the last axis. */
export function softmax<S extends Dims>(x: Expr<S>): Expr<S> {
  return call1<S>("softmax", { x });
}

export function logSoftmax<S extends Dims>(x: Expr<S>): Expr<S> {
  return call1<S>("log_softmax", { x });
}

/** softmax(QKᵀ/√d_k + M)V: Q's head size must equal K's, K and V must have the same length. */
export function attention<
  B extends Dims,
  BK extends Dims,
  BV extends Dims,
  N extends string,
  M extends string,
  DK extends string,
  DV extends string,
>(
  Q: Expr<readonly [...B, N, DK]>,
  K: Expr<readonly [...BK, M, NoInfer<DK>]> & SameBatch<B, BK>,
  V: Expr<readonly [...BV, NoInfer<M>, DV]> & SameBatch<B, BV>,
  config: { causal?: boolean } = {},
): Expr<[...B, N, DV]> {
  return call1("attention", { Q, K, V }, config as Config) as never;
}

/** γ ⊙ (x − μ)/√(σ² + ε) + β over the last axis; γ and β have the last axis's size. */
export function layerNorm<B extends Dims, D extends string>(
  x: Expr<readonly [...B, D]>,
  gamma: Expr<readonly [NoInfer<D>]>,
  beta: Expr<readonly [NoInfer<D>]>,
  config: { eps?: number } = {},
): Expr<[...B, D]> {
  return call1("layer_norm", { x, gamma, beta }, config as Config) as never;
}

export function rmsNorm<B extends Dims, D extends string>(
  x: Expr<readonly [...B, D]>,
  gamma: Expr<readonly [NoInfer<D>]>,
  config: { eps?: number } = {},
): Expr<[...B, D]> {
  return call1("rms_norm", { x, gamma }, config as Config) as never;
}

/** x W + b with W stored (in, out). */
export function linear<B extends Dims, I extends string, O extends string>(
  x: Expr<readonly [...B, I]>,
  W: Expr<readonly [NoInfer<I>, O]>,
  b: Expr<readonly [NoInfer<O>]>,
): Expr<[...B, O]> {
  return call1("linear", { x, W, b }) as never;
}

/** φ(x W₁ + b₁) W₂ + b₂. */
export function ffn<B extends Dims, D extends string, F extends string>(
  x: Expr<readonly [...B, D]>,
  W_1: Expr<readonly [NoInfer<D>, F]>,
  b_1: Expr<readonly [NoInfer<F>]>,
  W_2: Expr<readonly [NoInfer<F>, NoInfer<D>]>,
  b_2: Expr<readonly [NoInfer<D>]>,
  config: { activation?: "gelu" | "gelu_tanh" | "relu" | "silu" } = {},
): Expr<[...B, D]> {
  return call1("ffn", { x, W_1, b_1, W_2, b_2 }, config as Config) as never;
}

/** e_i = E[t_i]. */
export function embedding<B extends Dims, V extends string, D extends string>(
  tokens: Expr<B>,
  E: Expr<readonly [V, D]>,
): Expr<[...B, D]> {
  return call1("embedding", { tokens, E }) as never;
}

/** Z W_vocabᵀ. */
export function logits<B extends Dims, D extends string, V extends string>(
  x: Expr<readonly [...B, D]>,
  W_vocab: Expr<readonly [V, NoInfer<D>]>,
): Expr<[...B, V]> {
  return call1("logits", { x, W_vocab }) as never;
}

export function gelu<S extends Dims>(x: Expr<S>): Expr<S> {
  return call1<S>("gelu", { x });
}

export function relu<S extends Dims>(x: Expr<S>): Expr<S> {
  return call1<S>("relu", { x });
}
