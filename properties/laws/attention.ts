/**
 * Laws of attention and the formulas built on it: causality, prefix consistency, exact zeros
 * under the mask (values and gradients), permutation equivariance and its absence with
 * positions, head permutation, decomposition into heads, RoPE's relative positions, ALiBi's two
 * forms, grouped-query attention, and uniform weights for identical keys.
 */
import fc from "fast-check";
import { Tensor, sizeOf, type FloatDType, type NamedTensors } from "../../autodiff/tensor.js";
import { inputsArb, permutationArb, seedArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, fmt, twinTolerance, type Law, type LawScope } from "../law.js";
import {
  concatAxis,
  gatherAxis,
  identityValues,
  mapT,
  matmulLast,
  maxAbs,
  sliceAxis,
  toF64,
} from "../tensor-ops.js";
import {
  conditionedBound,
  gamma,
  ropeDepth,
  roundingDepth,
  underflowAllowance,
  unitRoundoff,
} from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb, scopedSeededCaseArb } from "./generic.js";
import { causalVisibility } from "../spec-values.js";
import { Rng } from "../../autodiff/random.js";
import { formulasOf } from "../../spec/index.js";

const BLOCKS = formulasOf("block");
/** Formulas whose rows are positions: attention (Q rows), mha, blocks, gpt (tokens). */
const SEQUENCE_FORMULAS = ["attention", "mha", ...BLOCKS, "gpt"] as const;

/** The argument axes that index positions, per formula (rows of x, Q, K, V; tokens and targets). */
function rowArgs(formula: string): {
  queries: readonly string[];
  keys: readonly string[];
  axis: number;
} {
  if (formula === "attention") return { queries: ["Q"], keys: ["K", "V"], axis: -2 };
  if (formula === "gpt") return { queries: ["tokens", "targets"], keys: [], axis: -1 };
  return { queries: ["x"], keys: [], axis: -2 };
}

/** The output whose rows are positions. */
function mainOutput(formula: string): string {
  return formula === "gpt" ? "logits" : "y";
}

function rows(t: Tensor, axis: number): number {
  return t.shape[t.shape.length + axis]!;
}

/**
 * The case's formula on `inputs` ("forward of x") and then on `changed` rows (`what`): the request
 * and outputs of the first (the reference point of {@link Check.expectTwin}), the name of the
 * output whose rows are positions, and that output of each.
 */
async function mainOutputs(
  k: Check,
  c: FormulaCase,
  inputs: NamedTensors,
  changed: NamedTensors,
  what: string,
) {
  const req = k.request(c.formula, c.config, inputs);
  const out = await k.forward(req, "forward of x");
  const outChanged = await k.forward(k.request(c.formula, c.config, changed), what);
  const name = mainOutput(c.formula);
  const y = k.pick(out, name, c.formula, "forward");
  return { req, out, name, y, yChanged: k.pick(outChanged, name, c.formula, "forward") };
}

// ---------------------------------------------------------------------------------------------

interface CausalCase extends FormulaCase {
  readonly i: number;
  readonly replacement: NamedTensors;
}

export const causality: Law<CausalCase> = {
  name: "causality",
  formulas: SEQUENCE_FORMULAS,
  statement:
    "changing rows (tokens) after position i leaves outputs at positions ≤ " +
    "i unchanged: f(x)[:i+1] = f(x')[:i+1] when x[:i+1] = x'[:i+1]",
  tolerance: twinTolerance(
    "two evaluations of the same rows: 2·γ_K·(S + κ̂) (tolerance.ts). " +
      "Masked keys enter as exp(−∞) = 0 weights, so in exact arithmetic " +
      "nothing leaks; an implementation may only round differently (e.g. a row " +
      "max taken before masking)",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        fixed: { causal: true },
        dims: { minN: 2, batch: "any", crossM: f === "attention" },
      }).chain((c) =>
        fc
          .tuple(fc.nat(), inputsArb(f, c.config, c.dims, { dtype: scope.dtype }))
          .map(([i, replacement]) => ({ ...c, i: i % (c.dims.n - 1), replacement })),
      ),
    ),
  check: checked("causality", async (k: Check, c: CausalCase) => {
    const { queries, keys, axis } = rowArgs(c.formula);
    const n = c.dims.n;
    // the keys after the last one query i sees, by the registry's causal_mask
    const firstHiddenKey = (m: number) => causalVisibility(n, m, c.config).lastVisible(c.i) + 1;
    const changed: NamedTensors = { ...c.inputs };
    for (const a of queries) changed[a] = splice(c.inputs[a]!, c.replacement[a]!, axis, c.i + 1);
    for (const a of keys)
      changed[a] = splice(
        c.inputs[a]!,
        c.replacement[a]!,
        axis,
        firstHiddenKey(rows(c.inputs[a]!, axis)),
      );
    const what = "forward of x with rows after i replaced";
    const { req, out, name, y, yChanged } = await mainOutputs(k, c, c.inputs, changed, what);
    await k.expectTwin(
      `${name} rows 0..${c.i} after changing rows ${c.i + 1}..${n - 1}`,
      sliceAxis(y, -2, 0, c.i + 1),
      sliceAxis(yChanged, -2, 0, c.i + 1),
      req,
      out,
      name,
      { i: c.i },
    );
  }),
};

/** Rows [from, end) of `a` replaced by those of `b` along `axis`. */
function splice(a: Tensor, b: Tensor, axis: number, from: number): Tensor {
  const len = rows(a, axis);
  if (from >= len) return a;
  const keep = from > 0 ? [sliceAxis(a, axis, 0, from)] : [];
  return concatAxis([...keep, sliceAxis(b, axis, from, len - from)], axis);
}

