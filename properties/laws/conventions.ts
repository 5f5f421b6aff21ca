/**
 * Laws of the attention conventions real transformer code states (issue 13): the two causal
 * alignments, the mask input (padding keys, fully masked rows, boolean = additive 0/−∞), the
 * sliding window, logit soft-capping and grouped K/V heads inside `attention`. Each relates two
 * evaluations of the implementation under different conventions; none restates a mask rule.
 */
import fc from "fast-check";
import { Tensor, sizeOf, type NamedTensors } from "../../autodiff/tensor.js";
import { formulaCaseArb, inputsArb, seedArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, fmt, twinTolerance, type Law } from "../law.js";
import { gatherAxis, identityValues, mapT, sliceAxis } from "../tensor-ops.js";
import {
  conditionedBound,
  conditionedReason,
  gamma,
  roundingDepth,
  unitRoundoff,
} from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb } from "./generic.js";
import { Rng } from "../../autodiff/random.js";
import type { FormulaConfig } from "../../autodiff/implementation.js";
import { MASK_SHAPES } from "../../spec/formulas/core.js";

const rows = (t: Tensor, axis: number): number => t.shape[t.shape.length + axis]!;

/** The attention config without the given keys (a convention switched back to its default). */
function without(config: FormulaConfig, ...keys: string[]): FormulaConfig {
  const out: Record<string, number | string | boolean> = { ...config };
  for (const k of keys) delete out[k];
  return out;
}

const TWIN = twinTolerance(
  "two evaluations of the same attention rows: 2·γ_K·(S + κ̂) " +
    "(tolerance.ts); the keys one convention hides enter as exp(−∞) = 0 " +
    "weights, so in exact arithmetic the two agree and an implementation may " +
    "only round differently",
);

// ---------------------------------------------------------------------------------------------

