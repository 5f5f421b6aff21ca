/**
 * Laws of the attention conventions real transformer code states (issue 13): the two causal
 * alignments, the mask input (padding keys, fully masked rows, boolean = additive 0/−∞), the
 * sliding window, logit soft-capping and grouped K/V heads inside `attention`. Each relates two
 * evaluations of the implementation under different conventions; none restates a mask rule.
 */
import fc from "fast-check";
import { Tensor, sizeOf, type NamedTensors } from "../../autodiff/tensor.js";
import { formulaCaseArb, inputsArb, seedArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, fmt, type Law } from "../law.js";
import { gatherAxis, mapT, sliceAxis } from "../tensor-ops.js";
import { gamma, unitRoundoff } from "../tolerance.js";
import { oneOfFormulas } from "./generic.js";
import { Rng } from "../../autodiff/random.js";
import type { FormulaConfig } from "../../autodiff/implementation.js";

const rows = (t: Tensor, axis: number): number => t.shape[t.shape.length + axis]!;

/** The attention config without the given keys (a convention switched back to its default). */
function without(config: FormulaConfig, ...keys: string[]): FormulaConfig {
  const out: Record<string, number | string | boolean> = { ...config };
  for (const k of keys) delete out[k];
  return out;
}

const TWIN = {
  derivation: "two evaluations of the same attention rows: 2·γ_K·(S + κ̂) (tolerance.ts); the keys one convention hides enter as exp(−∞) = 0 weights, so in exact arithmetic the two agree and an implementation may only round differently",
  bound: (dtype: "f64" | "f32", s: Readonly<Record<string, number>>) => 2 * gamma(s["K"] ?? 1, dtype),
  scale: "S + κ̂",
};

// ---------------------------------------------------------------------------------------------

export const causalAlignment: Law<FormulaCase> = {
  name: "causal_alignment",
  formulas: ["attention"],
  statement:
    "top-left and bottom-right causal attention agree when n = m; for n < m top-left attention over m keys equals bottom-right attention over the first n; for n > m top-left rows i ≥ m − 1 equal attention without a mask",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => formulaCaseArb(f, { dtype: scope.dtype, fixed: { causal: true, causal_align: "top_left" }, dims: { batch: "any", crossM: true } })),
  check: checked("causal_alignment", async (k: Check, c: FormulaCase) => {
    const { Q, K, V } = c.inputs as Record<string, Tensor>;
    const n = rows(Q!, -2);
    const m = rows(K!, -2);
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, "forward, top-left causal");
    const y = k.pick(out, "y", c.formula, "forward");
    const bottomRight = { ...c.config, causal_align: "bottom_right" };
    if (n <= m) {
      const keys = { ...c.inputs, K: sliceAxis(K!, -2, 0, n), V: sliceAxis(V!, -2, 0, n) };
      const y2 = await k.output(k.request(c.formula, bottomRight, keys), "y", `forward, bottom-right causal over the first ${n} keys`);
      await k.expectTwin(`y top-left over ${m} keys vs y bottom-right over the first ${n}`, y, y2, req, out, "y", { n, m });
      return;
    }
    const y2 = await k.output(k.request(c.formula, { ...c.config, causal: false }, c.inputs), "y", "forward without a mask");
    const from = m - 1;
    await k.expectTwin(`y rows ${from}..${n - 1} top-left vs without a mask (every key is visible to them)`, sliceAxis(y, -2, from, n - from), sliceAxis(y2, -2, from, n - from), req, out, "y", { n, m });
  }),
};

// ---------------------------------------------------------------------------------------------

interface MaskCase extends FormulaCase {
  /** The padded key (mask 0 in every query row). */
  readonly key: number;
  /** A query row masked entirely (−1: none). */
  readonly emptyRow: number;
  readonly replacement: NamedTensors;
  readonly seed: number;
}

