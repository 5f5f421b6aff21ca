/**
 * Planted bugs: broken implementations of real kinds, to prove the laws have teeth. Each bug is
 * "formula X computed as X′": a rewrite of the reference's graph (spec/rewrite.ts) applied to the
 * requests of the formulas it names, evaluated and differentiated by the engine; every other
 * request is the reference's. The laws must catch every one without golden files.
 */
import "../spec/index.js";
import { dim as dimOf, dimsEqual, dimToString, type Dim } from "../spec/dims.js";
import {
  add,
  div,
  dimValue,
  eq,
  Expr,
  iota,
  maximum,
  meanLast,
  mul,
  rsqrt,
  square,
  stopGradient,
  sub,
  sumAll,
} from "../spec/expr.js";
import { call1 } from "../spec/formula.js";
import {
  callArgs,
  mapBody,
  onFormula,
  reapply,
  rewriteBody,
  withGradientOf,
} from "../spec/rewrite.js";
import type { CallNode, CallOf, CallRewrite } from "../spec/rewrite.js";
import { topoSort, type Node } from "../spec/node.js";
import type { BackwardRequest, Implementation } from "../autodiff/implementation.js";
import { Tensor, sizeOf, type NamedTensors } from "../autodiff/tensor.js";
import { referenceImplementation } from "../reference/implementation.js";
import { rewrittenImplementation } from "../reference/rewritten.js";
import { gatherAxis } from "./tensor-ops.js";
import {
  headsInterleaved,
  layerNormVariance,
  MAX_SEED,
  maskMissing,
  maskShift,
  maxSeeded,
  retiledHeads,
  shiftedMask,
  sinCosSwapped,
  softmaxUnshifted,
  tiledHeads,
  zerosOf,
} from "./mistakes.js";

/** One planted bug: which formulas it breaks and how. */
export interface PlantedBug {
  readonly name: string;
  /** What is wrong, in the words of a code review. */
  readonly description: string;
  /** The formulas whose requests carry the bug (the graph of each is rewritten). */
  readonly formulas: readonly string[];
  /**
   * Laws (oracle excluded) that caught it in the run recorded in docs/PLANTED-BUGS.md;
   * planted.test.ts asserts that at least one of them still does.
   */
  readonly caughtBy: readonly string[];
  /** The mistake in the forward pass; the backward pass differentiates the wrong forward. */
  readonly forward?: CallRewrite;
  /** A mistake in the backward pass only: this rewrite's gradients, the reference's forward. */
  readonly backward?: CallRewrite;
  /**
   * A backward mistake no rewrite of the graph can state, over the reference (undefined: the
   * reference's gradients). Used once, for a mistake about one copy of a broadcast batch prefix,
   * which the spec's shapes (`...`, any number of leading axes) cannot index.
   */
  readonly backwardRequest?: (
    req: BackwardRequest,
    ref: Implementation,
  ) => Promise<NamedTensors | undefined>;
}

const axisLast = (call: CallNode): boolean => (call.config["axis"] ?? -1) === -1;
const arg = (call: CallNode, name: string): Expr => new Expr(call.args[name]!);
const lastDim = (e: Expr): Dim => e.shape[e.shape.length - 1]!;

/** Learned or sinusoidal position vectors. */
const POSITION_TABLES = ["positional_learned", "positional_sinusoidal"] as const;

/** Targets counted in a mean: those other than ignore_index. */
const counted = (call: CallOf<"cross_entropy">): Expr =>
  sumAll(sub(1, eq(arg(call, "targets"), call.config.ignore_index)));

/** Inside mha with RoPE: the values' heads rotated like the keys' (same configuration and ids). */
const ropeOnValues: CallRewrite = (mha) => {
  const positions = mha.config["positions"];
  if (positions !== "rope" && positions !== "rope_interleaved") return undefined;
  const isRope = (n: Node): n is CallNode => n.op === "call" && n.formula === "rope";
  const rope = topoSort([mha.body]).find(isRope);
  if (rope === undefined) return undefined;
  const ids: Record<string, Expr> = {};
  if (rope.args["position_ids"] !== undefined) ids["position_ids"] = arg(rope, "position_ids");
  // the split of x W_V (+ b_V) into heads
  const fromValues = (n: Node): boolean => {
    const linear = n.op === "call" && n.formula === "linear";
    const W = linear ? n.args["W"] : n.op === "matmul" ? n.b : undefined;
    return W !== undefined && W.op === "input" && W.name === "W_V";
  };
  const rotated: CallRewrite = (split) =>
    fromValues(split.args["x"]!)
      ? call1("rope", { x: new Expr(split), ...ids }, rope.config)
      : undefined;
  return rewriteBody(mha, onFormula("split_heads", rotated));
};

