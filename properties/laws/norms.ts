/**
 * Laws of LayerNorm and RMSNorm: the output moments, scale and shift invariance (and RMSNorm's
 * lack of shift invariance), and the input gradient's relations (it sums to zero, and its inner
 * product with x is the derivative along the scaling direction).
 *
 * Error model of a computed LayerNorm row (γ = 1, β = 0), with σ_ε = √(v + ε), A = max|x|/σ_ε
 * (the row's conditioning: large when the mean dominates the spread):
 * - μ̂ within γ_d·max|x|; c_j = x_j − μ̂ within δc = (d + 2)u·max|x|;
 * - v̂ within 2·max|c|·δc + γ_{d+1}v, i.e. relative to v + ε within (4A²(d + 2) + d + 1)u;
 * - σ̂ relative error ρ = ½(4A²(d + 2) + d + 1)u + 2u (addition, square root);
 * - x̂_j within e = (d + 2)u·A + |x̂_j|(ρ + u) ≤ e_max = (d + 2)u·A + √d(ρ + u)  (|x̂_j| ≤ √d).
 * Values below the normal range round absolutely (or flush to zero): each bound adds the underflow
 * allowance of tolerance.ts for (d + 8) operations amplified by (1 + max|x|)²/ε.
 */
import fc from "fast-check";
import { Tensor, type FloatDType, type NamedTensors } from "../../autodiff/tensor.js";
import { floatTensorArb, type FormulaCase } from "../arbitraries.js";
import { Check, checked, fmt, type Law } from "../law.js";
import { lastAxisRows, mapT, maxAbs } from "../tensor-ops.js";
import { underflowAllowance, unitRoundoff } from "../tolerance.js";
import { oneOfFormulas, scopedCaseArb } from "./generic.js";

const u64 = unitRoundoff("f64");

export interface RowStats {
  readonly mu: number;
  /** Biased variance (LayerNorm) or mean square (RMSNorm). */
  readonly v: number;
  readonly sigma: number;
  /** max|x|/σ_ε */
  readonly A: number;
  readonly maxAbs: number;
}

export function rowStats(row: Float64Array, eps: number, rms: boolean): RowStats {
  const d = row.length;
  let mu = 0;
  for (const v of row) mu += v;
  mu = rms ? 0 : mu / d;
  let v = 0;
  let mx = 0;
  for (const x of row) {
    v += (x - mu) ** 2;
    mx = Math.max(mx, Math.abs(x));
  }
  v /= d;
  const sigma = Math.sqrt(v + eps);
  return { mu, v, sigma, A: sigma > 0 ? mx / sigma : mx === 0 ? 0 : Infinity, maxAbs: mx };
}

/** e_max of the module comment for a LayerNorm row (RMSNorm: relative (d + 7)/2·u on |x̂| ≤ √d). */
export function normEntryError(
  s: RowStats,
  d: number,
  eps: number,
  dtype: FloatDType,
  rms: boolean,
): number {
  const u = unitRoundoff(dtype);
  const floor = underflowAllowance(
    dtype,
    d + 8,
    (1 + s.maxAbs) ** 2 * (1 + 1 / Math.max(eps, 1e-300)),
  );
  if (rms) return ((d + 7) / 2) * u * Math.sqrt(d) + floor;
  const rho = 0.5 * (4 * s.A * s.A * (d + 2) + d + 1) * u + 2 * u;
  return (d + 2) * u * s.A + Math.sqrt(d) * (rho + u) + floor;
}

function unitParams(c: FormulaCase): NamedTensors {
  const d = c.inputs["x"]!.shape.at(-1)!;
  const out: NamedTensors = { ...c.inputs, gamma: Tensor.full([d], 1, c.dtype) };
  if (c.formula === "layer_norm") out["beta"] = Tensor.zeros([d], c.dtype);
  return out;
}

// ---------------------------------------------------------------------------------------------