export const maskPadding: Law<MaskCase> = {
  name: "mask_padding",
  formulas: ["attention"],
  statement:
    "a key the mask excludes in every row (padding) never changes any output: replacing its K and V rows leaves y unchanged and its gradients are exactly 0; a query row with no visible key gives y = 0 and ∂Q = 0 exactly; a boolean mask equals the additive mask 0 / −∞",
  tolerance: {
    derivation: "exact for the zeros (exp(−∞) = 0, 0·v = 0); the replacement and the boolean/additive pair are two evaluations of the same rows: 2·γ_K·(S + κ̂) (tolerance.ts)",
    bound: (dtype, s) => 2 * gamma(s["K"] ?? 1, dtype),
    scale: "S + κ̂ (the zeros: 0)",
  },
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      formulaCaseArb(f, { dtype: scope.dtype, fixed: { mask: "boolean" }, choose: { causal_align: ["bottom_right", "top_left"] }, dims: { batch: "any", crossM: true } }).chain((c) =>
        fc
          .tuple(fc.nat(), fc.integer({ min: -1, max: 8 }), inputsArb(f, c.config, c.dims, { dtype: scope.dtype }), seedArb)
          .map(([key, row, replacement, seed]) => ({ ...c, key: key % c.dims.m, emptyRow: row < c.dims.n ? row : -1, replacement, seed })),
      ),
    ),
  check: checked("mask_padding", async (k: Check, c: MaskCase) => {
    const { K, V, mask } = c.inputs as Record<string, Tensor>;
    const n = c.dims.n;
    const m = rows(K!, -2);
    // key `c.key` padded in every row; row `c.emptyRow` sees nothing; the rest random 0/1
    const rng = new Rng(c.seed);
    const bool = mapT(mask!, (_, flat) => {
      const j = flat % m;
      const i = Math.floor(flat / m) % n;
      return j === c.key || i === c.emptyRow ? 0 : rng.uniform() < 0.75 ? 1 : 0;
    });
    const inputs: NamedTensors = { ...c.inputs, mask: bool };
    const req = k.request(c.formula, c.config, inputs);
    const out = await k.forward(req, "forward with a padding mask");
    const y = k.pick(out, "y", c.formula, "forward");
    const other: NamedTensors = { ...inputs };
    for (const a of ["K", "V"]) other[a] = replaceRow(inputs[a]!, c.replacement[a]!, c.key);
    const y2 = await k.output(k.request(c.formula, c.config, other), "y", `forward with padded key ${c.key} replaced`);
    await k.expectTwin(`y after replacing the K, V rows of padded key ${c.key}`, y, y2, req, out, "y", { key: c.key });
    if (c.emptyRow >= 0) {
      const row = sliceAxis(y, -2, c.emptyRow, 1);
      k.expectEqual(`y row ${c.emptyRow} (the mask hides every key from it)`, Tensor.zeros(row.shape, "f64"), row, "exact: a row without a visible key is documented as 0");
    }
    const additive = mapT(bool, (v) => (v !== 0 ? 0 : -Infinity), c.dtype);
    const y3 = await k.output(k.request(c.formula, { ...c.config, mask: "additive" }, { ...inputs, mask: additive }), "y", "forward with the additive mask 0 / −∞");
    await k.expectTwin("y with the boolean mask vs the additive mask 0 / −∞", y, y3, req, out, "y");
    if (!k.supportsBackward(c.formula)) return;
    const cot = mapT(y, () => rng.normal());
    const grads = await k.backward({ ...req, cotangents: { y: cot } });
    for (const a of ["K", "V"]) {
      const g = grads[a];
      if (g === undefined) k.fail(`backward returned no gradient for ${a}`, { quantity: `grad ${a}` });
      const part = sliceAxis(g, -2, c.key, 1);
      k.expectEqual(`grad ${a} row ${c.key} (padded key)`, Tensor.zeros(part.shape, "f64"), part, "exact: a masked key gets exp(−∞) = 0 weights, hence 0·(…) gradients");
    }
    if (c.emptyRow >= 0) {
      const g = grads["Q"];
      if (g === undefined) k.fail("backward returned no gradient for Q", { quantity: "grad Q" });
      const part = sliceAxis(g, -2, c.emptyRow, 1);
      k.expectEqual(`grad Q row ${c.emptyRow} (no visible key)`, Tensor.zeros(part.shape, "f64"), part, "exact: the row's weights are all 0 and so is their gradient");
    }
  }),
};

/** `a` with row `r` (axis −2) taken from `b`. */
function replaceRow(a: Tensor, b: Tensor, r: number): Tensor {
  const n = rows(a, -2);
  const w = a.shape.at(-1)!;
  const out = a.clone();
  for (let o = 0; o < a.size; o += n * w) for (let j = 0; j < w; j++) out.data[o + r * w + j] = b.data[o + r * w + j]!;
  return out;
}

// ---------------------------------------------------------------------------------------------

