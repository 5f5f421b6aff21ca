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
import { hasFormula } from "../spec/formula.js";
import { call1 } from "../spec/formula.js";
import { subDim } from "../spec/dims.js";
import {
  add, constant, cos, dimValue, div, eq, Expr, floor, input, iota, le, matmul, mul, pow, sin, sqrt, sub, transpose, where,
} from "../spec/expr.js";
import { evaluate, plan } from "../autodiff/evaluate.js";
import type { Graph } from "../autodiff/graph.js";
import type { FormulaConfig } from "../autodiff/implementation.js";
import { Tensor, sameShape, shapeToString } from "../autodiff/tensor.js";
import type { FloatDType, NamedTensors } from "../autodiff/tensor.js";
import { compareTensors } from "../golden/compare.js";
import { referenceImplementation } from "../reference/implementation.js";

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
}

function fmt(x: number): string {
  return Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-4) ? x.toExponential(2) : Number(x.toPrecision(4)).toString();
}

function within(expected: Tensor, actual: Tensor, tol: { rtol: number; atol: number }): boolean {
  if (expected.dtype !== actual.dtype || !sameShape(expected.shape, actual.shape)) return false;
  return compareTensors(expected, actual, { rtol: tol.rtol, atol: tol.atol }).ok;
}

// ---------------------------------------------------------------------------------------------
// Alternative computations ("match" evidence)

let reference: ReturnType<typeof referenceImplementation> | undefined;

/** The reference's output `output` of `formula` on `inputs` under `config`, or undefined if it cannot run. */
async function referenceOutput(formula: string, config: FormulaConfig, inputs: NamedTensors, dtype: FloatDType, output: string): Promise<Tensor | undefined> {
  reference ??= referenceImplementation();
  try {
    return (await reference.forward({ formula, config: { ...config, dtype }, inputs })).outputs[output];
  } catch {
    return undefined;
  }
}

function graphOf(name: string, args: Record<string, Expr>, y: Expr): Graph {
  return { name, config: {}, args, outputs: { y }, relations: [], hyper: new Map() };
}

function run(g: Graph, inputs: NamedTensors, dtype: FloatDType): Tensor | undefined {
  try {
    return evaluate(g, inputs, { dtype }).y;
  } catch {
    return undefined;
  }
}

interface AttentionVariant {
  /** Keys visible to query i: j ≤ i + (m − n) + shift; null: no mask. */
  readonly shift: number | null;
  /** Multiplies the scores QKᵀ/√d_k. */
  readonly factor: number;
}

/** softmax(QKᵀ/√d_k · factor + M_shift) V, built from the spec's primitives and its softmax. */
function attentionVariant(v: AttentionVariant): Graph {
  const Q = input("Q", ["...", "n", "d_k"] as const);
  const K = input("K", ["...", "m", "d_k"] as const);
  const V = input("V", ["...", "m", "d_v"] as const);
  let scores: Expr = div(matmul(Q, transpose(K)), sqrt(dimValue("d_k")));
  if (v.factor !== 1) scores = mul(scores, constant(v.factor));
  if (v.shift !== null) {
    const i = iota(["n", "m"] as const, 0);
    const j = iota(["n", "m"] as const, 1);
    const mask = where(le(j, add(i, add(dimValue(subDim("m", "n")), constant(v.shift)))), 0, Number.NEGATIVE_INFINITY);
    scores = add(scores, mask);
  }
  const P = call1("softmax", { x: scores });
  return graphOf("attention (hypothesis)", { Q, K, V }, matmul(P, V));
}

/** Heads H for the scale hypothesis: the config's (attention inside MHA carries it), the case's, or Q's head axis of [b, H, n, d_k]. */
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