export const causalAlignment: Law<FormulaCase> = {
  name: "causal_alignment",
  formulas: ["attention"],
  statement:
    "top-left and bottom-right causal attention agree when n = m; for n < m " +
    "top-left attention over m keys equals bottom-right attention over the " +
    "first n; for n > m top-left rows i ≥ m − 1 equal attention without a mask",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      formulaCaseArb(f, {
        dtype: scope.dtype,
        fixed: { causal: true, causal_align: "top_left" },
        dims: { batch: "any", crossM: true },
      }),
    ),
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
      const y2 = await k.output(
        k.request(c.formula, bottomRight, keys),
        "y",
        `forward, bottom-right causal over the first ${n} keys`,
      );
      await k.expectTwin(
        `y top-left over ${m} keys vs y bottom-right over the first ${n}`,
        y,
        y2,
        req,
        out,
        "y",
        { n, m },
      );
      return;
    }
    const y2 = await k.output(
      k.request(c.formula, { ...c.config, causal: false }, c.inputs),
      "y",
      "forward without a mask",
    );
    const from = m - 1;
    await k.expectTwin(
      `y rows ${from}..${n - 1} top-left vs without a mask (every key is visible to them)`,
      sliceAxis(y, -2, from, n - from),
      sliceAxis(y2, -2, from, n - from),
      req,
      out,
      "y",
      { n, m },
    );
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
    "a key the mask excludes in every row (padding) never changes any " +
    "output: replacing its K and V rows leaves y unchanged and its gradients " +
    "are exactly 0; a query row with no visible key gives y = 0 and ∂Q = 0 " +
    "exactly; a boolean mask equals the additive mask 0 / −∞; all of it for " +
    "masks of every mask_shape, broadcast over batch, heads or queries (a " +
    "padding mask [B, 1, 1, m], a key row [m], per-head [H, n, m])",
  tolerance: twinTolerance(
    "exact for the zeros (exp(−∞) = 0, 0·v = 0); the replacement and the " +
      "boolean/additive pair are two evaluations of the same rows: 2·γ_K·(S + " +
      "κ̂) (tolerance.ts)",
    "S + κ̂ (the zeros: 0)",
  ),
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        fixed: { mask: "boolean" },
        choose: { causal_align: ["bottom_right", "top_left"], mask_shape: MASK_SHAPES },
        dims: { batch: "any", crossM: true },
      }).chain((c) =>
        fc
          .tuple(
            fc.nat(),
            fc.integer({ min: -1, max: 8 }),
            inputsArb(f, c.config, c.dims, { dtype: scope.dtype }),
            seedArb,
          )
          .map(([key, row, replacement, seed]) => ({
            ...c,
            key: key % c.dims.m,
            emptyRow: row < c.dims.n ? row : -1,
            replacement,
            seed,
          })),
      ),
    ),
  check: checked("mask_padding", async (k: Check, c: MaskCase) => {
    const { K, V, mask } = c.inputs as Record<string, Tensor>;
    const n = c.dims.n;
    const m = rows(K!, -2);
    // key `c.key` padded in every row; row `c.emptyRow` sees nothing; the rest random 0/1
    const rng = new Rng(c.seed);
    // a mask broadcast over the queries (its row axis absent or 1) has no row of its own to empty
    const maskRows = mask!.shape.length >= 2 ? mask!.shape.at(-2)! : 1;
    const emptyRow = maskRows === n ? c.emptyRow : -1;
    const bool = mapT(mask!, (_, flat) => {
      const j = flat % m;
      const i = Math.floor(flat / m) % maskRows;
      return j === c.key || i === emptyRow ? 0 : rng.uniform() < 0.75 ? 1 : 0;
    });
    const inputs: NamedTensors = { ...c.inputs, mask: bool };
    const req = k.request(c.formula, c.config, inputs);
    const out = await k.forward(req, "forward with a padding mask");
    const y = k.pick(out, "y", c.formula, "forward");
    const other: NamedTensors = { ...inputs };
    for (const a of ["K", "V"]) other[a] = replaceRow(inputs[a]!, c.replacement[a]!, c.key);
    const y2 = await k.output(
      k.request(c.formula, c.config, other),
      "y",
      `forward with padded key ${c.key} replaced`,
    );
    await k.expectTwin(
      `y after replacing the K, V rows of padded key ${c.key}`,
      y,
      y2,
      req,
      out,
      "y",
      { key: c.key },
    );
    if (emptyRow >= 0) {
      const row = sliceAxis(y, -2, emptyRow, 1);
      k.expectEqual(
        `y row ${emptyRow} (the mask hides every key from it)`,
        Tensor.zeros(row.shape, "f64"),
        row,
        "exact: a row without a visible key is documented as 0",
      );
    }
    const additive = mapT(bool, (v) => (v !== 0 ? 0 : -Infinity), c.dtype);
    const y3 = await k.output(
      k.request(c.formula, { ...c.config, mask: "additive" }, { ...inputs, mask: additive }),
      "y",
      "forward with the additive mask 0 / −∞",
    );
    await k.expectTwin("y with the boolean mask vs the additive mask 0 / −∞", y, y3, req, out, "y");
    if (!k.supportsBackward(c.formula)) return;
    const cot = mapT(y, () => rng.normal());
    const grads = await k.backward({ ...req, cotangents: { y: cot } });
    for (const a of ["K", "V"]) {
      const g = grads[a];
      if (g === undefined)
        k.fail(`backward returned no gradient for ${a}`, { quantity: `grad ${a}` });
      const part = sliceAxis(g, -2, c.key, 1);
      k.expectEqual(
        `grad ${a} row ${c.key} (padded key)`,
        Tensor.zeros(part.shape, "f64"),
        part,
        "exact: a masked key gets exp(−∞) = 0 weights, hence 0·(…) gradients",
      );
    }
    if (emptyRow >= 0) {
      const g = grads["Q"];
      if (g === undefined) k.fail("backward returned no gradient for Q", { quantity: "grad Q" });
      const part = sliceAxis(g, -2, emptyRow, 1);
      k.expectEqual(
        `grad Q row ${emptyRow} (no visible key)`,
        Tensor.zeros(part.shape, "f64"),
        part,
        "exact: the row's weights are all 0 and so is their gradient",
      );
    }
  }),
};

/** `a` with row `r` (axis −2) taken from `b`. */
function replaceRow(a: Tensor, b: Tensor, r: number): Tensor {
  const n = rows(a, -2);
  const w = a.shape.at(-1)!;
  const out = a.clone();
  for (let o = 0; o < a.size; o += n * w)
    for (let j = 0; j < w; j++) out.data[o + r * w + j] = b.data[o + r * w + j]!;
  return out;
}

// ---------------------------------------------------------------------------------------------

