/**
 * Laws of partial RoPE (rotary_dims), explicit position ids and dropout with its keep mask as an
 * input (issue 13). Each relates evaluations of the implementation under two conventions or
 * checks an exact identity; none restates the rotation or the dropout rule.
 */
import fc from "fast-check";
import { Tensor, type FloatDType, type NamedTensors } from "../../autodiff/tensor.js";
import { inputsArb, seedArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, type Law } from "../law.js";
import { concatAxis, mapT, sliceAxis } from "../tensor-ops.js";
import { gamma, ropeDepth, underflowAllowance, unitRoundoff } from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb } from "./generic.js";
import { Rng } from "../../autodiff/random.js";

/** Per-row ‖·‖₁ of the last axis, repeated for every entry of the row. */
function rowL1PerEntry(t: Tensor): Float64Array {
  const d = t.shape.at(-1)!;
  const out = new Float64Array(t.size);
  for (let o = 0; o < t.size; o += d) {
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.abs(t.data[o + j]!);
    out.fill(s, o, o + d);
  }
  return out;
}

const TWO_ROPES =
  "two evaluations of the same rotations: each rotated entry is within " +
  "γ_R·(|x_a| + |x_b|) ≤ γ_R·‖x_row‖₁ of exact (γ_R = ropeDepth(p_max)·u: " +
  "the angle p·ω with relative error 3u, hence absolute 3u·p_max, then two " +
  "products and a sum), so the two within 2γ_R·‖x_row‖₁, plus 3 smallest " +
  "normals per entry below the normal range; entries that do not rotate are exact";

// ---------------------------------------------------------------------------------------------

interface FractionCase extends FormulaCase {
  /** Rotated dims r (even, 0 … d_k). */
  readonly r: number;
}

