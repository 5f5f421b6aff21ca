/**
 * Tolerances of the laws, derived from the dtype's unit roundoff and the reduction lengths of
 * the formula — never a knob.
 *
 * Notation (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 2–3):
 *
 * - `u` is the unit roundoff: 2⁻⁵³ for float64, 2⁻²⁴ for float32. One correctly rounded
 *   operation returns `x(1 + δ)`, `|δ| ≤ u`.
 * - `γ_k = k·u / (1 − k·u)` bounds the relative error accumulated by `k` roundings in sequence;
 *   a sum or dot product of length `k` computed in any order satisfies
 *   `|fl(Σ a_i) − Σ a_i| ≤ γ_{k−1} Σ|a_i|`.
 *
 * Laws that compare a computed value with an exact mathematical constant or relation (softmax
 * rows sum to 1, LayerNorm output variance, GELU symmetry) state their own bound in the law,
 * from these two facts.
 *
 * Laws that compare **two evaluations of the same quantity** (prefix consistency, batch
 * independence, head permutation, KV cache against recomputation) — and the float32-vs-float64
 * oracle law — use the *conditioned bound* of this module:
 *
 *     |ŷ₁ − ŷ₂| ≤ 2·γ_K·(S + κ̂)
 *
 * - `K` = {@link roundingDepth}: the roundings on the longest path from an argument to an output
 *   element — the sum over the stages of the formula of its reduction length plus the
 *   elementwise roundings of the stage (exp, division, square root, …), counted by the
 *   interpreter of spec/rounding.ts over the formula's graph (docs/ROUNDING-DEPTH.md). Each
 *   computation is within `γ_K` (relative) of exact on every stage's terms; two computations
 *   differ by at most twice that: the factor 2.
 * - `S` = max |ŷ| over the output: the magnitude the final rounding acts on.
 * - `κ̂` = the measured amplification of the instance: rounding anywhere on the path acts, to
 *   first order, like a relative perturbation of size ≤ γ_K of the stage's operands; how far that
 *   moves the output depends on the conditioning of the instance (a LayerNorm over a row whose
 *   spread is small next to its mean amplifies by |γ|/σ, a softmax by its scores' magnitude).
 *   The law measures it with one probe ({@link sensitivity}): every float argument is scaled by
 *   `1 + η·r_i` with random signs `r_i` and `η = √u` (the step that balances the probe's
 *   truncation error η² against rounding u/η), and `Δ = max |f(x̃) − f(x)|`. A sum of N
 *   random-sign terms has mean magnitude ≥ ‖a‖₂/√2 (Khintchine's inequality, sharp constant)
 *   while the worst-case alignment is ‖a‖₁ ≤ √N‖a‖₂, so `κ̂ = √(2N)·Δ/η` estimates the
 *   worst-case response per unit relative perturbation.
 *
 * The bound is an estimate, not a proof: the first-order model ignores O(u²) terms, and one
 * probe can underestimate a response that cancels by chance. The deep run (properties/deep.ts,
 * ≥ 1,000 runs per law on the reference in both dtypes) measures how close the reference comes
 * to it; a wrong formula (missing mask, wrong scale, swapped heads) moves outputs by O(1), far
 * outside it.
 */
import { Rng } from "../autodiff/random.js";
import { Tensor, type FloatDType, type NamedTensors } from "../autodiff/tensor.js";
import type {
  BackwardRequest,
  FormulaConfig,
  ForwardRequest,
  Implementation,
} from "../autodiff/implementation.js";
import { getFormula, hasFormula } from "../spec/formula.js";
import { graphDepth, type ValueRange } from "../spec/rounding.js";
import { knownConfig, referenceGraph } from "../reference/implementation.js";

/** Unit roundoff u of a float dtype: 2⁻⁵³ (f64), 2⁻²⁴ (f32). */
export function unitRoundoff(dtype: FloatDType): number {
  return dtype === "f64" ? 2 ** -53 : 2 ** -24;
}

/** γ_k = k·u/(1 − k·u): the relative error bound of k roundings in sequence. */
export function gamma(k: number, dtype: FloatDType): number {
  const ku = k * unitRoundoff(dtype);
  if (ku >= 0.5)
    throw new RangeError(
      `gamma: k = ${k} roundings is too many for ${dtype} (k·u = ${ku} ≥ 1/2): the first-order bound is meaningless`,
    );
  return ku / (1 - ku);
}

/**
 * Allowance for results below the normal range, where rounding is absolute, not relative: an
 * implementation may round them to a subnormal or flush them to zero (GPUs commonly do), an
 * error up to the smallest normal number per operation, which later operations may multiply by
 * factors up to `amp`. A relative bound k·u·|x| cannot cover it, so laws add
 * `K·smallestNormal·amp` for K operations (1.2e-38·K·amp for float32, 2.2e-308·K·amp for float64:
 * far below any error a wrong formula makes on values of normal size).
 */