export const windowLimit: Law<FormulaCase> = {
  name: "window_limit",
  formulas: ["attention"],
  statement:
    "a sliding window no shorter than the sequence (w ≥ max(n, m); w ≥ n " +
    "for self-attention) changes nothing: causal attention with window w " +
    "equals causal attention without one, in either alignment",
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
    const y2 = await k.output(
      k.request(c.formula, without(c.config, "window"), c.inputs),
      "y",
      "forward without a window",
    );
    await k.expectTwin(
      `y with window ${String(c.config["window"])} ≥ max(n, m) vs without a window`,
      y,
      y2,
      req,
      out,
      "y",
    );
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
    "soft-capping tends to no cap: attention with c → ∞ (c = 1e12) equals " +
    "attention with softcap 0; and a cap c bounds every row's weights " +
    "without a mask: max_j P_ij ≤ e^{2c}·min_j P_ij",
  tolerance: twinTolerance(
    "the limit: two evaluations of the same rows, 2·γ_K·(S + κ̂), since " +
      "c·tanh(s/c) − s = O(s³/c²) is below 10⁻¹⁵·|s| for |s| < 10³. The bound: " +
      "the capped scores lie in (−c, c), so exp(s_j − s_k) ≤ e^{2c}; each " +
      "weight carries ≤ (m + 2)u relative rounding (softmax_simplex), hence " +
      "the factor 1 + 2(m + 2)u",
    "S + κ̂ (the bound: relative)",
  ),
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc.constantFrom(0.5, 1, 2).chain((cap) =>
        formulaCaseArb(f, {
          dtype: scope.dtype,
          fixed: { softcap: HUGE_CAP },
          dims: { batch: "any", crossM: true },
        }).map((c) => ({ ...c, cap })),
      ),
    ),
  check: checked("softcap_limit", async (k: Check, c: CapCase) => {
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, `forward with softcap ${HUGE_CAP}`);
    const y = k.pick(out, "y", c.formula, "forward");
    const y2 = await k.output(
      k.request(c.formula, { ...c.config, softcap: 0 }, c.inputs),
      "y",
      "forward without a cap",
    );
    await k.expectTwin(`y with softcap ${HUGE_CAP} vs without a cap`, y, y2, req, out, "y");
    // the weights: V = I_m in every batch member (and K/V head) gives y = P
    const K = c.inputs["K"]!;
    const m = rows(K, -2);
    const eye = identityValues(K, c.dtype);
    const cfg = { ...c.config, softcap: c.cap, causal: false };
    const P = await k.output(
      k.request(c.formula, cfg, { ...c.inputs, V: eye }),
      "y",
      `weights with softcap ${c.cap}, no mask`,
    );
    const limit = Math.exp(2 * c.cap) * (1 + 2 * (m + 2) * unitRoundoff(c.dtype));
    for (let r = 0; r < P.size / m; r++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < m; j++) {
        lo = Math.min(lo, P.data[r * m + j]!);
        hi = Math.max(hi, P.data[r * m + j]!);
      }
      if (!(hi <= limit * lo)) {
        k.fail(
          `weights with softcap ${c.cap}: row ${r} has max/min ${fmt(hi / lo)} > ` +
            `e^{2c} = ${fmt(Math.exp(2 * c.cap))} (capped scores lie in (−c, c))`,
          {
            quantity: `P row ${r}`,
            expected: limit * lo,
            actual: hi,
            values: { row: Array.from(P.data.slice(r * m, (r + 1) * m)) },
          },
        );
      }
    }
  }),
};

// ---------------------------------------------------------------------------------------------