// ---------------------------------------------------------------------------------------------

interface PrefixCase extends FormulaCase {
  readonly t: number;
}

export const prefixConsistency: Law<PrefixCase> = {
  name: "prefix_consistency",
  formulas: SEQUENCE_FORMULAS,
  statement:
    "f(x[:t]) = f(x)[:t] for causal sequence formulas (a prefix is computed as if the rest did not exist)",
  tolerance: twinTolerance(
    "two evaluations of the same rows with m = t and m = n keys: 2·γ_K·(S + " +
      "κ̂) of the full request (tolerance.ts); the extra keys contribute exact " +
      "zeros but may change the order of the sums",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, { fixed: { causal: true }, dims: { batch: "any" } }).chain((c) =>
        fc.nat().map((t) => ({ ...c, t: 1 + (t % c.dims.n) })),
      ),
    ),
  check: checked("prefix_consistency", async (k: Check, c: PrefixCase) => {
    const { queries, keys, axis } = rowArgs(c.formula);
    const prefix: NamedTensors = { ...c.inputs };
    for (const a of [...queries, ...keys]) prefix[a] = sliceAxis(c.inputs[a]!, axis, 0, c.t);
    const { req, out, name, y, yChanged } = await mainOutputs(
      k,
      c,
      c.inputs,
      prefix,
      `forward of x[:${c.t}]`,
    );
    await k.expectTwin(
      `${name} of x[:${c.t}] vs ${name}(x)[:${c.t}]`,
      sliceAxis(y, -2, 0, c.t),
      yChanged,
      req,
      out,
      name,
      { t: c.t },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface MaskCase extends FormulaCase {
  readonly i: number;
  readonly seed: number;
}

const MASK_FORMULAS = ["causal_mask", "attention", "mha", ...BLOCKS] as const;

export const maskedZero: Law<MaskCase> = {
  name: "masked_zero",
  formulas: MASK_FORMULAS,
  statement:
    "masked attention weights are exactly 0 (attention with V = I_m returns " +
    "the weights P; rows without a visible key are 0), visible weights sum " +
    "to 1, and masked scores get exactly zero gradient (ȳ = 0 after row i ⇒ " +
    "∂/∂ of every later row and of every key hidden from rows ≤ i is exactly 0)",
  tolerance: {
    derivation:
      "exact for the zeros: exp(−∞) = 0 and 0·v = 0 in IEEE arithmetic, so a " +
      "masked weight or gradient is 0, not small. Row sums of visible weights: " +
      "|Σ_j P_ij − 1| ≤ 2(m + 2)u (see softmax_simplex); P·I_m adds exact zeros to P_ij",
    bound: (dtype, s) => 2 * ((s["m"] ?? 1) + 2) * unitRoundoff(dtype),
    scale: "1 (the zeros: 0)",
  },
  backward: (f) => (f === "attention" || f === "causal_mask" ? "optional" : "required"),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        fixed: { causal: true },
        dims: {
          batch: f === "causal_mask" ? "none" : "any",
          crossM: f === "attention" || f === "causal_mask",
        },
      }).chain((c) =>
        fc.tuple(fc.nat(), seedArb).map(([i, seed]) => ({ ...c, i: i % c.dims.n, seed })),
      ),
    ),
  check: checked("masked_zero", async (k: Check, c: MaskCase) => {
    const n = c.dims.n;
    if (c.formula === "causal_mask") {
      const y = await k.output(k.request("causal_mask", c.config, {}), "y");
      const m = y.shape[1]!;
      const seen = causalVisibility(n, m, c.config);
      const want = Tensor.zeros([n, m], "f64");
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < m; j++) want.data[i * m + j] = seen.visible(i, j) ? 0 : -Infinity;
      }
      k.expectEqual("causal_mask y: 0 where j ≤ i + m − n, −∞ elsewhere", want, y, "exact");
      return;
    }
    if (c.formula === "attention") await attentionWeights(k, c);
    if (!k.supportsBackward(c.formula)) return;
    // ȳ nonzero on rows ≤ i only
    const req = k.request(c.formula, c.config, c.inputs);
    const y = await k.output(req, "y");
    const rng = new Rng(c.seed);
    const cot = mapT(y, (_, flat) =>
      Math.floor(flat / y.shape.at(-1)!) % n <= c.i ? rng.normal() : 0,
    );
    const grads = await k.backward({ ...req, cotangents: { y: cot } });
    const zeroRows = (name: string, from: number) => {
      const g = grads[name];
      if (g === undefined)
        k.fail(`backward returned no gradient for ${name}`, { quantity: `grad ${name}` });
      const len = rows(g, -2);
      if (from >= len) return;
      const part = sliceAxis(g, -2, from, len - from);
      k.expectEqual(
        `grad ${name} rows ${from}..${len - 1} (ȳ = 0 after row ${c.i})`,
        Tensor.zeros(part.shape, "f64"),
        part,
        "exact: hidden positions get exp(−∞) = 0 weights, hence 0·(…) gradients",
      );
    };
    if (c.formula === "attention") {
      const hidden = causalVisibility(n, rows(c.inputs["K"]!, -2), c.config).lastVisible(c.i) + 1;
      zeroRows("Q", c.i + 1);
      zeroRows("K", hidden);
      zeroRows("V", hidden);
    } else {
      zeroRows("x", c.i + 1);
    }
  }),
};