export const ropeFraction: Law<FractionCase> = {
  name: "rope_fraction",
  formulas: ["rope"],
  statement:
    "partial RoPE: rotary_dims 0 is the identity (y = x exactly); with r " +
    "rotated dims, y[..., r:] = x[..., r:] exactly and y[..., :r] equals " +
    "RoPE over a head of r dims applied to x[..., :r] (the frequencies are over r)",
  tolerance: {
    derivation: TWO_ROPES,
    bound: (dtype, s) => 2 * ropeDepth(s["p_max"] ?? 1) * unitRoundoff(dtype),
    scale: "‖x_row‖₁",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      // the head is two drawn heads side by side (d_k up to 8), so that r can stop short of d_k
      // with at least two rotating pairs, where the frequencies over r and over d_k differ
      scopedCaseArb(scope, f, {
        choose: { offset: [0, 5] },
        dims: { batch: "any", minDk: 2 },
      }).chain((c) =>
        fc.tuple(inputsArb(f, c.config, c.dims, { dtype: scope.dtype }), fc.nat()).map(([z, v]) => {
          const x = concatAxis([c.inputs["x"]!, z["x"]!], -1);
          return { ...c, inputs: { ...c.inputs, x }, r: 2 * (v % (x.shape.at(-1)! / 2 + 1)) };
        }),
      ),
    ),
  check: checked("rope_fraction", async (k: Check, c: FractionCase) => {
    const x = c.inputs["x"]!;
    const d = x.shape.at(-1)!;
    const n = x.shape.at(-2)!;
    const y0 = await k.output(
      k.request("rope", { ...c.config, rotary_dims: 0 }, c.inputs),
      "y",
      "rope with rotary_dims 0",
    );
    k.expectEqual("rope(x) with rotary_dims 0 vs x", x, y0, "exact: no dim rotates");
    if (c.r === 0) return;
    const req = k.request("rope", { ...c.config, rotary_dims: c.r }, c.inputs);
    const y = await k.output(req, "y", `rope with rotary_dims ${c.r}`);
    if (c.r < d)
      k.expectEqual(
        `dims ${c.r}…${d - 1} of rope(x) with rotary_dims ${c.r} vs x`,
        sliceAxis(x, -1, c.r, d - c.r),
        sliceAxis(y, -1, c.r, d - c.r),
        "exact: these dims pass through",
      );
    const head = sliceAxis(x, -1, 0, c.r);
    const { rotary_dims: _r, ...full } = c.config;
    const yFull = await k.output(
      k.request("rope", full, { x: head }),
      "y",
      `rope over a head of ${c.r} dims`,
    );
    const pMax = Number(c.config["offset"] ?? 0) + n;
    const gR = ropeDepth(pMax) * unitRoundoff(c.dtype);
    const l1 = rowL1PerEntry(head);
    const sp = underflowAllowance(c.dtype, 3);
    k.expectClose(
      `dims 0…${c.r - 1} of rope(x) with rotary_dims ${c.r} vs rope of x[..., :${c.r}]`,
      yFull,
      sliceAxis(y, -1, 0, c.r),
      Array.from(l1, (v) => 2 * gR * v + 2 * sp),
      `2γ_R·‖x_row‖₁ + 2·(3 smallest normals), γ_R = ${ropeDepth(pMax)}u`,
      { r: c.r, d_k: d },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface IdsCase extends FormulaCase {
  /** A second input, for the scores ⟨R q, R k⟩. */
  readonly z: Tensor;
  readonly offset: number;
  readonly shift: number;
  readonly seed: number;
}

/** Scores within each batch row: s[b, i, j] = ⟨a[b, i], c[b, j]⟩ in float64. */
function rowScores(a: Tensor, b: Tensor): Float64Array {
  const n = a.shape.at(-2)!;
  const d = a.shape.at(-1)!;
  const B = a.size / (n * d);
  const out = new Float64Array(B * n * n);
  for (let q = 0; q < B; q++)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let e = 0; e < d; e++)
          s += a.data[(q * n + i) * d + e]! * b.data[(q * n + j) * d + e]!;
        out[(q * n + i) * n + j] = s;
      }
  return out;
}

/** Row norms without underflow (hypot scales): a row of 1e-263 entries has norm 1e-263, not 0. */
function rowNorms(t: Tensor): Float64Array {
  const d = t.shape.at(-1)!;
  const out = new Float64Array(t.size / d);
  for (let r = 0; r < out.length; r++)
    out[r] = Math.hypot(...Array.from(t.data.subarray(r * d, (r + 1) * d)));
  return out;
}

export const ropePositionIds: Law<IdsCase> = {
  name: "rope_position_ids",
  formulas: ["rope"],
  statement:
    "position_ids = offset + (0, 1, …, n − 1) equals RoPE at that offset " +
    "without ids; and for any position_ids P the scores depend only on " +
    "position differences: ⟨R_{P_i + s} q_i, R_{P_j + s} k_j⟩ = ⟨R_{P_i} " +
    "q_i, R_{P_j} k_j⟩ for every pair of rows i, j of a sequence and every shift s",
  tolerance: {
    derivation:
      `the first part: ${TWO_ROPES}. The scores: each side within ` +
      `2√2γ_R‖q_i‖‖k_j‖ + O(γ²) of exact, so the two within 6γ_R‖q_i‖‖k_j‖, ` +
      `plus the law's float64 sums 4γ_{d_k}`,
    bound: (dtype, s) => 6 * ropeDepth(s["p_max"] ?? 1) * unitRoundoff(dtype),
    scale: "‖q_i‖·‖k_j‖ (the first part: ‖x_row‖₁)",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        fixed: { position_ids: false },
        choose: { offset: [0] },
        dims: { batch: "any" },
      }).chain((c) =>
        fc
          .tuple(
            inputsArb(f, c.config, c.dims, { dtype: scope.dtype }),
            fc.integer({ min: 0, max: 40 }),
            fc.integer({ min: 1, max: 40 }),
            seedArb,
          )
          .map(([z, offset, shift, seed]) => ({ ...c, z: z["x"]!, offset, shift, seed })),
      ),
    ),
  check: checked("rope_position_ids", async (k: Check, c: IdsCase) => {
    const x = c.inputs["x"]!;
    const n = x.shape.at(-2)!;
    const d = x.shape.at(-1)!;
    const idsShape = x.shape.slice(0, -1);
    const cfg = { ...c.config, position_ids: true };
    const rope = (t: Tensor, ids: Tensor, what: string) =>
      k.output(k.request("rope", cfg, { x: t, position_ids: ids } as NamedTensors), "y", what);
    // 1. ids offset + arange = the offset
    const arange = mapT(Tensor.zeros(idsShape, "i32"), (_, f) => c.offset + (f % n), "i32");
    const req = k.request("rope", { ...c.config, offset: c.offset }, { x });
    const yOffset = await k.output(req, "y", `rope at offset ${c.offset}`);
    const yIds = await rope(x, arange, `rope with position_ids ${c.offset} … ${c.offset + n - 1}`);
    const u = unitRoundoff(c.dtype);
    const sp = underflowAllowance(c.dtype, 3);
    const g1 = ropeDepth(c.offset + n) * u;
    k.expectClose(
      `rope with position_ids ${c.offset} + (0 … ${n - 1}) vs rope at offset ${c.offset}`,
      yOffset,
      yIds,
      Array.from(rowL1PerEntry(x), (v) => 2 * g1 * v + 2 * sp),
      `2γ_R·‖x_row‖₁ + 2·(3 smallest normals), γ_R = ${ropeDepth(c.offset + n)}u`,
      { offset: c.offset },
    );
    // 2. scores under arbitrary ids depend on differences only
    const rng = new Rng(c.seed);
    const P = mapT(Tensor.zeros(idsShape, "i32"), () => rng.int(41), "i32");
    const Ps = mapT(P, (v) => v + c.shift, "i32");
    const [qa, ka, qs, ks] = await Promise.all([
      rope(x, P, "rope(q) at position_ids P"),
      rope(c.z, P, "rope(k) at position_ids P"),
      rope(x, Ps, `rope(q) at P + ${c.shift}`),
      rope(c.z, Ps, `rope(k) at P + ${c.shift}`),
    ]);
    const s1 = rowScores(qa, ka);
    const s2 = rowScores(qs, ks);
    const pMax = 40 + c.shift + 1;
    const gR = ropeDepth(pMax) * u;
    const qn = rowNorms(x);
    const kn = rowNorms(c.z);
    const allowed = new Float64Array(s1.length);
    for (let f = 0; f < s1.length; f++) {
      const b = Math.floor(f / (n * n));
      const i = Math.floor(f / n) % n;
      const j = f % n;
      allowed[f] =
        (6 * gR + 4 * gamma(d + 1, "f64")) * qn[b * n + i]! * kn[b * n + j]! + 4 * sp * d;
    }
    k.expectClose(
      `⟨R q_i, R k_j⟩ at position_ids P vs P + ${c.shift}`,
      s1,
      s2,
      allowed,
      `(6γ_R + 4γ_{d_k}(f64))·‖q_i‖‖k_j‖ + 4·(3 smallest normals)·d_k, γ_R = ${ropeDepth(pMax)}u`,
      { shift: c.shift },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

/**
 * Relative error of a kept entry x/(1 − p) computed in `dtype`: p rounded to the dtype (relative
 * u·p/(1 − p) in 1 − p), 1 − p, the reciprocal and the product (at most three roundings), plus one
 * float64 rounding of the law's own reference.
 */
function dropoutBound(dtype: FloatDType, p: number): number {
  const carried = p > 0 && p < 1 ? Math.ceil(p / (1 - p)) : 0;
  return gamma(3 + carried, dtype) + gamma(1, "f64");
}

interface DropoutCase extends FormulaCase {
  readonly seed: number;
}

export const dropoutScaling: Law<DropoutCase> = {
  name: "dropout_scaling",
  formulas: ["dropout"],
  statement:
    "dropout with keep mask m: y = 0 exactly where m = 0, (1 − p)·y = x " +
    "where m ≠ 0 (the kept entries are scaled by 1/(1 − p)), p = 0 with m = " +
    "1 is the identity, p = 1 gives zeros; the gradient is ∂x = m ⊙ ȳ/(1 − " +
    "p) (0 for p = 1)",
  tolerance: {
    derivation:
      "exact for the zeros and for p = 0; a kept entry is x·s with s = 1/(1 − " +
      "p): p held in the working dtype is off by u·p, which moves 1 − p by " +
      "u·p/(1 − p) relative; then 1 − p, 1/(1 − p) and the product (or one " +
      "division) round once each: |y − x/(1 − p)| ≤ γ_{3 + ⌈p/(1 − p)⌉}·|x|/(1 " +
      "− p), plus γ_1(f64) for the law's float64 reference",
    // stated at p = 0.9, the largest generated p below 1 (each case uses its own p)
    bound: (dtype) => dropoutBound(dtype, 0.9),
    scale: "|x_i| (gradients: |ȳ_i|)",
  },
  backward: "optional",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        choose: { p: [0.5, 0.1, 0.75, 0.9, 0, 1] },
        dims: { batch: "any" },
      }).chain((c) => seedArb.map((seed) => ({ ...c, seed }))),
    ),
  check: checked("dropout_scaling", async (k: Check, c: DropoutCase) => {
    const x = c.inputs["x"]!;
    const p = Number(c.config["p"]);
    const rng = new Rng(c.seed);
    const keep = mapT(Tensor.zeros(x.shape, "i32"), () => (rng.uniform() >= p ? 1 : 0), "i32");
    const req = k.request("dropout", c.config, { x, keep_mask: keep });
    const y = await k.output(req, "y", `dropout p = ${p}`);
    const scale = p < 1 ? 1 / (1 - p) : 0;
    const bound = dropoutBound(c.dtype, p);
    // a subnormal x (or result) rounds to the subnormal grid, or flushes to zero: absolute error
    const tiny = underflowAllowance(c.dtype, 2, scale);
    const expected = mapT(x, (v, i) => (keep.data[i] !== 0 ? v * scale : 0), "f64");
    const exactWhere = (v: number, i: number) => keep.data[i] === 0 || p === 0 || p === 1;
    k.expectClose(
      `dropout(x, m; p = ${p}) vs m ⊙ x/(1 − p)`,
      expected,
      y,
      Array.from(x.data, (v, i) => (exactWhere(v, i) ? 0 : bound * Math.abs(v) * scale + tiny)),
      "exact where m = 0, for p = 0 and for p = 1; elsewhere (γ_{3 + ⌈p/(1 − " +
        "p)⌉} + γ_1(f64))·|x_i|/(1 − p) + 2·(smallest normal)/(1 − p) (subnormal " +
        "results round absolutely)",
      { p },
    );
    if (p === 0) {
      const ones = mapT(keep, () => 1, "i32");
      const y1 = await k.output(
        k.request("dropout", c.config, { x, keep_mask: ones }),
        "y",
        "dropout p = 0, mask of ones",
      );
      k.expectEqual("dropout(x, 1; p = 0) vs x", x, y1, "exact: the identity");
    }
    if (!k.supportsBackward("dropout")) return;
    const cot = mapT(x, () => rng.normal());
    const grads = await k.backward({ ...req, cotangents: { y: cot } });
    const g = grads["x"];
    if (g === undefined) k.fail("backward returned no gradient for x", { quantity: "grad x" });
    const expectedG = mapT(cot, (v, i) => (keep.data[i] !== 0 ? v * scale : 0), "f64");
    k.expectClose(
      `∂x of dropout p = ${p} vs m ⊙ ȳ/(1 − p)`,
      expectedG,
      g,
      Array.from(cot.data, (v, i) =>
        keep.data[i] === 0 || p === 0 || p === 1 ? 0 : bound * Math.abs(v) * scale + tiny,
      ),
      "exact where m = 0, for p = 0 and for p = 1; elsewhere (γ_{3 + ⌈p/(1 − " +
        "p)⌉} + γ_1(f64))·|ȳ_i|/(1 − p) + 2·(smallest normal)/(1 − p)",
      { p },
    );
  }),
};