export const groupedHeads: Law<FormulaCase> = {
  name: "grouped_heads",
  formulas: ["attention"],
  statement:
    "attention with H query heads over H_kv K/V heads equals attention with " +
    "each K/V head repeated H / H_kv times (query head h uses K/V head ⌊h·H_kv/H⌋)",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      formulaCaseArb(f, {
        dtype: scope.dtype,
        dims: { batch: "any", crossM: true },
        configFromDims: (d) => ({ H: d.H, H_kv: d.H_kv }),
      }),
    ),
  check: checked("grouped_heads", async (k: Check, c: FormulaCase) => {
    const H = Number(c.config["H"]);
    const Hkv = Number(c.config["H_kv"]);
    const idx = Array.from({ length: H }, (_, h) => Math.floor((h * Hkv) / H));
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, `forward with H = ${H}, H_kv = ${Hkv}`);
    const y = k.pick(out, "y", c.formula, "forward");
    const repeated = {
      ...c.inputs,
      K: gatherAxis(c.inputs["K"]!, -3, idx),
      V: gatherAxis(c.inputs["V"]!, -3, idx),
    };
    const y2 = await k.output(
      k.request(c.formula, without(c.config, "H_kv"), repeated),
      "y",
      "forward with K, V heads repeated",
    );
    await k.expectTwin(
      `y grouped (H_kv = ${Hkv}) vs K/V heads repeated to H = ${H}`,
      y,
      y2,
      req,
      out,
      "y",
      { heads: idx },
    );
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
    "positions whose target is ignore_index contribute nothing: the loss " +
    "equals the loss over the other positions alone (their mean, not over " +
    "all positions), and the logits of ignored positions get exactly zero gradient",
  tolerance: twinTolerance(
    "two evaluations of the same counted rows, summed in another order and " +
      "divided by the same count: 2·γ_K·(S + κ̂) (tolerance.ts); the zero " +
      "gradients are exact (weight 0)",
    "S + κ̂ (the zeros: 0)",
  ),
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc.constantFrom(-100, -1).chain((ignoreIndex) =>
        formulaCaseArb(f, {
          dtype: scope.dtype,
          fixed: { ignore_index: ignoreIndex },
          dims: { batch: "none", minN: 2 },
        }).chain((c) =>
          fc
            .uniqueArray(fc.nat({ max: c.dims.n - 1 }), { minLength: 1, maxLength: c.dims.n - 1 })
            .map((ignored) => ({ ...c, ignored, ignoreIndex })),
        ),
      ),
    ),
  check: checked("ignored_targets", async (k: Check, c: IgnoreCase) => {
    const z = c.inputs["logits"]!;
    const t = c.inputs["targets"]!.clone();
    for (const p of c.ignored) t.data[p] = c.ignoreIndex;
    const req = k.request(c.formula, c.config, { logits: z, targets: t });
    const out = await k.forward(
      req,
      `forward with targets ${c.ignored.join(", ")} = ${c.ignoreIndex}`,
    );
    const loss = k.pick(out, "loss", c.formula, "forward");
    const keep = Array.from({ length: t.size }, (_, i) => i).filter((i) => !c.ignored.includes(i));
    const kept = {
      logits: gatherAxis(z, -2, keep),
      targets: gatherAxis(c.inputs["targets"]!, -1, keep),
    };
    const loss2 = await k.output(
      k.request(c.formula, c.config, kept),
      "loss",
      "forward over the counted positions alone",
    );
    await k.expectTwin(
      `loss with positions ${c.ignored.join(", ")} ignored vs the loss over the other ${keep.length} positions`,
      loss2,
      loss,
      req,
      out,
      "loss",
      { ignored: c.ignored },
    );
    if (!k.supportsBackward(c.formula)) return;
    const grads = await k.backward({ ...req, cotangents: { loss: Tensor.scalar(1, c.dtype) } });
    const g = grads["logits"];
    if (g === undefined)
      k.fail("backward returned no gradient for logits", { quantity: "grad logits" });
    for (const p of c.ignored) {
      const row = sliceAxis(g, -2, p, 1);
      k.expectEqual(
        `grad logits row ${p} (target = ignore_index)`,
        Tensor.zeros(row.shape, "f64"),
        row,
        "exact: an ignored position has weight 0 in the loss",
      );
    }
  }),
};

// ---------------------------------------------------------------------------------------------
// Loss, normalisation and product conventions (issue 13): softmax axis, cross-entropy label
// smoothing / reduction / class weights, LayerNorm and linear without a shift, LayerNorm over
// several axes, matmul broadcasting. Each relates evaluations of the implementation under two
// conventions; none computes the formula itself.

/** `t` with axis `from` (negative) moved to position `to` (negative), as torch.movedim. */
function moveAxis(t: Tensor, from: number, to: number): Tensor {
  const r = t.shape.length;
  const f = from < 0 ? r + from : from;
  const tt = to < 0 ? r + to : to;
  const order = [...Array(r).keys()].filter((i) => i !== f);
  order.splice(tt, 0, f);
  const shape = order.map((i) => t.shape[i]!);
  const out = Tensor.zeros(shape, t.dtype);
  const strides = t.shape.map((_, i) => sizeOf(t.shape.slice(i + 1)));
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < out.size; o++) {
    let rem = o;
    let src = 0;
    for (let k = r - 1; k >= 0; k--) {
      idx[k] = rem % shape[k]!;
      rem = Math.floor(rem / shape[k]!);
    }
    for (let k = 0; k < r; k++) src += idx[k]! * strides[order[k]!]!;
    out.data[o] = t.data[src]!;
  }
  return out;
}

