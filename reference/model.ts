/**
 * The reference GPT: one configuration object, weights keyed by the Hugging Face GPT-2 names of
 * docs/NAMES.md, and the `gpt` formula of the spec evaluated and differentiated by the autodiff
 * engine. No math is restated here: the forward pass, the loss and every gradient come from
 * `spec/formulas/model.ts` (the `gpt` formula and the blocks it calls). This file owns what the
 * spec does not say — defaults, validation, initialisation and the shifting of targets.
 *
 * ```ts
 * const model = GPT.init(resolveModelConfig("tiny"), { seed: 1 });
 * const logits = model.forward([3, 1, 4, 1, 5]);        // [5, V]
 * const { loss, grads } = model.lossAndGrads([3, 1, 4, 1, 5, 9]); // predicts 1,4,1,5,9
 * ```
 */
import "../spec/index.js";
import { dim, evalDim } from "../spec/dims.js";
import { closest, getFormula, type HyperValueOf } from "../spec/formula.js";
import { resolveConfigOf, type FormulaConfigs } from "../spec/configs.js";
import {
  gptParams,
  BLOCK_ACTIVATIONS,
  MODEL_POSITIONS,
  NORMS,
  PLACEMENTS,
  type gptFormula,
} from "../spec/formulas/model.js";
import { findPreset, unknownPresetMessage } from "../spec/presets.js";
import type { Config, HyperValue } from "../spec/node.js";
import { formulaGraph, type Graph } from "../autodiff/graph.js";
import { evaluate } from "../autodiff/evaluate.js";
import { valueAndGrad, vjp } from "../autodiff/grad.js";
import { Rng } from "../autodiff/random.js";
import { Tensor, shapeToString, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import { generate, type GenerateOptions, type GenerateResult } from "./generate.js";

/** Any problem with a model configuration, its weights or its inputs. */
export class ModelError extends Error {
  override name = "ModelError";
}

export type Norm = (typeof NORMS)[number];
export type Placement = (typeof PLACEMENTS)[number];
export type Activation = (typeof BLOCK_ACTIVATIONS)[number];
export type Positions = (typeof MODEL_POSITIONS)[number];

type GptFormulaConfig = FormulaConfigs["gpt"];

/** The `gpt` formula's hyperparameters that describe a model (those not `inModel: false`). */
type ModelHyper = Exclude<(typeof gptFormula.hyper)[number], { readonly inModel: false }>;

/**
 * The sizes and variant switches of the `gpt` formula (docs/NAMES.md, "The whole model"), as the
 * formula declares them (see each one's `doc` there), resolved: every one present, sizes numbers.
 */
export type ModelHyperConfig = {
  readonly [S in ModelHyper as S["name"]]: S extends { readonly kind: "integer" }
    ? number
    : HyperValueOf<S>;
};

/**
 * Everything that fixes a GPT: the `gpt` formula's model hyperparameters
 * ({@link ModelHyperConfig}), plus what the model states in its own terms.
 */
export interface GPTConfig extends ModelHyperConfig {
  /** Precision of every float computation (f32 is emulated faithfully). */
  readonly dtype: FloatDType;
  /**
   * RoPE on a fraction of each head (GPT-NeoX `rotary_pct`, HF `partial_rotary_factor`): the first
   * r = ⌊rotary_pct·d_k⌋ dims rotate (r even), the rest pass through. Absent: 1 (every dim).
   * The formula's `rotary_dims` follows from it.
   */
  readonly rotary_pct?: number;
  /**
   * Dropout p at GPT-2's places (embedding, attention weights, both residual branches) while
   * training: `lossAndGrads` with a generator draws the keep masks; evaluation never drops.
   * Absent: 0.
   */
  readonly dropout?: number;
}

/** A partial configuration, optionally on top of a named preset of spec/presets.ts. */
export type ModelConfigInput = string | (Partial<GPTConfig> & { readonly preset?: string });

/** The model hyperparameters of the `gpt` declaration, in declaration order. */
const MODEL_HYPER = getFormula("gpt").hyper.filter((h) => h.inModel !== false);
/** The names of a model's hyperparameters: the fields of a configuration the `gpt` formula reads. */
export const MODEL_KEYS: readonly (keyof ModelHyperConfig)[] = MODEL_HYPER.map(
  (h) => h.name as keyof ModelHyperConfig,
);
/** Model hyperparameters whose default is 0, off (a sliding window, a soft cap). */
export const OFF_BY_DEFAULT: ReadonlySet<string> = new Set(
  MODEL_HYPER.filter((h) => h.default === 0).map((h) => h.name),
);
/** Sizes: the integer hyperparameters without a default (V, n_ctx, d_model, L, d_ff, H, H_kv). */
const SIZE_KEYS = MODEL_HYPER.filter((h) => h.kind === "integer" && h.default === undefined).map(
  (h) => h.name,
);
/** Fields of a model configuration: the model hyperparameters and {@link GPTConfig}'s own. */
const CONFIG_KEYS: readonly string[] = [
  ...MODEL_HYPER.map((h) => h.name),
  "dtype",
  "rotary_pct",
  "dropout",
];
/** Sizes a configuration may leave out, and how the model fills them from the sizes given before. */
type DeriveSize = (sizes: Readonly<Record<string, number>>, c: Config) => number;
const DERIVED_SIZES: Readonly<Record<string, DeriveSize>> = {
  H_kv: (s) => s["H"]!,
  // SwiGLU: LLaMA's two thirds of 4·d_model, so its three matrices hold as many weights as two
  d_ff: (s, c) =>
    c["activation"] === "swiglu"
      ? llamaHiddenSize(s["d_model"]!, SMALL_MULTIPLE_OF)
      : 4 * s["d_model"]!,
};

/**
 * LLaMA's FFN hidden size for SwiGLU: two thirds of 4·d_model (so the three SwiGLU matrices hold
 * as many weights as GELU's two), rounded up to a multiple of `multipleOf`. As in LLaMA's
 * `model.py`, the integer part is taken first: `int(2·4·d_model/3)`, then rounded up.
 *
 * @example llamaHiddenSize(4096, 256) // 11008 (LLaMA-7B's intermediate_size)
 */
export function llamaHiddenSize(d_model: number, multipleOf: number): number {
  if (!Number.isInteger(d_model) || d_model < 1)
    throw new ModelError(`llamaHiddenSize: d_model must be a positive integer, got ${d_model}`);
  if (!Number.isInteger(multipleOf) || multipleOf < 1)
    throw new ModelError(
      `llamaHiddenSize: multipleOf must be a positive integer, got ${multipleOf}`,
    );
  const hidden = Math.floor((2 * 4 * d_model) / 3);
  return multipleOf * Math.ceil(hidden / multipleOf);
}

/** The multiple LLaMA rounds d_ff to, scaled down for the small models of this project (gives llama-tiny's 44). */
const SMALL_MULTIPLE_OF = 4;

/**
 * A complete, validated configuration from a preset name, or from fields over an optional
 * `preset`. Fields not given come from the preset, then from the `gpt` formula's defaults
 * (the registry), then: `H_kv = H`, `d_ff = 4·d_model` (SwiGLU: `llamaHiddenSize(d_model, 4)`),
 * `dtype = "f64"`.
 *
 * @throws ModelError naming the field and what is wrong with it.
 * @example resolveModelConfig("gpt2-small").d_ff // 3072
 */
export function resolveModelConfig(input: ModelConfigInput): GPTConfig {
  const fields: Record<string, unknown> =
    typeof input === "string" ? { preset: input } : { ...input };
  const presetName = fields["preset"];
  delete fields["preset"];
  let base: Config = {};
  if (presetName !== undefined) {
    const preset = findPreset(presetName);
    if (preset === undefined) throw new ModelError(unknownPresetMessage(presetName));
    base = preset;
  }
  for (const k of Object.keys(fields)) {
    if (!CONFIG_KEYS.includes(k)) {
      const close = closest(k, CONFIG_KEYS);
      const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
      const fields = `${CONFIG_KEYS.join(", ")}, preset`;
      throw new ModelError(`unknown model configuration field "${k}"${hint}; fields: ${fields}`);
    }
    if (fields[k] === undefined) delete fields[k];
  }
  const dtype = fields["dtype"] ?? "f64";
  delete fields["dtype"];
  const rotaryPct = fields["rotary_pct"];
  delete fields["rotary_pct"];
  const dropout = fields["dropout"];
  delete fields["dropout"];
  if (dropout !== undefined && (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1))) {
    throw new ModelError(
      `dropout must be a number in [0, 1) (1 would drop every activation), got ${JSON.stringify(dropout)}`,
    );
  }
  if (dtype !== "f64" && dtype !== "f32")
    throw new ModelError(`dtype must be "f64" or "f32", got ${JSON.stringify(dtype)}`);
  const merged: Record<string, HyperValue> = { ...base };
  for (const [k, v] of Object.entries(fields)) merged[k] = v as HyperValue;

  for (const k of SIZE_KEYS) {
    if (merged[k] === undefined && DERIVED_SIZES[k] === undefined) {
      const orPreset = presetName === undefined ? " (or a preset)" : "";
      throw new ModelError(`model configuration needs ${k}${orPreset}`);
    }
    const v = merged[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < 1)) {
      throw new ModelError(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  // the registry validates the switches' values and fills their defaults
  let cfg: GptFormulaConfig;
  try {
    cfg = resolveConfigOf("gpt", merged);
  } catch (e) {
    throw new ModelError((e as Error).message);
  }
  const sizes: Record<string, number> = {};
  for (const k of SIZE_KEYS) if (typeof merged[k] === "number") sizes[k] = merged[k];
  for (const k of SIZE_KEYS) sizes[k] ??= DERIVED_SIZES[k]!(sizes, cfg);
  const { d_model, H, H_kv } = sizes as { d_model: number; H: number; H_kv: number };
  if (d_model % H !== 0)
    throw new ModelError(
      `d_model = ${d_model} is not a multiple of H = ${H} (d_k = d_model / H must be an integer)`,
    );
  if (H_kv > H || H % H_kv !== 0)
    throw new ModelError(
      `H_kv = ${H_kv} must divide H = ${H} (each key/value head serves H / H_kv query heads)`,
    );
  const positions = cfg.positions;
  if ((positions === "rope" || positions === "rope_interleaved") && (d_model / H) % 2 !== 0) {
    throw new ModelError(
      `positions "${positions}" rotates pairs of coordinates: d_k = d_model / H = ${d_model / H} must be even`,
    );
  }
  if (rotaryPct !== undefined) {
    if (typeof rotaryPct !== "number" || !(rotaryPct >= 0 && rotaryPct <= 1))
      throw new ModelError(
        `rotary_pct must be a number in [0, 1], got ${JSON.stringify(rotaryPct)}`,
      );
    if (positions !== "rope" && positions !== "rope_interleaved")
      throw new ModelError(`rotary_pct applies to RoPE positions, but positions is "${positions}"`);
    const r = Math.floor(rotaryPct * (d_model / H));
    if (r % 2 !== 0)
      throw new ModelError(
        `rotary_pct = ${rotaryPct} rotates ⌊${rotaryPct}·d_k⌋ = ${r} dims of ` +
          `d_k = ${d_model / H}; RoPE rotates pairs, so it must be even`,
      );
  }
  if (!(cfg.eps >= 0)) throw new ModelError(`eps must be a non-negative number, got ${cfg.eps}`);
  if (!(cfg.softcap >= 0)) {
    throw new ModelError(`softcap must be ≥ 0 (0 = no cap), got ${cfg.softcap}`);
  }
  const model: Record<string, HyperValue> = {};
  for (const h of MODEL_HYPER) {
    model[h.name] = sizes[h.name] ?? cfg[h.name as keyof GptFormulaConfig]!;
  }
  return {
    ...(model as ModelHyperConfig),
    dtype,
    ...(rotaryPct !== undefined ? { rotary_pct: rotaryPct as number } : {}),
    ...(dropout !== undefined ? { dropout: dropout as number } : {}),
  };
}

/** The hyperparameters of the `gpt` formula for a model configuration (everything but dtype). */
export function formulaConfig(c: GPTConfig): Config {
  // dropout is a training switch (trainingGraph); the model's own formula evaluates without it
  const { dtype: _dtype, rotary_pct: pct, dropout: _dropout, ...rest } = c;
  // GPT-NeoX: rotary_ndims = int(rotary_pct · head_size)
  const out: Record<string, HyperValue> = { ...rest, causal: true };
  if (pct !== undefined && pct !== 1) out["rotary_dims"] = Math.floor(pct * (c.d_model / c.H));
  return out;
}

/** Sizes of the named dims of a configuration, for evaluating symbolic argument shapes. */
function dimEnv(c: GPTConfig): Map<string, number> {
  return new Map<string, number>([
    ["V", c.V],
    ["n_ctx", c.n_ctx],
    ["d_model", c.d_model],
    ["H", c.H],
    ["H_kv", c.H_kv],
    ["d_k", c.d_model / c.H],
    ["d_ff", c.d_ff],
  ]);
}

/**
 * The shape of every parameter, in the `gpt` formula's argument order, read from the formula's
 * declaration (`gptParams`) — e.g. `h.0.attn.c_attn.weight: [d_model, (H + 2·H_kv)·d_k]`.
 */
export function parameterShapes(config: GPTConfig): Record<string, number[]> {
  const env = dimEnv(config);
  const out: Record<string, number[]> = {};
  for (const a of gptParams(formulaConfig(config))) {
    out[a.name] = a.shape.map((s) => {
      const v = evalDim(dim(s), env);
      if (v === undefined) throw new ModelError(`parameter ${a.name}: cannot size dim ${s}`);
      return v;
    });
  }
  return out;
}

const trainingGraphs = new Map<string, Graph>();

/** The `gpt` formula with dropout p at GPT-2's places: keep masks are inputs (dropout.embd, h.{l}.dropout.*). */
function trainingGraph(config: GPTConfig): Graph {
  const key = JSON.stringify(config);
  let g = trainingGraphs.get(key);
  if (g === undefined) {
    g = formulaGraph("gpt", { ...formulaConfig(config), dropout: config.dropout! });
    trainingGraphs.set(key, g);
  }
  return g;
}

/** Keep masks for every dropout input of the training graph, P(keep) = 1 − p, drawn from `rng`. */
export function dropoutMasks(config: GPTConfig, lead: readonly number[], rng: Rng): NamedTensors {
  const p = config.dropout ?? 0;
  const n = lead[lead.length - 1]!;
  const rows = lead.slice(0, -1);
  const out: NamedTensors = {};
  const draw = (name: string, shape: number[]) => {
    const t = Tensor.zeros(shape, "i32");
    for (let i = 0; i < t.size; i++) t.data[i] = rng.uniform() >= p ? 1 : 0;
    out[name] = t;
  };
  draw("dropout.embd", [...rows, n, config.d_model]);
  for (let l = 0; l < config.L; l++) {
    draw(`h.${l}.dropout.attn`, [...rows, config.H, n, n]);
    draw(`h.${l}.dropout.attn_out`, [...rows, n, config.d_model]);
    draw(`h.${l}.dropout.mlp_out`, [...rows, n, config.d_model]);
  }
  return out;
}

/** Number of trainable numbers (a tied embedding counted once). */
export function countParameters(config: GPTConfig): number {
  let n = 0;
  for (const s of Object.values(parameterShapes(config))) n += s.reduce((a, b) => a * b, 1);
  return n;
}

// ---------------------------------------------------------------------------------------------
// initialisation

/**
 * - `gpt2` (default): GPT-2 / nanoGPT. Every weight matrix and embedding ~ N(0, 0.02²); the
 *   projections that write into the residual stream (`attn.c_proj.weight`, `mlp.c_proj.weight`,
 *   `mlp.down_proj.weight`) ~ N(0, (0.02/√(2L))²) so the stream's variance does not grow with
 *   depth; biases 0; norm scales 1.
 * - `xavier`: the setting of fairseq's transformer, used by Xiong et al. 2020 ("On Layer
 *   Normalization in the Transformer Architecture"). Each linear map W ∈ R^{fan_in×fan_out} ~
 *   U(−a, a), a = √(6/(fan_in + fan_out)) — W_Q, W_K, W_V separately (the column blocks of
 *   `attn.c_attn.weight`), as separate layers would be; embeddings (wte, wpe, lm_head) ~
 *   N(0, 1/d_model); biases 0; norm scales 1. With `zeroQK`, W_Q = W_K = 0 (and b_Q = b_K = 0),
 *   the assumption of the paper's analysis: every attention row starts uniform.
 */
export type InitScheme = "gpt2" | "xavier";

/** Options of {@link initWeights}: the seed and the initialisation scheme. */
export interface InitOptions {
  /**
   * Seed of every draw (default 0). Each parameter has its own stream, so a variant that adds or
   * drops parameters leaves the others' values unchanged.
   */
  readonly seed?: number;
  /** The scheme (default `gpt2`); see {@link InitScheme}. */
  readonly init?: InitScheme;
  /** xavier only: W_Q = W_K = 0. */
  readonly zeroQK?: boolean;
}

/** FNV-1a of a name, mixed with the seed: an independent stream per parameter. */
function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return (h ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
}

const RESIDUAL_PROJECTIONS = /^h\.\d+\.(attn\.c_proj|mlp\.c_proj|mlp\.down_proj)\.weight$/;
const EMBEDDINGS = new Set(["wte.weight", "wpe.weight", "lm_head.weight"]);
const NORM_SCALE = /(^|\.)ln_(\d|f)\.weight$/;

/** Seeded initial weights for a configuration (see {@link InitScheme}). */
export function initWeights(config: GPTConfig, opts: InitOptions = {}): NamedTensors {
  const seed = opts.seed ?? 0;
  const scheme = opts.init ?? "gpt2";
  if (scheme !== "gpt2" && scheme !== "xavier")
    throw new ModelError(`init must be "gpt2" or "xavier", got ${JSON.stringify(scheme)}`);
  if (opts.zeroQK === true && scheme !== "xavier")
    throw new ModelError(
      `zeroQK belongs to the xavier initialisation (Xiong et al. 2020); init is "${scheme}"`,
    );
  const out: NamedTensors = {};
  const d_k = config.d_model / config.H;
  for (const [name, shape] of Object.entries(parameterShapes(config))) {
    const t = Tensor.zeros(shape, config.dtype);
    out[name] = t;
    if (name.endsWith(".bias")) continue;
    if (NORM_SCALE.test(name)) {
      t.data.fill(1);
      continue;
    }
    const rng = new Rng(streamSeed(seed, name));
    if (scheme === "gpt2") {
      const std = RESIDUAL_PROJECTIONS.test(name) ? 0.02 / Math.sqrt(2 * config.L) : 0.02;
      for (let i = 0; i < t.size; i++) t.data[i] = std * rng.normal();
      continue;
    }
    if (EMBEDDINGS.has(name)) {
      const std = 1 / Math.sqrt(config.d_model);
      for (let i = 0; i < t.size; i++) t.data[i] = std * rng.normal();
      continue;
    }
    const [rows, cols] = shape as [number, number];
    // column blocks that are separate linear maps: W_Q | W_K | W_V inside c_attn, each with its
    // own stream (so zeroing W_Q, W_K leaves W_V as it was)
    const blocks = name.endsWith("attn.c_attn.weight")
      ? [
          { label: "W_Q", from: 0, width: config.H * d_k, zero: opts.zeroQK === true },
          {
            label: "W_K",
            from: config.H * d_k,
            width: config.H_kv * d_k,
            zero: opts.zeroQK === true,
          },
          {
            label: "W_V",
            from: (config.H + config.H_kv) * d_k,
            width: config.H_kv * d_k,
            zero: false,
          },
        ]
      : [{ label: "", from: 0, width: cols, zero: false }];
    for (const b of blocks) {
      if (b.zero) continue;
      const r = b.label === "" ? rng : new Rng(streamSeed(seed, `${name}/${b.label}`));
      const a = Math.sqrt(6 / (rows + b.width));
      for (let i = 0; i < rows; i++)
        for (let c = b.from; c < b.from + b.width; c++)
          t.data[i * cols + c] = a * (2 * r.uniform() - 1);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the model

/** Token ids: one sequence, a batch of equal-length sequences, or an i32 tensor [..., n]. */
export type TokenInput = readonly number[] | readonly (readonly number[])[] | Tensor;

const graphs = new Map<string, { forward: Graph; full: Graph }>();

/**
 * The `gpt` formula's graph for a configuration (cached; the engine caches plans and gradient
 * graphs per graph object).
 */
function gptGraphs(config: GPTConfig): { forward: Graph; full: Graph } {
  const fc = formulaConfig(config);
  const key = JSON.stringify(fc);
  let g = graphs.get(key);
  if (g === undefined) {
    const full = formulaGraph("gpt", fc);
    // logits alone: the plan then needs no targets
    g = { full, forward: { ...full, outputs: { logits: full.outputs["logits"]! } } };
    if (graphs.size >= 64) graphs.clear();
    graphs.set(key, g);
  }
  return g;
}

/** Check weights against the configuration: every parameter present with its shape, nothing else. */
function checkWeights(config: GPTConfig, weights: NamedTensors, source = "weights"): void {
  const shapes = parameterShapes(config);
  const missing = Object.keys(shapes).filter((k) => weights[k] === undefined);
  if (missing.length > 0)
    throw new ModelError(
      `${source}: missing parameter${missing.length > 1 ? "s" : ""} ` +
        `${missing.join(", ")} (the configuration needs ` +
        `${Object.keys(shapes).length} tensors)`,
    );
  const extra = Object.keys(weights).filter((k) => shapes[k] === undefined);
  if (extra.length > 0)
    throw new ModelError(
      `${source}: unexpected tensor${extra.length > 1 ? "s" : ""} ` +
        `${extra.join(", ")} (not a parameter of this configuration)`,
    );
  for (const [k, s] of Object.entries(shapes)) {
    const t = weights[k]!;
    if (!(t instanceof Tensor)) throw new ModelError(`${source}: ${k} is not a Tensor`);
    if (t.dtype === "i32")
      throw new ModelError(`${source}: ${k} holds integers (i32); parameters are float tensors`);
    if (t.shape.length !== s.length || t.shape.some((d, i) => d !== s[i])) {
      throw new ModelError(
        `${source}: ${k} has shape ${shapeToString(t.shape)} but the configuration needs ${shapeToString(s)}`,
      );
    }
  }
}

/** Token ids as an i32 tensor [..., n], each checked against V. */
function tokenTensor(tokens: TokenInput, V: number, what = "tokens"): Tensor {
  let t: Tensor;
  if (tokens instanceof Tensor) t = tokens;
  else if (tokens.length > 0 && Array.isArray(tokens[0])) {
    const rows = tokens as readonly (readonly number[])[];
    const n = rows[0]!.length;
    rows.forEach((r, b) => {
      if (!Array.isArray(r) || r.length !== n)
        throw new ModelError(
          `${what}: sequence ${b} has ${Array.isArray(r) ? r.length : "no"} ` +
            `tokens but sequence 0 has ${n}; a batch needs equal lengths`,
        );
    });
    t = new Tensor("i32", [rows.length, n], Int32Array.from(rows.flat()));
  } else {
    const ids = tokens as readonly number[];
    for (const [i, v] of ids.entries())
      if (!Number.isInteger(v))
        throw new ModelError(`${what}: position ${i} holds ${v}, not an integer token id`);
    t = new Tensor("i32", [ids.length], Int32Array.from(ids));
  }
  if (t.shape.length < 1)
    throw new ModelError(`${what}: expected ids of shape [..., n], got a scalar`);
  for (let i = 0; i < t.size; i++) {
    const v = t.data[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= V)
      throw new ModelError(
        `${what}: id ${v} at index [${t.unravel(i).join(", ")}] is outside the vocabulary 0…${V - 1}`,
      );
  }
  return t.dtype === "i32" ? t : t.to("i32");
}

/** Split [..., n+1] ids into inputs [..., n] and next-token targets [..., n]. */
export function shiftTargets(t: Tensor): { tokens: Tensor; targets: Tensor } {
  const n1 = t.shape[t.shape.length - 1]!;
  if (n1 < 2)
    throw new ModelError(
      `the loss needs at least 2 tokens per sequence (inputs 0…n−2 predict 1…n−1), got ${n1}`,
    );
  const rows = t.size / n1;
  const lead = t.shape.slice(0, -1);
  // (..., n+1) → (..., n) inputs [0, n) and (..., n) targets [1, n+1)
  const tokens = Tensor.zeros([...lead, n1 - 1], "i32");
  const targets = Tensor.zeros([...lead, n1 - 1], "i32");
  for (let r = 0; r < rows; r++) {
    tokens.data.set(t.data.subarray(r * n1, r * n1 + n1 - 1), r * (n1 - 1));
    targets.data.set(t.data.subarray(r * n1 + 1, (r + 1) * n1), r * (n1 - 1));
  }
  return { tokens, targets };
}

/**
 * A GPT: a configuration and its weights (HF GPT-2 names). Forward, loss and gradients are the
 * `gpt` formula evaluated by the engine in `config.dtype`.
 */
export class GPT {
  readonly config: GPTConfig;
  readonly weights: NamedTensors;

  /** @throws ModelError for a missing, extra or misshaped weight. */
  constructor(config: GPTConfig, weights: NamedTensors) {
    this.config = resolveModelConfig(config); // validated even when built by hand
    checkWeights(config, weights);
    this.weights = weights;
  }

  /** A seeded initial model (see {@link InitScheme}). */
  static init(config: ModelConfigInput | GPTConfig, opts: InitOptions = {}): GPT {
    const c = resolveModelConfig(config);
    return new GPT(c, initWeights(c, opts));
  }

  get parameterCount(): number {
    return countParameters(this.config);
  }

  /** The `gpt` formula's hyperparameters for this model. */
  get formulaConfig(): Config {
    return formulaConfig(this.config);
  }

  private checkLength(t: Tensor, what: string): void {
    const n = t.shape[t.shape.length - 1]!;
    if (n === 0) throw new ModelError(`${what}: a sequence needs at least one token`);
    if (this.config.positions === "learned" && n > this.config.n_ctx) {
      throw new ModelError(
        `${what}: ${n} positions exceed n_ctx = ${this.config.n_ctx} (the rows of wpe.weight, learned positions)`,
      );
    }
  }

  /** Logits [..., n, V] for ids [..., n]. */
  forward(tokens: TokenInput): Tensor {
    const t = tokenTensor(tokens, this.config.V);
    this.checkLength(t, "forward");
    return evaluate(
      gptGraphs(this.config).forward,
      { tokens: t, ...this.weights },
      { dtype: this.config.dtype },
    )["logits"]!;
  }

  /** Logits and mean cross-entropy against explicit (already shifted) targets, as the `gpt` formula states them. */
  evaluate(tokens: TokenInput, targets: TokenInput): { logits: Tensor; loss: number } {
    const t = tokenTensor(tokens, this.config.V);
    const y = tokenTensor(targets, this.config.V, "targets");
    this.checkLength(t, "evaluate");
    if (y.shape.length !== t.shape.length || y.shape.some((d, i) => d !== t.shape[i])) {
      throw new ModelError(
        `targets have shape ${shapeToString(y.shape)} but tokens have ${shapeToString(t.shape)}`,
      );
    }
    const out = evaluate(
      gptGraphs(this.config).full,
      { tokens: t, targets: y, ...this.weights },
      { dtype: this.config.dtype },
    );
    return { logits: out["logits"]!, loss: out["loss"]!.data[0]! };
  }

  /** Mean next-token cross-entropy of ids [..., n]: positions 0…n−2 predict 1…n−1. */
  loss(tokens: TokenInput): number {
    const { tokens: x, targets } = shiftTargets(tokenTensor(tokens, this.config.V));
    return this.evaluate(x, targets).loss;
  }

  /**
   * The loss of {@link loss} and its gradient with respect to every parameter (by name); with
   * `rng`, a training step (dropout on).
   */
  lossAndGrads(tokens: TokenInput, rng?: Rng): { loss: number; grads: NamedTensors } {
    const { tokens: x, targets } = shiftTargets(tokenTensor(tokens, this.config.V));
    return this.lossAndGradsFor(x, targets, rng);
  }

  /**
   * Loss and parameter gradients against explicit (already shifted) targets. With `dropout` in
   * the configuration and a generator `rng` (training), keep masks are drawn from it and the loss
   * is that of the dropped-out model; without `rng` nothing is dropped.
   */
  lossAndGradsFor(
    tokens: TokenInput,
    targets: TokenInput,
    rng?: Rng,
  ): { loss: number; grads: NamedTensors } {
    const t = tokenTensor(tokens, this.config.V);
    const y = tokenTensor(targets, this.config.V, "targets");
    this.checkLength(t, "lossAndGrads");
    const train = rng !== undefined && (this.config.dropout ?? 0) > 0;
    const graph = train ? trainingGraph(this.config) : gptGraphs(this.config).full;
    const masks = train ? dropoutMasks(this.config, t.shape, rng) : {};
    const r = valueAndGrad(
      graph,
      { tokens: t, targets: y, ...masks, ...this.weights },
      {
        output: "loss",
        dtype: this.config.dtype,
        wrt: Object.keys(this.weights),
      },
    );
    return { loss: r.value.data[0]!, grads: r.grads };
  }

  /**
   * Outputs (`logits`, `loss`) and the parameter gradients of Σ out ⊙ cot for cotangents of
   * either or both outputs — the backward pass a golden case with random cotangents checks.
   */
  vjp(
    tokens: TokenInput,
    targets: TokenInput,
    cotangents: Readonly<{ logits?: Tensor; loss?: Tensor }>,
  ): { outputs: NamedTensors; grads: NamedTensors } {
    const t = tokenTensor(tokens, this.config.V);
    const y = tokenTensor(targets, this.config.V, "targets");
    this.checkLength(t, "vjp");
    const cots: NamedTensors = {};
    for (const [k, v] of Object.entries(cotangents)) {
      if (k !== "logits" && k !== "loss")
        throw new ModelError(`vjp: the model's outputs are logits and loss, not ${k}`);
      if (v !== undefined) cots[k] = v;
    }
    return vjp(gptGraphs(this.config).full, { tokens: t, targets: y, ...this.weights }, cots, {
      dtype: this.config.dtype,
      wrt: Object.keys(this.weights),
    });
  }

  /** Autoregressive decoding from `prompt` (see generate.ts); computes in the model's dtype. */
  generate(prompt: readonly number[], opts: Omit<GenerateOptions, "dtype">): GenerateResult {
    return generate(this.formulaConfig, this.weights, prompt, {
      ...opts,
      dtype: this.config.dtype,
    });
  }

  /** The same configuration with other weights (checked). */
  withWeights(weights: NamedTensors): GPT {
    return new GPT(this.config, weights);
  }
}