export const normMoments: Law = {
  name: "norm_moments",
  formulas: ["layer_norm", "rms_norm"],
  statement:
    "with γ = 1, β = 0: LayerNorm rows have mean 0 and (biased) variance " +
    "v/(v + ε); RMSNorm rows have mean square ms/(ms + ε) (v, ms those of x)",
  tolerance: {
    derivation:
      "LayerNorm: |mean ŷ| ≤ e_max + d·u₆₄·√d and |var ŷ − v/(v+ε)| ≤ 2e_max " +
      "+ 2e_max² + (4A²(d + 2) + d + 3)u₆₄ + 2(d + 1)u₆₄ (the law's own " +
      "float64 statistics follow the same analysis), e_max of the module " +
      "comment. RMSNorm: each ŷ_j carries relative error ½γ_{d+1} + 3u, so " +
      "mean(ŷ²) is within (d + 7)u·ms/(ms+ε) plus 2(d + 3)u₆₄ for the law",
    bound: (dtype, s) => ((s["d"] ?? 1) + 7) * unitRoundoff(dtype),
    scale: "1 + A² (A = max|x|/√(v + ε))",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) => scopedCaseArb(scope, f, { dims: { batch: "any" } })),
  check: checked("norm_moments", async (k: Check, c: FormulaCase) => {
    const rms = c.formula === "rms_norm";
    const eps = Number(c.config["eps"]);
    const inputs = unitParams(c);
    const y = await k.output(k.request(c.formula, c.config, inputs), "y");
    k.expectFinite("y", y);
    const xs = lastAxisRows(c.inputs["x"]!);
    const ys = lastAxisRows(y);
    const d = xs[0]?.length ?? 0;
    const u = unitRoundoff(c.dtype);
    const means: number[] = [];
    const meansAllowed: number[] = [];
    const got: number[] = [];
    const want: number[] = [];
    const allowed: number[] = [];
    xs.forEach((row, r) => {
      const s = rowStats(row, eps, rms);
      const yr = ys[r]!;
      const e = normEntryError(s, d, eps, c.dtype, rms);
      const floor = underflowAllowance(c.dtype, d + 8, (1 + s.maxAbs) ** 2 * (1 + 1 / eps));
      if (rms) {
        const ms = yr.reduce((a, v) => a + v * v, 0) / d;
        const target = s.v / (s.v + eps);
        got.push(ms);
        want.push(target);
        allowed.push((d + 7) * u * target + 2 * (d + 3) * u64 * target + floor);
        return;
      }
      const mean = yr.reduce((a, v) => a + v, 0) / d;
      means.push(mean);
      meansAllowed.push(e + d * u64 * Math.sqrt(d));
      const vy = yr.reduce((a, v) => a + (v - mean) ** 2, 0) / d;
      got.push(vy);
      want.push(s.v / (s.v + eps));
      allowed.push(
        2 * e + 2 * e * e + (4 * s.A * s.A * (d + 2) + d + 3) * u64 + 2 * (d + 1) * u64 + floor,
      );
    });
    if (!rms)
      k.expectClose(
        "mean_j LayerNorm(x)_j",
        means.map(() => 0),
        means,
        meansAllowed,
        "e_max + d·u₆₄·√d (module comment)",
      );
    k.expectClose(
      rms ? "mean_j RMSNorm(x)_j² vs ms/(ms + ε)" : "var_j LayerNorm(x)_j vs v/(v + ε)",
      want,
      got,
      allowed,
      rms ? "(d + 7)u·ms/(ms+ε) + 2(d + 3)u₆₄" : "2e_max + 2e_max² + law's float64 statistics",
      {
        eps,
        firstRow: xs[0] !== undefined ? Array.from(xs[0]) : [],
      },
    );
  }),
};

// ---------------------------------------------------------------------------------------------

interface ScaleCase extends FormulaCase {
  /** α = 2^k: scaling is exact in binary floating point. */
  readonly k: number;
  readonly shifts: Tensor;
}

/** Rows with spread: x_0 = −s, x_1 = +s with s = max(1, max|row|) (d ≥ 2). */
function spreadRows(x: Tensor): Tensor {
  const d = x.shape.at(-1)!;
  const out = x.clone();
  for (let o = 0; o < out.size; o += d) {
    let s = 1;
    for (let j = 0; j < d; j++) s = Math.max(s, Math.abs(out.data[o + j]!));
    out.data[o] = -s;
    out.data[o + 1] = s;
  }
  return out;
}