export const windowLimit: Law<FormulaCase> = {
  name: "window_limit",
  formulas: ["attention"],
  statement: "a sliding window no shorter than the sequence (w ≥ max(n, m); w ≥ n for self-attention) changes nothing: causal attention with window w equals causal attention without one, in either alignment",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc.nat({ max: 3 }).chain((extra) =>
        formulaCaseArb(f, {
          dtype: scope.dtype,
          fixed: { causal: true },
          choose: { causal_align: ["bottom_right", "top_left"] },
          dims: { batch: "any", crossM: true },
          configFromDims: (d) => ({ window: Math.max(d.n, d.m) + extra }),
        }),
      ),
    ),
  check: checked("window_limit", async (k: Check, c: FormulaCase) => {
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, `forward with window ${String(c.config["window"])}`);
    const y = k.pick(out, "y", c.formula, "forward");
    const y2 = await k.output(k.request(c.formula, without(c.config, "window"), c.inputs), "y", "forward without a window");
    await k.expectTwin(`y with window ${String(c.config["window"])} ≥ max(n, m) vs without a window`, y, y2, req, out, "y");
  }),
};

// ---------------------------------------------------------------------------------------------

interface CapCase extends FormulaCase {
  readonly cap: number;
}

/** A cap so large that c·tanh(s/c) = s − s³/(3c²) equals s to far below one ulp for the law's scores (|s| < 10³). */
const HUGE_CAP = 1e12;

export const softcapLimit: Law<CapCase> = {
  name: "softcap_limit",
  formulas: ["attention"],
  statement:
    "soft-capping tends to no cap: attention with c → ∞ (c = 1e12) equals attention with softcap 0; and a cap c bounds every row's weights without a mask: max_j P_ij ≤ e^{2c}·min_j P_ij",
  tolerance: {
    derivation:
      "the limit: two evaluations of the same rows, 2·γ_K·(S + κ̂), since c·tanh(s/c) − s = O(s³/c²) is below 10⁻¹⁵·|s| for |s| < 10³. The bound: the capped scores lie in (−c, c), so exp(s_j − s_k) ≤ e^{2c}; each weight carries ≤ (m + 2)u relative rounding (softmax_simplex), hence the factor 1 + 2(m + 2)u",
    bound: (dtype, s) => 2 * gamma(s["K"] ?? 1, dtype),
    scale: "S + κ̂ (the bound: relative)",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc.constantFrom(0.5, 1, 2).chain((cap) =>
        formulaCaseArb(f, { dtype: scope.dtype, fixed: { softcap: HUGE_CAP }, dims: { batch: "any", crossM: true } }).map((c) => ({ ...c, cap })),
      ),
    ),
  check: checked("softcap_limit", async (k: Check, c: CapCase) => {
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, `forward with softcap ${HUGE_CAP}`);
    const y = k.pick(out, "y", c.formula, "forward");
    const y2 = await k.output(k.request(c.formula, { ...c.config, softcap: 0 }, c.inputs), "y", "forward without a cap");
    await k.expectTwin(`y with softcap ${HUGE_CAP} vs without a cap`, y, y2, req, out, "y");
    // the weights: V = I_m in every batch member (and K/V head) gives y = P
    const K = c.inputs["K"]!;
    const m = rows(K, -2);
    const batch = K.shape.slice(0, -2);
    const eye = Tensor.zeros([...batch, m, m], c.dtype);
    for (let b = 0; b < sizeOf(batch); b++) for (let j = 0; j < m; j++) eye.data[b * m * m + j * m + j] = 1;
    const cfg = { ...c.config, softcap: c.cap, causal: false };
    const P = await k.output(k.request(c.formula, cfg, { ...c.inputs, V: eye }), "y", `weights with softcap ${c.cap}, no mask`);
    const limit = Math.exp(2 * c.cap) * (1 + 2 * (m + 2) * unitRoundoff(c.dtype));
    for (let r = 0; r < P.size / m; r++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < m; j++) {
        lo = Math.min(lo, P.data[r * m + j]!);
        hi = Math.max(hi, P.data[r * m + j]!);
      }
      if (!(hi <= limit * lo)) {
        k.fail(`weights with softcap ${c.cap}: row ${r} has max/min ${fmt(hi / lo)} > e^{2c} = ${fmt(Math.exp(2 * c.cap))} (capped scores lie in (−c, c))`, {
          quantity: `P row ${r}`,
          expected: limit * lo,
          actual: hi,
          values: { row: Array.from(P.data.slice(r * m, (r + 1) * m)) },
        });
      }
    }
  }),
};

// ---------------------------------------------------------------------------------------------