/** Inside mha with H_kv < H: the K/V heads repeated for the query heads tiled instead. */
const mhaHeadsTiled: CallRewrite = (mha) => {
  const H = mha.config["H"];
  const Hkv = mha.config["H_kv"];
  if (typeof H !== "number" || typeof Hkv !== "number" || Hkv === H) return undefined;
  const G = H / Hkv;
  const tiled: CallRewrite = (att) =>
    reapply(att, {
      args: { K: retiledHeads(arg(att, "K"), Hkv, G), V: retiledHeads(arg(att, "V"), Hkv, G) },
    });
  return rewriteBody(mha, onFormula("attention", tiled));
};

/** RoPE frequencies base^(−2i/d_k) over the whole head: the body's ÷r made ÷d_k. */
const ropeFreqOverDk: CallRewrite = (call) => {
  const r = call.config["rotary_dims"];
  if (typeof r !== "number" && typeof r !== "string") return undefined;
  const dk = lastDim(arg(call, "x"));
  const rDim = typeof r === "number" ? r : dimOf(r);
  if (dimsEqual(rDim, dk)) return undefined;
  return mapBody(call, (n) => {
    const byR = n.op === "binary" && n.fn === "div" && n.b.op === "dim" && dimsEqual(n.b.dim, rDim);
    return byR ? div(new Expr(n.a), dimValue(dk)) : undefined;
  });
};

/** The laws that catch a causal mask that lets a query see later keys (one too many, or all). */
const CAUGHT_WHEN_LATER_KEYS_SHOW = [
  "causality",
  "prefix_consistency",
  "masked_zero",
  "mha_decomposition",
  "uniform_keys",
];