export const normInvariance: Law<ScaleCase> = {
  name: "norm_invariance",
  formulas: ["layer_norm", "rms_norm"],
  statement:
    "with ε = 0: LN(2^k x) = LN(x) and RMS(2^k x) = RMS(x); for any ε: LN(x " +
    "+ c·1) = LN(x); NEGATIVE: RMSNorm is not shift invariant — for rows " +
    "with x_0 = −s, x_1 = s, |RMS(x + s)_0 − RMS(x)_0| ≥ 1/√(1 + ε)",
  tolerance: {
    derivation:
      "scaling by 2^k is exact, so two evaluations differ by at most 2e_max " +
      "(RMSNorm: 2·(d + 7)/2·u·√d). Shift: x' = fl(x + c) deviates from x + c " +
      "by δ ≤ u·max|x'|, which LayerNorm (Lipschitz (2 + √d)/σ_ε row-wise) " +
      "passes on: e_max(x) + e_max(x') + (2 + √d)·δ/σ_ε. Negative law: " +
      "RMS(x)_0 = −s/√(ms + ε) with ms ≤ s², RMS(x + s)_0 = 0 exactly, so the " +
      "difference is ≥ s/√(s² + ε) ≥ 1/√(1 + ε) (s ≥ 1), minus the error bound",
    bound: (dtype, s) => 2 * ((s["d"] ?? 1) + 2) * unitRoundoff(dtype),
    scale: "1 + A² (A = max|x|/σ_ε)",
  },
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        choose: { eps: [0, 1e-5, 0.1] },
        dims: { batch: "any", minD: 2 },
      }).chain((c) =>
        fc
          .tuple(
            fc.integer({ min: -6, max: 6 }).filter((e) => e !== 0),
            floatTensorArb(c.inputs["x"]!.shape.slice(0, -1), scope.dtype, { min: -100, max: 100 }),
          )
          .map(([e, shifts]) => ({
            ...c,
            inputs: { ...c.inputs, x: spreadRows(c.inputs["x"]!) },
            k: e,
            shifts,
          })),
      ),
    ),
  check: checked("norm_invariance", async (k: Check, c: ScaleCase) => {
    const rms = c.formula === "rms_norm";
    const eps = Number(c.config["eps"]);
    const base = unitParams(c);
    const x = base["x"]!;
    const d = x.shape.at(-1)!;
    const u = unitRoundoff(c.dtype);
    const run = async (xx: Tensor, cfg: Record<string, number | string | boolean>, what: string) =>
      k.output(k.request(c.formula, cfg, { ...base, x: xx }), "y", what);
    const rowsX = lastAxisRows(x);
    // scale invariance at ε = 0
    const cfg0 = { ...c.config, eps: 0 };
    const alpha = 2 ** c.k;
    const y0 = await run(x, cfg0, "forward with ε = 0");
    const yS = await run(
      mapT(x, (v) => v * alpha),
      cfg0,
      `forward of 2^${c.k}·x with ε = 0`,
    );
    k.expectFinite("y (ε = 0)", y0);
    const eRow = rowsX.map((r) => normEntryError(rowStats(r, 0, rms), d, 0, c.dtype, rms));
    const perEl = (e: number[]) =>
      Float64Array.from({ length: x.size }, (_, i) => e[Math.floor(i / d)]!);
    k.expectClose(
      `${c.formula}(2^${c.k}·x) vs ${c.formula}(x) at ε = 0`,
      y0,
      yS,
      perEl(eRow.map((e) => 2 * e)),
      "2e_max per row (exact scaling)",
    );
    const y = await run(x, c.config, "forward");
    const x2 = mapT(x, (v, i) => v + c.shifts.data[Math.floor(i / d)]!);
    const y2 = await run(x2, c.config, "forward of x + c");
    if (!rms) {
      const rows2 = lastAxisRows(x2);
      const bounds = rowsX.map((r, i) => {
        const s1 = rowStats(r, eps, false);
        const s2 = rowStats(rows2[i]!, eps, false);
        const delta = u * s2.maxAbs;
        return (
          normEntryError(s1, d, eps, c.dtype, false) +
          normEntryError(s2, d, eps, c.dtype, false) +
          ((2 + Math.sqrt(d)) * delta) / Math.min(s1.sigma, s2.sigma)
        );
      });
      k.expectClose(
        "LN(x + c·1) vs LN(x)",
        y,
        y2,
        perEl(bounds),
        "e_max(x) + e_max(x') + (2 + √d)·u·max|x'|/σ_ε per row",
        { eps },
      );
      return;
    }
    // RMSNorm must see the shift: x_0 = −s, x_1 = s; shifting by s zeroes x_0
    const shiftS = mapT(x, (v, i) => v + Math.abs(x.data[Math.floor(i / d) * d + 1]!));
    const yShift = await run(shiftS, c.config, "forward of x + s");
    const floor = 1 / Math.sqrt(1 + eps);
    for (let r = 0; r < rowsX.length; r++) {
      const diff = Math.abs(yShift.data[r * d]! - y.data[r * d]!);
      const need = floor - 2 * eRow[r]! - 2 * ((d + 7) / 2) * u * Math.sqrt(d);
      if (!(diff >= need)) {
        k.fail(
          `RMSNorm(x + s)_0 − RMSNorm(x)_0 = ${fmt(diff)} < ${fmt(need)} for a ` +
            `row with x_0 = −s, x_1 = s: the output ignores a shift, as if the mean ` +
            `were subtracted (LayerNorm)`,
          {
            quantity: "|RMS(x + s)_0 − RMS(x)_0|",
            index: [r],
            actual: diff,
            expected: floor,
            allowed: need,
            toleranceReason: "must be at least 1/√(1 + ε) minus the error bounds",
            values: { row: Array.from(rowsX[r]!) },
          },
        );
      }
    }
  }),
};