interface AxisCase extends FormulaCase {
  /** The axis, counted from the end (k ≥ 2: axis = −k). */
  readonly k: number;
}

export const softmaxAxis: Law<AxisCase> = {
  name: "softmax_axis",
  formulas: ["softmax", "log_softmax"],
  statement:
    "softmax (log_softmax) over axis −k equals the last-axis softmax of the " +
    "tensor with that axis moved last, moved back: f(x; axis = −k) = " +
    "movedim(f(movedim(x, −k, −1)), −1, −k), values and gradients",
  tolerance: twinTolerance(
    "the same rows in another memory order: 2·γ_K·(S + κ̂) (tolerance.ts); " +
      "gradients likewise, against the gradient of the last-axis evaluation",
  ),
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc
        .constantFrom<readonly number[]>([2], [3], [2, 3], [1, 3], [3, 1, 2])
        .chain((batch) =>
          formulaCaseArb(f, { dtype: scope.dtype, dims: { batch } }).chain((c) =>
            fc.integer({ min: 2, max: batch.length + 1 }).map((k) => ({ ...c, k })),
          ),
        ),
    ),
  check: checked("softmax_axis", async (k: Check, c: AxisCase) => {
    const x = c.inputs["x"]!;
    // x holds the rows along its last axis; xt holds the same rows along axis −k
    const xt = moveAxis(x, -1, -c.k);
    const req = k.request(c.formula, c.config, c.inputs);
    const out = await k.forward(req, "forward over the last axis");
    const y = k.pick(out, "y", c.formula, "forward");
    const reqAxis = k.request(c.formula, { ...c.config, axis: -c.k }, { x: xt });
    const yt = await k.output(reqAxis, "y", `forward with axis = −${c.k}`);
    await k.expectTwin(
      `y with axis = −${c.k}, moved back, vs y over the last axis`,
      y,
      moveAxis(yt, -c.k, -1),
      req,
      out,
      "y",
      { k: c.k },
    );
    if (!k.supportsBackward(c.formula)) return;
    const rng = new Rng(c.k * 7919 + x.size);
    const cot = mapT(y, () => rng.normal());
    const g = (await k.backward({ ...req, cotangents: { y: cot } }))["x"];
    const gt = (await k.backward({ ...reqAxis, cotangents: { y: moveAxis(cot, -1, -c.k) } }))["x"];
    if (g === undefined || gt === undefined)
      k.fail("backward returned no gradient for x", { quantity: "grad x" });
    const gScale = maxAbsOf(g) + 1;
    k.expectClose(
      `grad x with axis = −${c.k}, moved back, vs over the last axis`,
      g,
      moveAxis(gt, -c.k, -1),
      4 * gamma(x.shape.at(-1)! + 2, c.dtype) * gScale * 8,
      "the same rows' gradients in another memory order: 4·γ_{m+2}·8·(max|ḡ| + 1)",
    );
  }),
};

function maxAbsOf(t: Tensor): number {
  let m = 0;
  for (let i = 0; i < t.size; i++) m = Math.max(m, Math.abs(t.data[i]!));
  return m;
}

interface LossCase extends FormulaCase {
  readonly eps: number;
  readonly weighted: boolean;
  readonly ignored: readonly number[];
  readonly seed: number;
}