export function underflowAllowance(dtype: FloatDType, K: number, amp = 1): number {
  return K * smallestNormal(dtype) * amp;
}

/** Smallest positive normal number: below it, absolute (not relative) rounding errors rule. */
export function smallestNormal(dtype: FloatDType): number {
  return dtype === "f64" ? 2 ** -1022 : 2 ** -126;
}

// ---------------------------------------------------------------------------------------------
// Rounding depth K of each formula

/**
 * An activation: the libm function (erf, tanh, exp: ≤ 1 ulp each, counted 2) and at most five
 * arithmetic roundings (GELU tanh: x³, 0.044715·x³, +x, ·√(2/π), 1 +, ½x·).
 */
export const activationDepth = 8;
/**
 * Sin/cos of the angle θ = p·ω at position p ≤ pMax: ω = base^(−2i/d) (pow ≤ 1 ulp, division),
 * the product p·ω (1): θ carries a relative error ≤ 3u, an absolute error ≤ 3u·θ ≤ 3u·pMax·ω ≤
 * 3u·pMax, which sin and cos (Lipschitz 1, ≤ 1 ulp themselves) pass on as absolute error.
 */
export const angleDepth = (pMax: number): number => 2 + 3 * Math.max(1, pMax);
/** RoPE: the angle, then x₁cos − x₂sin (two products and a difference). */
export const ropeDepth = (pMax: number): number => angleDepth(pMax) + 3;

export interface DepthContext {
  readonly formula: string;
  readonly config: FormulaConfig;
  readonly inputs: NamedTensors;
}

/** [min, max] of an int tensor's entries (positions, ids): where the depth analysis starts. */
function intRange(t: Tensor): ValueRange {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < t.size; i++) {
    lo = Math.min(lo, t.data[i]!);
    hi = Math.max(hi, t.data[i]!);
  }
  return t.size === 0 ? { lo: 0, hi: 0, int: true } : { lo, hi, int: true };
}

/**
 * K: roundings on the longest path from an argument to an output element of the formula, for
 * the sizes of these inputs (see the module comment) — the interpreter of spec/rounding.ts over
 * the formula's graph, with int arguments' values (positions) bounding the angles they feed. A
 * name outside the registry (no graph to read) gets the conservative sum of every input's size.
 */
export function roundingDepth(ctx: DepthContext): number {
  const { formula, config, inputs } = ctx;
  if (!hasFormula(formula)) {
    let s = 8;
    for (const t of Object.values(inputs)) s += t.size;
    return s;
  }
  const ranges: Record<string, ValueRange> = {};
  for (const [k, t] of Object.entries(inputs)) if (t.dtype === "i32") ranges[k] = intRange(t);
  const cfg = knownConfig(formula, config);
  // a law asks once per check: the same graph at the same sizes gives the same K
  const shapes = Object.entries(inputs).map(([k, t]) => [k, t.shape]);
  const key = JSON.stringify([formula, cfg, shapes, ranges]);
  let K = depths.get(key);
  if (K === undefined) {
    K = graphDepth(referenceGraph(formula, cfg), inputs, ranges);
    if (depths.size > 1024) depths.clear();
    depths.set(key, K);
  }
  return K;
}
const depths = new Map<string, number>();

// ---------------------------------------------------------------------------------------------
// Cancelled magnitudes: rounding the probe cannot see

/**
 * Z per output: the magnitude of intermediate terms that the formula's last stages subtract from
 * each other, when that cancellation is invisible to the probe of {@link sensitivity}. The probe
 * perturbs the *arguments*; a rounding of an intermediate is not such a perturbation when the
 * output does not respond to the intermediate's inputs but the intermediate itself is large.
 * Multiplied by γ_K it allows K such roundings. Each formula declares its own, with the derivation
 * (`cancelled` in spec/formulas: cross_entropy and gpt's loss, layer_norm at d = 1, GELU's left
 * tail); outputs without one, and names outside the registry, get 0. `outputs` are the float64
 * reference's.
 */
export function cancelledMagnitude(
  ctx: DepthContext,
  outputs: NamedTensors,
): Record<string, number> {
  if (!hasFormula(ctx.formula)) return {};
  const def = getFormula(ctx.formula);
  if (def.cancelled === undefined) return {};
  return { ...def.cancelled({ args: ctx.inputs, outputs }, knownConfig(ctx.formula, ctx.config)) };
}

// ---------------------------------------------------------------------------------------------
// The measured amplification

/** The probe's relative step: η = √u (2⁻¹² for float32, 2⁻²⁶·⁵ ≈ 1.05e-8 for float64). */
export function probeStep(dtype: FloatDType): number {
  return Math.sqrt(unitRoundoff(dtype));
}

