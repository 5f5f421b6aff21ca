/**
 * Diagnosis hints: what a mismatch looks like, in words an engineer can act on.
 *
 * Two kinds of evidence:
 *
 * - **match**: the actual output equals, within the comparison's tolerance, what the reference
 *   computes for a named mistake — the causal mask shifted by one or left out, the attention
 *   scale 1/√d_model instead of 1/√d_k, GELU's tanh form instead of erf (or the reverse), sine
 *   and cosine swapped, a weight used transposed, the other block placement. These are
 *   alternative computations built from the spec's own formulas and primitives and evaluated by
 *   the reference; a match is strong evidence.
 * - **pattern**: the error has a recognisable shape — only at masked positions of a causal
 *   tensor (above the diagonal, or the off-by-one band next to it), a constant factor (named
 *   when it is √(d_model/d_k)), a constant offset per row, the expected values in a transposed
 *   or column-major layout.
 *
 * Each detector is independent; {@link diagnose} runs the ones that apply and returns every hint
 * found, matches first.
 */
import "../spec/index.js";
import { formulasOf, hasFormula } from "../spec/formula.js";
import { dim, evalDim } from "../spec/dims.js";
import type { Dim } from "../spec/dims.js";
import { dimValue, Expr, mul, sqrt, stopGradient } from "../spec/expr.js";
import type { Config, Node } from "../spec/node.js";
import { onFormula, reapply, type CallNode, type CallRewrite as Plant } from "../spec/rewrite.js";
import { evaluate, plan } from "../autodiff/evaluate.js";
import { vjp } from "../autodiff/grad.js";
import type { Graph } from "../autodiff/graph.js";
import type { FormulaConfig } from "../autodiff/implementation.js";
import { Tensor, sameShape, shapeToString } from "../autodiff/tensor.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { compareTensors } from "../golden/compare.js";
import { referenceGraph, referenceImplementation } from "../reference/implementation.js";
import { rewriteGraph } from "../reference/rewritten.js";
import {
  layerNormVariance,
  MAX_SEED,
  maskShift,
  maxSeeded,
  sinCosSwapped,
  zerosOf,
} from "../properties/mistakes.js";
import { causalVisibility, type Visibility } from "../properties/spec-values.js";
import { elementMatches } from "./tolerance.js";
import { knownConfig, ReferenceTrace } from "./trace.js";
import type { CallSite } from "./trace.js";

/** Every hint a diagnosis can give (docs/VERIFY.md has a row for each). */
export const HINT_IDS = [
  "mask-off-by-one",
  "mask-missing",
  "mask-diagonal",
  "mask-unexpected",
  "masked-positions",
  "attention-scale",
  "constant-factor",
  "row-offset",
  "transposed",
  "column-major",
  "weight-transposed",
  "gelu-tanh",
  "gelu-erf",
  "sin-cos-swapped",
  "placement",
  "max-seed",
  "layernorm-unbiased",
  "eps-outside-sqrt",
  "scale-factor",
  "bias-dropped",
  "loss-summed",
  "positions-missing",
  "tied-gradient",
  "part-skipped",
] as const;

export type HintId = (typeof HINT_IDS)[number];

export interface Hint {
  readonly id: HintId;
  /** One or two sentences: what the error looks like and what probably causes it. */
  readonly message: string;
  /** `match`: the output equals a named alternative computation; `pattern`: the error has this shape. */
  readonly evidence: "match" | "pattern";
}

/** A mismatching tensor and everything needed to explain it. */
export interface Symptom {
  readonly formula: string;
  /** The formula's configuration (concrete sizes). */
  readonly config: FormulaConfig;
  /** The arguments the implementation was given. */
  readonly inputs: NamedTensors;
  readonly dtype: FloatDType;
  /** Which output of the formula (`y`, `logits`). */
  readonly output: string;
  readonly expected: Tensor;
  readonly actual: Tensor;
  /** The comparison's tolerance: alternative computations must match within it. */
  readonly tolerance: { readonly rtol: number; readonly atol: number };
  /** Sizes stated by a golden case (`H`, `d_model`), when there is one. */
  readonly dims?: Readonly<Record<string, number>>;
  /** For a gradient (`formula` = `grad(f)`, `output` = the argument): the cotangents it was taken with. */
  readonly cotangents?: NamedTensors;
}

function fmt(x: number): string {
  return Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-4)
    ? x.toExponential(2)
    : Number(x.toPrecision(4)).toString();
}

function within(expected: Tensor, actual: Tensor, tol: { rtol: number; atol: number }): boolean {
  if (expected.dtype !== actual.dtype || !sameShape(expected.shape, actual.shape)) return false;
  return compareTensors(expected, actual, { rtol: tol.rtol, atol: tol.atol }).ok;
}

// ---------------------------------------------------------------------------------------------
// Alternative computations ("match" evidence)

let reference: ReturnType<typeof referenceImplementation> | undefined;

/** The reference's output `output` of `formula` on `inputs` under `config`, or undefined if it cannot run. */
async function referenceOutput(
  formula: string,
  config: FormulaConfig,
  inputs: NamedTensors,
  dtype: FloatDType,
  output: string,
): Promise<Tensor | undefined> {
  reference ??= referenceImplementation();
  try {
    return (await reference.forward({ formula, config: { ...config, dtype }, inputs })).outputs[
      output
    ];
  } catch {
    return undefined;
  }
}

/**
 * Heads H for the scale hypothesis: the config's (attention inside MHA carries it), the case's, or
 * Q's head axis of [b, H, n, d_k].
 */