async function attentionHypotheses(s: Symptom): Promise<Hint[]> {
  const { Q, K, V } = s.inputs;
  if (s.formula !== "attention" || Q === undefined || K === undefined || V === undefined || s.config["alibi"] === true) return [];
  const causal = s.config["causal"] !== false;
  const d_k = Q.shape[Q.rank - 1]!;
  const hints: Hint[] = [];
  const test = (v: AttentionVariant): boolean => {
    const y = run(attentionVariant(v), { Q, K, V }, s.dtype);
    return y !== undefined && within(y, s.actual, s.tolerance);
  };
  const shift = causal ? 0 : null;
  if (causal) {
    const offByOne = test({ shift: 1, factor: 1 });
    const none = test({ shift: null, factor: 1 });
    if (offByOne) {
      hints.push({
        id: "mask-off-by-one",
        evidence: "match",
        message:
          "the output equals attention whose causal mask lets query i also see key i + 1 (one future token): an off-by-one in the mask (j ≤ i + 1 + m − n instead of j ≤ i + m − n)" +
          (none ? "; at these sizes that is the same as no mask at all" : ""),
      });
    } else if (none) {
      hints.push({ id: "mask-missing", evidence: "match", message: "the output equals attention without the causal mask: every query sees every key, including future ones" });
    } else if (test({ shift: -1, factor: 1 })) {
      hints.push({ id: "mask-diagonal", evidence: "match", message: "the output equals attention whose mask also hides the diagonal: query i cannot see its own key (j < i + m − n instead of j ≤ i + m − n)" });
    }
  } else if (test({ shift: 0, factor: 1 })) {
    hints.push({ id: "mask-unexpected", evidence: "match", message: "the output equals causal attention, but this case is non-causal (causal = false): the mask is applied regardless of the configuration" });
  }
  const H = headsOf(s);
  const scales: Array<[number, string]> = [];
  if (H !== undefined) scales.push([1 / Math.sqrt(H), `the scores scaled by 1/√d_model (d_model = H·d_k = ${H * d_k}) instead of 1/√d_k (d_k = ${d_k}): ${fmt(Math.sqrt(H))} = √(d_model/d_k) times too small`]);
  if (d_k > 1) {
    scales.push([Math.sqrt(d_k), `unscaled scores (1 instead of 1/√d_k, d_k = ${d_k})`]);
    scales.push([1 / Math.sqrt(d_k), `the scores scaled by 1/d_k instead of 1/√d_k (d_k = ${d_k})`]);
  }
  for (const [factor, what] of scales) {
    if (test({ shift, factor })) {
      hints.push({ id: "attention-scale", evidence: "match", message: `the output equals attention with ${what}: a wrong attention scale` });
      break;
    }
  }
  return hints;
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
    hints.push({ id: "gelu-tanh", evidence: "match", message: `the output equals GELU's tanh approximation (GPT-2's gelu_new, formula gelu_tanh) where the erf form ${gapText(s)} is expected` });
  }
  if (f === "gelu_tanh" && (await tryVariant("gelu", {}))) {
    hints.push({ id: "gelu-erf", evidence: "match", message: `the output equals the erf form of GELU (PyTorch's default, formula gelu) where the tanh approximation ${gapText(s)} is expected` });
  }
  const act = cfg["activation"];
  if ((act === "gelu" || act === "gelu_tanh") && ["ffn", "block", "block_post_ln", "block_pre_ln", "gpt"].includes(f)) {
    const other = act === "gelu" ? "gelu_tanh" : "gelu";
    if (await tryVariant(f, { ...cfg, activation: other })) {
      hints.push(
        act === "gelu"
          ? { id: "gelu-tanh", evidence: "match", message: `the output equals ${f} with GELU's tanh approximation (gelu_new) where the erf form is configured (activation = gelu)` }
          : { id: "gelu-erf", evidence: "match", message: `the output equals ${f} with the erf form of GELU where the tanh approximation is configured (activation = gelu_tanh)` },
      );
    }
  }
  if (["mha", "block", "block_post_ln", "block_pre_ln", "gpt"].includes(f) && cfg["causal"] !== false && cfg["kv_cache"] !== true) {
    if (await tryVariant(f, { ...cfg, causal: false })) {
      hints.push({ id: "mask-missing", evidence: "match", message: `the output equals ${f} without the causal mask (causal = false): every position sees the future` });
    }
  }
  const placements: Array<[string, FormulaConfig, string]> = [];
  if (f === "block_post_ln") placements.push(["block_pre_ln", cfg, "pre-LN (GPT-2's) block where the post-LN (the seed's) block"]);
  if (f === "block_pre_ln") placements.push(["block_post_ln", cfg, "post-LN (the seed's) block where the pre-LN (GPT-2's) block"]);
  if ((f === "block" || f === "gpt") && cfg["parallel"] !== true && (cfg["placement"] === "post" || cfg["placement"] === "pre")) {
    const other = cfg["placement"] === "post" ? "pre" : "post";
    placements.push([f, { ...cfg, placement: other }, `${other}-LN placement where placement = ${String(cfg["placement"])}`]);
  }
  for (const [pf, pc, what] of placements) {
    if (await tryVariant(pf, pc)) hints.push({ id: "placement", evidence: "match", message: `the output equals the ${what} is expected: LayerNorm is applied at the other place` });
  }
  return hints;
}