// ---------------------------------------------------------------------------------------------

interface NormGradCase extends FormulaCase {
  readonly cot: Tensor;
}

export const normGradient: Law<NormGradCase> = {
  name: "norm_gradient",
  formulas: ["layer_norm", "rms_norm"],
  statement:
    "LayerNorm (β = 0): Σ_j x̄_j = 0 and ⟨x̄, x − μ⟩ = ε/(v + ε)·⟨ȳ, y⟩; " +
    "RMSNorm: ⟨x̄, x⟩ = ε/(ms + ε)·⟨ȳ, y⟩ (derivative along x → αx); both: " +
    "γ̄_j γ_j = Σ_rows ȳ_j y_j and β̄ = Σ_rows ȳ",
  tolerance: {
    derivation:
      "with G = max|ȳ ⊙ γ| per row, the computed x̄_j = (1/σ)(ĝ_j − mean ĝ − " +
      "x̂_j·mean(ĝ x̂)) is within E = (G/σ_ε)·[(d + 1)u(1 + √d) + e_max(1 + " +
      "√d) + 2u(2 + √d) + (ρ + u)(2 + √d)] (x̂ within e_max, σ relative ρ, " +
      "sums γ_d; |mean(ĝx̂)| ≤ G). Σ_j x̄_j: d·E + d·e_max·G/σ_ε (Σx̂ is not " +
      "exactly 0 when computed). ⟨x̄, x − μ⟩: Σ_j E|x_j − μ| + d·G·e_max (the " +
      "right side's y) + the law's float64 sums. Parameter gradients: sums " +
      "over N rows, γ_N·Σ|…| twice",
    bound: (dtype, s) => ((s["d"] ?? 1) + 1) * (1 + Math.sqrt(s["d"] ?? 1)) * unitRoundoff(dtype),
    scale: "G/σ_ε·(1 + A²)",
  },
  backward: "required",
  arbitrary: (scope) =>
    oneOfFormulas(scope, (f) =>
      scopedCaseArb(scope, f, {
        dims: { batch: "any" },
        range: (a) => (a.name === "x" ? { min: -10, max: 10 } : undefined),
      }).chain((c) =>
        floatTensorArb(c.inputs["x"]!.shape, scope.dtype, { min: -3, max: 3 }).map((cot) => ({
          ...c,
          cot,
        })),
      ),
    ),
  check: checked("norm_gradient", async (k: Check, c: NormGradCase) => {
    const rms = c.formula === "rms_norm";
    const eps = Number(c.config["eps"]);
    const inputs: NamedTensors = { ...c.inputs };
    if (!rms) inputs["beta"] = Tensor.zeros([c.inputs["x"]!.shape.at(-1)!], c.dtype);
    const x = inputs["x"]!;
    const gamma = inputs["gamma"]!;
    const d = x.shape.at(-1)!;
    const u = unitRoundoff(c.dtype);
    const req = k.request(c.formula, c.config, inputs);
    const y = await k.output(req, "y");
    k.expectFinite("y", y);
    const grads = await k.backward({ ...req, cotangents: { y: c.cot } });
    const gx = grads["x"];
    const gg = grads["gamma"];
    if (gx === undefined || gg === undefined)
      k.fail(
        `backward returned ${Object.keys(grads).join(", ") || "nothing"}; x and gamma gradients are needed`,
        { quantity: "grads" },
      );
    k.expectFinite("grad x", gx);
    const xs = lastAxisRows(x);
    const maxX = maxAbs(x);
    const sums: number[] = [];
    const sumsAllowed: number[] = [];
    const lhs: number[] = [];
    const rhs: number[] = [];
    const dirAllowed: number[] = [];
    const N = xs.length;
    const ggWant = new Float64Array(d);
    const ggAbs = new Float64Array(d);
    const gbWant = new Float64Array(d);
    const gbAbs = new Float64Array(d);
    const ggXhat = new Float64Array(d);
    xs.forEach((row, r) => {
      const s = rowStats(row, eps, rms);
      let G = 0;
      for (let j = 0; j < d; j++)
        G = Math.max(G, Math.abs(c.cot.data[r * d + j]! * gamma.data[j]!));
      const e = normEntryError(s, d, eps, c.dtype, rms);
      const rho = 0.5 * (4 * s.A * s.A * (d + 2) + d + 1) * u + 2 * u;
      const sq = Math.sqrt(d);
      // + the underflow allowance: results below the normal range round absolutely (or flush to zero)
      const E =
        s.sigma > 0
          ? (G / s.sigma) *
              ((d + 1) * u * (1 + sq) + e * (1 + sq) + 2 * u * (2 + sq) + (rho + u) * (2 + sq)) +
            underflowAllowance(c.dtype, d + 8, ((1 + s.maxAbs) ** 2 * (1 + G)) / s.sigma)
          : 0;
      let sx = 0;
      let dot = 0;
      let dotAbs = 0;
      let yy = 0;
      let yyAbs = 0;
      for (let j = 0; j < d; j++) {
        const g = gx.data[r * d + j]!;
        sx += g;
        dot += g * (row[j]! - s.mu);
        dotAbs += Math.abs(g * (row[j]! - s.mu));
        const cy = c.cot.data[r * d + j]! * y.data[r * d + j]!;
        yy += cy;
        yyAbs += Math.abs(cy);
        ggWant[j] = ggWant[j]! + cy;
        ggAbs[j] = ggAbs[j]! + Math.abs(cy);
        gbWant[j] = gbWant[j]! + c.cot.data[r * d + j]!;
        gbAbs[j] = gbAbs[j]! + Math.abs(c.cot.data[r * d + j]!);
        ggXhat[j] = ggXhat[j]! + 2 * e * Math.abs(c.cot.data[r * d + j]!);
      }
      if (!rms) {
        sums.push(sx);
        sumsAllowed.push(
          d * E + (s.sigma > 0 ? (d * e * G) / s.sigma : 0) + d * u64 * Math.abs(sx),
        );
      }
      lhs.push(dot);
      rhs.push((eps / (s.v + eps)) * yy);
      let spread = 0;
      for (let j = 0; j < d; j++) spread += E * Math.abs(row[j]! - s.mu);
      dirAllowed.push(
        spread +
          d * G * e +
          underflowAllowance(
            c.dtype,
            2 * d + 8,
            (1 + s.maxAbs) ** 2 * (1 + G) * (1 + 1 / s.sigma),
          ) +
          2 * (d + 1) * u64 * (dotAbs + yyAbs) +
          (rms ? 0 : Math.abs(sx) * d * u64 * s.maxAbs),
      );
    });
    if (!rms)
      k.expectClose(
        "Σ_j (grad x)_j",
        sums.map(() => 0),
        sums,
        sumsAllowed,
        "d·E + d·e_max·G/σ_ε (see the derivation)",
      );
    k.expectClose(
      rms ? "⟨x̄, x⟩ vs ε/(ms + ε)·⟨ȳ, y⟩" : "⟨x̄, x − μ⟩ vs ε/(v + ε)·⟨ȳ, y⟩",
      rhs,
      lhs,
      dirAllowed,
      "Σ_j E|x_j − μ| + d·G·e_max + float64 sums",
      { eps },
    );
    const prod = mapT(gg, (v, j) => v * gamma.data[j]!, "f64");
    k.expectClose(
      "γ̄_j·γ_j vs Σ_rows ȳ_j y_j",
      Tensor.from(ggWant, "f64", [d]),
      prod,
      Array.from(
        ggAbs,
        (a, j) =>
          2 * (N + 2) * u * a +
          Math.abs(gamma.data[j]!) * ggXhat[j]! +
          underflowAllowance(
            c.dtype,
            2 * (N + 2),
            (1 + Math.abs(gamma.data[j]!)) * (1 + maxX) ** 2,
          ),
      ),
      "2(N + 2)u·Σ_rows|ȳ_j y_j| + |γ_j|·Σ_rows 2e_max|ȳ_j| (the backward's " +
        "x̂ may differ from the forward's by 2e_max) + underflow allowance",
    );
    if (!rms) {
      const gb = grads["beta"];
      if (gb === undefined)
        k.fail("backward returned no gradient for beta", { quantity: "grad beta" });
      k.expectClose(
        "β̄ vs Σ_rows ȳ",
        Tensor.from(gbWant, "f64", [d]),
        gb,
        Array.from(gbAbs, (a) => 2 * (N + 1) * u * a + underflowAllowance(c.dtype, 2 * (N + 1))),
        "2(N + 1)u·Σ|ȳ| + underflow allowance",
      );
    }
  }),
};