function headsOf(s: Symptom): number | undefined {
  const h = s.config["H"] ?? s.dims?.["H"];
  if (typeof h === "number") return h > 1 ? h : undefined;
  const Q = s.inputs["Q"];
  if (Q !== undefined && Q.rank >= 4) {
    const H = Q.shape[Q.rank - 3]!;
    return H > 1 ? H : undefined;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Named mistakes inside the call tree ("match" evidence at every level)

/** Sizes of the symptom's formula on its inputs: dims of the graph bound to numbers. */
interface VariantContext {
  readonly s: Symptom;
  readonly size: (d: Dim) => number | undefined;
}

/** A named mistake: the variant of some formula applications, tried wherever they occur in the symptom's call tree. */
interface Variant {
  readonly id: HintId;
  /** The mistake, completing "the output equals <formula> with …" (given the applications it replaced). */
  readonly what: string | ((calls: readonly CallNode[]) => string);
  readonly plant: Plant;
}

const lastDim = (e: Expr): Dim => e.shape[e.shape.length - 1]!;

/** The causal mask with `shift` extra visible keys (null: nothing masked); sliding windows are left alone. */
function maskVariant(shift: number | null): Plant {
  if (shift !== null) return maskShift(shift);
  return (call) =>
    call.formula === "causal_mask" && (call.config["window"] ?? 0) === 0
      ? zerosOf(call)
      : undefined;
}

/**
 * Attention applications with their score scale multiplied by `factor(call)` (undefined: leave the
 * application alone): the registry's attention on factor·Q, whatever its scale.
 */
function attentionScaled(factor: (call: CallNode) => number | undefined): Plant {
  return onFormula("attention", (call) => {
    const f = factor(call);
    if (f === undefined) return undefined;
    return reapply(call, { args: { Q: mul(new Expr(call.args["Q"]!), f) } });
  });
}

/**
 * Formula applications replaced by another formula on the same arguments (or the same formula with
 * another configuration).
 */
function swapped(
  from: string,
  to: string,
  config: (cfg: Config) => Config | undefined = (c) => c,
): Plant {
  return onFormula(from, (call) => {
    const cfg = config(call.config);
    if (cfg === undefined) return undefined;
    return to === from ? reapply(call, { config: cfg }) : reapply(call, { formula: to });
  });
}

/** Heads H of an attention application: its own configuration (inside mha), else the symptom's. */
function headsAt(ctx: VariantContext, call: CallNode, root: boolean): number | undefined {
  const H = call.config["H"];
  if (typeof H === "number") return H;
  if (typeof H === "string") return ctx.size(dim(H));
  return root ? headsOf(ctx.s) : undefined;
}

function variants(ctx: VariantContext, g: Graph): Variant[] {
  const s = ctx.s;
  const roots = new Set(Object.values(g.outputs).map((e) => e.node));
  const isRoot = (call: CallNode): boolean => roots.has(call);
  const out: Variant[] = [];
  // the mask's own cases: the pattern of its mismatches says more than the mask's variant
  if (s.formula !== "causal_mask")
    out.push(
      {
        id: "mask-off-by-one",
        what:
          "a causal mask that lets query i also see key i + 1 (one future token): " +
          "an off-by-one in the mask (j ≤ i + 1 + m − n instead of j ≤ i + m − n)",
        plant: maskVariant(1),
      },
      {
        id: "mask-missing",
        what: "no causal mask: every query sees every key, including future ones",
        plant: maskVariant(null),
      },
      {
        id: "mask-diagonal",
        what:
          "a mask that also hides the diagonal: query i cannot see its own key (j " +
          "< i + m − n instead of j ≤ i + m − n)",
        plant: maskVariant(-1),
      },
      {
        id: "mask-unexpected",
        what:
          "the causal mask, but the attention here is non-causal (causal = " +
          "false): the mask is applied regardless of the configuration",
        plant: swapped("attention", "attention", (c) =>
          c["causal"] === false && c["window"] === 0 ? { ...c, causal: true } : undefined,
        ),
      },
    );
  const dk = (call: CallNode): number | undefined => ctx.size(lastDim(new Expr(call.args["Q"]!)));
  const heads = (call: CallNode): number | undefined => headsAt(ctx, call, isRoot(call));
  const scale = (what: (d_k: number, H: number | undefined) => string, plant: Plant): Variant => ({
    id: "attention-scale",
    what: (calls) =>
      `${what(dk(calls[0]!) ?? Number.NaN, heads(calls[0]!))}: a wrong attention scale`,
    plant,
  });
  // the configured scale replaced (default scale only, d_k known and above 1)
  const rescaled = (s: (d_k: number) => number): Plant =>
    onFormula("attention", (call) => {
      const d_k = dk(call);
      if (d_k === undefined || d_k <= 1 || call.config["scale"] !== undefined) return undefined;
      return reapply(call, { config: { scale: s(d_k) } });
    });
  out.push(
    scale(
      (d_k, H) =>
        `the scores scaled by 1/√d_model (d_model = H·d_k = ${(H ?? 1) * d_k}) ` +
        `instead of 1/√d_k (d_k = ${d_k}): ${fmt(Math.sqrt(H ?? 1))} = ` +
        `√(d_model/d_k) times too small`,
      attentionScaled((call) => {
        const H = heads(call);
        return H !== undefined && H > 1 && dk(call) !== undefined ? 1 / Math.sqrt(H) : undefined;
      }),
    ),
    scale(
      (d_k) => `unscaled scores (1 instead of 1/√d_k, d_k = ${d_k})`,
      rescaled(() => 1),
    ),
    scale(
      (d_k) => `the scores scaled by 1/d_k instead of 1/√d_k (d_k = ${d_k})`,
      rescaled((d_k) => 1 / d_k),
    ),
  );
  if (s.formula !== "gelu" && s.formula !== "gelu_tanh") {
    out.push(
      {
        id: "gelu-tanh",
        what: "GELU's tanh approximation (GPT-2's gelu_new) where the erf form is configured (activation = gelu)",
        plant: swapped("gelu", "gelu_tanh"),
      },
      {
        id: "gelu-erf",
        what: "the erf form of GELU where the tanh approximation is configured (activation = gelu_tanh)",
        plant: swapped("gelu_tanh", "gelu"),
      },
    );
  }
  for (const [from, to] of [
    ["post", "pre"],
    ["pre", "post"],
  ] as const) {
    out.push({
      id: "placement",
      what: `${to}-LN blocks where placement = ${from}: LayerNorm is applied at the other place`,
      plant: swapped("block", "block", (c) =>
        c["placement"] === from && c["parallel"] !== true && c["kv_cache"] !== true
          ? { ...c, placement: to }
          : undefined,
      ),
    });
  }
  out.push(
    {
      id: "layernorm-unbiased",
      what:
        "LayerNorm dividing the variance by d − 1 (unbiased, torch.var's " +
        "default) instead of d (biased, what LayerNorm uses)",
      plant: layerNormVariance("unbiased"),
    },
    {
      id: "eps-outside-sqrt",
      what:
        "LayerNorm adding ε to the standard deviation, (x − μ)/(√σ² + ε), " +
        "instead of inside the square root, (x − μ)/√(σ² + ε)",
      plant: layerNormVariance("eps-outside"),
    },
    {
      id: "max-seed",
      what:
        `softmax whose running maximum starts at ${MAX_SEED} instead of −∞: ` +
        `rows entirely below ${MAX_SEED} underflow to exp(x − m) = 0 and give 0/0 = NaN`,
      plant: maxSeeded(MAX_SEED),
    },
    {
      id: "max-seed",
      what:
        `softmax whose running maximum starts at ${MAX_SEED} instead of −∞, ` +
        `with an empty sum mapped to 0: rows entirely below ${MAX_SEED} ` +
        `underflow and give zeros`,
      plant: maxSeeded(MAX_SEED, true),
    },
    {
      id: "positions-missing",
      what: "no position embedding added: the first block's input is the token embedding alone",
      plant: onFormula(["positional_learned", "positional_sinusoidal"], zerosOf),
    },
    {
      id: "scale-factor",
      what:
        "the token embedding multiplied by √d_model (the original Transformer's " +
        "embedding scale, which GPT does not use)",
      plant: (call) =>
        call.formula === "embedding" && !isRoot(call)
          ? mul(new Expr(call), sqrt(dimValue(call.shape[call.shape.length - 1]!)))
          : undefined,
    },
  );
  return out;
}

/**
 * The symptom's formula computed with `plant`; undefined when the plant applies nowhere or the
 * variant cannot be evaluated.
 */
function plantedOutput(
  g: Graph,
  plant: Plant,
  s: Symptom,
): { y: Tensor; planted: CallNode[] } | undefined {
  const planted: CallNode[] = [];
  const counted: Plant = (call, original) => {
    const e = plant(call, original);
    if (e !== undefined) planted.push(call);
    return e;
  };
  try {
    const pg = rewriteGraph(g, counted);
    if (planted.length === 0) return undefined;
    const y = evaluate(pg, s.inputs, { dtype: s.dtype, fused: false })[s.output];
    return y === undefined ? undefined : { y, planted };
  } catch {
    return undefined;
  }
}

/** Where a variant acted, for the message: nothing when it replaced the formula itself. */
function whereText(s: Symptom, planted: readonly CallNode[]): string {
  const inner = [...new Set(planted.map((c) => c.formula))].filter((f) => f !== s.formula);
  if (inner.length === 0) return "";
  return ` (${inner.join(", ")} inside ${s.formula}, ${planted.length} application${planted.length === 1 ? "" : "s"})`;
}

/** The graph of the symptom's formula and a size lookup for its dims, or undefined outside the registry. */
function graphOfSymptom(s: Symptom): { g: Graph; ctx: VariantContext } | undefined {
  if (!hasFormula(s.formula)) return undefined;
  try {
    const g = referenceGraph(s.formula, knownConfig(s.formula, s.config));
    const dims = plan(g, s.inputs, { dtype: s.dtype }).binding.dims;
    return { g, ctx: { s, size: (d) => evalDim(d, dims) } };
  } catch {
    return undefined;
  }
}

/** Each named mistake, wherever its formula occurs in the call tree, against the actual output. */
function variantHypotheses(s: Symptom): Hint[] {
  const gc = graphOfSymptom(s);
  if (gc === undefined) return [];
  const hints: Hint[] = [];
  const matched = new Set<HintId>();
  for (const v of variants(gc.ctx, gc.g)) {
    if (matched.has(v.id)) continue;
    const r = plantedOutput(gc.g, v.plant, s);
    if (r === undefined || !within(r.y, s.actual, s.tolerance)) continue;
    matched.add(v.id);
    const what = typeof v.what === "string" ? v.what : v.what(r.planted);
    hints.push({
      id: v.id,
      evidence: "match",
      message: `the output equals ${s.formula} with ${what}${whereText(s, r.planted)}`,
    });
  }
  // the mask: an off-by-one that at these sizes equals no mask at all is named once, as the off-by-one
  if (matched.has("mask-off-by-one") && matched.has("mask-missing")) {
    const i = hints.findIndex((h) => h.id === "mask-missing");
    hints.splice(i, 1);
    const j = hints.findIndex((h) => h.id === "mask-off-by-one");
    hints[j] = {
      ...hints[j]!,
      message: `${hints[j]!.message}; at these sizes that is the same as no mask at all`,
    };
  }
  return hints;
}

const NORM_FORMULAS = new Set(["layer_norm", "rms_norm"]);
const BLOCK_FORMULAS = new Set(formulasOf("block"));

/**
 * A composite that skips one of its parts: a norm (every block's `ln_1`, or `ln_f`) or a block
 * replaced by its input. The hint names the composite that skipped it: the part itself, fed its
 * arguments, is right.
 */
function skippedPartHypotheses(s: Symptom): Hint[] {
  if (!hasFormula(s.formula) || !(BLOCK_FORMULAS.has(s.formula) || s.formula === "gpt")) return [];
  let trace: ReferenceTrace;
  try {
    trace = ReferenceTrace.build(s.formula, s.config, s.inputs, s.dtype);
  } catch {
    return [];
  }
  // norms grouped by their place in a block (h.0/ln_1 and h.1/ln_1 together), blocks one by one
  const groups = new Map<string, CallSite[]>();
  for (const site of trace.sites.slice(1)) {
    const one = Object.keys(site.outputs).length === 1 && site.args["x"] !== undefined;
    if (!one || !(NORM_FORMULAS.has(site.formula) || BLOCK_FORMULAS.has(site.formula))) continue;
    const key = NORM_FORMULAS.has(site.formula)
      ? site.path
          .slice(1)
          .map((p) => (/^h\.\d+$/.test(p) ? "h.*" : p))
          .join("/")
      : site.path.slice(1).join("/");
    groups.set(key, [...(groups.get(key) ?? []), site]);
  }
  for (const sites of groups.values()) {
    const nodes = new Set<Node>(sites.flatMap((x) => Object.values(x.outputs)));
    const plant: Plant = (call, site) =>
      nodes.has(site.original) ? new Expr(call.args["x"]!) : undefined;
    const r = plantedOutput(trace.graph, plant, s);
    if (r === undefined || !within(r.y, s.actual, s.tolerance)) continue;
    const site = sites[0]!;
    const parent = site.path[site.path.length - 2]!;
    const parentFormula = parent.startsWith("h.") ? `the block ${parent}` : parent;
    const which =
      sites.length > 1
        ? `${site.name} in every block (${sites.map((x) => x.path.slice(1).join("/")).join(", ")})`
        : `${site.path.slice(1).join("/")} (${site.formula})`;
    const owner = sites.length > 1 ? "the block" : parentFormula;
    return [
      {
        id: "part-skipped",
        evidence: "match",
        message:
          `the output equals ${s.formula} with ${which} skipped, its output equal ` +
          `to its input: ${owner} does not apply this part — the mistake is in ` +
          `${owner}, not in ${site.formula}`,
      },
    ];
  }
  return [];
}

/**
 * A bias (or LayerNorm β) left out: the formula with one bias parameter zero (the same one in every
 * block) equals the actual output.
 */
async function biasHypotheses(s: Symptom): Promise<Hint[]> {
  if (!hasFormula(s.formula)) return [];
  const isBias = (name: string, t: Tensor): boolean =>
    t.rank === 1 && t.dtype !== "i32" && /(^|\.)(bias|beta|b|b_[A-Za-z0-9]+)$/.test(name);
  const groups = new Map<string, string[]>();
  for (const [name, t] of Object.entries(s.inputs)) {
    if (!isBias(name, t)) continue;
    const role = name.replace(/^h\.\d+\./, "");
    groups.set(role, [...(groups.get(role) ?? []), name]);
  }
  if (groups.size > 16) return [];
  for (const [role, names] of groups) {
    const inputs: Record<string, Tensor> = { ...s.inputs };
    for (const n of names) inputs[n] = new Tensor(s.inputs[n]!.dtype, s.inputs[n]!.shape);
    const y = await referenceOutput(s.formula, s.config, inputs, s.dtype, s.output);
    if (y === undefined || !within(y, s.actual, s.tolerance)) continue;
    const where = names.length > 1 ? ` in every block (${names.length} of them)` : "";
    return [
      {
        id: "bias-dropped",
        evidence: "match",
        message: `the output equals ${s.formula} with ${role} left out (zero)${where}: a bias dropped`,
      },
    ];
  }
  return [];
}

/**
 * A tied embedding (gpt, tied = true) whose gradient misses one of its two uses: the token lookup
 * or the output projection.
 */
function tiedGradientHypotheses(s: Symptom, formula: string): Hint[] {
  if (
    formula !== "gpt" ||
    s.cotangents === undefined ||
    s.config["tied"] === false ||
    s.output !== "wte.weight" ||
    !hasFormula(formula)
  )
    return [];
  let g: Graph;
  try {
    g = referenceGraph(formula, knownConfig(formula, s.config));
  } catch {
    return [];
  }
  const uses: Array<[string, string, string]> = [
    ["logits", "W_vocab", "its use as the output projection (logits = x Eᵀ)"],
    ["embedding", "E", "its use as the token embedding lookup (E[t])"],
  ];
  for (const [f, arg, what] of uses) {
    const plant = onFormula(f, (call) =>
      reapply(call, { args: { [arg]: stopGradient(new Expr(call.args[arg]!)) } }),
    );
    try {
      const pg = rewriteGraph(g, plant);
      const grad = vjp(pg, s.inputs, s.cotangents, { dtype: s.dtype, fused: false }).grads[
        s.output
      ];
      if (grad !== undefined && within(grad, s.actual, s.tolerance)) {
        return [
          {
            id: "tied-gradient",
            evidence: "match",
            message:
              `the gradient of the tied embedding wte.weight equals the one that ` +
              `misses ${what}: the two contributions of a shared weight must be added`,
          },
        ];
      }
    } catch {
      // the variant could not be evaluated: no hint
    }
  }
  return [];
}

/** Config and formula swaps the reference can evaluate directly. */
async function swapHypotheses(s: Symptom): Promise<Hint[]> {
  const hints: Hint[] = [];
  const tryVariant = async (formula: string, config: FormulaConfig): Promise<boolean> => {
    if (!hasFormula(formula)) return false;
    const y = await referenceOutput(formula, config, s.inputs, s.dtype, s.output);
    return y !== undefined && within(y, s.actual, s.tolerance);
  };
  const f = s.formula;
  const cfg = s.config;
  // GELU: erf (PyTorch's default) against tanh (GPT-2's gelu_new)
  if (f === "gelu" && (await tryVariant("gelu_tanh", {}))) {
    hints.push({
      id: "gelu-tanh",
      evidence: "match",
      message:
        `the output equals GELU's tanh approximation (GPT-2's gelu_new, formula ` +
        `gelu_tanh) where the erf form ${gapText(s)} is expected`,
    });
  }
  if (f === "gelu_tanh" && (await tryVariant("gelu", {}))) {
    hints.push({
      id: "gelu-erf",
      evidence: "match",
      message:
        `the output equals the erf form of GELU (PyTorch's default, formula ` +
        `gelu) where the tanh approximation ${gapText(s)} is expected`,
    });
  }
  const placements: Array<[string, FormulaConfig, string]> = [];
  if (f === "block_post_ln")
    placements.push([
      "block_pre_ln",
      cfg,
      "pre-LN (GPT-2's) block where the post-LN (the seed's) block",
    ]);
  if (f === "block_pre_ln")
    placements.push([
      "block_post_ln",
      cfg,
      "post-LN (the seed's) block where the pre-LN (GPT-2's) block",
    ]);
  for (const [pf, pc, what] of placements) {
    if (await tryVariant(pf, pc))
      hints.push({
        id: "placement",
        evidence: "match",
        message: `the output equals the ${what} is expected: LayerNorm is applied at the other place`,
      });
  }
  return hints;
}

/** The largest |gelu − gelu_tanh| over this input, for context in GELU hints. */
function gapText(s: Symptom): string {
  const d = maxAbs(s.expected, s.actual);
  return (
    `(they differ here by up to ${fmt(d)}, ` +
    `${fmt(d / Math.max(s.tolerance.atol, Number.MIN_VALUE))}× the absolute tolerance)`
  );
}

function maxAbs(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < Math.min(a.size, b.size); i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (Number.isFinite(d) && d > m) m = d;
  }
  return m;
}

/** positional_sinusoidal with sin and cos exchanged in its body: column 2k cos, 2k+1 sin. */
async function sinusoidHypotheses(s: Symptom): Promise<Hint[]> {
  if (s.formula !== "positional_sinusoidal") return [];
  const gc = graphOfSymptom(s);
  if (gc === undefined) return [];
  const r = plantedOutput(gc.g, onFormula("positional_sinusoidal", sinCosSwapped), s);
  if (r !== undefined && within(r.y, s.actual, s.tolerance)) {
    return [
      {
        id: "sin-cos-swapped",
        evidence: "match",
        message:
          "the output equals the sinusoidal table with sine and cosine swapped: " +
          "column 2k should be sin(i/10000^(2k/d_model)) and column 2k+1 the cosine",
      },
    ];
  }
  return [];
}

/** Square 2-D weights used transposed (torch.nn.Linear's [d_out, d_in] layout instead of [d_in, d_out]). */
async function weightHypotheses(s: Symptom): Promise<Hint[]> {
  if (!["linear", "ffn", "mha", "swiglu", "logits"].includes(s.formula)) return [];
  const hints: Hint[] = [];
  for (const [name, t] of Object.entries(s.inputs)) {
    if (
      t.rank !== 2 ||
      t.dtype === "i32" ||
      t.shape[0] !== t.shape[1] ||
      t.shape[0]! < 2 ||
      name === "x"
    )
      continue;
    const y = await referenceOutput(
      s.formula,
      s.config,
      { ...s.inputs, [name]: transposeLast(t) },
      s.dtype,
      s.output,
    );
    if (y !== undefined && within(y, s.actual, s.tolerance)) {
      hints.push({
        id: "weight-transposed",
        evidence: "match",
        message:
          `the output equals ${s.formula} with ${name} transposed: weights ` +
          `multiply from the right (x ${name}, ${name} [d_in, d_out]); ` +
          `torch.nn.Linear stores the transpose`,
      });
    }
    if (hints.length >= 2) break;
  }
  return hints;
}

// ---------------------------------------------------------------------------------------------
// Patterns of the error

/** Swap the last two axes. */
export function transposeLast(t: Tensor): Tensor {
  if (t.rank < 2) return t;
  const r = t.rank;
  const a = t.shape[r - 2]!;
  const b = t.shape[r - 1]!;
  const shape = [...t.shape.slice(0, r - 2), b, a];
  const out = new Tensor(t.dtype, shape);
  const block = a * b;
  for (let base = 0; base < t.size; base += block) {
    for (let i = 0; i < a; i++)
      for (let j = 0; j < b; j++) out.data[base + j * a + i] = t.data[base + i * b + j]!;
  }
  return out;
}

/** Read `t`'s data as column-major (Fortran order) for `shape`. */
function fromColumnMajor(t: Tensor, shape: readonly number[]): Tensor {
  const out = new Tensor(t.dtype, shape);
  const r = shape.length;
  const idx = new Array<number>(r).fill(0);
  for (let flat = 0; flat < out.size; flat++) {
    // row-major index of `flat` → column-major offset
    let rem = flat;
    for (let k = r - 1; k >= 0; k--) {
      idx[k] = rem % shape[k]!;
      rem = Math.floor(rem / shape[k]!);
    }
    let off = 0;
    for (let k = r - 1; k >= 0; k--) off = off * shape[k]! + idx[k]!;
    out.data[flat] = t.data[off]!;
  }
  return out;
}

function layoutPatterns(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (e.rank < 2 || a.dtype !== e.dtype || a.size !== e.size || e.size < 2) return [];
  const r = e.rank;
  const swapped = [...e.shape.slice(0, r - 2), e.shape[r - 1]!, e.shape[r - 2]!];
  const square = e.shape[r - 1] === e.shape[r - 2];
  if (sameShape(a.shape, swapped) && (!square || sameShape(a.shape, e.shape))) {
    if (within(e, transposeLast(a), s.tolerance)) {
      const what = square
        ? "the transpose of the expected one (last two axes swapped)"
        : `shaped ${shapeToString(a.shape)} instead of ${shapeToString(e.shape)} ` +
          `and equals the expected values transposed`;
      return [
        {
          id: "transposed",
          evidence: "pattern",
          message: `the output is ${what}: rows and columns are exchanged (tokens are rows: x [n, d_model])`,
        },
      ];
    }
  }
  const reversed = [...e.shape].reverse();
  for (const shape of [e.shape, reversed]) {
    if (!sameShape(a.shape, shape)) continue;
    const asRowMajor = fromColumnMajor(a, e.shape);
    if (within(e, asRowMajor, s.tolerance)) {
      return [
        {
          id: "column-major",
          evidence: "pattern",
          message:
            "the output holds the expected values in column-major (Fortran) order: " +
            "tensors on the wire and in golden files are row-major (C order)",
        },
      ];
    }
  }
  return [];
}

/**
 * Where the mismatches of a causal [..., n, m] tensor lie against the registry's causal mask
 * (bottom-right): on the band one key past it (the mask shifted by +1 sees them, the mask does
 * not), on its diagonal (the mask sees them, the mask shifted by −1 does not), or hidden by it.
 */
function maskPatterns(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (e.rank < 2 || !sameShape(e.shape, a.shape) || a.dtype !== e.dtype) return [];
  let hasNegInf = false;
  for (let k = 0; k < e.size; k++) if (e.data[k] === Number.NEGATIVE_INFINITY) hasNegInf = true;
  if (!hasNegInf && s.formula !== "causal_mask") return [];
  const n = e.shape[e.rank - 2]!;
  const m = e.shape[e.rank - 1]!;
  const { rtol, atol } = s.tolerance;
  const mismatches: Array<[number, number]> = [];
  for (let k = 0; k < e.size; k++) {
    const ev = e.data[k]!;
    const av = a.data[k]!;
    const same =
      ev === av ||
      (Number.isFinite(ev) &&
        Number.isFinite(av) &&
        Math.abs(av - ev) <= atol + rtol * Math.abs(ev));
    if (!same) mismatches.push([Math.floor(k / m) % n, k % m]);
  }
  const count = mismatches.length;
  if (count === 0) return [];
  let masks: Visibility[];
  try {
    masks = [-1, 0, 1].map((shift) => causalVisibility(n, m, {}, shift));
  } catch {
    return [];
  }
  const [before, mask, after] = masks as [Visibility, Visibility, Visibility];
  const all = (p: (i: number, j: number) => boolean): boolean =>
    mismatches.every(([i, j]) => p(i, j));
  const band = all((i, j) => after.visible(i, j) && !mask.visible(i, j));
  const diagonal = all((i, j) => mask.visible(i, j) && !before.visible(i, j));
  const hidden = all((i, j) => !mask.visible(i, j));
  if (band) {
    return [
      {
        id: "mask-off-by-one",
        evidence: "pattern",
        message:
          `all ${count} mismatches lie on the band j = i + 1 + (m − n), just ` +
          `above the causal diagonal: query i sees key i + 1 (an off-by-one in the ` +
          `mask comparison, < vs ≤)`,
      },
    ];
  }
  if (diagonal) {
    return [
      {
        id: "mask-diagonal",
        evidence: "pattern",
        message: `all ${count} mismatches lie on the causal diagonal j = i + (m − n): query i is denied its own key`,
      },
    ];
  }
  if (hidden) {
    return [
      {
        id: "masked-positions",
        evidence: "pattern",
        message:
          `all ${count} mismatches are at masked positions (above the causal ` +
          `diagonal, j > i + m − n): future keys are not masked`,
      },
    ];
  }
  return [];
}

/** actual ≈ c·expected for one constant c (least squares), named when c is √(d_model/d_k) or its inverse. */
function factorPattern(s: Symptom, formula: string): Hint[] {
  const { expected: e, actual: a } = s;
  if (!sameShape(e.shape, a.shape) || e.size < 2) return [];
  let ea = 0,
    ee = 0;
  for (let k = 0; k < e.size; k++) {
    const ev = e.data[k]!;
    const av = a.data[k]!;
    if (!Number.isFinite(ev) || !Number.isFinite(av)) {
      if (ev !== av) return [];
      continue;
    }
    ea += ev * av;
    ee += ev * ev;
  }
  if (ee === 0) return [];
  const c = ea / ee;
  if (!Number.isFinite(c) || Math.abs(c) < 1e-3 || Math.abs(c - 1) < 1e-6) return [];
  const { rtol, atol } = s.tolerance;
  for (let k = 0; k < e.size; k++) {
    const ev = e.data[k]!;
    const av = a.data[k]!;
    if (!Number.isFinite(ev)) continue;
    // both the actual value and c·expected carry rounding: twice the tolerance of the scaled value
    if (Math.abs(av - c * ev) > 2 * (atol + rtol * Math.abs(c * ev))) return [];
  }
  const { H, d_k, d_model } = sizesOf(s);
  const named: Array<[number, string, HintId]> = [
    [-1, "the sign is flipped", "constant-factor"],
    [2, "a factor 2", "constant-factor"],
    [0.5, "a factor 1/2", "constant-factor"],
  ];
  const scaling = (v: number, what: string): void => {
    if (v !== 1)
      named.push([
        v,
        `${what}: a scaling mistake (a scale applied where it does not belong, or missing where it does)`,
        "scale-factor",
      ]);
  };
  if (d_k !== undefined) {
    scaling(Math.sqrt(d_k), `√d_k = ${fmt(Math.sqrt(d_k))} (d_k = ${d_k})`);
    scaling(1 / Math.sqrt(d_k), `1/√d_k = ${fmt(1 / Math.sqrt(d_k))} (d_k = ${d_k})`);
  }
  if (d_model !== undefined) {
    scaling(Math.sqrt(d_model), `√d_model = ${fmt(Math.sqrt(d_model))} (d_model = ${d_model})`);
    scaling(
      1 / Math.sqrt(d_model),
      `1/√d_model = ${fmt(1 / Math.sqrt(d_model))} (d_model = ${d_model})`,
    );
  }
  if (H !== undefined && H > 1) {
    named.unshift([
      Math.sqrt(H),
      `√(d_model/d_k) = √H = ${fmt(Math.sqrt(H))}: the attention scale 1/√d_k ` +
        `was replaced by 1/√d_model (or the reverse)`,
      "attention-scale",
    ]);
    named.unshift([
      1 / Math.sqrt(H),
      `√(d_k/d_model) = 1/√H = ${fmt(1 / Math.sqrt(H))}: the attention scale 1/√d_model was used instead of 1/√d_k`,
      "attention-scale",
    ]);
  }
  // the gradient of a summed loss is the averaged one's times the number of counted targets
  const N = countedTargets(s, formula);
  if (N !== undefined && N > 1)
    named.unshift([
      N,
      `N = ${N}, the number of counted targets: the loss is summed instead of averaged`,
      "loss-summed",
    ]);
  const hit = named.find(([v]) => Math.abs(c - v) <= 1e-3 * Math.abs(v));
  const id: HintId = hit?.[2] ?? "constant-factor";
  return [
    {
      id,
      evidence: "pattern",
      message:
        `the output is the expected one times a constant c = ` +
        `${fmt(c)}${hit !== undefined ? ` — ${hit[1]}` : ""}`,
    },
  ];
}

/**
 * Sizes a factor can be named by: heads H, head width d_k and model width d_model, from the
 * configuration, the case or the inputs.
 */
function sizesOf(s: Symptom): { H?: number; d_k?: number; d_model?: number } {
  const num = (v: unknown): number | undefined => (typeof v === "number" && v > 0 ? v : undefined);
  const H = num(s.config["H"]) ?? num(s.dims?.["H"]) ?? headsOf(s);
  const x = s.inputs["x"];
  const d_model =
    num(s.config["d_model"]) ??
    num(s.dims?.["d_model"]) ??
    (x !== undefined && ["mha", "block", "block_post_ln", "block_pre_ln"].includes(s.formula)
      ? x.shape[x.rank - 1]
      : undefined);
  const Q = s.inputs["Q"];
  const d_k =
    num(s.dims?.["d_k"]) ??
    (Q !== undefined
      ? Q.shape[Q.rank - 1]
      : d_model !== undefined && H !== undefined && d_model % H === 0
        ? d_model / H
        : undefined);
  return {
    ...(H !== undefined ? { H } : {}),
    ...(d_k !== undefined ? { d_k } : {}),
    ...(d_model !== undefined ? { d_model } : {}),
  };
}

/** Targets a mean loss is taken over (cross_entropy, gpt): those other than ignore_index. */
function countedTargets(s: Symptom, formula: string): number | undefined {
  const t = s.inputs["targets"];
  if ((formula !== "cross_entropy" && formula !== "gpt") || t === undefined) return undefined;
  const ignore = typeof s.config["ignore_index"] === "number" ? s.config["ignore_index"] : -100;
  let N = 0;
  for (let i = 0; i < t.size; i++) if (t.data[i] !== ignore) N++;
  return N;
}

/** A scalar loss that is N times the expected one: summed over the N counted targets instead of averaged. */
function lossSumPattern(s: Symptom, formula: string): Hint[] {
  const { expected: e, actual: a } = s;
  const N = countedTargets(s, formula);
  if (N === undefined || N < 2 || e.size !== 1 || a.size !== 1 || s.formula.startsWith("grad("))
    return [];
  const ev = e.data[0]!;
  const av = a.data[0]!;
  const { rtol, atol } = s.tolerance;
  const rows = t2rows(s.inputs["targets"]!);
  const factors: Array<[number, string]> = [[N, `N = ${N}, the number of counted targets`]];
  if (rows.n !== N)
    factors.push([
      rows.n,
      `n = ${rows.n} (summed over positions, averaged over the ${rows.b} sequences)`,
    ]);
  for (const [k, what] of factors) {
    if (k < 2) continue;
    // both the actual value and k·expected carry rounding: twice the tolerance of the scaled value
    if (Number.isFinite(av) && Math.abs(av - k * ev) <= 2 * k * (atol + rtol * Math.abs(ev))) {
      return [
        {
          id: "loss-summed",
          evidence: "pattern",
          message:
            `the loss is ${fmt(av)}, the expected ${fmt(ev)} times ${what}: the ` +
            `loss is summed instead of averaged`,
        },
      ];
    }
  }
  return [];
}

function t2rows(t: Tensor): { n: number; b: number } {
  const n = t.rank === 0 ? 1 : t.shape[t.rank - 1]!;
  return { n, b: t.size / Math.max(n, 1) };
}

/**
 * actual − expected is one vector v (along the last axis) repeated in every row, v not constant:
 * a bias added twice or left out.
 */
function columnOffsetPattern(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (!sameShape(e.shape, a.shape) || e.rank < 2) return [];
  const m = e.shape[e.rank - 1]!;
  const rows = e.size / m;
  if (m < 2 || rows < 2) return [];
  const { rtol, atol } = s.tolerance;
  const v = new Float64Array(m);
  const emax = new Float64Array(m);
  for (let k = 0; k < e.size; k++) {
    const ev = e.data[k]!;
    const av = a.data[k]!;
    if (!Number.isFinite(ev) || !Number.isFinite(av)) return [];
    v[k % m] = v[k % m]! + (av - ev) / rows;
    emax[k % m] = Math.max(emax[k % m]!, Math.abs(ev));
  }
  for (let k = 0; k < e.size; k++) {
    const j = k % m;
    if (Math.abs(a.data[k]! - e.data[k]! - v[j]!) > 2 * (atol + rtol * emax[j]!)) return [];
  }
  let lo = Infinity,
    hi = -Infinity,
    off = 0;
  for (let j = 0; j < m; j++) {
    lo = Math.min(lo, v[j]!);
    hi = Math.max(hi, v[j]!);
    if (Math.abs(v[j]!) > atol + rtol * emax[j]!) off++;
  }
  // nothing off, or one constant everywhere (the row-offset pattern says that)
  if (off === 0 || hi - lo <= 2 * (atol + rtol * Math.max(Math.abs(lo), Math.abs(hi)))) return [];
  return [
    {
      id: "bias-dropped",
      evidence: "pattern",
      message:
        `actual − expected is the same vector in every one of the ${rows} rows ` +
        `(entries from ${fmt(lo)} to ${fmt(hi)}, ${off} of ${m} columns off): a ` +
        `bias vector left out or added twice`,
    },
  ];
}

/**
 * Softmax-family formulas (softmax, log_softmax, logsumexp): every mismatch lies in a row whose
 * entries all lie below −10000.
 */
function maxSeedPattern(s: Symptom): Hint[] {
  const x = s.inputs["x"];
  const { expected: e, actual: a } = s;
  if (!["softmax", "log_softmax", "logsumexp"].includes(s.formula) || x === undefined || x.rank < 1)
    return [];
  const m = x.shape[x.rank - 1]!;
  const rows = x.size / Math.max(m, 1);
  const perRow = e.size / Math.max(rows, 1);
  if (m < 1 || !Number.isInteger(perRow) || e.size !== a.size) return [];
  let bad = 0,
    worst = -Infinity;
  for (let k = 0; k < e.size; k++) {
    if (elementMatches(e.data[k]!, a.data[k]!, s.tolerance)) continue;
    const r = Math.floor(k / perRow);
    let max = -Infinity;
    for (let j = 0; j < m; j++) max = Math.max(max, x.data[r * m + j]!);
    if (!(max < MAX_SEED) || max === -Infinity) return [];
    bad++;
    worst = Math.max(worst, max);
  }
  if (bad === 0) return [];
  return [
    {
      id: "max-seed",
      evidence: "pattern",
      message:
        `all ${bad} mismatches lie in rows whose entries are all below ` +
        `${MAX_SEED} (the largest row maximum among them is ${fmt(worst)}): a ` +
        `running maximum seeded at a finite floor such as ${MAX_SEED} instead of ` +
        `−∞ makes exp(x − m) underflow there`,
    },
  ];
}

/** actual − expected constant along the last axis (per row), but not zero. */
function rowOffsetPattern(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (!sameShape(e.shape, a.shape) || e.rank < 1) return [];
  const m = e.shape[e.rank - 1]!;
  if (m < 2) return [];
  const rows = e.size / m;
  const { rtol, atol } = s.tolerance;
  let lo = Infinity,
    hi = -Infinity,
    offRows = 0;
  for (let r = 0; r < rows; r++) {
    let dmin = Infinity,
      dmax = -Infinity,
      emax = 0,
      sum = 0;
    for (let j = 0; j < m; j++) {
      const ev = e.data[r * m + j]!;
      const av = a.data[r * m + j]!;
      if (!Number.isFinite(ev) || !Number.isFinite(av)) {
        if (ev !== av) return [];
        continue;
      }
      const d = av - ev;
      dmin = Math.min(dmin, d);
      dmax = Math.max(dmax, d);
      emax = Math.max(emax, Math.abs(ev));
      sum += d;
    }
    if (dmin === Infinity) continue;
    const allowed = atol + rtol * emax;
    if (dmax - dmin > 2 * allowed) return [];
    const mean = sum / m;
    if (Math.abs(mean) > allowed) offRows++;
    lo = Math.min(lo, mean);
    hi = Math.max(hi, mean);
  }
  if (offRows === 0) return [];
  if (hi - lo <= 2 * (atol + rtol * Math.abs(hi))) {
    return [
      {
        id: "row-offset",
        evidence: "pattern",
        message:
          `actual − expected is the same constant ${fmt((lo + hi) / 2)} ` +
          `everywhere: a constant offset (a bias or a shift added or missing)`,
      },
    ];
  }
  return [
    {
      id: "row-offset",
      evidence: "pattern",
      message:
        `actual − expected is constant within each row of the last axis ` +
        `(offsets from ${fmt(lo)} to ${fmt(hi)} across ${rows} rows): a per-row ` +
        `normaliser — the max, mean or log Σ exp of the row — is missing or extra`,
    },
  ];
}

/**
 * Every hint that explains the mismatch of `s.actual` against `s.expected`: alternative
 * computations that match first, then patterns of the error.
 *
 * @example
 * // a GELU implemented with tanh, checked against the erf form:
 * // (await diagnose({ formula: "gelu", ..., expected, actual })).map((h) => h.id) // ["gelu-tanh"]
 */
export async function diagnose(s: Symptom): Promise<Hint[]> {
  const hints: Hint[] = [];
  const add = (hs: Hint[]): void => {
    for (const h of hs) if (!hints.some((x) => x.id === h.id)) hints.push(h);
  };
  // a hint explains a mismatch: an actual value within tolerance has none
  if (within(s.expected, s.actual, s.tolerance)) return [];
  const grad = /^grad\((.+)\)$/.exec(s.formula)?.[1];
  if (sameShape(s.expected.shape, s.actual.shape) && s.expected.dtype === s.actual.dtype) {
    if (grad === undefined) {
      add(variantHypotheses(s));
      add(await swapHypotheses(s));
      add(await sinusoidHypotheses(s));
      add(await weightHypotheses(s));
      add(await biasHypotheses(s));
      add(skippedPartHypotheses(s));
      add(maxSeedPattern(s));
    } else {
      add(tiedGradientHypotheses(s, grad));
    }
    add(maskPatterns(s));
    add(lossSumPattern(s, grad ?? s.formula));
    add(factorPattern(s, grad ?? s.formula));
    add(columnOffsetPattern(s));
    add(rowOffsetPattern(s));
  }
  add(layoutPatterns(s));
  return hints;
}