/** The largest |gelu − gelu_tanh| over this input, for context in GELU hints. */
function gapText(s: Symptom): string {
  const d = maxAbs(s.expected, s.actual);
  return `(they differ here by up to ${fmt(d)}, ${fmt(d / Math.max(s.tolerance.atol, Number.MIN_VALUE))}× the absolute tolerance)`;
}

function maxAbs(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < Math.min(a.size, b.size); i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (Number.isFinite(d) && d > m) m = d;
  }
  return m;
}

/** positional_sinusoidal with sin and cos exchanged: p[i, 2k] = cos, p[i, 2k+1] = sin. */
function sinusoidSwapped(offset: number): Graph {
  const shape = ["n", "d_model"] as const;
  const i = add(iota(shape, 0), constant(offset));
  const col = iota(shape, 1);
  const half = floor(div(col, 2));
  const angle = div(i, pow(10000, div(mul(2, half), dimValue("d_model"))));
  const isEven = eq(sub(col, mul(2, half)), 0);
  const y = where(isEven, cos(angle), sin(angle));
  return { name: "positional_sinusoidal (hypothesis)", config: {}, args: {}, outputs: { y }, relations: [], hyper: new Map() };
}

async function sinusoidHypotheses(s: Symptom): Promise<Hint[]> {
  if (s.formula !== "positional_sinusoidal") return [];
  const n = s.expected.shape[0];
  const d = s.expected.shape[1];
  if (n === undefined || d === undefined) return [];
  const g = sinusoidSwapped(typeof s.config["offset"] === "number" ? s.config["offset"] : 0);
  try {
    // no arguments: the sizes come from the hyperparameters
    const p = plan({ ...g, hyper: new Map([["n", n], ["d_model", d]]) }, {}, { dtype: s.dtype });
    const y = p.run({}).outputs.y;
    if (y !== undefined && within(y, s.actual, s.tolerance)) {
      return [{ id: "sin-cos-swapped", evidence: "match", message: "the output equals the sinusoidal table with sine and cosine swapped: column 2k should be sin(i/10000^(2k/d_model)) and column 2k+1 the cosine" }];
    }
  } catch {
    // the hypothesis could not be evaluated: no hint
  }
  return [];
}