export const lossConventions: Law<LossCase> = {
  name: "loss_conventions",
  formulas: ["cross_entropy"],
  statement:
    "cross-entropy conventions agree with each other: label_smoothing 0 " +
    "stated equals the plain loss; the loss is affine in ε, L(ε) = (1 − " +
    "ε)·L(0) + ε·L(1); at ε = 1 each position's loss is independent of its " +
    "target (the target distribution is uniform); reduction sum = Σ none, " +
    "mean = sum / Σ w[t_i] over counted positions (their count without " +
    "weights), none = 0 at ignored positions; ignored positions' logits get " +
    "exactly zero gradient, with weights and smoothing",
  tolerance: twinTolerance(
    "every relation compares evaluations of the same per-position terms " +
      "summed or scaled differently: 2·γ_K·(S + κ̂) (tolerance.ts) for the " +
      "twin, with K the rounding depth of the request; the affine relation " +
      "adds the three evaluations' errors (factor 3); zeros are exact",
    "S + κ̂ (zeros: 0)",
  ),
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      fc
        .tuple(fc.constantFrom(0.1, 0.25, 0.5), fc.boolean(), seedArb)
        .chain(([eps, weighted, seed]) =>
          formulaCaseArb(f, {
            dtype: scope.dtype,
            fixed: { weight: weighted },
            dims: { batch: "none", minN: 2 },
          }).chain((c) =>
            fc
              .uniqueArray(fc.nat({ max: c.dims.n - 1 }), { minLength: 0, maxLength: c.dims.n - 1 })
              .map((ignored) => ({ ...c, eps, weighted, ignored, seed })),
          ),
        ),
    ),
  check: checked("loss_conventions", async (k: Check, c: LossCase) => {
    const z = c.inputs["logits"]!;
    const V = z.shape.at(-1)!;
    const t = c.inputs["targets"]!.clone();
    for (const p of c.ignored) t.data[p] = -100;
    const inputs: NamedTensors = { logits: z, targets: t };
    // class weights in [0.25, 2.25]: positive, so the weighted mean's denominator is well away from 0
    if (c.weighted) inputs["weight"] = mapT(c.inputs["weight"]!, (v) => 0.25 + Math.abs(v) / 1.5);
    const base = { ...c.config, weight: c.weighted };
    const loss = async (cfg: FormulaConfig, ins: NamedTensors, what: string) =>
      k.output(k.request(c.formula, { ...base, ...cfg }, ins), "loss", what);
    const reqNone = k.request(
      c.formula,
      { ...base, reduction: "none", label_smoothing: c.eps },
      inputs,
    );
    const outNone = await k.forward(reqNone, `forward, reduction none, ε = ${c.eps}`);
    const none = k.pick(outNone, "loss", c.formula, "forward");
    const tol = async (what: string, e: Tensor, a: Tensor, factor = 1) => {
      const scale = (await k.scaleOf(reqNone, outNone))["loss"]!;
      const K = roundingDepth({ formula: c.formula, config: reqNone.config, inputs });
      k.expectClose(
        what,
        e,
        a,
        factor * conditionedBound(c.dtype, K, scale),
        `${factor}× ${conditionedReason(c.dtype, K, scale)}`,
      );
    };
    // smoothing 0 stated = not stated
    const plain = await loss(
      { reduction: "none" },
      inputs,
      "forward, reduction none, label_smoothing not stated",
    );
    const zero = await loss(
      { reduction: "none", label_smoothing: 0 },
      inputs,
      "forward, reduction none, ε = 0",
    );
    k.expectEqual(
      "loss with label_smoothing = 0 stated vs not stated",
      plain,
      zero,
      "exact: the same configuration",
    );
    // affine in ε
    const one = await loss(
      { reduction: "none", label_smoothing: 1 },
      inputs,
      "forward, reduction none, ε = 1",
    );
    const mix = mapT(plain, (v, i) => (1 - c.eps) * v + c.eps * one.data[i]!);
    await tol(`per-position loss at ε = ${c.eps} vs (1 − ε)·L(0) + ε·L(1)`, mix, none, 3);
    // ε = 1: the target does not matter (uniform target distribution)
    const shifted = mapT(t, (v) => (v === -100 ? v : (v + 1) % V), "i32");
    const oneShifted = await loss(
      { reduction: "none", label_smoothing: 1 },
      { ...inputs, targets: shifted },
      "forward, reduction none, ε = 1, every target + 1 mod V",
    );
    await tol(
      "per-position loss at ε = 1 with targets t vs t + 1 mod V (the uniform target ignores t)",
      one,
      oneShifted,
    );
    for (const p of c.ignored)
      k.expectEqual(
        `loss at ignored position ${p} (reduction none)`,
        [0],
        [none.data[p]!],
        "exact: an ignored position contributes 0",
      );
    // reductions
    const sum = await loss(
      { reduction: "sum", label_smoothing: c.eps },
      inputs,
      `forward, reduction sum, ε = ${c.eps}`,
    );
    const mean = await loss(
      { reduction: "mean", label_smoothing: c.eps },
      inputs,
      `forward, reduction mean, ε = ${c.eps}`,
    );
    let total = 0;
    let denom = 0;
    for (let i = 0; i < t.size; i++) {
      total += none.data[i]!;
      if (t.data[i] !== -100) denom += c.weighted ? inputs["weight"]!.data[t.data[i]!]! : 1;
    }
    await tol("reduction sum vs Σ of reduction none", Tensor.scalar(total, "f64"), sum, 2);
    if (denom > 0)
      await tol(
        `reduction mean vs sum / ${c.weighted ? "Σ w[t_i]" : "count"} over counted positions (${fmt(denom)})`,
        Tensor.scalar(sum.data[0]! / denom, "f64"),
        mean,
        2,
      );
    if (!k.supportsBackward(c.formula) || c.ignored.length === 0) return;
    const rng = new Rng(c.seed);
    const g = (
      await k.backward({ ...reqNone, cotangents: { loss: mapT(none, () => rng.normal()) } })
    )["logits"];
    if (g === undefined)
      k.fail("backward returned no gradient for logits", { quantity: "grad logits" });
    for (const p of c.ignored) {
      const row = sliceAxis(g, -2, p, 1);
      k.expectEqual(
        `grad logits row ${p} (target = ignore_index, ε = ${c.eps}${c.weighted ? ", weighted" : ""})`,
        Tensor.zeros(row.shape, "f64"),
        row,
        "exact: an ignored position has weight 0 in the loss",
      );
    }
  }),
};