async function attentionWeights(k: Check, c: MaskCase): Promise<void> {
  const K = c.inputs["K"]!;
  const m = rows(K, -2);
  const n = c.dims.n;
  // V = I_m in every batch member: y = P V = P
  const eye = identityValues(K, c.dtype);
  const P = await k.output(k.request("attention", c.config, { Q: c.inputs["Q"]!, K, V: eye }), "y");
  const want = toF64(P);
  const sums: number[] = [];
  const sumsWant: number[] = [];
  const seen = causalVisibility(n, m, c.config);
  for (let r = 0; r < P.size / m; r++) {
    const i = r % n;
    let s = 0;
    for (let j = 0; j < m; j++) {
      if (!seen.visible(i, j)) want[r * m + j] = 0;
      else s += P.data[r * m + j]!;
    }
    if (seen.lastVisible(i) >= 0) {
      sums.push(s);
      sumsWant.push(1);
    }
  }
  k.expectEqual(
    "attention weights P = attention(Q, K, I_m) at masked positions",
    Tensor.from(want, "f64", P.shape),
    P,
    "exact: exp(−∞) = 0",
  );
  const u = unitRoundoff(c.dtype);
  k.expectClose(
    "Σ_j P_ij over visible keys",
    sumsWant,
    sums,
    2 * (m + 2) * u + m * unitRoundoff("f64"),
    `2(m + 2)u with m = ${m} (softmax_simplex), plus the law's own float64 sum`,
  );
}

// ---------------------------------------------------------------------------------------------

interface PermCase extends FormulaCase {
  readonly perm: readonly number[];
  readonly keyPerm: readonly number[];
}