/** Every planted bug. */
export const PLANTED: readonly PlantedBug[] = [
  {
    name: "causal_mask_off_by_one",
    description: "attention: query i also sees key i + 1 (mask j > i + 1 instead of j > i)",
    formulas: ["attention"],
    caughtBy: CAUGHT_WHEN_LATER_KEYS_SHOW,
    forward: maskShift(1),
  },
  {
    name: "causal_mask_missing",
    description: "attention: the causal mask is never applied",
    formulas: ["attention"],
    caughtBy: CAUGHT_WHEN_LATER_KEYS_SHOW,
    forward: maskMissing,
  },
  {
    name: "top_left_as_bottom_right",
    description:
      "attention: causal_align top_left is computed bottom-right aligned (query i sees j ≤ i + m − n instead of j ≤ i)",
    formulas: ["attention"],
    caughtBy: ["causal_alignment"],
    forward: onFormula("causal_mask", (c) =>
      c.config["causal_align"] === "top_left"
        ? reapply(c, { config: { causal_align: "bottom_right" } })
        : undefined,
    ),
  },
  {
    name: "boolean_mask_inverted",
    description:
      "attention: a boolean mask read with true = masked " +
      "(nn.MultiheadAttention's key_padding_mask sense) instead of true = attend",
    formulas: ["attention"],
    caughtBy: ["mask_padding"],
    forward: onFormula("attention", (c) =>
      c.config["mask"] === "boolean"
        ? reapply(c, { args: { mask: eq(arg(c, "mask"), 0) } })
        : undefined,
    ),
  },
  {
    name: "window_drops_own_key",
    description:
      "attention with a sliding window: each query sees i' − w < j < i', dropping its own key",
    formulas: ["attention"],
    caughtBy: ["window_limit"],
    // the windowed mask plus the mask one key short (no window): i' − w < j ≤ i' and j ≤ i' − 1
    forward: onFormula("causal_mask", (c) =>
      c.config.window > 0 ? add(new Expr(c), shiftedMask(c, -1, { window: 0 })) : undefined,
    ),
  },
  {
    name: "softcap_without_division",
    description: "attention: the soft cap computed as c·tanh(s) instead of c·tanh(s/c)",
    formulas: ["attention"],
    caughtBy: ["softcap_limit"],
    // c·tanh(s·QKᵀ) = c·tanh(s·(cQ)Kᵀ/c): the registry's attention on c·Q
    forward: onFormula("attention", (c) => {
      const cap = c.config.softcap;
      return cap > 0 ? reapply(c, { args: { Q: mul(arg(c, "Q"), cap) } }) : undefined;
    }),
  },
  {
    name: "attention_kv_heads_tiled",
    description:
      "attention with H_kv < H: query head h uses K/V head h mod H_kv (tiled) instead of ⌊h/(H/H_kv)⌋ (repeated)",
    formulas: ["attention"],
    caughtBy: ["grouped_heads"],
    forward: onFormula("attention", (c) => {
      const { H, H_kv } = c.config;
      if (typeof H !== "number" || typeof H_kv !== "number" || H_kv === H) return undefined;
      const Q = arg(c, "Q");
      const heads = Q.shape[Q.shape.length - 3]!;
      const tile = (t: Expr): Expr => tiledHeads(t, H_kv, H / H_kv, heads);
      const args = { K: tile(arg(c, "K")), V: tile(arg(c, "V")) };
      return reapply(c, { config: { H_kv: undefined }, args });
    }),
  },
  {
    name: "broadcast_mask_ignored",
    description:
      "attention: a mask of another shape than the scores (a padding mask [B, " +
      "1, 1, m], a key row [m]) is silently skipped; only full-shape masks are applied",
    formulas: ["attention"],
    caughtBy: ["mask_padding"],
    forward: onFormula("attention", (c) =>
      (c.config["mask"] ?? "none") !== "none" && c.config["mask_shape"] !== "scores"
        ? reapply(c, { config: { mask: "none", mask_shape: "scores" }, args: { mask: undefined } })
        : undefined,
    ),
  },
  {
    name: "rope_partial_freq_over_dk",
    description:
      "rope with rotary_dims r < d_k: the frequencies base^(−2i/d_k) are " +
      "taken over the whole head instead of over the r rotated dims (HF " +
      "GPT-NeoX uses r)",
    formulas: ["rope"],
    caughtBy: ["rope_fraction"],
    forward: onFormula("rope", ropeFreqOverDk),
  },
  {
    name: "position_ids_ignored",
    description:
      "rope: position_ids are accepted but the rows are rotated at offset, " +
      "offset + 1, … (left padding and packed sequences get the wrong positions)",
    formulas: ["rope"],
    caughtBy: ["rope_position_ids"],
    forward: onFormula("rope", (c) =>
      c.config["position_ids"] === true
        ? reapply(c, { config: { position_ids: false }, args: { position_ids: undefined } })
        : undefined,
    ),
  },
  {
    name: "dropout_unscaled",
    description:
      "dropout: kept entries are not scaled by 1/(1 − p) (the non-inverted " +
      "dropout of the original paper, whose eval pass must scale by 1 − p instead)",
    formulas: ["dropout"],
    caughtBy: ["dropout_scaling"],
    // p = 0 keeps the mask and drops the scale
    forward: onFormula("dropout", (c) => reapply(c, { config: { p: 0 } })),
  },
  {
    name: "ignored_targets_counted",
    description:
      "cross_entropy: positions with target = ignore_index add nothing to the sum but are still counted in the mean",
    formulas: ["cross_entropy"],
    caughtBy: ["ignored_targets"],
    // the loss times (counted positions)/(all positions)
    forward: onFormula("cross_entropy", (c) => {
      const all = sumAll(eq(arg(c, "targets"), arg(c, "targets")));
      return mul(new Expr(c), div(counted(c), all));
    }),
  },
  {
    name: "scale_sqrt_d_model",
    description: "mha: scores scaled by 1/√d_model instead of 1/√d_k",
    formulas: ["mha"],
    caughtBy: ["mha_decomposition"],
    // 1/√d_model = 1/√(H·d_k): the registry's attention on Q/√H
    forward: onFormula("attention", (c) => {
      const H = c.config["H"];
      if (typeof H !== "number") return undefined;
      return reapply(c, { args: { Q: mul(arg(c, "Q"), 1 / Math.sqrt(H)) } });
    }),
  },
  {
    name: "softmax_no_max_subtraction",
    description:
      "softmax: exp(x)/Σexp(x) without subtracting the row max (overflows to ∞/∞ = NaN for large scores)",
    formulas: ["softmax"],
    caughtBy: ["softmax_simplex", "softmax_shift"],
    forward: softmaxUnshifted,
  },
  {
    name: "layer_norm_unbiased_variance",
    description: "layer_norm: variance divided by d − 1 (unbiased) instead of d",
    formulas: ["layer_norm"],
    caughtBy: ["norm_moments", "norm_gradient", "zero_branches"],
    forward: layerNormVariance("unbiased"),
  },
  {
    name: "layer_norm_eps_outside_sqrt",
    description: "layer_norm: (x − μ)/(σ + ε) instead of (x − μ)/√(σ² + ε)",
    formulas: ["layer_norm"],
    caughtBy: ["norm_moments", "norm_gradient", "zero_branches"],
    forward: layerNormVariance("eps-outside"),
  },
  {
    name: "heads_interleaved",
    description:
      "mha: head h takes columns h, h + H, h + 2H, … instead of the column block h·d_k … (h+1)·d_k − 1",
    formulas: ["mha"],
    caughtBy: ["heads_permutation", "mha_decomposition", "grouped_query"],
    forward: headsInterleaved,
  },
  {
    name: "positions_not_added",
    description:
      "gpt: learned/sinusoidal position vectors are computed but never added to the embeddings",
    formulas: ["gpt"],
    caughtBy: ["positions_break_equivariance"],
    forward: onFormula(POSITION_TABLES, zerosOf),
  },
  {
    name: "rope_on_values",
    description: "mha: RoPE rotates the values as well as the queries and keys",
    formulas: ["mha"],
    caughtBy: ["mha_decomposition", "rope_relative"],
    forward: onFormula("mha", ropeOnValues),
  },
  {
    name: "sinusoidal_sin_cos_swapped",
    description: "positional_sinusoidal: cos in the even columns and sin in the odd ones",
    formulas: ["positional_sinusoidal"],
    caughtBy: ["sinusoidal_rotation"],
    forward: onFormula("positional_sinusoidal", sinCosSwapped),
  },
  {
    name: "gqa_heads_tiled",
    description:
      "mha with H_kv < H: query head h uses KV head h mod H_kv (tiled) instead of ⌊h/(H/H_kv)⌋ (repeated)",
    formulas: ["mha"],
    caughtBy: ["grouped_query"],
    forward: onFormula("mha", mhaHeadsTiled),
  },
  {
    name: "cross_entropy_summed",
    description: "cross_entropy: the loss is summed over positions instead of averaged",
    formulas: ["cross_entropy"],
    caughtBy: ["batch_independence", "cross_entropy"],
    forward: onFormula("cross_entropy", (c) =>
      c.config["reduction"] === "mean" ? reapply(c, { config: { reduction: "sum" } }) : undefined,
    ),
  },
  {
    name: "softmax_grad_no_subtraction",
    description: "softmax backward: x̄ = y ⊙ ȳ, missing the − y·⟨ȳ, y⟩ term",
    formulas: ["softmax"],
    caughtBy: ["softmax_gradient"],
    // the gradient of sg(y) ⊙ x is y ⊙ ȳ
    backward: onFormula("softmax", (c) =>
      axisLast(c)
        ? withGradientOf(new Expr(c), mul(stopGradient(new Expr(c)), arg(c, "x")))
        : undefined,
    ),
  },
  {
    name: "layer_norm_grad_missing_term",
    description: "layer_norm backward: x̄ = (ĝ − mean ĝ)/σ, missing the − x̂·mean(ĝ ⊙ x̂) term",
    formulas: ["layer_norm"],
    caughtBy: ["norm_gradient"],
    // γ ⊙ (x − μ)·sg(1/σ) + β: the mean's projection kept, the variance's dropped
    backward: onFormula("layer_norm", (c) => {
      if ((c.config["normalized_axes"] ?? 1) !== 1) return undefined;
      const { x, gamma, beta } = callArgs(c) as Record<string, Expr>;
      const xc = sub(x!, meanLast(x!));
      const rstd = rsqrt(add(meanLast(square(xc)), c.config.eps));
      const y = mul(gamma!, mul(xc, stopGradient(rstd)));
      return withGradientOf(new Expr(c), beta === undefined ? y : add(y, beta));
    }),
  },
  {
    name: "tied_grad_one_use",
    description:
      "gpt backward with tied embeddings: ∂L/∂E keeps the embedding use only and drops the logits use (x W_vocabᵀ)",
    formulas: ["gpt"],
    caughtBy: ["tied_embedding"],
    backward: onFormula("logits", (c) => {
      const W = c.args["W_vocab"]!;
      const tied = W.op === "input" && W.name === "wte.weight";
      return tied ? reapply(c, { args: { W_vocab: stopGradient(new Expr(W)) } }) : undefined;
    }),
  },
  {
    name: "rope_sin_cos_swapped",
    description:
      "rope: sin and cos exchanged in the rotation (still orthogonal, but position 0 is no longer the identity)",
    formulas: ["rope"],
    caughtBy: ["mha_decomposition", "rope_relative"],
    forward: onFormula("rope", sinCosSwapped),
  },
  {
    name: "kv_positions_from_zero",
    description:
      "gpt with a KV cache: the new tokens get learned/sinusoidal positions 0, 1, … instead of p, p + 1, …",
    formulas: ["gpt"],
    caughtBy: ["kv_cache"],
    forward: onFormula(POSITION_TABLES, (c) =>
      (c.config["offset"] ?? 0) !== 0 ? reapply(c, { config: { offset: 0 } }) : undefined,
    ),
  },
  {
    name: "rms_norm_centred",
    description:
      "rms_norm: subtracts the row mean before normalising (LayerNorm without β under RMSNorm's name)",
    formulas: ["rms_norm"],
    caughtBy: ["norm_moments", "norm_invariance", "norm_gradient", "zero_branches"],
    forward: onFormula("rms_norm", (c) =>
      reapply(c, { args: { x: sub(arg(c, "x"), meanLast(arg(c, "x"))) } }),
    ),
  },
  {
    name: "softmax_running_max_minus_10000",
    description:
      "softmax and cross_entropy: the running maximum starts at −10000 " +
      "instead of −∞ (rows entirely below −1e4 give 0/0, a loss of −∞)",
    formulas: ["softmax", "cross_entropy"],
    caughtBy: ["softmax_simplex", "cross_entropy"],
    // cross_entropy's logsumexp is seeded too
    forward: maxSeeded(MAX_SEED),
  },
  {
    name: "softmax_axis_ignored",
    description:
      "softmax: the axis hyperparameter is ignored, every call normalises over the last axis",
    formulas: ["softmax"],
    caughtBy: ["softmax_axis"],
    forward: onFormula("softmax", (c) =>
      axisLast(c) ? undefined : reapply(c, { config: { axis: -1 } }),
    ),
  },
  {
    name: "label_smoothing_over_other_classes",
    description:
      "cross_entropy: label smoothing spreads ε over the V − 1 other classes " +
      "(ε/(V − 1) each) instead of ε/V over all V, as some hand-written losses do",
    formulas: ["cross_entropy"],
    caughtBy: ["loss_conventions"],
    forward: onFormula("cross_entropy", (c) => {
      const eps = c.config.label_smoothing;
      if (eps === 0) return undefined;
      // L0 = w_t·nll, L1 = (1/V)·Σ_c w_c·nll_c (per position, or reduced alike): the bug is
      // (1 − ε)·L0 + ε/(V − 1)·(Σ_c w_c·nll_c − w_t·nll), V − 1 floored at 1
      const V = dimValue(lastDim(arg(c, "logits")));
      const L0 = reapply(c, { config: { label_smoothing: 0 } });
      const L1 = reapply(c, { config: { label_smoothing: 1 } });
      return add(mul(1 - eps, L0), mul(div(eps, maximum(sub(V, 1), 1)), sub(mul(V, L1), L0)));
    }),
  },
  {
    name: "weighted_mean_by_count",
    description:
      "cross_entropy: with class weights the mean divides by the number of counted positions instead of Σ w[t_i]",
    formulas: ["cross_entropy"],
    caughtBy: ["loss_conventions"],
    forward: onFormula("cross_entropy", (c) =>
      c.config["weight"] === true && c.config["reduction"] === "mean"
        ? div(reapply(c, { config: { reduction: "sum" } }), counted(c))
        : undefined,
    ),
  },
  {
    name: "layer_norm_last_axis_only",
    description:
      "layer_norm: normalized_axes is ignored, each last-axis row is " +
      "normalised on its own (γ and β still applied over the k axes)",
    formulas: ["layer_norm"],
    caughtBy: ["affine_options"],
    // γ ⊙ layer_norm over the last axis alone (γ = 1, no β) + β
    forward: onFormula("layer_norm", (c) => {
      if ((c.config["normalized_axes"] ?? 1) === 1) return undefined;
      const { x, gamma, beta } = callArgs(c) as Record<string, Expr>;
      const d = dimToString(lastDim(x!));
      const ones = add(mul(iota([d], 0), 0), 1);
      const cfg = { eps: c.config["eps"]!, bias: false };
      const rows = call1("layer_norm", { x: x!, gamma: ones }, cfg);
      const y = mul(gamma!, rows);
      return beta === undefined ? y : add(y, beta);
    }),
  },
  {
    name: "matmul_broadcast_grad_first_copy",
    description:
      "matmul: the gradient of an operand broadcast over batch axes is the " +
      "gradient of its first copy, not the sum over the copies",
    formulas: ["matmul"],
    caughtBy: ["matmul_broadcast"],
    backwardRequest: async (req, ref) => {
      const a = req.inputs["a"];
      const b = req.inputs["b"];
      if (
        req.formula !== "matmul" ||
        a === undefined ||
        b === undefined ||
        a.shape.length !== 2 ||
        b.shape.length <= 2 ||
        req.config["a_batch"] !== "none"
      )
        return undefined;
      const copies = sizeOf(b.shape.slice(0, -2));
      const repeated = gatherAxis(a.reshape([1, ...a.shape]), 0, Array(copies).fill(0)).reshape([
        ...b.shape.slice(0, -2),
        ...a.shape,
      ]);
      const { a_batch: _, ...rest } = req.config;
      const g = (await ref.backwardPass!({ ...req, config: rest, inputs: { a: repeated, b } }))
        .grads;
      const first = Tensor.zeros(a.shape, a.dtype);
      for (let i = 0; i < first.size; i++) first.data[i] = g["a"]!.data[i]!;
      return { a: first, b: g["b"]! };
    },
  },
];