interface AffineCase extends FormulaCase {
  /** layer_norm: how many of the last axes of x (beyond its rows) to normalise together. */
  readonly split: number;
}

export const affineOptions: Law<AffineCase> = {
  name: "affine_options",
  formulas: ["layer_norm", "linear"],
  statement:
    "without a shift equals with a zero shift: layer_norm(bias = false) = " +
    "layer_norm with β = 0, linear(bias = false) = linear with b = 0; and " +
    "layer_norm over the last 2 axes [.., r, d] equals layer_norm over one " +
    "axis of the same rows viewed as [.., r·d], γ and β viewed alike",
  tolerance: TWIN,
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      formulaCaseArb(f, { dtype: scope.dtype, dims: { batch: "any" } }).chain((c) =>
        fc.integer({ min: 1, max: 3 }).map((split) => ({ ...c, split })),
      ),
    ),
  check: checked("affine_options", async (k: Check, c: AffineCase) => {
    const shift = c.formula === "linear" ? "b" : "beta";
    const zeroShift = { ...c.inputs, [shift]: Tensor.zeros(c.inputs[shift]!.shape, c.dtype) };
    const req = k.request(c.formula, { ...c.config, bias: true }, zeroShift);
    const out = await k.forward(req, `forward with ${shift} = 0`);
    const y = k.pick(out, "y", c.formula, "forward");
    const noShift: NamedTensors = { ...c.inputs };
    delete noShift[shift];
    const y2 = await k.output(
      k.request(c.formula, { ...c.config, bias: false }, noShift),
      "y",
      "forward with bias = false",
    );
    await k.expectTwin(`y with bias = false vs ${shift} = 0`, y, y2, req, out, "y");
    if (c.formula !== "layer_norm") return;
    // [rows, d·split] viewed as [rows, split, d]: normalised over the last 2 axes, the same rows
    const x = c.inputs["x"]!;
    const d = x.shape.at(-1)!;
    const lead = x.shape.slice(0, -1);
    const wide = {
      x: mapT(Tensor.zeros([...lead, c.split * d], c.dtype), (_, i) => {
        const j = i % (c.split * d);
        const block = Math.floor(j / d);
        return (
          x.data[Math.floor(i / (c.split * d)) * d + (j % d)]! * (1 + 0.5 * block) + 0.25 * block
        );
      }),
      gamma: Tensor.zeros([c.split * d], c.dtype),
      beta: Tensor.zeros([c.split * d], c.dtype),
    };
    for (let j = 0; j < c.split * d; j++) {
      wide.gamma.data[j] = c.inputs["gamma"]!.data[j % d]! * (1 + 0.125 * Math.floor(j / d));
      wide.beta.data[j] = c.inputs["beta"]!.data[j % d]! - 0.0625 * Math.floor(j / d);
    }
    const reqFlat = k.request(c.formula, { ...c.config, bias: true }, wide);
    const outFlat = await k.forward(reqFlat, `forward over one axis of ${c.split * d}`);
    const yFlat = k.pick(outFlat, "y", c.formula, "forward");
    const view = (t: Tensor, shape: number[]) => t.reshape(shape);
    const y3 = await k.output(
      k.request(
        c.formula,
        { ...c.config, bias: true, normalized_axes: 2 },
        {
          x: view(wide.x, [...lead, c.split, d]),
          gamma: view(wide.gamma, [c.split, d]),
          beta: view(wide.beta, [c.split, d]),
        },
      ),
      "y",
      `forward with normalized_axes = 2 over [${c.split}, ${d}]`,
    );
    await k.expectTwin(
      `y over the last 2 axes [${c.split}, ${d}] vs over one axis of ${c.split * d}`,
      yFlat,
      view(y3, [...lead, c.split * d]),
      reqFlat,
      outFlat,
      "y",
      { split: c.split },
    );
  }),
};