export const permutationEquivariance: Law<PermCase> = {
  name: "permutation_equivariance",
  formulas: SEQUENCE_FORMULAS,
  statement:
    "without a mask or positions, f(P x) = P f(x) for every permutation P " +
    "of the rows (for attention, permuting keys and values together changes nothing)",
  tolerance: twinTolerance(
    "two evaluations of the same rows in another order: 2·γ_K·(S + κ̂) " +
      "(tolerance.ts); sums over keys run in another order",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        fixed: { causal: false, positions: "none" },
        dims: { batch: "any", crossM: f === "attention" },
      }).chain((c) =>
        fc
          .tuple(permutationArb(c.dims.n), permutationArb(c.dims.m))
          .map(([perm, keyPerm]) => ({ ...c, perm, keyPerm })),
      ),
    ),
  check: checked("permutation_equivariance", async (k: Check, c: PermCase) => {
    const { queries, keys, axis } = rowArgs(c.formula);
    const moved: NamedTensors = { ...c.inputs };
    for (const a of queries) moved[a] = gatherAxis(c.inputs[a]!, axis, c.perm);
    for (const a of keys) moved[a] = gatherAxis(c.inputs[a]!, axis, c.keyPerm);
    const { req, out, name, y, yChanged } = await mainOutputs(
      k,
      c,
      c.inputs,
      moved,
      "forward of P x",
    );
    await k.expectTwin(
      `${name}(P x) vs P ${name}(x)`,
      gatherAxis(y, -2, c.perm),
      yChanged,
      req,
      out,
      name,
      { perm: c.perm, keyPerm: c.keyPerm },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

const POSITIONED = ["mha", ...BLOCKS, "gpt"] as const;

export const positionsBreakEquivariance: Law<FormulaCase> = {
  name: "positions_break_equivariance",
  formulas: POSITIONED,
  statement:
    "NEGATIVE: with positions (learned, sinusoidal, RoPE, ALiBi) swapping " +
    "the first and last rows must change f beyond P f(x): max|f(P x) − P " +
    "f(x)| > the two-evaluation bound",
  tolerance: twinTolerance(
    "the bound of permutation_equivariance, 2·γ_K·(S + κ̂), must be " +
      "EXCEEDED: a difference within it means the positions had no effect. " +
      "Arguments are seeded normals (inputs N(0,1), matrices N(0,1/fan-in)) " +
      "with distinct ids at the swapped positions, so a correct implementation " +
      "moves the output by O(slope·n) for ALiBi and O(1) otherwise",
    "S + κ̂ (to be exceeded)",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedSeededCaseArb(scope, f, {
        fixed: { causal: false },
        choose: {
          positions:
            f === "gpt"
              ? ["learned", "sinusoidal", "rope", "rope_interleaved", "alibi"]
              : ["rope", "rope_interleaved", "alibi"],
        },
        dims: { minN: 3, maxN: 5, batch: "none", minV: 5 },
        // d_model = 2 is degenerate: LayerNorm maps every row to ±(1, −1), so rows lose their content;
        // ALiBi with H = 1 has the single slope 2⁻⁸, whose effect can sit inside a float32 bound: H ≥ 2
        // gives head 0 the slope 2⁻⁴ (a score change ≥ 2⁻⁴·2 between the swapped rows)
      }).filter((c) => c.dims.d_model >= 3 && (c.config["positions"] !== "alibi" || c.dims.H >= 2)),
    ),
  check: checked("positions_break_equivariance", async (k: Check, c: FormulaCase) => {
    const { queries, axis } = rowArgs(c.formula);
    const n = c.dims.n;
    const swap = Array.from({ length: n }, (_, i) => (i === 0 ? n - 1 : i === n - 1 ? 0 : i));
    const inputs: NamedTensors = { ...c.inputs };
    if (c.formula === "gpt") {
      // distinct ids at the swapped positions, so the swap changes the sequence
      const t = c.inputs["tokens"]!.clone();
      if (t.data[0] === t.data[n - 1]) t.data[n - 1] = (t.data[0]! + 1) % c.dims.V;
      inputs["tokens"] = t;
    }
    const moved: NamedTensors = { ...inputs };
    for (const a of queries) moved[a] = gatherAxis(inputs[a]!, axis, swap);
    const what = "forward of x with rows 0 and n−1 swapped";
    const main = await mainOutputs(k, c, inputs, moved, what);
    const { req, out, name } = main;
    const y = gatherAxis(main.y, -2, swap);
    const yP = main.yChanged;
    let diff = 0;
    for (let i = 0; i < y.size; i++) diff = Math.max(diff, Math.abs(y.data[i]! - yP.data[i]!));
    const scale = (await k.scaleOf(req, out))[name]!;
    const K = roundingDepth({ formula: req.formula, config: req.config, inputs: req.inputs });
    const bound = conditionedBound(c.dtype, K, scale);
    if (!(diff > bound)) {
      k.fail(
        `swapping rows 0 and ${n - 1} only permuted the output (max |f(P x) − P ` +
          `f(x)| = ${fmt(diff)} ≤ ${fmt(bound)}): positions = ` +
          `${String(c.config["positions"])} seem not to be applied`,
        {
          quantity: `${name}(P x) − P ${name}(x)`,
          actual: diff,
          allowed: bound,
          toleranceReason: `must exceed 2·γ_K·(S + κ̂), K = ${K}, S = ${fmt(scale.S)}, κ̂ = ${fmt(scale.kappa)}`,
        },
      );
    }
  }),
};

// ---------------------------------------------------------------------------------------------

interface HeadPermCase extends FormulaCase {
  /** New group slot s holds old KV head groups[s]. */
  readonly groups: readonly number[];
  /** Within each group, new query r' takes old query within[r']. */
  readonly within: readonly number[];
}

/** Column blocks of size `size` reordered: new block b = old block order[b]. */
function permuteBlocks(t: Tensor, axis: number, order: readonly number[], size: number): Tensor {
  const idx: number[] = [];
  for (const b of order) for (let j = 0; j < size; j++) idx.push(b * size + j);
  return gatherAxis(t, axis, idx);
}

export const headsPermutation: Law<HeadPermCase> = {
  name: "heads_permutation",
  formulas: ["mha"],
  statement:
    "permuting the heads (column blocks of W_Q, W_K, W_V and their biases, " +
    "KV groups kept together) with the matching row blocks of W_O leaves mha unchanged",
  tolerance: twinTolerance(
    "two evaluations of the same sum over heads in another order: 2·γ_K·(S " +
      "+ κ̂) (tolerance.ts). ALiBi is excluded: its slopes belong to head " +
      "positions, so permuting heads changes the model",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        choose: { positions: ["none", "rope", "rope_interleaved"] },
        dims: { minH: 2, batch: "any" },
      }).chain((c) =>
        fc
          .tuple(permutationArb(c.dims.H_kv), permutationArb(c.dims.H / c.dims.H_kv))
          .map(([groups, within]) => ({ ...c, groups, within })),
      ),
    ),
  check: checked("heads_permutation", async (k: Check, c: HeadPermCase) => {
    const { H, H_kv, d_k } = c.dims;
    const G = H / H_kv;
    const qOrder: number[] = [];
    for (const g of c.groups) for (const r of c.within) qOrder.push(g * G + r);
    const p: NamedTensors = { ...c.inputs };
    p["W_Q"] = permuteBlocks(c.inputs["W_Q"]!, 1, qOrder, d_k);
    p["W_K"] = permuteBlocks(c.inputs["W_K"]!, 1, c.groups, d_k);
    p["W_V"] = permuteBlocks(c.inputs["W_V"]!, 1, c.groups, d_k);
    p["W_O"] = permuteBlocks(c.inputs["W_O"]!, 0, qOrder, d_k);
    if (c.inputs["b_Q"] !== undefined) {
      p["b_Q"] = permuteBlocks(c.inputs["b_Q"], 0, qOrder, d_k);
      p["b_K"] = permuteBlocks(c.inputs["b_K"]!, 0, c.groups, d_k);
      p["b_V"] = permuteBlocks(c.inputs["b_V"]!, 0, c.groups, d_k);
    }
    const req = k.request("mha", c.config, c.inputs);
    const out = await k.forward(req, "forward");
    const y2 = await k.output(k.request("mha", c.config, p), "y", "forward with heads permuted");
    await k.expectTwin(
      "mha y with heads permuted vs y",
      k.pick(out, "y", "mha", "forward"),
      y2,
      req,
      out,
      "y",
      { headOrder: qOrder, kvOrder: c.groups },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

/** x W + b over the last axis, in float64 (the law's own projection; see mha_decomposition). */
function project(x: Tensor, W: Tensor, b: Tensor | undefined): Tensor {
  const y = matmulLast(x, W);
  if (b !== undefined) {
    const d = b.size;
    for (let i = 0; i < y.size; i++) y.data[i] = y.data[i]! + b.data[i % d]!;
  }
  return y;
}

/** [..., n, H·d] → [..., H, n, d] (head h = columns h·d … (h+1)·d − 1). */
function splitHeads(t: Tensor, H: number): Tensor {
  const s = t.shape;
  const n = s[s.length - 2]!;
  const D = s[s.length - 1]!;
  const d = D / H;
  const pre = s.slice(0, -2);
  const out = Tensor.zeros([...pre, H, n, d], t.dtype);
  const B = sizeOf(pre);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < n; i++)
        for (let j = 0; j < d; j++)
          out.data[((b * H + h) * n + i) * d + j] = t.data[(b * n + i) * D + h * d + j]!;
  return out;
}

/** [..., H, n, d] → [..., n, H·d]. */
function mergeHeads(t: Tensor): Tensor {
  const s = t.shape;
  const [H, n, d] = [s[s.length - 3]!, s[s.length - 2]!, s[s.length - 1]!];
  const pre = s.slice(0, -3);
  const out = Tensor.zeros([...pre, n, H * d], t.dtype);
  const B = sizeOf(pre);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < n; i++)
        for (let j = 0; j < d; j++)
          out.data[(b * n + i) * H * d + h * d + j] = t.data[((b * H + h) * n + i) * d + j]!;
  return out;
}

/** Head axis (-3) repeated: query head h uses KV head ⌊h / G⌋. */
function repeatHeads(t: Tensor, G: number): Tensor {
  const Hkv = t.shape[t.shape.length - 3]!;
  return gatherAxis(
    t,
    -3,
    Array.from({ length: Hkv * G }, (_, h) => Math.floor(h / G)),
  );
}

const round = (t: Tensor, dtype: FloatDType) => (t.dtype === dtype ? t : t.to(dtype));

export const mhaDecomposition: Law<FormulaCase> = {
  name: "mha_decomposition",
  formulas: ["mha"],
  statement:
    "mha(x) = Concat_h attention(x W_Q^h + b_Q^h, x W_K^g + b_K^g, x W_V^g " +
    "+ b_V^g) W_O + b_O with head h = column block h, g = ⌊h/(H/H_kv)⌋, and " +
    "the scale 1/√d_k of attention",
  tolerance: twinTolerance(
    "the same quantity computed two ways (mha in one call; projections by " +
      "the law in float64, rounded to the dtype, then the implementation's " +
      "attention, then W_O in float64): within the conditioned bound 2·γ_K·(S " +
      "+ κ̂) of the mha request (tolerance.ts); the law's float64 steps are " +
      "more accurate than the dtype's",
  ),
  requires: () => ["attention"],
  arbitrary: (scope: LawScope) =>
    oneOfFormulas(scope, (f) =>
      // ALiBi is left out: the registry's attention formula with alibi: true cannot be evaluated on
      // its own ([H, n, m] bias against [..., n, m] scores is rejected by the shape rules)
      scopedCaseArb(scope, f, {
        choose: {
          positions: scope.declared.includes("rope")
            ? ["none", "rope", "rope_interleaved"]
            : ["none"],
        },
        dims: { batch: "any" },
      }),
    ),
  check: checked("mha_decomposition", async (k: Check, c: FormulaCase) => {
    const { H, H_kv } = c.dims;
    const x = c.inputs["x"]!;
    let Q = splitHeads(project(x, c.inputs["W_Q"]!, c.inputs["b_Q"]), H);
    let K = splitHeads(project(x, c.inputs["W_K"]!, c.inputs["b_K"]), H_kv);
    const V = splitHeads(project(x, c.inputs["W_V"]!, c.inputs["b_V"]), H_kv);
    const positions = String(c.config["positions"] ?? "none");
    Q = round(Q, c.dtype);
    K = round(K, c.dtype);
    if (positions === "rope" || positions === "rope_interleaved") {
      const ropeCfg = {
        base: c.config["rope_base"] ?? 10000,
        offset: 0,
        convention: positions === "rope" ? "half" : "interleaved",
      };
      Q = await k.output(k.request("rope", ropeCfg, { x: Q }), "y", "rope of the queries");
      K = await k.output(k.request("rope", ropeCfg, { x: K }), "y", "rope of the keys");
    }
    const G = H / H_kv;
    const attnCfg: Record<string, number | string | boolean> = {
      causal: c.config["causal"] ?? true,
    };
    if (positions === "alibi") Object.assign(attnCfg, { alibi: true, H });
    const heads = await k.output(
      k.request("attention", attnCfg, {
        Q,
        K: repeatHeads(K, G),
        V: round(repeatHeads(V, G), c.dtype),
      }),
      "y",
      "attention of the heads",
    );
    const composed = project(mergeHeads(heads), c.inputs["W_O"]!, c.inputs["b_O"]);
    const req = k.request("mha", c.config, c.inputs);
    const out = await k.forward(req, "mha forward");
    await k.expectTwin(
      "mha y vs Concat_h attention(…) W_O + b_O",
      composed,
      k.pick(out, "y", "mha", "forward"),
      req,
      out,
      "y",
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface RopeCase extends FormulaCase {
  readonly z: Tensor;
  readonly a: number;
  readonly b: number;
  readonly s: number;
}

export const ropeRelative: Law<RopeCase> = {
  name: "rope_relative",
  formulas: ["rope", "mha"],
  statement:
    "RoPE: position 0 is the identity, rotations preserve row norms, and " +
    "⟨R_{a+i} q_i, R_{b+i} k_i⟩ = ⟨R_{a+s+i} q_i, R_{b+s+i} k_i⟩ (scores " +
    "depend on the offset only); mha with RoPE is invariant to shifting " +
    "every position by s",
  tolerance: {
    derivation:
      "each rotated entry is within γ_R·(|x_j| + |x_j'|) of exact, γ_R = " +
      "ropeDepth(p_max)·u (angle θ = p·ω with relative error 3u, hence " +
      "absolute 3u·p_max, then two products and a sum). Norms: |‖ŷ‖² − ‖x‖²| ≤ " +
      "2‖x‖‖e‖ + ‖e‖² ≤ 3γ_R‖x‖² (‖e‖ ≤ √2γ_R‖x‖), plus the law's float64 sums " +
      "2γ_{d_k}. Dot products: each side within 2√2γ_R‖q‖‖k‖ + O(γ²) of exact, " +
      "so the two sides within 6γ_R‖q‖‖k‖. Entries below the normal range add " +
      "up to 3 smallest normals each (underflowAllowance, times ‖·‖₁ of the " +
      "other factor). Position 0: exact (cos 0 = 1, sin 0 = 0). mha: 2·γ_K·(S " +
      "+ κ̂) of the shifted request",
    bound: (dtype, s) => 6 * ropeDepth(s["p_max"] ?? 1) * unitRoundoff(dtype),
    scale: "‖q‖·‖k‖ (norms: ‖x‖²)",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      f === "rope"
        ? scopedCaseArb(scope, f, { choose: { offset: [0] }, dims: { batch: "any" } }).chain((c) =>
            fc
              .tuple(
                inputsArb(f, c.config, c.dims, { dtype: scope.dtype }),
                fc.integer({ min: 0, max: 40 }),
                fc.integer({ min: 0, max: 40 }),
                fc.integer({ min: 1, max: 40 }),
              )
              .map(([z, a, b, s]) => ({ ...c, z: z["x"]!, a, b, s })),
          )
        : scopedCaseArb(scope, f, {
            choose: { positions: ["rope", "rope_interleaved"] },
            dims: { batch: "any" },
          }).chain((c) =>
            fc
              .integer({ min: 1, max: 40 })
              .map((s) => ({ ...c, z: c.inputs["x"]!, a: 0, b: 0, s })),
          ),
    ),
  check: checked("rope_relative", async (k: Check, c: RopeCase) => {
    if (c.formula === "mha") {
      const req = k.request("mha", { ...c.config, offset: c.s }, c.inputs);
      const out = await k.forward(req, `mha with offset ${c.s}`);
      const y0 = await k.output(
        k.request("mha", { ...c.config, offset: 0 }, c.inputs),
        "y",
        "mha with offset 0",
      );
      await k.expectTwin(
        `mha y with every position shifted by ${c.s} vs unshifted`,
        y0,
        k.pick(out, "y", "mha", "forward"),
        req,
        out,
        "y",
        { shift: c.s },
      );
      return;
    }
    const x = c.inputs["x"]!;
    const n = rows(x, -2);
    const d = x.shape.at(-1)!;
    const rope = (t: Tensor, offset: number) =>
      k.output(
        k.request("rope", { ...c.config, offset }, { x: t }),
        "y",
        `rope with offset ${offset}`,
      );
    const u = unitRoundoff(c.dtype);
    const u64 = unitRoundoff("f64");
    // position 0 is the identity
    const r0 = await rope(x, 0);
    k.expectEqual(
      "rope(x, offset 0) row 0 = x row 0",
      rowSlice(x, 0),
      rowSlice(r0, 0),
      "exact: cos 0 = 1, sin 0 = 0",
    );
    const pMax = Math.max(c.a, c.b) + c.s + n;
    const gR = ropeDepth(pMax) * u;
    // norms
    const norms = (t: Tensor) => rowNorms2(t);
    const nx = norms(x);
    const nr = norms(r0);
    // a rotated entry below the normal range may be off by up to 3 smallest normals (two products, a sum)
    const sp = underflowAllowance(c.dtype, 3) + underflowAllowance("f64", 2 * d);
    const l1x = rowL1(x);
    const l1z = rowL1(c.z);
    k.expectClose(
      "‖rope(x)_i‖² vs ‖x_i‖²",
      nx,
      nr,
      Array.from(nx, (v, i) => (3 * gR + 2 * (d + 1) * u64) * v + 4 * sp * (l1x[i]! + 1)),
      `(3γ_R + 2γ_{d_k}(f64))·‖x_i‖² + 4·(3 smallest normals)·‖x_i‖₁, γ_R = ${ropeDepth(pMax)}u`,
    );
    // relative positions
    const [qa, kb, qas, kbs] = await Promise.all([
      rope(x, c.a),
      rope(c.z, c.b),
      rope(x, c.a + c.s),
      rope(c.z, c.b + c.s),
    ]);
    const d1 = rowDots(qa, kb);
    const d2 = rowDots(qas, kbs);
    const qn = rowNorms(x);
    const kn = rowNorms(c.z);
    const allowed = Array.from(
      qn,
      (v, i) => (6 * gR + 4 * (d + 1) * u64) * v * kn[i]! + 4 * sp * (l1x[i]! + l1z[i]! + 1),
    );
    k.expectClose(
      `⟨R q, R k⟩ at offsets (${c.a}, ${c.b}) vs (${c.a + c.s}, ${c.b + c.s})`,
      d1,
      d2,
      allowed,
      `(6γ_R + 4γ_{d_k}(f64))·‖q_i‖‖k_i‖ + 4·(3 smallest normals)·(‖q_i‖₁ + ‖k_i‖₁ + 1), γ_R = ${ropeDepth(pMax)}u`,
      { a: c.a, b: c.b, shift: c.s },
    );
  }),
};

function rowSlice(t: Tensor, i: number): Tensor {
  return sliceAxis(t, -2, i, 1);
}

function rowNorms2(t: Tensor): Float64Array {
  const d = t.shape.at(-1)!;
  const out = new Float64Array(t.size / d);
  for (let r = 0; r < out.length; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += t.data[r * d + j]! ** 2;
    out[r] = s;
  }
  return out;
}

/** ‖row‖₂ without underflow or overflow of the squares (scaled by the row's max). */
function rowNorms(t: Tensor): Float64Array {
  const d = t.shape.at(-1)!;
  const out = new Float64Array(t.size / d);
  for (let r = 0; r < out.length; r++) {
    let m = 0;
    for (let j = 0; j < d; j++) m = Math.max(m, Math.abs(t.data[r * d + j]!));
    let s = 0;
    if (m > 0) for (let j = 0; j < d; j++) s += (t.data[r * d + j]! / m) ** 2;
    out[r] = m * Math.sqrt(s);
  }
  return out;
}

function rowL1(t: Tensor): Float64Array {
  const d = t.shape.at(-1)!;
  const out = new Float64Array(t.size / d);
  for (let r = 0; r < out.length; r++)
    for (let j = 0; j < d; j++) out[r] = out[r]! + Math.abs(t.data[r * d + j]!);
  return out;
}

function rowDots(a: Tensor, b: Tensor): Float64Array {
  const d = a.shape.at(-1)!;
  const out = new Float64Array(a.size / d);
  for (let r = 0; r < out.length; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += a.data[r * d + j]! * b.data[r * d + j]!;
    out[r] = s;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface AlibiCase extends FormulaCase {
  readonly scores: Tensor;
}

export const alibiForms: Law<AlibiCase> = {
  name: "alibi_forms",
  formulas: ["alibi_bias"],
  statement:
    "softmax(S + B_relative) = softmax(S + B_absolute): the two ALiBi forms " +
    "differ by s_h·(i + m − n), a constant per row",
  tolerance: {
    derivation:
      "the two score rows differ by a per-row constant up to δ ≤ u·|S + B| " +
      "(the law's rounding of each sum, in the dtype) + γ_B·|B| (the bias " +
      "values, γ_B = (4 + 2m)u: slope by pow and a product); softmax moves by " +
      "|Δp_j| ≤ 2p_j·max|δ| ≤ 2max|δ|, and each softmax evaluation is within " +
      "(m + 3)u + u/e of exact (softmax_simplex): allowed 2max|δ| + 2((m + 3)u + u)",
    bound: (dtype, s) => 2 * ((s["m"] ?? 1) + 4) * unitRoundoff(dtype),
    scale: "1 (+ 2·max|δ|)",
  },
  requires: () => ["softmax"],
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, { dims: { crossM: true, maxH: 8 } }).chain((c) =>
        fc
          .tuple(fc.constant(c), floatScores(c, scope.dtype))
          .map(([cc, scores]) => ({ ...cc, scores })),
      ),
    ),
  check: checked("alibi_forms", async (k: Check, c: AlibiCase) => {
    const rel = await k.output(
      k.request("alibi_bias", { ...c.config, form: "relative" }, {}),
      "y",
      "alibi_bias relative",
    );
    const abs = await k.output(
      k.request("alibi_bias", { ...c.config, form: "absolute" }, {}),
      "y",
      "alibi_bias absolute",
    );
    if (rel.size !== c.scores.size || abs.size !== c.scores.size)
      k.fail(
        `alibi_bias returned ${rel.size} and ${abs.size} elements for [H, n, m] = ${c.scores.size}`,
      );
    const add = (b: Tensor) => mapT(c.scores, (v, i) => v + b.data[i]!, c.dtype);
    const sRel = add(rel);
    const sAbs = add(abs);
    const pRel = await k.output(
      k.request("softmax", {}, { x: sRel }),
      "y",
      "softmax(S + B_relative)",
    );
    const pAbs = await k.output(
      k.request("softmax", {}, { x: sAbs }),
      "y",
      "softmax(S + B_absolute)",
    );
    const u = unitRoundoff(c.dtype);
    const m = c.scores.shape.at(-1)!;
    const gB = (4 + 2 * m) * u;
    const delta =
      u * Math.max(maxAbs(sRel), maxAbs(sAbs)) + gB * Math.max(maxAbs(rel), maxAbs(abs));
    const allowed = 2 * delta + 2 * ((m + 3) * u + u);
    k.expectClose(
      "softmax(S + B_relative) vs softmax(S + B_absolute)",
      pRel,
      pAbs,
      allowed,
      `2·max|δ| + 2((m + 3)u + u), max|δ| = ${fmt(delta)}, m = ${m}`,
    );
  }),
};

function floatScores(c: FormulaCase, dtype: FloatDType): fc.Arbitrary<Tensor> {
  const H = Number(c.config["H"]);
  const n = Number(c.config["n"]);
  const m = typeof c.config["m"] === "number" ? Number(c.config["m"]) : n;
  return inputsArb(
    "softmax",
    {},
    { ...c.dims, m, batch: [H, n] },
    { dtype, range: () => ({ min: -20, max: 20 }) },
  ).map((r) => r["x"]!);
}

// ---------------------------------------------------------------------------------------------

export const groupedQuery: Law<FormulaCase> = {
  name: "grouped_query",
  formulas: ["mha"],
  statement:
    "mha with H_kv KV heads = mha with H_kv = H whose W_K, W_V (and biases) " +
    "repeat each KV head's column block H/H_kv times; and H_kv = H given " +
    "explicitly = H_kv left at its default",
  tolerance: twinTolerance(
    "the same arithmetic on the same values (repeated blocks): 2·γ_K·(S + κ̂) of the grouped request (tolerance.ts)",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, { dims: { minH: 2, maxH: 4, batch: "any" } }).filter(
        (c) => c.dims.H_kv < c.dims.H || c.dims.H === 1,
      ),
    ),
  check: checked("grouped_query", async (k: Check, c: FormulaCase) => {
    const { H, H_kv, d_k } = c.dims;
    const G = H / H_kv;
    const order = Array.from({ length: H }, (_, h) => Math.floor(h / G));
    const rep: NamedTensors = { ...c.inputs };
    rep["W_K"] = permuteBlocks(c.inputs["W_K"]!, 1, order, d_k);
    rep["W_V"] = permuteBlocks(c.inputs["W_V"]!, 1, order, d_k);
    if (c.inputs["b_K"] !== undefined) {
      rep["b_K"] = permuteBlocks(c.inputs["b_K"], 0, order, d_k);
      rep["b_V"] = permuteBlocks(c.inputs["b_V"]!, 0, order, d_k);
    }
    const req = k.request("mha", c.config, c.inputs);
    const out = await k.forward(req, `mha with H_kv = ${H_kv}`);
    const mhaCfg: Record<string, number | string | boolean> = { ...c.config };
    delete mhaCfg["H_kv"];
    const yMha = await k.output(k.request("mha", mhaCfg, rep), "y", "mha with K/V heads repeated");
    const yExplicit = await k.output(
      k.request("mha", { ...mhaCfg, H_kv: H }, rep),
      "y",
      "mha with H_kv = H given explicitly",
    );
    const y = k.pick(out, "y", "mha", "forward");
    await k.expectTwin(
      `mha(H_kv = ${H_kv}) vs mha(H_kv = H) with K/V blocks repeated per group`,
      yMha,
      y,
      req,
      out,
      "y",
      { kvHeadOfQueryHead: order },
    );
    await k.expectTwin("mha with H_kv = H explicit vs default", yMha, yExplicit, req, out, "y");
  }),
};

// ---------------------------------------------------------------------------------------------

export const uniformKeys: Law<FormulaCase> = {
  name: "uniform_keys",
  formulas: ["attention"],
  statement:
    "identical keys give uniform weights: attention(Q, 1kᵀ, V)_i = mean of the V rows visible to query i",
  tolerance: {
    derivation:
      "equal scores make every weight 1/c (c visible keys) up to (c + 2)u " +
      "(sum of c equal terms, a division); y_i = Σ p_j V_j adds γ_c·max|V|; a " +
      "kernel that computes the equal scores in different instruction paths " +
      "may differ by γ_{d_k}·|q||k|/√d_k, which moves weights by twice that: " +
      "allowed (2c + 4)u·max|V| + 2γ_{d_k+1}·|q||k|/√d_k·max|V| + c·u₆₄·max|V| " +
      "(the law's own mean)",
    bound: (dtype, s) => (2 * (s["m"] ?? 1) + 4) * unitRoundoff(dtype),
    scale: "max|V|",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => scopedCaseArb(scope, f, { dims: { batch: "any", crossM: true } })),
  check: checked("uniform_keys", async (k: Check, c: FormulaCase) => {
    const Q = c.inputs["Q"]!;
    const K0 = c.inputs["K"]!;
    const V = c.inputs["V"]!;
    const m = rows(K0, -2);
    const n = rows(Q, -2);
    const d_k = K0.shape.at(-1)!;
    const d_v = V.shape.at(-1)!;
    const K = gatherAxis(K0, -2, Array(m).fill(0) as number[]);
    const y = await k.output(k.request("attention", c.config, { Q, K, V }), "y");
    const seen = c.config["causal"] !== false ? causalVisibility(n, m, c.config) : undefined;
    const B = Q.size / (n * d_k);
    const want = new Float64Array(y.size);
    const allowed = new Float64Array(y.size);
    const u = unitRoundoff(c.dtype);
    for (let b = 0; b < B; b++) {
      const vmax = maxAbs(V.data.subarray(b * m * d_v, (b + 1) * m * d_v));
      let kn = 0;
      for (let j = 0; j < d_k; j++) kn += K.data[b * m * d_k + j]! ** 2;
      for (let i = 0; i < n; i++) {
        const keys = [...Array(m).keys()].filter((j) => seen === undefined || seen.visible(i, j));
        const visible = keys.length;
        let qn = 0;
        for (let j = 0; j < d_k; j++) qn += Q.data[(b * n + i) * d_k + j]! ** 2;
        const scoreSpread = 2 * gamma(d_k + 1, c.dtype) * Math.sqrt(qn) * Math.sqrt(kn / d_k);
        for (let j = 0; j < d_v; j++) {
          let s = 0;
          for (const r of keys) s += V.data[(b * m + r) * d_v + j]!;
          const o = (b * n + i) * d_v + j;
          want[o] = visible === 0 ? 0 : s / visible;
          allowed[o] =
            ((2 * visible + 4) * u + scoreSpread + visible * unitRoundoff("f64")) * vmax +
            underflowAllowance(c.dtype, visible + 4, 1 + vmax);
        }
      }
    }
    k.expectClose(
      "attention with identical keys vs the mean of the visible V rows",
      Tensor.from(want, "f64", y.shape),
      y,
      allowed,
      "(2c + 4)u·max|V| + 2γ_{d_k+1}|q||k|/√d_k·max|V| + c·u₆₄·max|V|, c = visible keys",
    );
  }),
};