export const groupedHeads: Law<FormulaCase> = {
  name: "grouped_heads",
  formulas: ["attention"],
  statement: "attention with H query heads over H_kv K/V heads equals attention with each K/V head repeated H / H_kv times (query head h uses K/V head ⌊h·H_kv/H⌋)",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      formulaCaseArb(f, { dtype: scope.dtype, dims: { batch: "any", crossM: true }, configFromDims: (d) => ({ H: d.H, H_kv: d.H_kv }) }),
    ),
  check: checked("grouped_heads", async (k: Check, c: FormulaCase) => {
    const H = Number(c.config["H"]);
    const Hkv = Number(c.config["H_kv"]);
    const idx = Array.from({ length: H }, (_, h) => Math.floor((h * Hkv) / H));
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, `forward with H = ${H}, H_kv = ${Hkv}`);
    const y = k.pick(out, "y", c.formula, "forward");
    const repeated = { ...c.inputs, K: gatherAxis(c.inputs["K"]!, -3, idx), V: gatherAxis(c.inputs["V"]!, -3, idx) };
    const y2 = await k.output(k.request(c.formula, without(c.config, "H_kv"), repeated), "y", "forward with K, V heads repeated");
    await k.expectTwin(`y grouped (H_kv = ${Hkv}) vs K/V heads repeated to H = ${H}`, y, y2, req, out, "y", { heads: idx });
  }),
};

// ---------------------------------------------------------------------------------------------

interface IgnoreCase extends FormulaCase {
  /** Flat positions whose targets become ignore_index. */
  readonly ignored: readonly number[];
  readonly ignoreIndex: number;
}

export const ignoredTargets: Law<IgnoreCase> = {
  name: "ignored_targets",
  formulas: ["cross_entropy"],
  statement:
    "positions whose target is ignore_index contribute nothing: the loss equals the loss over the other positions alone (their mean, not over all positions), and the logits of ignored positions get exactly zero gradient",
  tolerance: {
    derivation: "two evaluations of the same counted rows, summed in another order and divided by the same count: 2·γ_K·(S + κ̂) (tolerance.ts); the zero gradients are exact (weight 0)",
    bound: (dtype, s) => 2 * gamma(s["K"] ?? 1, dtype),
    scale: "S + κ̂ (the zeros: 0)",
  },
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc.constantFrom(-100, -1).chain((ignoreIndex) =>
        formulaCaseArb(f, { dtype: scope.dtype, fixed: { ignore_index: ignoreIndex }, dims: { batch: "none", minN: 2 } }).chain((c) =>
          fc.uniqueArray(fc.nat({ max: c.dims.n - 1 }), { minLength: 1, maxLength: c.dims.n - 1 }).map((ignored) => ({ ...c, ignored, ignoreIndex })),
        ),
      ),
    ),
  check: checked("ignored_targets", async (k: Check, c: IgnoreCase) => {
    const z = c.inputs["logits"]!;
    const t = c.inputs["targets"]!.clone();
    for (const p of c.ignored) t.data[p] = c.ignoreIndex;
    const req = k.request(c.formula, c.config, { logits: z, targets: t });
    const out = await k.forward(req, `forward with targets ${c.ignored.join(", ")} = ${c.ignoreIndex}`);
    const loss = k.pick(out, "loss", c.formula, "forward");
    const keep = Array.from({ length: t.size }, (_, i) => i).filter((i) => !c.ignored.includes(i));
    const kept = { logits: gatherAxis(z, -2, keep), targets: gatherAxis(c.inputs["targets"]!, -1, keep) };
    const loss2 = await k.output(k.request(c.formula, c.config, kept), "loss", "forward over the counted positions alone");
    await k.expectTwin(`loss with positions ${c.ignored.join(", ")} ignored vs the loss over the other ${keep.length} positions`, loss2, loss, req, out, "loss", { ignored: c.ignored });
    if (!k.supportsBackward(c.formula)) return;
    const grads = await k.backward({ ...req, cotangents: { loss: Tensor.scalar(1, c.dtype) } });
    const g = grads["logits"];
    if (g === undefined) k.fail("backward returned no gradient for logits", { quantity: "grad logits" });
    for (const p of c.ignored) {
      const row = sliceAxis(g, -2, p, 1);
      k.expectEqual(`grad logits row ${p} (target = ignore_index)`, Tensor.zeros(row.shape, "f64"), row, "exact: an ignored position has weight 0 in the loss");
    }
  }),
};