export const matmulBroadcast: Law<FormulaCase> = {
  name: "matmul_broadcast",
  formulas: ["matmul"],
  statement:
    "a broadcast operand equals its explicit copies: matmul(a [n, d_in], b " +
    "[..., d_in, d_out]; a_batch = none) = matmul with a repeated over b's " +
    "batch axes, and its gradient is the sum of the copies' gradients; a 1-D " +
    "a (vector = a) equals the 1-row matrix with that row axis dropped",
  tolerance: TWIN,
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => formulaCaseArb(f, { dtype: scope.dtype, dims: { batch: [2, 3] } })),
  check: checked("matmul_broadcast", async (k: Check, c: FormulaCase) => {
    const a = c.inputs["a"]!;
    const b = c.inputs["b"]!;
    const [n, dIn] = a.shape.slice(-2) as [number, number];
    const copies = sizeOf(b.shape.slice(0, -2));
    const a0 = sliceAxis(a.reshape([copies, n, dIn]), 0, 0, 1).reshape([n, dIn]);
    const repeated = gatherAxis(a0.reshape([1, n, dIn]), 0, Array(copies).fill(0)).reshape([
      ...b.shape.slice(0, -2),
      n,
      dIn,
    ]);
    const req = k.request(c.formula, c.config, { a: repeated, b });
    const out = await k.forward(req, "forward with a repeated over the batch");
    const y = k.pick(out, "y", c.formula, "forward");
    const reqB = k.request(c.formula, { ...c.config, a_batch: "none" }, { a: a0, b });
    const y2 = await k.output(reqB, "y", "forward with a broadcast (a_batch = none)");
    await k.expectTwin("y with a broadcast vs a repeated", y, y2, req, out, "y");
    const row = sliceAxis(a0, 0, 0, 1).reshape([dIn]);
    const yRow = await k.output(
      k.request(c.formula, { ...c.config, a_batch: "none" }, { a: row.reshape([1, dIn]), b }),
      "y",
      "forward with a as one row [1, d_in]",
    );
    const yVec = await k.output(
      k.request(c.formula, { ...c.config, a_batch: "none", vector: "a" }, { a: row, b }),
      "y",
      "forward with a 1-D (vector = a)",
    );
    await k.expectTwin(
      "y with a 1-D vs a as one row, row axis dropped",
      yRow.reshape(yVec.shape),
      yVec,
      req,
      out,
      "y",
    );
    if (!k.supportsBackward(c.formula)) return;
    const rng = new Rng(a.size * 31 + b.size);
    const cot = mapT(y, () => rng.normal());
    const gRep = (await k.backward({ ...req, cotangents: { y: cot } }))["a"];
    const gB = (await k.backward({ ...reqB, cotangents: { y: cot } }))["a"];
    if (gRep === undefined || gB === undefined)
      k.fail("backward returned no gradient for a", { quantity: "grad a" });
    const summed = Tensor.zeros([n, dIn], "f64");
    for (let i = 0; i < gRep.size; i++)
      summed.data[i % (n * dIn)] = summed.data[i % (n * dIn)]! + gRep.data[i]!;
    const scale = maxAbsOf(summed) + 1;
    k.expectClose(
      "grad a broadcast vs Σ of the gradients of its copies",
      summed,
      gB,
      4 * gamma(copies * (y.shape.at(-1)! + 1), c.dtype) * scale,
      "the same products summed in another order: 4·γ_{copies·(d_out+1)}·(max|ḡ| + 1)",
    );
  }),
};