/** Square 2-D weights used transposed (torch.nn.Linear's [d_out, d_in] layout instead of [d_in, d_out]). */
async function weightHypotheses(s: Symptom): Promise<Hint[]> {
  if (!["linear", "ffn", "mha", "swiglu", "logits"].includes(s.formula)) return [];
  const hints: Hint[] = [];
  for (const [name, t] of Object.entries(s.inputs)) {
    if (t.rank !== 2 || t.dtype === "i32" || t.shape[0] !== t.shape[1] || t.shape[0]! < 2 || name === "x") continue;
    const y = await referenceOutput(s.formula, s.config, { ...s.inputs, [name]: transposeLast(t) }, s.dtype, s.output);
    if (y !== undefined && within(y, s.actual, s.tolerance)) {
      hints.push({
        id: "weight-transposed",
        evidence: "match",
        message: `the output equals ${s.formula} with ${name} transposed: weights multiply from the right (x ${name}, ${name} [d_in, d_out]); torch.nn.Linear stores the transpose`,
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
    for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out.data[base + j * a + i] = t.data[base + i * b + j]!;
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
      const what = square ? "the transpose of the expected one (last two axes swapped)" : `shaped ${shapeToString(a.shape)} instead of ${shapeToString(e.shape)} and equals the expected values transposed`;
      return [{ id: "transposed", evidence: "pattern", message: `the output is ${what}: rows and columns are exchanged (tokens are rows: x [n, d_model])` }];
    }
  }
  const reversed = [...e.shape].reverse();
  for (const shape of [e.shape, reversed]) {
    if (!sameShape(a.shape, shape)) continue;
    const asRowMajor = fromColumnMajor(a, e.shape);
    if (within(e, asRowMajor, s.tolerance)) {
      return [{ id: "column-major", evidence: "pattern", message: "the output holds the expected values in column-major (Fortran) order: tensors on the wire and in golden files are row-major (C order)" }];
    }
  }
  return [];
}

/** Off-diagonal distance j − i − (m − n) of every mismatch of a causal [..., n, m] tensor. */
function maskPatterns(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (e.rank < 2 || !sameShape(e.shape, a.shape) || a.dtype !== e.dtype) return [];
  let hasNegInf = false;
  for (let k = 0; k < e.size; k++) if (e.data[k] === Number.NEGATIVE_INFINITY) hasNegInf = true;
  if (!hasNegInf && s.formula !== "causal_mask") return [];
  const n = e.shape[e.rank - 2]!;
  const m = e.shape[e.rank - 1]!;
  const { rtol, atol } = s.tolerance;
  const offsets = new Set<number>();
  let count = 0;
  for (let k = 0; k < e.size; k++) {
    const ev = e.data[k]!;
    const av = a.data[k]!;
    const same = ev === av || (Number.isFinite(ev) && Number.isFinite(av) && Math.abs(av - ev) <= atol + rtol * Math.abs(ev));
    if (same) continue;
    const j = k % m;
    const i = Math.floor(k / m) % n;
    offsets.add(j - i - (m - n));
    count++;
  }
  if (count === 0) return [];
  const offs = [...offsets];
  if (offs.every((o) => o === 1)) {
    return [{ id: "mask-off-by-one", evidence: "pattern", message: `all ${count} mismatches lie on the band j = i + 1 + (m − n), just above the causal diagonal: query i sees key i + 1 (an off-by-one in the mask comparison, < vs ≤)` }];
  }
  if (offs.every((o) => o === 0)) {
    return [{ id: "mask-diagonal", evidence: "pattern", message: `all ${count} mismatches lie on the causal diagonal j = i + (m − n): query i is denied its own key` }];
  }
  if (offs.every((o) => o > 0)) {
    return [{ id: "masked-positions", evidence: "pattern", message: `all ${count} mismatches are at masked positions (above the causal diagonal, j > i + m − n): future keys are not masked` }];
  }
  return [];
}

/** actual ≈ c·expected for one constant c (least squares), named when c is √(d_model/d_k) or its inverse. */
function factorPattern(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (!sameShape(e.shape, a.shape) || e.size < 2) return [];
  let ea = 0, ee = 0;
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
  const H = typeof s.config["H"] === "number" ? s.config["H"] : s.dims?.["H"];
  const named: Array<[number, string]> = [[-1, "the sign is flipped"], [2, "a factor 2"], [0.5, "a factor 1/2"]];
  if (typeof H === "number" && H > 1) {
    named.unshift([Math.sqrt(H), `√(d_model/d_k) = √H = ${fmt(Math.sqrt(H))}: the attention scale 1/√d_k was replaced by 1/√d_model (or the reverse)`]);
    named.unshift([1 / Math.sqrt(H), `√(d_k/d_model) = 1/√H = ${fmt(1 / Math.sqrt(H))}: the attention scale 1/√d_model was used instead of 1/√d_k`]);
  }
  const hit = named.find(([v]) => Math.abs(c - v) <= 1e-3 * Math.abs(v));
  const id: HintId = hit !== undefined && hit[1].includes("attention scale") ? "attention-scale" : "constant-factor";
  return [{ id, evidence: "pattern", message: `the output is the expected one times a constant c = ${fmt(c)}${hit !== undefined ? ` — ${hit[1]}` : ""}` }];
}

/** actual − expected constant along the last axis (per row), but not zero. */
function rowOffsetPattern(s: Symptom): Hint[] {
  const { expected: e, actual: a } = s;
  if (!sameShape(e.shape, a.shape) || e.rank < 1) return [];
  const m = e.shape[e.rank - 1]!;
  if (m < 2) return [];
  const rows = e.size / m;
  const { rtol, atol } = s.tolerance;
  let lo = Infinity, hi = -Infinity, offRows = 0;
  for (let r = 0; r < rows; r++) {
    let dmin = Infinity, dmax = -Infinity, emax = 0, sum = 0;
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
    return [{ id: "row-offset", evidence: "pattern", message: `actual − expected is the same constant ${fmt((lo + hi) / 2)} everywhere: a constant offset (a bias or a shift added or missing)` }];
  }
  return [{
    id: "row-offset",
    evidence: "pattern",
    message: `actual − expected is constant within each row of the last axis (offsets from ${fmt(lo)} to ${fmt(hi)} across ${rows} rows): a per-row normaliser — the max, mean or log Σ exp of the row — is missing or extra`,
  }];
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
  if (sameShape(s.expected.shape, s.actual.shape) && s.expected.dtype === s.actual.dtype) {
    add(await attentionHypotheses(s));
    add(await swapHypotheses(s));
    add(await sinusoidHypotheses(s));
    add(await weightHypotheses(s));
    add(maskPatterns(s));
    add(factorPattern(s));
    add(rowOffsetPattern(s));
  }
  add(layoutPatterns(s));
  return hints;
}