export interface OutputScale {
  /** max |ŷ| over the output. */
  readonly S: number;
  /** κ̂ = √(2N)·Δ/η, the measured response to a unit relative perturbation of every float argument. */
  readonly kappa: number;
  /** Float arguments perturbed (N). */
  readonly perturbed: number;
}

/**
 * Measure how strongly the outputs of one request respond to rounding-sized relative
 * perturbations of its float arguments (see the module comment). `base` are the outputs of the
 * unperturbed request. The random signs are seeded, so a replay measures the same κ̂.
 */
export async function sensitivity(
  impl: Implementation,
  req: ForwardRequest,
  base: NamedTensors,
  dtype: FloatDType,
  seed = 0x5eed,
): Promise<Record<string, OutputScale>> {
  return sensitivityOf(
    async (inputs) => (await impl.forward({ ...req, inputs })).outputs,
    req.inputs,
    base,
    dtype,
    seed,
  );
}

/** {@link sensitivity} of a backward pass: the gradients' response to perturbed arguments (cotangents fixed). */
export async function gradSensitivity(
  impl: Implementation,
  req: BackwardRequest,
  base: NamedTensors,
  dtype: FloatDType,
  seed = 0x5eed,
): Promise<Record<string, OutputScale>> {
  const run = impl.backwardPass;
  if (run === undefined) throw new Error(`${impl.name} has no backward pass`);
  return sensitivityOf(
    async (inputs) => (await run.call(impl, { ...req, inputs })).grads,
    req.inputs,
    base,
    dtype,
    seed,
  );
}

/** The probe itself, over any evaluation of named arguments to named results. */
async function sensitivityOf(
  evaluate: (inputs: NamedTensors) => Promise<NamedTensors>,
  inputs: NamedTensors,
  base: NamedTensors,
  dtype: FloatDType,
  seed = 0x5eed,
): Promise<Record<string, OutputScale>> {
  const eta = probeStep(dtype);
  const rng = new Rng(seed);
  const perturbed: NamedTensors = {};
  let N = 0;
  for (const [k, t] of Object.entries(inputs)) {
    if (t.dtype === "i32") {
      perturbed[k] = t;
      continue;
    }
    const p = t.clone();
    for (let i = 0; i < p.size; i++) {
      const v = t.data[i]!;
      if (v === 0 || !Number.isFinite(v)) continue;
      p.data[i] = v * (1 + (rng.uniform() < 0.5 ? -eta : eta));
      N++;
    }
    perturbed[k] = p;
  }
  const out: Record<string, OutputScale> = {};
  const moved: NamedTensors = N > 0 ? await evaluate(perturbed) : {};
  for (const [k, y] of Object.entries(base)) {
    let S = 0;
    let delta = 0;
    const z = moved[k];
    for (let i = 0; i < y.size; i++) {
      const v = y.data[i]!;
      if (!Number.isFinite(v)) continue;
      S = Math.max(S, Math.abs(v));
      const w = z !== undefined && z.size === y.size ? z.data[i]! : v;
      // a perturbation that turns a finite output non-finite says nothing about rounding
      if (Number.isFinite(w)) delta = Math.max(delta, Math.abs(w - v));
    }
    out[k] = { S, kappa: N === 0 ? 0 : (Math.sqrt(2 * N) * delta) / eta, perturbed: N };
  }
  return out;
}

/**
 * The conditioned bound for two computations of the same output: `2·γ_K·(S + κ̂ + Z)` plus K
 * half-units of the smallest normal (rounding below the normal range is absolute, not relative).
 * Z ({@link cancelledMagnitude}, default 0) is the magnitude a last stage cancels, whose absolute
 * rounding each of the two computations may carry where κ̂ does not see it (two GELU kernels,
 * a vectorised and a scalar erf, differ by ulps of erf in 1 + erf ≈ 0).
 */
export function conditionedBound(dtype: FloatDType, K: number, scale: OutputScale, Z = 0): number {
  return 2 * gamma(K, dtype) * (scale.S + scale.kappa + Z) + K * smallestNormal(dtype);
}

/** Text of the conditioned bound with its numbers, for reports. */
export function conditionedReason(dtype: FloatDType, K: number, scale: OutputScale, Z = 0): string {
  const z = Z > 0 ? ` + Z` : "";
  const zText = Z > 0 ? `, Z = ${fmt(Z)} (cancelled magnitude)` : "";
  return (
    `2·γ_K·(S + κ̂${z}) with ${dtype} u = ` +
    `2^${Math.log2(unitRoundoff(dtype))}, K = ${K}, S = ${fmt(scale.S)}, κ̂ ` +
    `= √(2N)·Δ/η = ${fmt(scale.kappa)} (N = ${scale.perturbed})${zText}`
  );
}

function fmt(x: number): string {
  return x === 0
    ? "0"
    : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4
      ? x.toPrecision(4)
      : x.toExponential(3);
}
