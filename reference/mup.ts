/**
 * The maximal-update parametrisation (μP) of Yang et al. 2022, "Tensor Programs V: Tuning Large
 * Neural Networks via Zero-Shot Hyperparameter Transfer", for Adam (their Table 3, with the
 * recipe of their Appendix D.2: zero-initialised queries, attention logits scaled by 1/d_k
 * instead of 1/√d_k, and optionally a zero readout), relative to a base width d₀ at which μP
 * equals the standard parametrisation (GPT-2's initialisation, one step size) but for W_Q = 0.
 * With m = d_model / d₀:
 *
 * | parameters | initial std | Adam step size |
 * |---|---|---|
 * | embeddings (`wte`, `wpe`), biases, norm scales | as GPT-2 | η |
 * | hidden matrices (`c_attn` W_K, W_V; `attn.c_proj`; `mlp.*`) | GPT-2's / √m | η / m |
 * | W_Q (columns of `c_attn`) | 0 | η / m · 1/√m |
 * | b_Q | 0 | η · 1/√m |
 * | readout `lm_head` (untied) | GPT-2's / m (`readout: "scaled"`) or 0 (`"zero"`) | η / m |
 *
 * The readout: Table 3 gives it initial variance ∝ 1/fan_in², i.e. std ∝ 1/m; matching SP at the
 * base width fixes the constant, std = 0.02 / m (`"scaled"`, the default). Appendix D.2 suggests
 * the limit of that family, 0 (`"zero"`). Both are μP; they differ at the base width, where
 * `"scaled"` is SP's readout. At a budget of a few hundred Adam steps the zero readout starts
 * slowly (research/mup.ts measures it): no layer below it gets a gradient at the first step, and
 * the readout holds only what its updates put there, none of the random directions SP's starts
 * with.
 *
 * The 1/d_k attention scale: the `gpt` formula divides QKᵀ by √d_k. Dividing by d_k·/√d_k₀
 * instead is the same model as multiplying W_Q and b_Q by α = √(d_k₀/d_k) = 1/√m (H fixed), and
 * training α·W with Adam at step size η is training W' = α·W at step size α·η (Adam's update does
 * not depend on the gradient's scale, up to its ε), from α times the initial value — 0 here.
 * So the scale is carried by the queries' step size, and the formula is unchanged.
 *
 * μP needs untied embeddings: the input embedding takes step size η, the readout η / m.
 */
import { initWeights, ModelError, type GPTConfig } from "./model.js";
import type { NamedTensors } from "../autodiff/tensor.js";

export interface MupOptions {
  /** Width d₀ at which μP and the standard parametrisation coincide. */
  readonly baseWidth: number;
  readonly seed?: number;
  /** Initial readout: std 0.02 / m (Table 3's 1/fan_in² variance, SP's at the base width) or 0. */
  readonly readout?: MupReadout;
}

/** μP's initial readout: Table 3's std ∝ 1/m (SP's at the base width), or Appendix D.2's 0. */
export type MupReadout = "scaled" | "zero";
const MUP_READOUTS: readonly MupReadout[] = ["scaled", "zero"];

const HIDDEN = /^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.[a-z_]+)\.weight$/;
const QKV = /^h\.\d+\.attn\.c_attn\.(weight|bias)$/;

function widthMultiplier(config: GPTConfig, baseWidth: number): number {
  if (config.tied)
    throw new ModelError(
      "μP needs untied embeddings (tied: false): the readout takes a smaller step size than the input embedding",
    );
  if (!(baseWidth > 0) || config.d_model % config.H !== 0)
    throw new ModelError(`μP: base width must be positive, got ${baseWidth}`);
  return config.d_model / baseWidth;
}

/** Columns of `attn.c_attn` that are W_Q (the first H·d_k). */
function isQueryColumn(config: GPTConfig, col: number): boolean {
  return col < config.d_model;
}

/**
 * μP initial weights: GPT-2's, hidden matrices shrunk by 1/√m, W_Q and b_Q zero, the readout
 * shrunk by 1/m (or zero).
 */
export function mupInit(config: GPTConfig, opts: MupOptions): NamedTensors {
  const m = widthMultiplier(config, opts.baseWidth);
  const readout = opts.readout ?? "scaled";
  if (!MUP_READOUTS.includes(readout)) {
    throw new ModelError(`μP: readout must be "scaled" or "zero", got ${JSON.stringify(readout)}`);
  }
  const w = initWeights(config, { seed: opts.seed ?? 0 });
  for (const [name, t] of Object.entries(w)) {
    if (name === "lm_head.weight") {
      if (readout === "zero") t.data.fill(0);
      else for (let i = 0; i < t.size; i++) t.data[i] = t.data[i]! / m;
    } else if (HIDDEN.test(name))
      for (let i = 0; i < t.size; i++) t.data[i] = t.data[i]! / Math.sqrt(m);
    if (QKV.test(name)) {
      const cols = t.shape[t.shape.length - 1]!;
      for (let i = 0; i < t.size; i++) if (isQueryColumn(config, i % cols)) t.data[i] = 0;
    }
  }
  return w;
}

/** μP's step-size multipliers for {@link AdamOptions.lrScale} (1 for everything not listed in the table above). */
export function mupLrScale(
  config: GPTConfig,
  opts: MupOptions,
): Record<string, number | Float64Array> {
  const m = widthMultiplier(config, opts.baseWidth);
  const q = 1 / Math.sqrt(m);
  const out: Record<string, number | Float64Array> = {};
  for (const [name, t] of Object.entries(initWeights(config, { seed: 0 }))) {
    const hidden = HIDDEN.test(name) || name === "lm_head.weight" ? 1 / m : 1;
    if (QKV.test(name)) {
      const cols = t.shape[t.shape.length - 1]!;
      const f = new Float64Array(t.size);
      for (let i = 0; i < t.size; i++) f[i] = isQueryColumn(config, i % cols) ? hidden * q : hidden;
      out[name] = f;
    } else if (hidden !== 1) out[name] = hidden;
  }
  return out;
}