/** The implementation with the named bug planted (everything else is the reference). */
export function plantedImplementation(name: string): Implementation {
  const bug = PLANTED.find((b) => b.name === name);
  if (bug === undefined)
    throw new RangeError(
      `unknown planted bug "${name}"; planted bugs: ${PLANTED.map((b) => b.name).join(", ")}`,
    );
  const backward = bug.backward ?? bug.forward;
  const impl = rewrittenImplementation(`planted bug ${bug.name}`, {
    ...(bug.forward !== undefined ? { forward: bug.forward } : {}),
    ...(backward !== undefined ? { backward } : {}),
    only: bug.formulas,
  });
  const wrap = bug.backwardRequest;
  if (wrap === undefined) return impl;
  const ref = referenceImplementation();
  const backwardPass = async (req: BackwardRequest) => ({
    grads: (await wrap(req, ref)) ?? (await impl.backwardPass!(req)).grads,
  });
  return { ...impl, backwardPass };
}

/**
 * The rewriting harness without a mistake, for every formula a planted bug rewrites: it must
 * pass every law, which shows that a planted implementation fails because of its bug and not
 * because of the unfused evaluation of rewritten graphs around it.
 */
export function controlImplementation(): Implementation {
  const none: CallRewrite = () => undefined;
  const only = [...new Set(PLANTED.flatMap((b) => b.formulas))];
  const name = "the rewritten reference without a mistake";
  return rewrittenImplementation(name, { forward: none, backward: none, only });
}
